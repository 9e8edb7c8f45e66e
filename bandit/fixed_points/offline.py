"""Fixed points of the offline methods, each solved with its structure.

copg and ipo: one linear solve of a pair-graph Laplacian system; dpo: Newton (trust region)
on the engine's convex loss, or the boundary face it runs off to; slic: an LP (HiGHS);
pg and pg_value: roots of the exact gradient. The solvers :func:`copg`, :func:`ipo`,
:func:`dpo`, :func:`slic` and :func:`policy_gradient` are what the registry's methods
carry (:attr:`bandit.methods.Method.fixed_point`): ``f(prep, theta0, field) -> FixedPoint``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.optimize
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp

from ..exact import optimal_policy
from ..policy import log_softmax
from ..prepare import Prepared, Tables
from ..problems import OfflineData
from .gradient import Field, face_logits
from .pair_graph import (
    graph_report,
    indicator,
    laplacian_solve,
    pair_graph_components,
    sym_weights,
)
from .result import FixedPoint
from .roots import root_fixed_point

#: HiGHS tolerances tighter than its defaults (1e-7), for certificates at the 1e-10 level.
HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def solve_copg_or_ipo(system: str, tab: Tables, data: OfflineData, theta0: NDArray) -> NDArray:
    """copg: L θ = L(R/β + log π_ref) (CoPG Eq. 9 summed over pairs: g_h = −L R_β^π).
    ipo: L θ = L log π_ref + s, s(y) = Σ_y' w(y, y')(2p(y ≻ y') − 1)/(2β), the normal
    equation of the IPO least squares in h (IPO-MD Eq. 8)."""
    X, _n = theta0.shape
    lr = np.asarray(tab.log_ref)
    beta = float(tab.beta)
    out = np.empty_like(theta0)
    for x in range(X):
        w = sym_weights(tab, data, x)
        L = np.diag(w.sum(axis=1)) - w
        if system == "copg":
            rhs = L @ (np.asarray(tab.rewards[x]) / beta + lr[x])
        else:
            t = (2.0 * np.asarray(tab.pref[x]) - 1.0) / (2.0 * beta)
            rhs = L @ lr[x] + (w * t).sum(axis=1)
        out[x] = laplacian_solve(w, rhs, theta0[x])
    return out


def solve_dpo(tab: Tables, data: OfflineData, theta0: NDArray, fld: Field):
    """Minimise the engine's DPO loss (convex in θ) with the component sums of θ0 fixed.

    Finite minimiser: a hard label p ∈ {0, 1} on an edge pushes θ(y) − θ(y') to ±∞ unless
    the edge lies on a directed cycle of the graph (winner → loser on hard edges, both ways
    on soft ones); then d with d(u) ≥ d(v) on every edge is constant on the cycle. If a hard
    edge joins two strongly connected components, d = 1 on everything that reaches the
    winner is a direction of recession, and the flow runs off to the boundary.
    """
    X, n = theta0.shape
    pref = np.asarray(tab.pref)

    face = np.zeros((X, n), dtype=bool)  # actions whose mass the flow sends to 0
    notes, unique = [], True
    penal = []
    for x in range(X):
        w = sym_weights(tab, data, x)
        edge = w > 0
        hard = edge & ((pref[x] == 0.0) | (pref[x] == 1.0))
        k, labels = pair_graph_components(w)
        if hard.any():
            directed = (edge & ~hard) | (hard & (pref[x] == 1.0))
            _, scc = connected_components(csr_matrix(directed), directed=True, connection="strong")
            beaten = np.zeros(n, dtype=bool)
            for a, b in zip(*np.nonzero(hard & (pref[x] == 1.0)), strict=True):
                if scc[a] != scc[b]:
                    beaten[scc == scc[b]] = True
            if beaten.any():
                # Components holding a beaten action diverge: their unbeaten (source) SCCs
                # take all the mass; everything else goes to 0.
                div = np.isin(labels, np.unique(labels[beaten]))
                live_x = div & ~beaten
                face[x] = ~live_x
                if len(np.unique(scc[live_x])) > 1:
                    unique = False
                notes.append(
                    f"prompt {x}: hard labels push actions {np.flatnonzero(beaten).tolist()} "
                    f"to probability 0 (no finite minimiser); the mass ends on "
                    f"{np.flatnonzero(live_x).tolist()}"
                )
        penal.append((labels, k))
    # Newton on f(θ) + ½ Σ_C (Σ_{y∈C} θ(y) − Σ_{y∈C} θ0(y))², on the live actions only.
    live = ~face
    theta = face_logits(np.where(live, theta0, -np.inf), float(tab.beta))
    # Gauge: the sums of θ over the live part of each component keep their values in θ0.
    E = [indicator(lab, k) * live[x][:, None] for x, (lab, k) in enumerate(penal)]

    def unpack(z):
        t = theta.copy()
        t[live] = z
        return t

    def obj(z):
        t = unpack(z)
        pen = sum(0.5 * float(np.sum((E[x].T @ (t[x] - theta0[x])) ** 2)) for x in range(X))
        return fld.loss(t) + pen

    def jac(z):
        t = unpack(z)
        g = fld.grad(t)
        for x in range(X):
            g[x] += E[x] @ (E[x].T @ (t[x] - theta0[x]))
        return g[live]

    def hess(z):
        t = unpack(z)
        H = fld.jac(t).copy()
        for x in range(X):
            H[x, :, x, :] += E[x] @ E[x].T
        return H[live][:, live]

    solver = "trust-exact"
    try:
        res = scipy.optimize.minimize(
            obj, theta[live], jac=jac, hess=hess, method="trust-exact", options={"gtol": 1e-14}
        )
    except (UnboundLocalError, np.linalg.LinAlgError, ValueError) as e:
        # scipy's trust-exact can fail on a nearly singular Hessian (labels so close to
        # 0/1 that the loss is flat in float64). trust-ncg minimises the same convex loss
        # with the same Hessian; its iterations are bounded (200 per variable).
        with np.errstate(invalid="ignore", over="ignore"):
            res = scipy.optimize.minimize(
                obj, theta[live], jac=jac, hess=hess, method="trust-ncg", options={"gtol": 1e-14}
            )
        solver = f"trust-ncg, as trust-exact failed ({type(e).__name__}: {e})"
        if not res.success:
            unique = False
            solver = f"NOT CERTIFIED: {solver}, and trust-ncg stopped: {res.message}"
    z = res.x
    for _ in range(5):  # Newton polish to the rounding floor
        step = np.linalg.lstsq(hess(z), jac(z), rcond=None)[0]
        if np.max(np.abs(jac(z - step))) >= np.max(np.abs(jac(z))):
            break
        z = z - step
    lp = log_softmax(np.where(live, unpack(z), -np.inf))
    return lp, bool(face.any()), unique, notes, solver


def solve_slic(tab: Tables, data: OfflineData, theta0: NDArray):
    """SLiC's expected loss is piecewise linear in θ: an LP per prompt (HiGHS).

    min Σ_{y<y'} w(p e + (1 − p) f)  s.t.  e ≥ 1 − βΔ,  f ≥ 1 + βΔ,  e, f ≥ 0,
    Δ = h(y) − h(y'), h = θ − log π_ref, component sums of θ fixed at those of θ0. The
    certificate is the duality gap (infinite, with ``init`` kept, on a prompt whose LP
    fails; the failures are returned). Non-uniqueness: the range of h(a) − h(anchor) over the
    optimal face, from two more LPs (min and max) each.
    """
    X, n = theta0.shape
    beta = float(tab.beta)
    pref = np.asarray(tab.pref)
    out = np.empty_like(theta0)
    gaps, intervals, unique, failed = [], [], True, []
    for x in range(X):
        w = sym_weights(tab, data, x)
        k, labels = pair_graph_components(w)
        E = indicator(labels, k)
        ii, jj = np.nonzero(np.triu(w > 0, 1))
        m = len(ii)
        nv = n + 2 * m
        c = np.concatenate(
            [np.zeros(n), w[ii, jj] * pref[x][ii, jj], w[ii, jj] * (1 - pref[x][ii, jj])]
        )
        A = np.zeros((2 * m, nv))
        r = np.arange(m)
        # e ≥ 1 − β(θi − θj)  ⇔  −β θi + β θj − e ≤ −1
        A[r, ii] -= beta
        A[r, jj] += beta
        A[r, n + r] = -1.0
        # f ≥ 1 + β(θi − θj)  ⇔  β θi − β θj − f ≤ −1
        A[m + r, ii] += beta
        A[m + r, jj] -= beta
        A[m + r, n + m + r] = -1.0
        b = -np.ones(2 * m)
        Aeq = np.concatenate([E.T, np.zeros((k, 2 * m))], axis=1)
        lr = np.asarray(tab.log_ref[x])
        beq = E.T @ (theta0[x] - lr)  # the LP is in h = θ − log π_ref (up to a constant)
        bounds = [(None, None)] * n + [(0, None)] * (2 * m)
        res = scipy.optimize.linprog(
            c, A, b, Aeq, beq, bounds=bounds, method="highs", options=HIGHS_OPTIONS
        )
        if res.status != 0:
            # Not certified: keep init on this prompt, with an infinite certificate.
            failed.append(f"prompt {x}: {res.message}")
            gaps.append(np.inf)
            out[x] = theta0[x]
            intervals.append([])
            unique = False
            continue
        dual = float(b @ res.ineqlin.marginals + beq @ res.eqlin.marginals)
        infeas = max(
            float(np.max(A @ res.x - b, initial=0.0)), float(np.max(np.abs(Aeq @ res.x - beq)))
        )
        gaps.append(max(abs(float(res.fun) - dual), infeas))
        out[x] = res.x[:n] + lr
        # The optimal face: c·v ≤ opt (+ rounding); the range of θ(a) − θ(anchor of a's component).
        tol = 1e-12 * max(1.0, abs(float(res.fun)))
        A2 = np.vstack([A, c])
        b2 = np.concatenate([b, [res.fun + tol]])
        iv = []
        for a in range(n):
            anchor = int(np.flatnonzero(labels == labels[a])[0])
            if anchor == a:
                iv.append((0.0, 0.0))
                continue
            d = np.zeros(nv)
            d[a], d[anchor] = 1.0, -1.0
            lo = scipy.optimize.linprog(
                d, A2, b2, Aeq, beq, bounds=bounds, method="highs", options=HIGHS_OPTIONS
            )
            hi = scipy.optimize.linprog(
                -d, A2, b2, Aeq, beq, bounds=bounds, method="highs", options=HIGHS_OPTIONS
            )
            lo_v = float(lo.fun) if lo.status == 0 else -np.inf
            hi_v = float(-hi.fun) if hi.status == 0 else np.inf
            iv.append((lo_v, hi_v))
            # An objective slack of 1e-12 moves a difference by 1e-12/(β·w) at most; any
            # width above 1e-6 is a genuine face of minimisers (they are O(1/β) wide).
            if hi_v - lo_v > 1e-6:
                unique = False
        intervals.append(iv)
    return log_softmax(out), max(gaps), unique, intervals, failed


# ----------------------------------------------------------------- the registry's solvers


def _result(prep: Prepared, lp, residual, how: str, *, unique=True, interior=True, details=None):
    """A FixedPoint with the pair-graph report every offline method shares."""
    graph_unique, msg, graph = graph_report(prep.tables, prep.data)
    name = prep.method.name
    details = {**graph, **(details or {})}
    unique = unique and graph_unique
    return FixedPoint(name, lp, residual, unique, interior, f"{name}: {how}; {msg}", details)


def _laplacian(system: str, prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    lp = log_softmax(solve_copg_or_ipo(system, prep.tables, prep.data, theta0))
    how = "one linear solve of the pair-graph Laplacian system"
    if system == "copg" and graph_report(prep.tables, prep.data)[0]:
        how += "; equals π* (CoPG Thm 1)"
    return _result(prep, lp, fld.residual(lp), how)


def copg(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """CoPG: π* wherever the pair graph connects all actions (CoPG Thm 1)."""
    return _laplacian("copg", prep, theta0, fld)


def ipo(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """Offline IPO: weighted least squares on h (IPO-MD §2.5; Eq. 7 when μ1 = μ2)."""
    return _laplacian("ipo", prep, theta0, fld)


def dpo(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """DPO: Newton on the convex loss; no finite minimiser when hard labels push apart."""
    lp, face, unique, notes, solver = solve_dpo(prep.tables, prep.data, theta0, fld)
    how = f"Newton ({solver}) on the engine's convex DPO loss"
    residual = fld.residual(lp)
    if face:
        how += "; NO FINITE MINIMISER: " + "; ".join(notes)
        # Actions with no mass in the limit do not matter to it: certify the others.
        live = np.isfinite(lp)
        g = fld.grad(face_logits(lp, fld.beta))
        residual = float(np.max(np.abs(g[live])))
        how += " (residual over the actions that keep mass)"
    return _result(prep, lp, residual, how, unique=unique, interior=not face)


def slic(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """SLiC: an LP, with the set of minimisers; the residual is the duality gap."""
    lp, residual, unique, intervals, failed = solve_slic(prep.tables, prep.data, theta0)
    how = "LP (HiGHS); residual = duality gap"
    if failed:
        how += "; NOT CERTIFIED: the LP failed (" + "; ".join(failed) + "), init kept there"
    fp = _result(prep, lp, residual, how, unique=unique)
    fp.details["h_minus_anchor_intervals"] = intervals
    if unique:
        return fp
    note = (
        "; the LP optimum is not unique: see details['h_minus_anchor_intervals'] "
        "for the range of h(y) − h(anchor), h = log π/π_ref, over the optimal set"
    )
    return replace(fp, message=fp.message + note)


#: Above this many actions per prompt, pg and pg_value use the marginal solver: the generic
#: root finder's finite-difference Jacobians cost 2·X·n exact gradients of O(X·n²) each.
PG_MARGINAL_MIN_ACTIONS = 64
#: Largest Newton step of the marginal solver, max |Δθ| (a trust bound for far starts).
_PG_MAX_STEP = 5.0


def _pg_field(tab: Tables, m: NDArray, theta: NDArray, value: bool):
    """pg's expected gradient on one prompt (up to the factor ρ(x) > 0) and its Jacobian
    as a diagonal plus rank-2 matrix, from the marginals m(y) = q(y, ·) + q(·, y).

    The pair loss is a sum of one term per completion (CoPG §5), so its expectation sees
    only m: E[ℓ] = −Σ_y m(y) sg(R_β(y) − b) h(y), whose θ-gradient is G = −(m∘w − π S),
    w = R − βh − b, S = Σ m w, b = 0 (pg) or E_π[R] (pg_value). With Σ = diag π − ππᵀ,
    r = ΣR (pg_value; 0 for pg) and M = Σ m, the derivative of m∘w − πS is
    −βdiag(m) − S diag(π) + m(βπ − r)ᵀ + π(Sπ + βm − βMπ + Mr)ᵀ.
    Returns (G, D, U, V) with ∂G/∂θ = −(diag(D) + U Vᵀ)."""
    log_pi = log_softmax(theta)
    pi = np.exp(log_pi)
    R = np.asarray(tab.rewards)
    beta = float(tab.beta)
    b = float(pi @ R) if value else 0.0
    w = R - beta * (log_pi - np.asarray(tab.log_ref)) - b
    S = float(m @ w)
    G = -(m * w - pi * S)
    r = pi * (R - b) if value else np.zeros_like(pi)  # ΣR = π∘(R − E_π R)
    M = float(m.sum())
    D = -beta * m - S * pi
    U = np.stack([m, pi], axis=1)
    V = np.stack([beta * pi - r, S * pi + beta * m - beta * M * pi + M * r], axis=1)
    return G, D, U, V


def _pg_newton_step(G, D, U, V) -> NDArray:
    """The Newton step d with J d = −G, J = −(diag(D) + U Vᵀ), in the gauge Σ d = 0: J has
    the null vector 1 and its range is Σ = 0, so (J − 11ᵀ) d = −G gives Σ d = 0 and J d = −G.
    Woodbury on diag(D) + [U, 1][V, 1]ᵀ (O(n)), accepted when it solves the system to 1e-6
    relative (an inexact Newton step); a dense solve where D is near 0 or it does not."""
    n = G.shape[0]
    Uf = np.concatenate([U, np.ones((n, 1))], axis=1)
    Vf = np.concatenate([V, np.ones((n, 1))], axis=1)
    if np.min(np.abs(D)) > 1e-12 * np.max(np.abs(D)):
        Dinv_U = Uf / D[:, None]
        small = np.eye(Uf.shape[1]) + Vf.T @ Dinv_U
        d = G / D - Dinv_U @ np.linalg.solve(small, Vf.T @ (G / D))
        if np.max(np.abs(D * d + Uf @ (Vf.T @ d) - G)) <= 1e-6 * max(np.max(np.abs(G)), 1e-300):
            return d
    return np.linalg.solve(np.diag(D) + Uf @ Vf.T, G)


def solve_pg_marginal(
    tab: Tables, data: OfflineData, starts: list[NDArray], value: bool, max_iter: int = 100
) -> tuple[list[NDArray], int]:
    """Roots of pg's (``value``: pg_value's) expected gradient, prompt by prompt, by damped
    Newton on the marginal form (:func:`_pg_field`), from each start; O(X·n) per step.

    Needs m(y) > 0 for every action (the caller checks). Returns the distinct roots found
    (as log-policies, each prompt's roots combined from the same start) and how many starts
    converged on every prompt."""
    X, _n = np.shape(tab.log_ref)
    marg = np.asarray(data.joint).sum(axis=2) + np.asarray(data.joint).sum(axis=1)
    roots: list[NDArray] = []
    converged = 0
    for s in starts:
        out, ok = np.empty_like(s), True
        for x in range(X):
            sub = Tables(tab.log_ref[x], tab.rho[x], tab.rewards[x], tab.pref[x], tab.beta)
            theta = np.array(s[x], dtype=np.float64)
            scale = max(1.0, float(np.max(np.abs(np.asarray(sub.rewards)))))
            G, *jac = _pg_field(sub, marg[x], theta, value)
            for _ in range(max_iter):
                if np.max(np.abs(G)) <= 1e-14 * scale:
                    break
                d = _pg_newton_step(G, *jac)
                d *= min(1.0, _PG_MAX_STEP / max(float(np.max(np.abs(d))), 1e-300))
                t, norm = 1.0, float(G @ G)
                while t > 1e-10:  # backtracking on ‖G‖²
                    cand = theta + t * d
                    Gc, *jc = _pg_field(sub, marg[x], cand, value)
                    if np.all(np.isfinite(Gc)) and float(Gc @ Gc) < norm:
                        break
                    t /= 2
                else:
                    break  # no decrease: the rounding floor, or a bad start
                theta, G, jac = cand, Gc, jc
            ok = ok and bool(np.max(np.abs(G)) <= 1e-10 * scale)
            out[x] = log_softmax(theta)
        if ok:
            converged += 1
            if all(np.max(np.abs(out - r)) > 1e-6 for r in roots):
                roots.append(out)
    return roots, converged


def policy_gradient(prep: Prepared, theta0: NDArray, fld: Field) -> FixedPoint:
    """pg, pg_value: not contrastive, so the pair graph is not what identifies them; roots
    of the exact gradient, from π* and uniform among the starts (the marginal solver
    :func:`solve_pg_marginal` above :data:`PG_MARGINAL_MIN_ACTIONS` actions)."""
    starts = [optimal_policy(prep.problem), np.zeros_like(theta0)]
    data, rho = prep.data, np.asarray(prep.tables.rho)
    marg = data.joint.sum(axis=2) + data.joint.sum(axis=1)
    if theta0.shape[1] > PG_MARGINAL_MIN_ACTIONS and np.all(marg > 0):
        return _policy_gradient_marginal(prep, theta0, fld, starts)
    lp, unique, interior, how, details = root_fixed_point(fld, theta0, starts)
    unseen = (data.mu1 + data.mu2 == 0) | (rho == 0)[:, None]
    msg = "every action is sampled"
    if unseen.any():
        msg = f"actions never sampled (prompt, action): {np.argwhere(unseen).tolist()}"
        if interior and (unseen.sum(axis=1) > 1).any():
            unique = False
            msg += (
                "; their gradient is π(y)·(a common rate), so at an interior fixed "
                "point the split of their mass is free"
            )
    _, _, graph = graph_report(prep.tables, data)
    name = prep.method.name
    return FixedPoint(
        name, lp, fld.residual(lp), unique, interior, f"{name}: {how}; {msg}", {**graph, **details}
    )


def _policy_gradient_marginal(prep: Prepared, theta0: NDArray, fld: Field, starts) -> FixedPoint:
    """pg, pg_value on many actions: Newton on the marginal form from θ0, π*, uniform."""
    name = prep.method.name
    value = name == "pg_value"
    tab = prep.tables
    roots, ok = solve_pg_marginal(tab, prep.data, [theta0, *starts], value)
    _, _, graph = graph_report(tab, prep.data)
    details = {**graph, "n_roots": len(roots), "starts_converged": ok}
    how = f"{name}: Newton on the marginal form of the expected gradient (CoPG §5: the pair "
    how += "loss is a sum over completions)"
    if not roots:
        lp = log_softmax(theta0)
        msg = how + "; NOT CERTIFIED: no root found from 3 starts; returned is `init`"
        return FixedPoint(name, lp, fld.residual(lp), False, True, msg, details)
    lp = roots[0]  # the root reached from init first
    unique = len(roots) == 1
    if value or not unique:
        note = (
            f"the only root found from {ok} converged of 3 starts"
            if unique
            else f"not unique: {len(roots)} roots from 3 starts; returned is init's"
        )
        note += "; stability not checked at this size"
    else:
        # pg: a root with S = Σ m w ≤ 0 needs w ≤ 0 everywhere, i.e. π ≥ π_ref e^{R/β}, so
        # where Σ π_ref e^{R/β} > 1 on every prompt the root found (S > 0) is the only one.
        logits = np.asarray(tab.log_ref) + np.asarray(tab.rewards) / float(tab.beta)
        unique = bool(np.all(logsumexp(logits, axis=-1) > 0))
        note = (
            "the only root (Σ π_ref e^{R/β} > 1 on every prompt)"
            if unique
            else "one root found from 3 starts; others not excluded"
        )
    return FixedPoint(
        name, lp, fld.residual(lp), unique, True, f"{how}; {note}; every action is sampled", details
    )
