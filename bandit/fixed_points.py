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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import logit

from .exact import optimal_policy
from .expected import (
    OfflineData,
    Tables,
    _check_params,
    _joint,
    compiled,
    loss_fn,
)
from .methods import get_method
from .policy import log_softmax
from .problems import Bandit, PreferenceGame
from .validation import ValidationError, check_finite, check_shape

__all__ = ["FixedPoint", "field_jacobian", "fixed_point", "pair_graph_components"]

#: A root is accepted when max|g| is below this (relative to max(1, max|g(init)|)).
ROOT_TOL = 1e-11
#: HiGHS tolerances tighter than its defaults (1e-7), for certificates at the 1e-10 level.
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
#: Logit used in place of −∞ (relative to the largest logit) to evaluate gradients on a face.
FACE_LOGIT = -700.0


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


# --------------------------------------------------------------------------- the engine


class _Field:
    """The exact expected gradient g(θ) of one method (jitted, float64) and its Jacobian.

    The compiled functions are shared across calls (:func:`bandit.expected.compiled`), so
    only the first fixed point of a method and shape pays for compilation.
    """

    def __init__(self, method: str, tab: Tables, joint: NDArray | None, params: dict) -> None:
        self.shape = tuple(np.shape(tab.log_ref))
        self.beta = float(tab.beta)
        with jax.enable_x64(True):
            self._args = (
                jax.tree_util.tree_map(jnp.asarray, tab),
                None if joint is None else jnp.asarray(joint),
            )
        self._f, self._vg = compiled(method, **params)

    def loss(self, theta: NDArray) -> float:
        with jax.enable_x64(True):
            return float(self._f(jnp.asarray(theta, dtype=jnp.float64), *self._args))

    def grad(self, theta: NDArray) -> NDArray[np.float64]:
        with jax.enable_x64(True):
            return np.array(self._vg(jnp.asarray(theta, dtype=jnp.float64), *self._args)[1])

    def jac(self, theta: NDArray) -> NDArray[np.float64]:
        """∂g/∂θ, shape (X, n, X, n), by central differences of the exact gradient g.

        Autodiff cannot give it: the losses' stop-gradients (SG[π] in IPO-MD Eq. 11) are
        constants to a second differentiation too, but the *field* g depends on θ through
        them. Columns are computed one by one with the compiled g (2·X·n calls of some tens
        of µs each), which costs less than compiling a Jacobian program.
        """
        th = np.asarray(theta, dtype=np.float64)
        eps = 1e-6 * (1.0 + np.abs(th))
        cols = []
        for i in np.ndindex(self.shape):
            e = np.zeros(self.shape)
            e[i] = eps[i]
            cols.append((self.grad(th + e) - self.grad(th - e)) / (2 * eps[i]))
        return np.stack(cols, axis=-1).reshape(self.shape + self.shape)

    def residual(self, log_policy: NDArray) -> float:
        """max |g| at a policy; −inf log-probabilities are evaluated at FACE_LOGIT."""
        return float(np.max(np.abs(self.grad(_face_logits(log_policy, self.beta)))))


def _face_logits(log_policy: NDArray, beta: float) -> NDArray[np.float64]:
    """Finite logits for a policy with zeros: −∞ becomes FACE_LOGIT·max(1, 1/β) below the top,
    so that pair terms in βΔ (DPO, SLiC) are also e^-700 small there."""
    lp = np.asarray(log_policy, dtype=np.float64)
    top = np.max(lp, axis=-1, keepdims=True)
    return np.where(np.isfinite(lp), lp, top + FACE_LOGIT * max(1.0, 1.0 / beta))


# --------------------------------------------------------------------------- pair graph


def pair_graph_components(weights: ArrayLike) -> tuple[int, NDArray[np.int64]]:
    """Connected components of the pair graph of one prompt.

    Args:
      weights: q(y, y'), shape (n, n): actions y ≠ y' are joined when q(y, y') + q(y', y) > 0.
    Returns:
      (number of components, label of each action); an action in no pair is alone.
    """
    w = np.asarray(weights, dtype=np.float64)
    adj = (w + w.T) > 0
    np.fill_diagonal(adj, False)
    k, labels = connected_components(csr_matrix(adj), directed=False)
    return int(k), labels.astype(np.int64)


def _sym_weights(tab: Tables, data: OfflineData, x: int) -> NDArray[np.float64]:
    """w(y, y') = ρ(x)(q(y, y') + q(y', y)) with a zero diagonal (self-pairs carry no signal)."""
    q = float(tab.rho[x]) * np.asarray(data.joint[x])
    w = q + q.T
    np.fill_diagonal(w, 0.0)
    return w


def _indicator(labels: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    return (labels[:, None] == np.arange(k)[None, :]).astype(np.float64)


def _laplacian_solve(
    w: NDArray[np.float64], rhs: NDArray[np.float64], theta0: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Solve L θ = rhs with Σ_{y∈C} θ(y) = Σ_{y∈C} θ0(y) on every component C: one linear solve.

    L = diag(w1) − w is PSD with null space spanned by the component indicators E, so
    (L + E Eᵀ) θ = rhs + E Eᵀ θ0 is positive definite and its solution satisfies both
    (rhs is orthogonal to the null space for the systems built here).
    """
    k, labels = pair_graph_components(w)
    E = _indicator(labels, k)
    L = np.diag(w.sum(axis=1)) - w
    A = L + E @ E.T
    return scipy.linalg.solve(A, rhs + E @ (E.T @ theta0), assume_a="pos")


def _graph_report(tab: Tables, data: OfflineData) -> tuple[bool, str, dict[str, Any]]:
    """Whether the offline pair graph identifies the policy on every prompt, and why not."""
    X, _n = np.shape(tab.log_ref)
    comps, reasons = [], []
    for x in range(X):
        k, labels = pair_graph_components(_sym_weights(tab, data, x))
        comps.append(labels.tolist())
        if k > 1:
            sizes = np.bincount(labels, minlength=k)
            alone = [int(y) for y in np.flatnonzero(sizes[labels] == 1)]
            why = f"prompt {x}: the pair graph has {k} components {labels.tolist()}"
            if float(tab.rho[x]) == 0.0:
                why = f"prompt {x}: ρ(x) = 0, so no data"
            elif alone:
                why += f"; actions {alone} appear in no pair and keep their initial logits"
            reasons.append(why)
    sup1 = data.mu1 > 0
    sup2 = data.mu2 > 0
    thm1 = bool(np.all(sup1 == sup2) and np.all(sup1 == np.isfinite(np.asarray(tab.log_ref))))
    details = {"components": comps, "thm1_support": thm1}
    if not reasons:
        msg = "the pair graph connects all actions on every prompt"
        if not thm1:
            msg += (
                " (μ1, μ2, π_ref do not share a support, so CoPG Thm 1's assumption fails, "
                "but connectivity is what identifies the fixed point)"
            )
        return True, msg, details
    msg = (
        "not unique: "
        + "; ".join(reasons)
        + ". The data fix only differences of log π/π_ref inside a component; the relative "
        "mass between components (and the logits of unpaired actions) stay where the flow "
        "started: returned is the fixed point with the component sums of `init`"
    )
    return False, msg, details


# --------------------------------------------------------------------------- offline


def _copg_or_ipo(method: str, tab: Tables, data: OfflineData, theta0: NDArray) -> NDArray:
    """copg: L θ = L(R/β + log π_ref) (CoPG Eq. 9 summed over pairs: g_h = −L R_β^π).
    ipo: L θ = L log π_ref + s, s(y) = Σ_y' w(y, y')(2p(y ≻ y') − 1)/(2β), the normal
    equation of the IPO least squares in h (IPO-MD Eq. 8)."""
    X, _n = theta0.shape
    lr = np.asarray(tab.log_ref)
    beta = float(tab.beta)
    out = np.empty_like(theta0)
    for x in range(X):
        w = _sym_weights(tab, data, x)
        L = np.diag(w.sum(axis=1)) - w
        if method == "copg":
            rhs = L @ (np.asarray(tab.rewards[x]) / beta + lr[x])
        else:
            t = (2.0 * np.asarray(tab.pref[x]) - 1.0) / (2.0 * beta)
            rhs = L @ lr[x] + (w * t).sum(axis=1)
        out[x] = _laplacian_solve(w, rhs, theta0[x])
    return out


def _dpo(tab: Tables, data: OfflineData, theta0: NDArray, fld: _Field):
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
        w = _sym_weights(tab, data, x)
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
    theta = _face_logits(np.where(live, theta0, -np.inf), float(tab.beta))
    # Gauge: the sums of θ over the live part of each component keep their values in θ0.
    E = [_indicator(lab, k) * live[x][:, None] for x, (lab, k) in enumerate(penal)]

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

    res = scipy.optimize.minimize(
        obj, theta[live], jac=jac, hess=hess, method="trust-exact", options={"gtol": 1e-14}
    )
    z = res.x
    for _ in range(5):  # Newton polish to the rounding floor
        step = np.linalg.lstsq(hess(z), jac(z), rcond=None)[0]
        if np.max(np.abs(jac(z - step))) >= np.max(np.abs(jac(z))):
            break
        z = z - step
    lp = log_softmax(np.where(live, unpack(z), -np.inf))
    return lp, bool(face.any()), unique, notes


def _slic(tab: Tables, data: OfflineData, theta0: NDArray):
    """SLiC's expected loss is piecewise linear in θ: an LP per prompt (HiGHS).

    min Σ_{y<y'} w(p e + (1 − p) f)  s.t.  e ≥ 1 − βΔ,  f ≥ 1 + βΔ,  e, f ≥ 0,
    Δ = h(y) − h(y'), h = θ − log π_ref, component sums of θ fixed at those of θ0. The
    certificate is the duality gap. Non-uniqueness: the range of h(a) − h(anchor) over the
    optimal face, from two more LPs (min and max) each.
    """
    X, n = theta0.shape
    beta = float(tab.beta)
    pref = np.asarray(tab.pref)
    out = np.empty_like(theta0)
    gaps, intervals, unique = [], [], True
    for x in range(X):
        w = _sym_weights(tab, data, x)
        k, labels = pair_graph_components(w)
        E = _indicator(labels, k)
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
            c, A, b, Aeq, beq, bounds=bounds, method="highs", options=_HIGHS
        )
        if res.status != 0:
            raise RuntimeError(f"slic LP failed on prompt {x}: {res.message}")
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
                d, A2, b2, Aeq, beq, bounds=bounds, method="highs", options=_HIGHS
            )
            hi = scipy.optimize.linprog(
                -d, A2, b2, Aeq, beq, bounds=bounds, method="highs", options=_HIGHS
            )
            lo_v = float(lo.fun) if lo.status == 0 else -np.inf
            hi_v = float(-hi.fun) if hi.status == 0 else np.inf
            iv.append((lo_v, hi_v))
            # An objective slack of 1e-12 moves a difference by 1e-12/(β·w) at most; any
            # width above 1e-6 is a genuine face of minimisers (they are O(1/β) wide).
            if hi_v - lo_v > 1e-6:
                unique = False
        intervals.append(iv)
    return log_softmax(out), max(gaps), unique, intervals


# --------------------------------------------------------------------------- roots


def _reduce(theta: NDArray) -> NDArray:
    return (theta[:, :-1] - theta[:, -1:]).ravel()


def _expand(z: NDArray, shape: tuple[int, int]) -> NDArray:
    X, n = shape
    return np.concatenate([z.reshape(X, n - 1), np.zeros((X, 1))], axis=1)


def _reduced_system(fld: _Field):
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


def _newton_roots(fld: _Field, starts: list[NDArray], scale: float):
    """Distinct interior roots of g from several starts (hybrid Powell, then Newton polish)."""
    F, JF = _reduced_system(fld)
    roots: list[NDArray] = []
    for s in starts:
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
        fz = F(z)
        if not converged or not np.all(np.isfinite(fz)) or np.max(np.abs(fz)) > ROOT_TOL * scale:
            continue
        lp = log_softmax(_expand(z, fld.shape))
        if all(np.max(np.abs(lp - r)) > 1e-6 for r in roots):
            roots.append(lp)
    stable = [bool(np.all(np.linalg.eigvals(JF(_reduce(r))).real > 0)) for r in roots]
    return roots, stable


def _flow_endpoint(fld: _Field, theta0: NDArray, t_end: float) -> NDArray:
    """Integrate the exact flow z' = −F(z) (stiff solver with the exact Jacobian)."""
    F, JF = _reduced_system(fld)
    sol = solve_ivp(
        lambda _t, z: -F(z),
        (0.0, t_end),
        _reduce(theta0),
        method="LSODA",
        jac=lambda _t, z: -JF(z),
        rtol=1e-10,
        atol=1e-12,
    )
    return log_softmax(_expand(sol.y[:, -1], fld.shape))


def _root_fixed_point(fld: _Field, theta0: NDArray, extra_starts: list[NDArray]):
    """Roots of the expected gradient; the one the flow from θ0 reaches when there are several;
    the boundary limit of the flow when there is none."""
    scale = max(1.0, float(np.max(np.abs(fld.grad(theta0)))))
    rng = np.random.default_rng(0)
    starts = [theta0, *extra_starts] + [
        theta0 + rng.normal(0.0, 2.0, theta0.shape) for _ in range(3)
    ]
    roots, stable = _newton_roots(fld, starts, scale)
    details: dict[str, Any] = {"n_roots": len(roots), "stable": stable}
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
    end = _flow_endpoint(fld, theta0, t_end)
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
    theta = np.where(vanish, _face_logits(np.where(vanish, -np.inf, end), fld.beta), end)
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


def field_jacobian(
    method: str,
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
    _, tab = loss_fn(method, problem, data, preferences=preferences, **params)
    fld = _Field(method, tab, _joint(method, tab, data), _check_params(method, params))
    th = check_finite("logits", logits)
    if th.ndim == 1 and fld.shape[0] == 1:
        th = th[None]
    check_shape("logits", th, fld.shape)
    return _reduced_system(fld)[1](_reduce(th))


# --------------------------------------------------------------------------- dispatch


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
    fld = _Field(method, tab, _joint(method, tab, data), _check_params(method, params))
    rho = np.asarray(tab.rho)
    if isinstance(problem, Bandit) and np.any(rho == 0.0):
        return _without_idle_prompts(method, problem, data, preferences, theta0, params, rho > 0.0)
    details: dict[str, Any] = {}
    unique, interior = True, True

    if m.sampling == "offline":
        unique, msg, details = _graph_report(tab, data)
        if method in ("copg", "ipo"):
            lp = log_softmax(_copg_or_ipo(method, tab, data, theta0))
            how = "one linear solve of the pair-graph Laplacian system"
            if method == "copg" and unique:
                how += "; equals π* (CoPG Thm 1)"
            residual = fld.residual(lp)
        elif method == "dpo":
            lp, face, u, notes = _dpo(tab, data, theta0, fld)
            unique = unique and u
            interior = not face
            how = "Newton (trust-exact) on the engine's convex DPO loss"
            residual = fld.residual(lp)
            if face:
                how += "; NO FINITE MINIMISER: " + "; ".join(notes)
                # Actions with no mass in the limit do not matter to it: certify the others.
                live = np.isfinite(lp)
                g = fld.grad(_face_logits(lp, fld.beta))
                residual = float(np.max(np.abs(g[live])))
                how += " (residual over the actions that keep mass)"
        elif method == "slic":
            lp, residual, u, intervals = _slic(tab, data, theta0)
            details["h_minus_anchor_intervals"] = intervals
            if not u:
                unique = False
                msg += (
                    "; the LP optimum is not unique: see details['h_minus_anchor_intervals'] "
                    "for the range of h(y) − h(anchor), h = log π/π_ref, over the optimal set"
                )
            how = "LP (HiGHS); residual = duality gap"
        else:  # pg, pg_value: not contrastive, so the pair graph is not what identifies them
            lp, unique, interior, how, d2 = _root_fixed_point(
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
        lp, unique, interior, how, d2 = _root_fixed_point(fld, theta0, [np.zeros_like(theta0)])
        details.update(d2)
        message = f"online_dpo: preferences are not Bradley–Terry; {how}"
        return online(lp, fld.residual(lp), unique, interior, message)

    # online_ipo, ipo_md, nash_md_pg: IPO-MD Eq. (12)/(13), per prompt.
    from .games import ipo_md_fixed_point, nash_equilibrium

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
