"""Exact solvers for the KL-regularised two-player preference game (IPO-MD Eq. 9).

Player 1's payoff against player 2 is

    f(π1, π2) = π1ᵀ P π2 − τ KL(π1‖π_ref) + τ KL(π2‖π_ref)          (IPO-MD Eq. 9),

with p(y ≻ π) = (P π)_y. Because P + Pᵀ = 1 the game is symmetric and constant-sum,
f(π1, π2) + f(π2, π1) = 1, so its value is 1/2 and the duality gap (exploitability) of π is

    gap(π) = 2 max_π' f(π', π) − 1 = 2τ KL(π ‖ BR(π)),    BR(π) ∝ π_ref exp(P π / τ).

(Derivation: max_π' f(π', π) = τ log Z(π) + τ KL(π‖π_ref) with Z the normaliser of BR(π),
and πᵀPπ = 1/2, so 2 max f − 1 = 2τ[KL(π‖π_ref) + log Z − 1/(2τ)] = 2τ KL(π‖BR(π)).)
The KL form has no cancellation between two O(1) payoffs, so it certifies gaps of 1e-15.

Fixed points. With the geometric mixture m_β(π) ∝ π^(1−β) π_ref^β (IPO-MD §5.1), the
IPO-MD(β) and Nash-MD-PG(β) fixed point solves

    π ∝ π_ref exp(P m_β(π) / τ)                                      (IPO-MD Eq. 13),

and β = 0 is the regularised Nash equilibrium (Eq. 12). We solve it by Newton's method in
the logits x (π = softmax(x)) on

    G(x) = τ (x − log π_ref) − P m_β(x) = 0,

(in the code divided by τ and shifted by a constant, see :func:`_residual_G`), whose
Jacobian J = τ I − (1 − β) P S,  S = diag(m) − m mᵀ, is never singular: P S = A S with
A = P − 11ᵀ/2 antisymmetric, so the eigenvalues of P S are purely imaginary and those of J
have real part τ > 0. G is invariant to nothing: shifting x by c·1 shifts G by τc·1, so the
root is isolated and no normalisation constraint is needed. Plain iteration π ← BR(π) has
Jacobian S A / τ with eigenvalues ±iλ/τ and so diverges or cycles once τ < λ; Newton is
made global by a backtracking line search on ½‖G‖² and by continuation in τ (homotopy from
a large τ, where the problem is nearly linear, down to the requested τ).

Names: the formulas keep IPO-MD's symbols; in the code the KL strength τ is ``beta``
(:attr:`PreferenceGame.beta`, the same name as CoPG's β) and the mixture coefficient β is
``mixture`` (e.g. ``ipo_md_fixed_point(game, mixture)``).

Every solver returns a certificate: the duality gap for the Nash equilibrium, and the
Eq. (13) residual max_y |log π(y) − log T(π)(y)| (T the right-hand side of Eq. 13,
normalised) for the IPO-MD fixed point, computed directly from the definition.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from numpy.typing import ArrayLike, NDArray

from .policy import geometric_mixture, kl, log_softmax
from .problems import PreferenceGame
from .validation import (
    ValidationError,
    check_distribution,
    check_int,
    check_positive,
    check_shape,
    check_unit_interval,
    real_array,
)

__all__ = [
    "GameSolution",
    "best_response",
    "damped_fixed_point_nash",
    "exploitability",
    "fixed_point_residual",
    "game_value",
    "ipo_md_fixed_point",
    "mirror_descent_nash",
    "nash_equilibrium",
]

#: Up to this many actions the solver turns dense early, and its BLAS runs on one thread
#: (see :func:`_one_blas_thread`).
DENSE_MAX = 2500
#: Up to this many actions a system that matrix-free GMRES cannot solve turns the solver
#: dense (J costs 8n² bytes: 0.8 GB at n = 10⁴); above it Newton stays matrix-free.
DENSE_FALLBACK_MAX = 10_000
#: Matrix-free GMRES (restart length, restarts) per system above DENSE_MAX actions.
_LARGE_N_BUDGET = (60, 50)


@dataclass(frozen=True)
class GameSolution:
    """A solver's answer with its certificate.

    Attributes:
      log_policy: log π, shape (n,).
      residual: the certificate: the duality gap 2τ KL(π‖BR(π)) for Nash solvers, the
        Eq. (13) residual max_y |log π − log T(π)| for :func:`ipo_md_fixed_point`.
      iterations: Newton steps (all continuation stages together) or baseline iterations.
      converged: whether ``residual`` reached the requested tolerance.
    """

    log_policy: NDArray[np.float64]
    residual: float
    iterations: int
    converged: bool

    @property
    def policy(self) -> NDArray[np.float64]:
        """π = exp(log π)."""
        return np.exp(self.log_policy)


# --------------------------------------------------------------------------- basics


def _check_game(game: PreferenceGame) -> PreferenceGame:
    if not isinstance(game, PreferenceGame):
        raise ValidationError(f"game must be a PreferenceGame, got {type(game).__name__}")
    return game


def _check_policy(game: PreferenceGame, name: str, log_pi: ArrayLike) -> NDArray[np.float64]:
    """Validate log-probabilities of shape (n,) for ``game``."""
    lp = real_array(name, log_pi)
    check_shape(name, lp, (game.n_actions,))
    if np.isnan(lp).any() or np.isposinf(lp).any():
        bad = int(np.argwhere(np.isnan(lp) | np.isposinf(lp))[0, 0])
        raise ValidationError(
            f"{name} must hold log-probabilities (finite or -inf), got {lp[bad]} at index {bad}"
        )
    check_distribution(f"exp({name})", np.exp(lp))
    return lp


def _advantage(P: NDArray, pi: NDArray) -> NDArray:
    """p(y ≻ π) − 1/2 = (P π)_y − 1/2 Σπ.

    The constant cancels in every softmax below; removing it keeps the logits O(log n)
    rather than O(1/(2τ)), so their rounding error is ε·O(log n), not ε/τ.
    """
    return P @ pi - 0.5 * pi.sum()


def _log_best_response(log_ref: NDArray, advantage: NDArray, beta: float) -> NDArray:
    """log BR = log_softmax(log π_ref + advantage / τ), with ``advantage`` from
    :func:`_advantage` (of π for the best response, of m_β(π) for the Eq. 13 map).

    The one place the regularised best response is computed; ``beta`` is the KL strength τ.
    """
    return log_softmax(log_ref + advantage / beta)


def _duality_gap(beta: float, log_pi: NDArray, log_br: NDArray) -> float:
    """gap(π) = 2τ KL(π‖BR(π)) from log π and log BR(π) (module doc); ``beta`` is τ.

    KL >= 0; a negative value is rounding (|.| ~ 1e-16) and is reported as 0.
    """
    return max(0.0, 2.0 * beta * float(kl(log_pi, log_br)))


def best_response(game: PreferenceGame, log_pi: ArrayLike) -> NDArray[np.float64]:
    """Regularised best response to π: log BR(π) = log_softmax(log π_ref + P π / τ).

    The maximiser of f(·, π) in IPO-MD Eq. (9) (the closed form of Eq. 7 with μ = π),
    τ being ``game.beta``.
    """
    _check_game(game)
    pi = np.exp(_check_policy(game, "log_pi", log_pi))
    return _log_best_response(game.log_ref, _advantage(game.P, pi), game.beta)


def game_value(game: PreferenceGame, log_pi1: ArrayLike, log_pi2: ArrayLike) -> float:
    """Player 1's payoff f(π1, π2) = π1ᵀPπ2 − τ KL(π1‖π_ref) + τ KL(π2‖π_ref) (Eq. 9)."""
    _check_game(game)
    lp1 = _check_policy(game, "log_pi1", log_pi1)
    lp2 = _check_policy(game, "log_pi2", log_pi2)
    pref = float(np.exp(lp1) @ game.P @ np.exp(lp2))
    beta = game.beta  # the KL strength τ
    return pref - beta * float(kl(lp1, game.log_ref)) + beta * float(kl(lp2, game.log_ref))


def exploitability(game: PreferenceGame, log_pi: ArrayLike) -> float:
    """Duality gap of π: 2 max_π' f(π', π) − 1 = 2τ KL(π‖BR(π)) (derivation in the module doc).

    Zero exactly at the regularised Nash equilibrium (IPO-MD Eq. 12), positive elsewhere.
    """
    _check_game(game)
    lp = _check_policy(game, "log_pi", log_pi)
    log_br = _log_best_response(game.log_ref, _advantage(game.P, np.exp(lp)), game.beta)
    return _duality_gap(game.beta, lp, log_br)


def _eq13_map(game: PreferenceGame, lp: NDArray[np.float64], mixture: float) -> NDArray[np.float64]:
    """log T(π) = log_softmax(log π_ref + P m_β(π) / τ), the right-hand side of Eq. (13)."""
    m = np.exp(geometric_mixture(lp, game.log_ref, mixture))
    return _log_best_response(game.log_ref, _advantage(game.P, m), game.beta)


def fixed_point_residual(game: PreferenceGame, log_pi: ArrayLike, mixture: float) -> float:
    """Eq. (13) residual max_y |log π(y) − log T(π)(y)| over the support of π_ref.

    T(π) ∝ π_ref exp(P m_β(π)/τ) with m_β(π) ∝ π^(1−β) π_ref^β, computed straight from the
    definition (IPO-MD Eq. 13); zero exactly at the IPO-MD(β)/Nash-MD-PG(β) fixed point.

    Args:
      game: the game; ``game.beta`` is the KL strength (IPO-MD's τ).
      log_pi: log π, shape (n,).
      mixture: the mixture coefficient (IPO-MD's β), in [0, 1].
    """
    _check_game(game)
    mixture = check_unit_interval("mixture", mixture)
    lp = _check_policy(game, "log_pi", log_pi)
    lt = _eq13_map(game, lp, mixture)
    on = np.isfinite(game.log_ref)
    if not np.isfinite(lp[on]).all():
        return math.inf
    if np.isfinite(lp[~on]).any():  # mass where π_ref = 0 can never be a fixed point
        return math.inf
    return float(np.max(np.abs(lp[on] - lt[on])))


# --------------------------------------------------------------------------- Newton core


def _mixture(x: NDArray, log_ref: NDArray, mixture: float) -> NDArray:
    return np.exp(geometric_mixture(x, log_ref, mixture))


def _residual_G(P, log_ref, beta, mixture, x) -> tuple[NDArray, NDArray]:
    """G(x) = x − log π_ref − (P m_β(x) − 1/2)/τ: the module's G over τ, minus a constant.

    Dividing by τ makes G a log-space residual; the −1/2 (see :func:`_advantage`) keeps the
    root x = O(log n) on the support, which sets the rounding floor of ‖G‖ to ε·O(log n).
    """
    m = _mixture(x, log_ref, mixture)
    return x - log_ref - _advantage(P, m) / beta, m


class _LinearSolver:
    """Solves J d = −G, J = I − (1 − β) P (diag(m) − m mᵀ)/τ, for successive Newton steps.

    First matrix-free GMRES: at large τ, J is close to I and a few products with J solve it.
    The first system that GMRES does not solve within its budget switches the solver to
    dense for good (τ only decreases along the continuation, and the systems only get
    harder): GMRES on the exact J, preconditioned by the LU factors of an earlier J (J moves
    little between steps), refactorising only when GMRES needs more than ``max_krylov``
    iterations; O(n²) per step instead of O(n³). The budget is max(40, n/20) products up
    to :data:`DENSE_MAX` actions (an LU costs ~n/3), 60 × 50 above it, where matrix-free
    Newton is usually faster; past :data:`DENSE_FALLBACK_MAX` the solver never turns dense.
    Every GMRES run stops at the caller's relative residual ``rtol`` (inexact Newton, see
    :func:`_newton`); a fresh LU solves exactly.
    """

    def __init__(self, P: NDArray, mixture: float, max_krylov: int = 12) -> None:
        n = P.shape[0]
        self.P, self.c, self.max_krylov = P, 1.0 - mixture, max_krylov
        self.dense_ok = n <= DENSE_FALLBACK_MAX
        # GMRES (restart length, restarts) before the solver turns dense.
        self.free_budget = (max(40, n // 20), 1) if n <= DENSE_MAX else _LARGE_N_BUDGET
        # Dense from the start where an LU (~n/3 products with J) costs less than the budget.
        self.dense = n <= DENSE_MAX and 3 * self.free_budget[0] > n
        self.lu = None
        self.factorisations = 0

    def _matrix(self, beta: float, m: NDArray) -> NDArray:
        a = self.c / beta
        J = (-a) * (self.P * m[None, :])
        J += a * np.outer(self.P @ m, m)
        J[np.diag_indices(m.shape[0])] += 1.0
        return J

    def solve(self, beta: float, m: NDArray, G: NDArray, rtol: float) -> NDArray:
        """A Newton step d with ‖J d + G‖₂ <= rtol ‖G‖₂."""
        P, a, n = self.P, self.c / beta, m.shape[0]
        Pm = P @ m

        def matvec(v):
            return v - a * (P @ (m * v) - Pm * (m @ v))

        op = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        gmres = functools.partial(scipy.sparse.linalg.gmres, op, -G, rtol=rtol, atol=0.0)
        if not self.dense:
            restart, restarts = self.free_budget
            d, info = gmres(restart=restart, maxiter=restarts)
            if info == 0 or not self.dense_ok:
                return d  # past DENSE_FALLBACK_MAX a partial solve is the best step we have
            self.dense = True
        if self.lu is not None:
            lu = self.lu
            M = scipy.sparse.linalg.LinearOperator(
                (n, n), matvec=lambda v: scipy.linalg.lu_solve(lu, v, check_finite=False)
            )
            d, info = gmres(M=M, restart=self.max_krylov, maxiter=1)
            if info == 0:
                return d
        self.lu = scipy.linalg.lu_factor(self._matrix(beta, m), check_finite=False)
        self.factorisations += 1
        return scipy.linalg.lu_solve(self.lu, -G, check_finite=False)


#: Bounds of the inexact-Newton forcing term η (relative residual of each linear solve).
_ETA_MAX, _ETA_MIN = 0.1, 1e-12


def _newton(P, log_ref, beta, mixture, x, solver: _LinearSolver, *, gtol, max_iter):
    """Damped inexact Newton on G(x) = 0 with Armijo backtracking on φ = ½‖G‖².

    Each step solves J d = −G only to the relative residual η of Eisenstat & Walker (1996,
    choice 2: η = 0.9 (‖G_new‖/‖G_old‖)², safeguarded, in [1e-12, 0.1]): loose while G is
    large, tight as Newton converges, so convergence stays superlinear with far fewer
    Krylov products (when introduced: 1.7× faster at n = 1000, τ = 1e-3; 3.7× at n = 10⁴).
    Returns (x, G, iterations, status) with status "ok" (‖G‖∞ <= gtol), "stalled" (no
    step length decreases φ: the rounding floor or a bad start) or "max_iter".
    """
    G, m = _residual_G(P, log_ref, beta, mixture, x)
    phi = 0.5 * float(G @ G)
    it, eta = 0, _ETA_MAX
    while not np.all(np.abs(G) <= gtol(x) if callable(gtol) else np.abs(G) <= gtol):
        if it == max_iter:
            return x, G, it, "max_iter"
        d = solver.solve(beta, m, G, rtol=eta)
        it += 1
        t = 1.0
        # ‖J d + G‖ <= η‖G‖ gives ∇φ·d <= −2(1 − η)φ < −1e-4 φ: small t always pass the
        # sufficient-decrease test (Eisenstat & Walker's inexact-Newton backtracking).
        for _ in range(30):
            Gn, mn = _residual_G(P, log_ref, beta, mixture, x + t * d)
            phin = 0.5 * float(Gn @ Gn)
            if phin <= (1.0 - 1e-4 * t) * phi:
                break
            t *= 0.5
        else:
            return x, G, it, "stalled"
        # The safeguard keeps η from dropping faster than the convergence it has seen.
        eta_next = 0.9 * phin / phi  # φ > 0 here: G = 0 would have ended the loop
        if 0.9 * eta * eta > 0.1:
            eta_next = max(eta_next, 0.9 * eta * eta)
        eta = min(_ETA_MAX, max(_ETA_MIN, eta_next))
        x, G, m, phi = x + t * d, Gn, mn, phin
    return x, G, it, "ok"


def _rounding_floor(log_ref: NDArray, beta: float):
    """Per-entry rounding floor of G: 8ε(1 + |x − log π_ref| + 1/τ). x − log π_ref is O(1/τ)
    off the support and O(log n) on it, and (P m − 1/2)/τ carries an error ε/τ."""
    eps = np.finfo(np.float64).eps
    return lambda x: 8 * eps * (1.0 + np.abs(x - log_ref) + 1.0 / beta)


#: Newton steps allowed in an intermediate continuation stage before backing off.
_STAGE_ITERS = 20
#: Continuation ratio τ_{k+1}/τ_k to start with, and its bounds.
_RATIO, _RATIO_MIN = 0.1, 1e-2


def _solve_eq13(
    P: NDArray, log_ref: NDArray, beta: float, mixture: float, *, max_iter: int = 1000
) -> tuple[NDArray, int]:
    """Root of G (Eq. 13 at mixture β) by continuation in τ with warm-started Newton.

    Stage k solves at τ_k = max(τ, τ_{k−1}·r) from the previous stage's root; r adapts:
    r ← √r after a failed stage (retry closer), r ← r² after an easy one (≤ 4 steps).
    Intermediate stages stop at ‖G‖∞ <= 1e-6 (a warm start only); the last stage runs
    Newton until no step decreases ‖G‖ (the rounding floor, ≈ ε‖x‖∞).
    """
    solver = _LinearSolver(P, mixture)
    with _one_blas_thread() if P.shape[0] <= DENSE_MAX else contextlib.nullcontext():
        return _continuation(P, log_ref, beta, mixture, solver, max_iter)


@functools.cache
def _blas_pools():
    """numpy's and scipy's BLAS thread pools (both loaded by this module's imports)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: Guards the BLAS limit shared by concurrent solves (see :func:`_one_blas_thread`).
_BLAS_LOCK = threading.Lock()
#: [number of solves inside the limit, the active limiter or None].
_BLAS_STATE: list = [0, None]


@contextlib.contextmanager
def _one_blas_thread():
    """Single-threaded BLAS for the dense solver, whose calls are small (n² matvecs, an
    n ≤ 2500 LU): handing them to numpy's and scipy's OpenBLAS thread pools costs more than
    the threads save (measured: 2.2× slower at n = 1000 on 2 cores).

    A BLAS pool's size is process-wide, so the limit is scoped: it is set on entry and the
    caller's limits are restored on exit, also on an exception. Concurrent solves (threads)
    share one limit: the first to enter sets it and the last to leave restores the limits
    found by the first, so overlapping solves cannot leave the process at one thread.
    """
    with _BLAS_LOCK:
        if _BLAS_STATE[0] == 0:
            _BLAS_STATE[1] = _blas_pools().limit(limits=1, user_api="blas")
        _BLAS_STATE[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE[0] -= 1
            if _BLAS_STATE[0] == 0:
                limiter, _BLAS_STATE[1] = _BLAS_STATE[1], None
                limiter.restore_original_limits()


def _continuation(
    P: NDArray, log_ref: NDArray, beta: float, mixture: float, solver: _LinearSolver, max_iter: int
) -> tuple[NDArray, int]:
    """The continuation loop of :func:`_solve_eq13`."""
    # For τ >= 2(1 − β) max|P − 1/2| the plain map is a contraction and Newton from π_ref
    # converges at once: start there, or directly at τ when τ is that large.
    spread = float(np.max(np.abs(P - 0.5)))
    beta_done, x = None, log_ref.copy()
    beta_k = max(beta, 2.0 * (1.0 - mixture) * spread)
    total, r = 0, _RATIO
    while total <= max_iter:
        final = beta_k == beta
        gtol = _rounding_floor(log_ref, beta) if final else 1e-6
        xn, G, it, status = _newton(
            P, log_ref, beta_k, mixture, x, solver, gtol=gtol, max_iter=_STAGE_ITERS
        )
        total += it
        # At the last stage "stalled" with a small G is the rounding floor: accept it.
        ok = status == "ok" or (final and status == "stalled" and np.max(np.abs(G)) < 1e-8)
        if ok:
            x, beta_done = xn, beta_k
            if final:
                return x, total
            r = max(r * r, _RATIO_MIN) if it <= 3 else r
            beta_k = max(beta, beta_k * r)
            continue
        if beta_done is None:  # not expected: the first stage is nearly linear
            break  # the caller's certificate (residual) reports the failure: not converged
        r = math.sqrt(r)
        if r > 0.999:
            break
        beta_k = max(beta, beta_done * r)
    return x, total


def _on_support(game: PreferenceGame):
    """Restrict to the support of π_ref (π = 0 wherever π_ref = 0 at every fixed point)."""
    on = np.isfinite(game.log_ref)
    if on.all():
        return game.P, game.log_ref, on
    return game.P[np.ix_(on, on)], game.log_ref[on], on


def _embed(x_on: NDArray, on: NDArray) -> NDArray:
    lp = np.full(on.shape[0], -np.inf)
    lp[on] = log_softmax(x_on)
    return lp


def nash_equilibrium(game: PreferenceGame, *, tol: float = 1e-12) -> GameSolution:
    """The regularised Nash equilibrium π ∝ π_ref exp(P π / τ) (IPO-MD Eq. 12, Prop. 4.1).

    Newton with continuation in τ (module doc). ``residual`` is the duality gap
    2τ KL(π‖BR(π)), ``converged`` is ``residual < tol`` (``tol`` > 0). Robust down to
    τ = 1e-4 and below; float64 and log-space throughout. The budget is bounded: at most
    1000 Newton steps over all stages, each linear solve within its GMRES budget; a solve
    that does not finish in it is returned with ``converged=False`` and its residual.
    """
    _check_game(game)
    tol = check_positive("tol", tol)
    P, log_ref, on = _on_support(game)
    x, it = _solve_eq13(P, log_ref, game.beta, 0.0)
    lp = _embed(x, on)
    gap = exploitability(game, lp)
    return GameSolution(lp, gap, it, gap < tol)


def ipo_md_fixed_point(game: PreferenceGame, mixture: float, *, tol: float = 1e-10) -> GameSolution:
    """The IPO-MD(β) / Nash-MD-PG(β) fixed point π ∝ π_ref exp(P m_β(π)/τ) (IPO-MD Eq. 13).

    Solved directly from Eq. (13) (Newton with continuation in τ), not through Prop. 5.2,
    so that tests of Prop. 5.2 are not circular. β = 0 is the Nash equilibrium, β = 1 the
    best response to π_ref. ``residual`` is :func:`fixed_point_residual`, a log-space
    residual whose rounding floor is about 8ε/τ (≈ 2e-12 at τ = 1e-3), hence the default
    ``tol`` of 1e-10 for ``converged``.

    Args:
      game: the game; ``game.beta`` is the KL strength (IPO-MD's τ).
      mixture: the mixture coefficient (IPO-MD's β), in [0, 1].
      tol: the residual below which ``converged`` is set.
    """
    _check_game(game)
    mixture = check_unit_interval("mixture", mixture)
    tol = check_positive("tol", tol)
    P, log_ref, on = _on_support(game)
    x, it = _solve_eq13(P, log_ref, game.beta, mixture)
    lp = _embed(x, on)
    res = fixed_point_residual(game, lp, mixture)
    return GameSolution(lp, res, it, res < tol)


# --------------------------------------------------------------------------- baselines


def _baseline_args(rate: float, name: str, tol: float, max_iter: int, max_seconds):
    """The baselines' budget, checked: a positive rate and tol, max_iter >= 1 (their loops
    are bounded by it), max_seconds None or > 0."""
    rate = check_positive(name, rate)
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, 1)
    if max_seconds is not None:
        max_seconds = check_positive("max_seconds", max_seconds)
    return rate, tol, max_iter, max_seconds


def damped_fixed_point_nash(
    game: PreferenceGame,
    step: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    max_seconds: float | None = None,
) -> GameSolution:
    """Baseline: damped (Krasnosel'skii–Mann) iteration π ← (1 − α) π + α BR(π).

    The linearisation at the equilibrium has eigenvalues (1 − α) ± iαλ/τ, so it converges
    for α < 2/(1 + λ²/τ²) at rate ≈ 1 − τ²/(2λ²): ~λ²/τ² iterations. α = 1 is plain
    iteration, which cycles or diverges once τ < λ. Stops at gap < ``tol``.
    """
    import time

    _check_game(game)
    step, tol, max_iter, max_seconds = _baseline_args(step, "step", tol, max_iter, max_seconds)
    t0 = time.perf_counter()
    P, log_ref, beta = game.P, game.log_ref, game.beta
    pi = game.ref.copy()
    gap, it = math.inf, 0
    for it in range(1, max_iter + 1):  # noqa: B007 (used after the loop)
        lbr = _log_best_response(log_ref, _advantage(P, pi), beta)
        with np.errstate(divide="ignore"):
            lp = np.log(pi)
        gap = _duality_gap(beta, lp, lbr)
        if gap < tol or (max_seconds is not None and time.perf_counter() - t0 > max_seconds):
            break
        pi = (1.0 - step) * pi + step * np.exp(lbr)
    with np.errstate(divide="ignore"):
        lp = np.log(pi / pi.sum())
    return GameSolution(lp, gap, it, gap < tol)


def mirror_descent_nash(
    game: PreferenceGame,
    lr: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    max_seconds: float | None = None,
) -> GameSolution:
    """Baseline: magnetic mirror descent (Sokota et al., 2022) in self-play, magnet π_ref.

    log π_{t+1} = (log π_t + η τ log π_ref + η P π_t)/(1 + η τ) − log Z  (the closed-form
    MMD step for the payoff of Eq. 9). Its fixed point is Eq. (12). Equivalently a
    log-space damped iteration with α = ητ/(1 + ητ). Stops at gap < ``tol``.
    """
    import time

    _check_game(game)
    lr, tol, max_iter, max_seconds = _baseline_args(lr, "lr", tol, max_iter, max_seconds)
    t0 = time.perf_counter()
    P, log_ref, beta = game.P, game.log_ref, game.beta
    lp = log_ref.copy()
    gap, it = math.inf, 0
    for it in range(1, max_iter + 1):  # noqa: B007
        g = _advantage(P, np.exp(lp))
        lbr = _log_best_response(log_ref, g, beta)
        gap = _duality_gap(beta, lp, lbr)
        if gap < tol or (max_seconds is not None and time.perf_counter() - t0 > max_seconds):
            break
        lp = log_softmax((lp + lr * beta * log_ref + lr * g) / (1.0 + lr * beta))
    return GameSolution(lp, gap, it, gap < tol)
