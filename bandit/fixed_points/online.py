"""Fixed points of the online methods: known in closed form or from the game solvers.

rloo, p3o_v1, p3o_v2: π* (on-policy, KL-regularised reward: CoPG Prop. 2, P3O Eq. 6).
online_dpo: π* under Bradley–Terry preferences (IPO-MD Thm G.7), otherwise a root.
online_ipo, ipo_md, nash_md_pg: IPO-MD Eq. (12)/(13) per prompt, by :mod:`bandit.games`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import logit

from ..exact import optimal_policy
from ..policy import log_softmax
from ..prepare import Prepared, Tables
from ..problems import PreferenceGame
from .gradient import Field
from .result import FixedPoint
from .roots import root_fixed_point


def optimal(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """π* ∝ π_ref exp(R/β), the unique interior stationary point of an on-policy method."""
    lp = optimal_policy(prep.problem)
    name = prep.method.name
    message = f"{name}: π* ∝ π_ref exp(R/β), the unique interior stationary point"
    return FixedPoint(name, lp, fld.residual(lp), True, True, message)


def _bt_scores(prep: Prepared) -> NDArray | None:
    """Scores s with p(y ≻ y') = σ(s(y) − s(y')) if the preferences are Bradley–Terry."""
    tab = prep.tables
    if prep.preferences is None and tab.rewards is not None:
        return np.asarray(tab.rewards)
    P = np.asarray(tab.pref)
    if np.any((P <= 0) | (P >= 1)):
        return None
    s = logit(P[:, :, 0])
    fit = s[:, :, None] - s[:, None, :]
    if np.max(np.abs(fit - logit(P))) > 1e-9:
        return None
    return s


def online_dpo(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """Online DPO: π* under Bradley–Terry preferences (IPO-MD Thm G.7), otherwise a root."""
    s = _bt_scores(prep)
    name = prep.method.name
    if s is not None:
        lp = log_softmax(np.asarray(prep.tables.log_ref) + s / float(prep.tables.beta))
        message = f"{name}: Bradley–Terry preferences, so π* (IPO-MD Thm G.7)"
        return FixedPoint(name, lp, fld.residual(lp), True, True, message)
    lp, unique, interior, how, details = root_fixed_point(fld, theta0, [np.zeros_like(theta0)])
    message = f"{name}: preferences are not Bradley–Terry; {how}"
    return FixedPoint(name, lp, fld.residual(lp), unique, interior, message, details)


def _game(tab: Tables, x: int) -> PreferenceGame:
    return PreferenceGame(
        np.asarray(tab.pref[x]), np.exp(np.asarray(tab.log_ref[x])), float(tab.beta)
    )


def game(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """online_ipo, ipo_md, nash_md_pg: IPO-MD Eq. (12)/(13) per prompt, mixture β = ``mixture``
    (0 for online IPO)."""
    from ..games import ipo_md_fixed_point, nash_equilibrium

    mix = float(prep.params.get("mixture", 0.0))
    log_ref = np.asarray(prep.tables.log_ref)
    lp = np.empty_like(log_ref)
    eq_res = []
    for x in range(log_ref.shape[0]):
        g = _game(prep.tables, x)
        sol = nash_equilibrium(g) if mix == 0.0 else ipo_md_fixed_point(g, mix)
        lp[x] = sol.log_policy
        eq_res.append(sol.residual)
    details = {"equation_residual": max(eq_res), "gradient_residual": fld.residual(lp)}
    if mix == 0.0:
        eq = "Eq. (12), the regularised Nash equilibrium (Prop. 4.1); unique: the game is "
        eq += "strongly monotone"
    else:
        eq = f"Eq. (13), β = {mix:g}; unique: by Prop. 5.2 its mixture is the unique Nash "
        eq += "equilibrium of the game with τ/(1 − β), and Eq. (13) then fixes π"
    name = prep.method.name
    message = f"{name}: IPO-MD {eq}; solved by bandit.games; residual = max(Eq. residual, max|g|)"
    residual = max(details["equation_residual"], details["gradient_residual"])
    return FixedPoint(name, lp, residual, True, True, message, details)
