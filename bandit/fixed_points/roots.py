"""Fixed points as roots of the exact expected gradient, for methods with no structure to
exploit (pg, pg_value, online_dpo without Bradley–Terry), and the flow's Jacobian.

Roots are sought from several starts (hybrid Powell, then Newton polish); with several, or
none, the exact flow θ' = −g(θ) from ``init`` decides, and a flow that leaves the interior
is followed to the boundary face it reaches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import LSODA

from ..methods import Method
from ..policy import log_softmax
from ..precision import float64
from ..prepare import Prepared, prepare
from ..problems import Bandit, OfflineData, PreferenceGame
from .gradient import Field, face_logits
from .result import FixedPoint

#: A root is accepted when max|g| is below this (relative to max(1, max|g(init)|)).
ROOT_TOL = 1e-11
#: Budget of one flow integration, in evaluations of the exact gradient g (a Jacobian costs
#: 2·X·n of them). The flows of well-posed problems take a few thousand; past the budget the
#: result is returned NOT CERTIFIED (with ``unique=False``) instead of integrating for hours.
FLOW_BUDGET = 10_000
#: Budget of the root search from all starts, in gradient evaluations as for FLOW_BUDGET.
ROOT_BUDGET = 10_000


class _OutOfBudget(Exception):
    """Raised inside a root search when it has spent its budget of gradient evaluations."""


def _counted(F, JF, per_jac: int, budget: int):
    """F and JF that raise :class:`_OutOfBudget` once ``budget`` gradient evaluations are
    spent (one per F, ``per_jac`` per JF); the values are F's and JF's, unchanged."""
    used = [0]

    def spend(k: int) -> None:
        used[0] += k
        if used[0] > budget:
            raise _OutOfBudget

    def Fc(z):
        spend(1)
        return F(z)

    def JFc(z):
        spend(per_jac)
        return JF(z)

    return Fc, JFc


def _reduce(theta: NDArray) -> NDArray:
    return (theta[:, :-1] - theta[:, -1:]).ravel()


def _expand(z: NDArray, shape: tuple[int, int]) -> NDArray:
    X, n = shape
    return np.concatenate([z.reshape(X, n - 1), np.zeros((X, 1))], axis=1)


def _reduced_system(fld: Field):
    """F(z) = g[:, :-1] − g[:, -1:] in z = θ[:, :-1] − θ[:, -1:]: the flow θ' = −g reads
    z' = −F(z) exactly (g sums to 0 over actions, as θ enters through log-softmax)."""
    shape = fld.shape
    X, n = shape

    def F(z):
        g = fld.grad(_expand(z, shape))
        return (g[:, :-1] - g[:, -1:]).ravel()

    def JF(z):
        J = fld.jac(_expand(z, shape))[:, :, :, :-1]
        return (J[:, :-1] - J[:, -1:]).reshape(X * (n - 1), X * (n - 1))

    return F, JF


def _newton_roots(fld: Field, starts: list[NDArray], scale: float):
    """Distinct interior roots of g from several starts (hybrid Powell, then Newton polish),
    within ROOT_BUDGET gradient evaluations over all starts. Returns the roots, their
    stability and how many starts were searched in full (< len(starts): budget spent)."""
    F_exact, JF_exact = _reduced_system(fld)
    F, JF = _counted(F_exact, JF_exact, 2 * fld.shape[0] * fld.shape[1], ROOT_BUDGET)
    roots: list[NDArray] = []
    searched = 0
    for s in starts:
        try:
            z, converged = _newton_root(F, JF, s)
        except _OutOfBudget:
            break
        searched += 1
        fz = F_exact(z)
        if not converged or not np.all(np.isfinite(fz)) or np.max(np.abs(fz)) > ROOT_TOL * scale:
            continue
        lp = log_softmax(_expand(z, fld.shape))
        if all(np.max(np.abs(lp - r)) > 1e-6 for r in roots):
            roots.append(lp)
    stable = [bool(np.all(np.linalg.eigvals(JF_exact(_reduce(r))).real > 0)) for r in roots]
    return roots, stable, searched


def _newton_root(F, JF, s: NDArray) -> tuple[NDArray, bool]:
    """One start: hybrid Powell, then Newton polish; the point reached and whether it settled."""
    sol = scipy.optimize.root(F, _reduce(s), jac=JF, method="hybr", options={"xtol": 1e-15})
    z, converged = sol.x, False
    # Newton polish. A genuine root converges quadratically (steps → 0); a point sliding
    # to the boundary (g ∝ π(y) → 0 while log π(y) keeps falling) takes O(1) steps forever.
    for _ in range(12):
        fz = F(z)
        if not np.all(np.isfinite(fz)):
            break
        try:
            step = np.linalg.solve(JF(z), fz)
        except np.linalg.LinAlgError:
            break
        z = z - step
        if np.max(np.abs(step)) <= 1e-9 * (1.0 + np.max(np.abs(z))):
            converged = True
            break
    return z, converged


def _flow_endpoint(fld: Field, theta0: NDArray, t_end: float) -> tuple[NDArray, float | None]:
    """Integrate the exact flow z' = −F(z) (stiff solver with the exact Jacobian) to t_end,
    within FLOW_BUDGET gradient evaluations. Returns the endpoint and, when the budget ran
    out first, the time reached (else None). The steps are solve_ivp's (LSODA), one by one."""
    F, JF = _reduced_system(fld)
    solver = LSODA(
        lambda _t, z: -F(z),
        0.0,
        _reduce(theta0),
        float(t_end),
        jac=lambda _t, z: -JF(z),
        rtol=1e-10,
        atol=1e-12,
    )
    per_jac, budget = 2 * fld.shape[0] * fld.shape[1], FLOW_BUDGET
    stopped = None
    while solver.status == "running":
        if solver.nfev + per_jac * solver.njev > budget:
            stopped = float(solver.t)
            break
        solver.step()
    return log_softmax(_expand(solver.y, fld.shape)), stopped


def root_fixed_point(fld: Field, theta0: NDArray, extra_starts: list[NDArray]):
    """Roots of the expected gradient; the one the flow from θ0 reaches when there are several;
    the boundary limit of the flow when there is none.

    Both the root search and the flow have a budget of gradient evaluations (ROOT_BUDGET,
    FLOW_BUDGET): past either, the result is marked NOT CERTIFIED and ``unique=False``; its
    residual (computed by the caller at the returned policy) stays the honest max|g|.
    """
    scale = max(1.0, float(np.max(np.abs(fld.grad(theta0)))))
    rng = np.random.default_rng(0)
    starts = [theta0, *extra_starts] + [
        theta0 + rng.normal(0.0, 2.0, theta0.shape) for _ in range(3)
    ]
    roots, stable, searched = _newton_roots(fld, starts, scale)
    details: dict[str, Any] = {"n_roots": len(roots), "stable": stable}
    if searched == len(starts):
        return _after_roots(fld, theta0, starts, roots, stable, details)
    details["root_budget_exhausted_after_starts"] = searched
    how = (
        f"NOT CERTIFIED: the root search ran out of its budget ({ROOT_BUDGET} gradient "
        f"evaluations) after {searched} of {len(starts)} starts, so other roots may exist; "
    )
    if len(roots) == 1:
        why = "stable" if stable[0] else "UNSTABLE (the flow does not settle there)"
        return roots[0], False, True, how + f"returned is the one root found; {why}", details
    searched_starts = starts[:searched]
    lp, _unique, interior, rest, details = _after_roots(
        fld, theta0, searched_starts, roots, stable, details
    )
    return lp, False, interior, how + rest.replace("NOT CERTIFIED: ", ""), details


def _after_roots(fld: Field, theta0, starts, roots, stable, details):
    """root_fixed_point once the roots are known: the only one, or where the flow goes."""
    if len(roots) == 1:
        why = "stable" if stable[0] else "UNSTABLE (the flow does not settle there)"
        return (
            roots[0],
            True,
            True,
            f"the only root found from {len(starts)} starts; {why}",
            details,
        )
    # Several roots, or none: ask the flow where it goes from θ0.
    _F, JF = _reduced_system(fld)
    lam = np.abs(np.linalg.eigvals(JF(_reduce(theta0))).real)
    t_end = 1e8 / max(float(np.min(lam[lam > 0], initial=1.0)), 1e-6)
    end, stopped = _flow_endpoint(fld, theta0, t_end)
    if stopped is not None:
        msg = (
            f"NOT CERTIFIED: the flow from `init` ran out of its budget ({FLOW_BUDGET} "
            f"gradient evaluations) at t = {stopped:.3g} of {t_end:.3g}; "
        )
        details["flow_budget_exhausted_at"] = stopped
        if roots:
            i = int(np.argmin([np.max(np.abs(end - r)) for r in roots]))
            msg += (
                f"{len(roots)} roots found ({sum(stable)} stable); returned is the one nearest "
                "to where the flow stopped"
            )
            details["roots"] = [r.tolist() for r in roots]
            return roots[i], False, True, msg, details
        msg += f"no root found from {len(starts)} starts; returned is the flow where it stopped"
        return end, False, True, msg, details
    if roots:
        i = int(np.argmin([np.max(np.abs(end - r)) for r in roots]))
        msg = (
            f"not unique: {len(roots)} roots found ({sum(stable)} stable); returned is the one "
            "the flow from `init` reaches"
        )
        details["roots"] = [r.tolist() for r in roots]
        return roots[i], False, True, msg, details
    # Actions the flow is still draining: small and with g > 0 (descent lowers their logit).
    # Their mass decays only algebraically (θ' = −π(y)·rate gives π(y) ~ 1/(rate·t)).
    vanish = (end < np.log(1e-4)) & (fld.grad(end) > 0)
    if not vanish.any():
        msg = (
            f"NOT CERTIFIED: no root found from {len(starts)} starts and the flow does not "
            f"approach the boundary; returned is the flow at t = {t_end:.3g} (see residual)"
        )
        return end, False, True, msg, details
    # Polish on the face: fix the vanishing logits far down, solve for the others.
    theta = np.where(vanish, face_logits(np.where(vanish, -np.inf, end), fld.beta), end)
    live = ~vanish
    live[np.arange(theta.shape[0]), np.argmax(end, axis=-1)] = False  # gauge: top logit fixed

    def G(v):
        t = theta.copy()
        t[live] = v
        return fld.grad(t)[live]

    def JG(v):
        t = theta.copy()
        t[live] = v
        return fld.jac(t)[live][:, live]

    if live.any():
        sol = scipy.optimize.root(G, theta[live], jac=JG, method="hybr", options={"xtol": 1e-15})
        theta[live] = sol.x
    # The face attracts when the transversal rate g(y)/π(y) is > 0 for every vanishing y
    # (measured with those π(y) = e^-30 relative, where the rate is its face value to 1e-13).
    probe = np.where(vanish, np.max(theta, axis=-1, keepdims=True) - 30.0, theta)
    rate = fld.grad(probe)[vanish] / np.exp(log_softmax(probe))[vanish]
    details["transversal_rate"] = rate.tolist()
    if not np.all(rate > 0):
        msg = (
            f"NOT CERTIFIED: no root found from {len(starts)} starts and the boundary face the "
            f"flow heads for does not attract; returned is the flow at t = {t_end:.3g}"
        )
        return end, False, True, msg, details
    lp = np.where(vanish, -np.inf, log_softmax(theta))
    where = "; ".join(
        f"prompt {x}: π(y) → 0 for y ∈ {np.flatnonzero(vanish[x]).tolist()}"
        for x in range(theta.shape[0])
        if vanish[x].any()
    )
    msg = f"no interior fixed point: the flow goes to the boundary ({where}); limit on that face"
    return lp, True, False, msg, details


def generic(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """The fallback of every method without a structured solver: roots of the exact
    expected gradient (from ``init`` and uniform logits, and random starts), else the flow."""
    lp, unique, interior, how, details = root_fixed_point(fld, theta0, [np.zeros_like(theta0)])
    name = prep.method.name
    message = f"{name}: roots of the exact expected gradient; {how}"
    return FixedPoint(name, lp, fld.residual(lp), unique, interior, message, details)


@float64
def field_jacobian(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> NDArray[np.float64]:
    """Jacobian of the flow in reduced coordinates z = θ[:, :-1] − θ[:, -1:], where the
    exact expected-gradient flow θ' = −g(θ) reads z' = −F(z); shape (X(n−1), X(n−1)).

    A fixed point is linearly stable when every eigenvalue has a positive real part; gradient
    descent with step η converges locally at rate max |1 − ηλ|. Central differences of the
    exact gradient (error ~1e-10 relative), as autodiff treats stop-gradients as constants.
    """
    prep = prepare(method, problem, data, preferences=preferences, **params)
    th = prep.logits("logits", logits)
    return _reduced_system(Field(prep))[1](_reduce(th))
