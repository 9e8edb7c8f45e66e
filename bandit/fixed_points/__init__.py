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

Each method carries its solver (:attr:`bandit.methods.Method.fixed_point`); a method
without one gets the generic root finder (:func:`.roots.generic`). Layout: :mod:`.result`
(:class:`FixedPoint`), :mod:`.gradient` (the exact field g and its Jacobian),
:mod:`.pair_graph` (what offline data identify), :mod:`.offline` (copg, ipo, dpo, slic,
pg), :mod:`.online` (the on-policy and game methods), :mod:`.roots` (roots of g and the
flow); this module validates, then calls the method's solver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..methods import Method
from ..policy import log_softmax
from ..precision import float64
from ..prepare import Prepared, prepare
from ..problems import Bandit, OfflineData, PreferenceGame
from ..validation import ValidationError
from .gradient import Field
from .pair_graph import pair_graph_components
from .result import FixedPoint
from .roots import field_jacobian, generic

__all__ = ["FixedPoint", "field_jacobian", "fixed_point", "pair_graph_components"]


def _without_idle_prompts(prep: Prepared, theta0, keep) -> FixedPoint:
    """Prompts with ρ(x) = 0 get no gradient from any method: solve on the others (ρ rescaled,
    which scales g and moves no root) and leave the idle ones at ``init``."""
    problem = prep.problem
    sub = Bandit(
        problem.rewards[keep],
        problem.ref[keep],
        problem.rho[keep] / problem.rho[keep].sum(),
        problem.beta,
    )
    sub_data = None if prep.data is None else OfflineData.from_joint(prep.data.joint[keep])
    sub_pref = None if prep.preferences is None else prep.preferences[keep]
    fp = fixed_point(
        prep.method, sub, sub_data, preferences=sub_pref, init=theta0[keep], **prep.params
    )
    lp = log_softmax(theta0)
    lp[keep] = fp.log_policy
    idle = np.flatnonzero(~keep).tolist()
    message = (
        f"{fp.message}; not unique: prompts {idle} have ρ(x) = 0, get no gradient and stay at "
        "`init` (π_ref by default)"
    )
    # The sub-problem's certificate bounds this one: idle prompts have g = 0 exactly, and the
    # rescaled ρ only enlarges the sub-problem's gradient.
    return FixedPoint(fp.method, lp, fp.residual, False, fp.interior, message, fp.details)


def _one_action(prep: Prepared, fld: Field) -> FixedPoint:
    """n = 1: π = 1 is the only policy, so the trivial fixed point of every method (log-softmax
    of one logit is 0, so g = 0 exactly; the residual is computed all the same)."""
    lp = np.zeros(prep.shape)
    name = prep.method.name
    message = f"{name}: one action, so π = 1 is the only policy and the fixed point (trivially)"
    return FixedPoint(name, lp, fld.residual(lp), True, True, message)


@float64
def fixed_point(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    init: ArrayLike | None = None,
    **params: Any,
) -> FixedPoint:
    """The fixed point of ``method``'s exact expected-gradient flow, with a certificate.

    Args:
      method: a :class:`~bandit.methods.Method` or a name from :data:`bandit.METHODS`.
      problem: a :class:`Bandit` or :class:`PreferenceGame` (π_ref must have full support:
        the flow lives in the logits of h = log π/π_ref).
      data: ``OfflineData`` (product or ``from_joint``) or a (μ1, μ2) tuple, offline methods;
        or any :class:`~bandit.sources.Source` (online, replay, ...), which
        :func:`bandit.sources.fixed_point` then solves.
      preferences: p(y ≻ y'|x) overriding Bradley–Terry on R (preference methods).
      init: logits the flow starts from, shape (X, n); default log π_ref. It picks the fixed
        point where the data leave it free (see ``unique``).
      **params: the method's parameters, e.g. ``mixture`` (ipo_md, nash_md_pg), ``k``
        (rloo), ``clip_eps`` (p3o).
    Returns:
      A :class:`FixedPoint`.
    Raises:
      ValidationError: unknown method, bad data, parameters or shapes, π_ref with zeros.
    """
    prep = prepare(method, problem, data, preferences=preferences, **params)
    if prep.dynamic_source is not None or (prep.source is not None and not prep.method.offline):
        # The pairs follow the policy: a fixed point of (θ, buffer), bandit.sources' solver.
        from ..sources import fixed_point as source_fixed_point

        return source_fixed_point(
            method, problem, data, preferences=preferences, init=init, **params
        )
    log_ref = np.asarray(prep.tables.log_ref)
    if not np.all(np.isfinite(log_ref)):
        x, y = (int(i) for i in np.argwhere(~np.isfinite(log_ref))[0])
        raise ValidationError(
            f"ref: π_ref must have full support for fixed_point (its flow lives in the logits of "
            f"log π/π_ref), got π_ref = 0 at (prompt {x}, action {y}); drop that action instead"
        )
    theta0 = log_ref.copy() if init is None else prep.logits("init", init)
    if theta0.shape[1] == 1:
        return _one_action(prep, Field(prep))
    rho = np.asarray(prep.tables.rho)
    if isinstance(problem, Bandit) and np.any(rho == 0.0):
        return _without_idle_prompts(prep, theta0, rho > 0.0)
    solve = prep.method.fixed_point or generic
    return solve(prep, theta0, Field(prep))
