"""Exact fixed points of every method, each with a certificate.

For a method with exact expected gradient g(θ) (:mod:`bandit.expected`, θ the logits of
shape (X, n)), a fixed point is a policy where g = 0: where the exact expected-gradient flow
θ' = −g(θ) can stop. :func:`fixed_point` computes it with the structure of each method:

=====================  ==================================================================
copg                   L θ = L (R/β + log π_ref), L the Laplacian of the pair graph: π*
                       (CoPG Thm 1) wherever the pair graph connects all actions.
ipo                    weighted least squares on h = log π/π_ref, one linear solve
                       (IPO-MD §2.5; Eq. 7 when μ1 = μ2).
dpo                    convex, smooth: Newton (trust region) on the engine's own loss;
                       no finite minimiser when hard 0/1 labels can be pushed apart.
slic                   piecewise linear: an LP (HiGHS), with the set of minimisers.
pg, pg_value           roots of the expected gradient (Newton from several starts);
online_dpo             π* under Bradley–Terry (IPO-MD Thm G.7), otherwise a root.
rloo, p3o_v1, p3o_v2   π* (on-policy, KL-regularised reward: CoPG Prop. 2, P3O Eq. 6).
online_ipo             the regularised Nash equilibrium (IPO-MD Eq. 12, Prop. 4.1).
ipo_md, nash_md_pg     IPO-MD Eq. (13) with β = ``mixture``.
=====================  ==================================================================

Offline methods and the flow. Every offline contrastive loss (copg, ipo, dpo, slic) depends
on θ only through differences θ(y) − θ(y') along pairs with q(y, y') + q(y', y) > 0, so its
gradient sums to zero over each connected component of that *pair graph*: the flow keeps
Σ_{y ∈ C} θ(y) fixed on each component C. Where the graph does not connect all actions the
loss does not identify the policy (CoPG Thm 1 assumes a shared support for exactly this
reason); we then return the fixed point the flow reaches from ``init`` (default π_ref),
namely the one with the same component sums as ``init``, and set ``unique=False``.

Layout: :mod:`.gradient` (the exact field g and its Jacobian), :mod:`.pair_graph` (what
offline data identify), :mod:`.offline` (copg, ipo, dpo, slic), :mod:`.roots` (roots of g
and the flow, for methods without structure); this module dispatches on the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logit

from ..exact import optimal_policy
from ..expected import OfflineData, Tables, _check_params, _joint, loss_fn
from ..methods import get_method
from ..policy import log_softmax
from ..problems import Bandit, PreferenceGame
from ..validation import ValidationError, check_finite, check_shape
from .gradient import Field, face_logits
from .offline import solve_copg_or_ipo, solve_dpo, solve_slic
from .pair_graph import graph_report, pair_graph_components
from .roots import field_jacobian, root_fixed_point

__all__ = ["FixedPoint", "field_jacobian", "fixed_point", "pair_graph_components"]


@dataclass(frozen=True)
class FixedPoint:
    """A method's fixed point with its certificate.

    Attributes:
      method: the method's name.
      log_policy: log π of the limit policy, shape (X, n); −inf where the limit puts no mass.
      residual: the certificate: max |∇_θ E[ℓ]| at ``log_policy`` (:mod:`bandit.expected`),
        or the defining equation's residual where that is sharper: the LP duality gap for
        slic; for the game methods the larger of the Eq. (12)/(13) residual (the duality
        gap 2τ KL(π‖BR(π)) for β = 0) and max |∇_θ E[ℓ]|.
      unique: False when the data do not identify the fixed point (support violations,
        disconnected pair graphs, several roots, a non-unique LP optimum).
      interior: False when no fixed point with full support exists; ``log_policy`` is then
        the limit of the flow on the boundary.
      message: how it was solved, and why it is not unique or not interior.
      details: structured extras (pair-graph components, roots found, SLiC intervals, ...).
    """

    method: str
    log_policy: NDArray[np.float64]
    residual: float
    unique: bool
    interior: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> NDArray[np.float64]:
        """π = exp(log π), shape (X, n)."""
        return np.exp(self.log_policy)


def _bt_scores(tab: Tables, preferences) -> NDArray | None:
    """Scores s with p(y ≻ y') = σ(s(y) − s(y')) if the preferences are Bradley–Terry."""
    if preferences is None and not np.isnan(np.asarray(tab.rewards)).any():
        return np.asarray(tab.rewards)
    P = np.asarray(tab.pref)
    if np.any((P <= 0) | (P >= 1)):
        return None
    s = logit(P[:, :, 0])
    fit = s[:, :, None] - s[:, None, :]
    if np.max(np.abs(fit - logit(P))) > 1e-9:
        return None
    return s


def _game(tab: Tables, x: int) -> PreferenceGame:
    return PreferenceGame(
        np.asarray(tab.pref[x]), np.exp(np.asarray(tab.log_ref[x])), float(tab.beta)
    )


def _without_idle_prompts(method, problem, data, preferences, theta0, params, keep):
    """Prompts with ρ(x) = 0 get no gradient from any method: solve on the others (ρ rescaled,
    which scales g and moves no root) and leave the idle ones at ``init``."""
    sub = Bandit(
        problem.rewards[keep],
        problem.ref[keep],
        problem.rho[keep] / problem.rho[keep].sum(),
        problem.beta,
    )
    sub_data = None if data is None else OfflineData.from_joint(data.joint[keep])
    sub_pref = None
    if preferences is not None:
        sub_pref = np.asarray(preferences, dtype=np.float64)
        sub_pref = sub_pref[None] if sub_pref.ndim == 2 else sub_pref
        sub_pref = np.broadcast_to(sub_pref, (keep.size, *sub_pref.shape[1:]))[keep]
    fp = fixed_point(method, sub, sub_data, preferences=sub_pref, init=theta0[keep], **params)
    lp = log_softmax(theta0)
    lp[keep] = fp.log_policy
    idle = np.flatnonzero(~keep).tolist()
    message = (
        f"{fp.message}; not unique: prompts {idle} have ρ(x) = 0, get no gradient and stay at "
        "`init` (π_ref by default)"
    )
    # The sub-problem's certificate bounds this one: idle prompts have g = 0 exactly, and the
    # rescaled ρ only enlarges the sub-problem's gradient.
    return FixedPoint(method, lp, fp.residual, False, fp.interior, message, fp.details)


def fixed_point(
    method: str,
    problem: Bandit | PreferenceGame,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    init: ArrayLike | None = None,
    **params: Any,
) -> FixedPoint:
    """The fixed point of ``method``'s exact expected-gradient flow, with a certificate.

    Args:
      method: a name from :data:`bandit.METHODS`.
      problem: a :class:`Bandit` or :class:`PreferenceGame` (π_ref must have full support:
        the flow lives in the logits of h = log π/π_ref).
      data: ``OfflineData`` (product or ``from_joint``) or a (μ1, μ2) tuple, offline methods.
      preferences: p(y ≻ y'|x) overriding Bradley–Terry on R (preference methods).
      init: logits the flow starts from, shape (X, n); default log π_ref. It picks the fixed
        point where the data leave it free (see ``unique``).
      **params: ``mixture`` (ipo_md, nash_md_pg), ``k`` (rloo), ``clip_eps`` (p3o).
    Returns:
      A :class:`FixedPoint`.
    Raises:
      ValidationError: unknown method, bad data, parameters or shapes, π_ref with zeros.
    """
    m = get_method(method)
    if m.sampling == "offline" and data is not None and not isinstance(data, OfflineData):
        try:
            data = OfflineData(*data)
        except TypeError:
            raise ValidationError(
                f"data must be OfflineData or a (mu1, mu2) tuple, got {type(data).__name__}"
            ) from None
    _, tab = loss_fn(method, problem, data, preferences=preferences, **params)
    log_ref = np.asarray(tab.log_ref)
    if not np.all(np.isfinite(log_ref)):
        x, y = (int(i) for i in np.argwhere(~np.isfinite(log_ref))[0])
        raise ValidationError(
            f"ref: π_ref must have full support for fixed_point (its flow lives in the logits of "
            f"log π/π_ref), got π_ref = 0 at (prompt {x}, action {y}); drop that action instead"
        )
    if init is None:
        theta0 = log_ref.copy()
    else:
        theta0 = check_finite("init", init)
        if theta0.ndim == 1 and log_ref.shape[0] == 1:
            theta0 = theta0[None]
        check_shape("init", theta0, log_ref.shape)
    fld = Field(method, tab, _joint(method, tab, data), _check_params(method, params))
    rho = np.asarray(tab.rho)
    if isinstance(problem, Bandit) and np.any(rho == 0.0):
        return _without_idle_prompts(method, problem, data, preferences, theta0, params, rho > 0.0)
    details: dict[str, Any] = {}
    unique, interior = True, True

    if m.sampling == "offline":
        unique, msg, details = graph_report(tab, data)
        if method in ("copg", "ipo"):
            lp = log_softmax(solve_copg_or_ipo(method, tab, data, theta0))
            how = "one linear solve of the pair-graph Laplacian system"
            if method == "copg" and unique:
                how += "; equals π* (CoPG Thm 1)"
            residual = fld.residual(lp)
        elif method == "dpo":
            lp, face, u, notes = solve_dpo(tab, data, theta0, fld)
            unique = unique and u
            interior = not face
            how = "Newton (trust-exact) on the engine's convex DPO loss"
            residual = fld.residual(lp)
            if face:
                how += "; NO FINITE MINIMISER: " + "; ".join(notes)
                # Actions with no mass in the limit do not matter to it: certify the others.
                live = np.isfinite(lp)
                g = fld.grad(face_logits(lp, fld.beta))
                residual = float(np.max(np.abs(g[live])))
                how += " (residual over the actions that keep mass)"
        elif method == "slic":
            lp, residual, u, intervals = solve_slic(tab, data, theta0)
            details["h_minus_anchor_intervals"] = intervals
            if not u:
                unique = False
                msg += (
                    "; the LP optimum is not unique: see details['h_minus_anchor_intervals'] "
                    "for the range of h(y) − h(anchor), h = log π/π_ref, over the optimal set"
                )
            how = "LP (HiGHS); residual = duality gap"
        else:  # pg, pg_value: not contrastive, so the pair graph is not what identifies them
            lp, unique, interior, how, d2 = root_fixed_point(
                fld, theta0, [optimal_policy(problem), np.zeros_like(theta0)]
            )
            details.update(d2)
            unseen = (data.mu1 + data.mu2 == 0) | (np.asarray(tab.rho) == 0)[:, None]
            msg = "every action is sampled"
            if unseen.any():
                msg = f"actions never sampled (prompt, action): {np.argwhere(unseen).tolist()}"
                if interior and (unseen.sum(axis=1) > 1).any():
                    unique = False
                    msg += (
                        "; their gradient is π(y)·(a common rate), so at an interior fixed "
                        "point the split of their mass is free"
                    )
            residual = fld.residual(lp)
        message = f"{method}: {how}; {msg}"
        return FixedPoint(method, lp, residual, unique, interior, message, details)

    def online(lp, residual, unique, interior, message) -> FixedPoint:
        return FixedPoint(method, lp, residual, unique, interior, message, details)

    if method in ("rloo", "p3o_v1", "p3o_v2"):
        lp = optimal_policy(problem)
        message = f"{method}: π* ∝ π_ref exp(R/β), the unique interior stationary point"
        return online(lp, fld.residual(lp), True, True, message)

    if method == "online_dpo":
        s = _bt_scores(tab, preferences)
        if s is not None:
            lp = log_softmax(log_ref + s / float(tab.beta))
            message = "online_dpo: Bradley–Terry preferences, so π* (IPO-MD Thm G.7)"
            return online(lp, fld.residual(lp), True, True, message)
        lp, unique, interior, how, d2 = root_fixed_point(fld, theta0, [np.zeros_like(theta0)])
        details.update(d2)
        message = f"online_dpo: preferences are not Bradley–Terry; {how}"
        return online(lp, fld.residual(lp), unique, interior, message)

    # online_ipo, ipo_md, nash_md_pg: IPO-MD Eq. (12)/(13), per prompt.
    from ..games import ipo_md_fixed_point, nash_equilibrium

    mix = 0.0 if method == "online_ipo" else float(params.get("mixture", 0.0))
    X = log_ref.shape[0]
    lp = np.empty_like(log_ref)
    eq_res = []
    for x in range(X):
        game = _game(tab, x)
        sol = nash_equilibrium(game) if mix == 0.0 else ipo_md_fixed_point(game, mix)
        lp[x] = sol.log_policy
        eq_res.append(sol.residual)
    details["equation_residual"] = max(eq_res)
    details["gradient_residual"] = fld.residual(lp)
    if mix == 0.0:
        eq = "Eq. (12), the regularised Nash equilibrium (Prop. 4.1); unique: the game is "
        eq += "strongly monotone"
    else:
        eq = f"Eq. (13), β = {mix:g}; unique: by Prop. 5.2 its mixture is the unique Nash "
        eq += "equilibrium of the game with τ/(1 − β), and Eq. (13) then fixes π"
    message = f"{method}: IPO-MD {eq}; solved by bandit.games; residual = max(Eq. residual, max|g|)"
    residual = max(details["equation_residual"], details["gradient_residual"])
    return online(lp, residual, True, True, message)
