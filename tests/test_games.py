"""Exact game solvers (bandit.games) against the equations that define them (IPO-MD §4–5).

Tolerances. The solvers work in log-space in float64; the defining equations hold up to
the rounding of log π_ref + (Pπ − 1/2)/τ, i.e. about ε(1 + 1/τ) ≈ 2e-13 at τ = 1e-3. We use
1e-9 for log-space identities (head-room of 1e3–1e4 over that floor) and the issue's
1e-10 for certificates (duality gap, Eq. 13 residual).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import log_softmax

from bandit import games as games_module
from bandit.games import (
    best_response,
    damped_fixed_point_nash,
    exploitability,
    fixed_point_residual,
    game_value,
    ipo_md_fixed_point,
    mirror_descent_nash,
    nash_equilibrium,
)
from bandit.policy import geometric_mixture
from bandit.problems import PreferenceGame
from bandit.validation import ValidationError

LOG_TOL = 1e-9  # log-space identities (see module doc)
CERT = 1e-10  # certificates, as in the issue


def random_P(rng: np.random.Generator, n: int) -> np.ndarray:
    U = rng.uniform(size=(n, n))
    P = np.triu(U, 1)
    P = P + np.tril(1.0 - P.T, -1)
    np.fill_diagonal(P, 0.5)
    return P


@st.composite
def games(draw, beta_min=1e-3, beta_max=10.0, n_max=8):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(2, n_max))
    log_beta = draw(st.floats(np.log10(beta_min), np.log10(beta_max)))
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(n)) * 0.9 + 0.1 / n  # full support
    ref /= ref.sum()
    return PreferenceGame(random_P(rng, n), ref, 10.0**log_beta)


def _eq12_gap(game, lp):
    """max |log π − log(π_ref exp(Pπ/τ)/Z)|: Eq. (12) written out directly."""
    return np.max(np.abs(lp - log_softmax(game.log_ref + game.P @ np.exp(lp) / game.beta)))


# ------------------------------------------------------------------ Nash equilibrium (Eq. 12)


@given(games())
def test_nash_satisfies_eq12_and_certificate(game):
    sol = nash_equilibrium(game)
    assert sol.converged and sol.residual < CERT
    assert _eq12_gap(game, sol.log_policy) < LOG_TOL
    # The certificate is the duality gap recomputed from the definition.
    assert sol.residual == pytest.approx(exploitability(game, sol.log_policy), abs=1e-15)


@given(games(), st.integers(0, 2**32 - 1))
def test_duality_gap_is_twice_best_payoff_minus_one(game, seed):
    """gap(π) = 2 max_π' f(π', π) − 1 = 2τ KL(π‖BR(π)); BR is the maximiser of f(·, π)."""
    rng = np.random.default_rng(seed)
    n = game.n_actions
    lp = np.log(rng.dirichlet(np.ones(n)))
    br = best_response(game, lp)
    direct = 2.0 * game_value(game, br, lp) - 1.0
    # Both sides are O(1) sums of n terms: agreement to ~1e-13 absolute (we allow 1e-11).
    assert exploitability(game, lp) == pytest.approx(direct, abs=1e-11)
    other = np.log(rng.dirichlet(np.ones(n)))
    assert game_value(game, other, lp) <= game_value(game, br, lp) + 1e-12


@given(games(), st.integers(0, 2**32 - 1))
def test_game_is_symmetric_constant_sum(game, seed):
    rng = np.random.default_rng(seed)
    a, b = (np.log(rng.dirichlet(np.ones(game.n_actions))) for _ in range(2))
    assert game_value(game, a, b) + game_value(game, b, a) == pytest.approx(1.0, abs=1e-12)
    assert game_value(game, a, a) == pytest.approx(0.5, abs=1e-12)


@given(games())
def test_negative_control_perturbed_nash_has_positive_gap(game):
    """The certificate must catch a wrong answer: a shifted equilibrium is exploitable."""
    sol = nash_equilibrium(game)
    k = int(np.argmin(sol.log_policy))
    wrong = np.log(0.9 * sol.policy + 0.1 * np.eye(game.n_actions)[k])  # 10% onto one action
    assert exploitability(game, wrong) > 1e3 * CERT
    assert _eq12_gap(game, wrong) > 1e3 * LOG_TOL


def test_small_beta_large_game():
    """τ = 1e-3 with 200 actions: Newton with continuation reaches the issue's 1e-10."""
    game = PreferenceGame(random_P(np.random.default_rng(1), 200), None, 1e-3)
    sol = nash_equilibrium(game)
    assert sol.converged and sol.residual < CERT
    assert _eq12_gap(game, sol.log_policy) < LOG_TOL


@pytest.fixture
def lu_calls(monkeypatch) -> list[int]:
    """Records each ``scipy.linalg.lu_factor`` call: the dense solver's factorisations."""
    calls: list[int] = []
    lu_factor = scipy.linalg.lu_factor

    def counted(*a, **k):
        calls.append(1)
        return lu_factor(*a, **k)

    monkeypatch.setattr(scipy.linalg, "lu_factor", counted)
    return calls


@pytest.mark.parametrize("beta", [1.0, 1e-3])
def test_matrix_free_and_dense_newton_agree(monkeypatch, lu_calls, beta):
    """n = 200: the default solver stays matrix-free while GMRES is cheap (τ = 1: no LU)
    and turns dense when it is not (τ = 1e-3); forced matrix-free, it reaches the same
    certified equilibrium."""
    game = PreferenceGame(random_P(np.random.default_rng(3), 200), None, beta)
    default = nash_equilibrium(game)
    assert (len(lu_calls) > 0) == (beta < 1.0)
    lu_calls.clear()
    monkeypatch.setattr(games_module, "DENSE_MAX", 0)
    monkeypatch.setattr(games_module, "DENSE_FALLBACK_MAX", 0)
    free = nash_equilibrium(game)
    assert not lu_calls
    for sol in (default, free):
        assert sol.residual < CERT and _eq12_gap(game, sol.log_policy) < LOG_TOL
    np.testing.assert_allclose(free.log_policy, default.log_policy, rtol=0, atol=LOG_TOL)


def test_large_n_turns_dense_when_gmres_fails(monkeypatch, lu_calls):
    """Above DENSE_MAX, a system that matrix-free GMRES cannot solve within its budget
    turns the solver dense (an LU), which still reaches the certified equilibrium; past
    DENSE_FALLBACK_MAX it never does. Played at n = 200 with the thresholds and the budget
    (5 products) lowered."""
    game = PreferenceGame(random_P(np.random.default_rng(3), 200), None, 1e-3)
    monkeypatch.setattr(games_module, "DENSE_MAX", 0)
    monkeypatch.setattr(games_module, "_LARGE_N_BUDGET", (5, 1))
    sol = nash_equilibrium(game)
    assert lu_calls and sol.residual < CERT
    assert _eq12_gap(game, sol.log_policy) < LOG_TOL
    lu_calls.clear()
    monkeypatch.setattr(games_module, "DENSE_FALLBACK_MAX", 0)
    nash_equilibrium(game)
    assert not lu_calls


def test_inexact_newton_loosens_then_tightens(monkeypatch):
    """Matrix-free Newton (n = 200, τ = 1e-3) solves each linear system only to the forcing
    term η: 0.1 at the start of every stage, within [1e-12, 0.1], and tight (< 1e-3) by
    the last step, which still reaches the certified equilibrium. Negative control: the
    linear residuals GMRES actually leaves are far above 1e-12 on the early steps."""
    game = PreferenceGame(random_P(np.random.default_rng(3), 200), None, 1e-3)
    monkeypatch.setattr(games_module, "DENSE_MAX", 0)
    monkeypatch.setattr(games_module, "DENSE_FALLBACK_MAX", 0)
    solve = games_module._LinearSolver.solve
    steps = []  # (beta, rtol asked, relative residual left)

    def recorded(self, beta, m, G, rtol):
        d = solve(self, beta, m, G, rtol)
        a = self.c / beta
        r = d - a * (self.P @ (m * d) - (self.P @ m) * (m @ d)) + G  # J d + G
        steps.append((beta, rtol, np.linalg.norm(r) / np.linalg.norm(G)))
        return d

    monkeypatch.setattr(games_module._LinearSolver, "solve", recorded)
    sol = nash_equilibrium(game)
    assert sol.residual < CERT and _eq12_gap(game, sol.log_policy) < LOG_TOL
    betas, rtols, left = (np.array(c) for c in zip(*steps, strict=True))
    assert np.all((rtols >= 1e-12) & (rtols <= 0.1))
    starts = np.r_[True, betas[1:] != betas[:-1]]
    assert np.all(rtols[starts] == 0.1)
    assert rtols[-1] < 1e-3
    assert np.all(left <= 1.01 * rtols)  # GMRES met each tolerance (up to rounding) ...
    assert np.max(left[starts]) > 1e-6  # ... and no tighter: the early solves are inexact


def test_negative_control_plain_iteration_cycles_at_small_beta():
    """Plain iteration π ← BR(π) (α = 1) does not converge at small τ; Newton does."""
    game = PreferenceGame(random_P(np.random.default_rng(2), 20), None, 1e-2)
    plain = damped_fixed_point_nash(game, 1.0, tol=CERT, max_iter=2000)
    assert not plain.converged and plain.residual > 1e-3
    assert nash_equilibrium(game).residual < CERT


@pytest.mark.parametrize("baseline", ["damped", "mmd"])
def test_baselines_agree_with_newton(baseline):
    """Independent solvers of Eq. (12) at a moderate τ reach the same equilibrium."""
    game = PreferenceGame(random_P(np.random.default_rng(3), 10), None, 0.5)
    ref = nash_equilibrium(game)
    if baseline == "damped":
        sol = damped_fixed_point_nash(game, 0.5, tol=1e-14)
    else:
        sol = mirror_descent_nash(game, 1.0, tol=1e-14)
    assert sol.converged
    # gap = 2τ KL ≈ τ‖Δlog π‖²_π, so a gap of 1e-14 means Δlog π ≲ 3e-7 (we allow 1e-6).
    assert np.max(np.abs(sol.log_policy - ref.log_policy)) < 1e-6


# ------------------------------------------------------------------ IPO-MD fixed point (Eq. 13)


def _eq13_gap(game, lp, mixture):
    """Eq. (13) written out: π ∝ π_ref exp(P m/τ), m ∝ π^(1−β) π_ref^β."""
    m = np.exp(log_softmax((1 - mixture) * lp + mixture * game.log_ref))
    return np.max(np.abs(lp - log_softmax(game.log_ref + game.P @ m / game.beta)))


@given(games(), st.floats(0.0, 1.0))
def test_fixed_point_satisfies_eq13(game, mixture):
    sol = ipo_md_fixed_point(game, mixture)
    assert sol.converged and sol.residual < CERT
    assert _eq13_gap(game, sol.log_policy, mixture) < LOG_TOL
    assert sol.residual == fixed_point_residual(game, sol.log_policy, mixture)


@given(games())
def test_mixture_zero_fixed_point_is_nash(game):
    fp = ipo_md_fixed_point(game, 0.0)
    nash = nash_equilibrium(game)
    assert np.max(np.abs(fp.log_policy - nash.log_policy)) < LOG_TOL


@given(games())
def test_mixture_one_fixed_point_is_best_response_to_ref(game):
    fp = ipo_md_fixed_point(game, 1.0)
    assert np.max(np.abs(fp.log_policy - best_response(game, game.log_ref))) < LOG_TOL


@given(games(beta_min=1e-2), st.floats(0.0, 0.95))
def test_prop_5_2_mixture_is_nash_of_rescaled_game(game, mixture):
    """IPO-MD Prop. 5.2: m = (π*_β)^(1−β) π_ref^β is the Nash equilibrium at τ/(1 − β).

    Not circular: the fixed point is solved from Eq. (13) directly.
    """
    fp = ipo_md_fixed_point(game, mixture)
    m = geometric_mixture(fp.log_policy, game.log_ref, mixture)
    g2 = PreferenceGame(game.P, game.ref, game.beta / (1.0 - mixture))
    assert exploitability(g2, m) < CERT
    assert np.max(np.abs(m - nash_equilibrium(g2).log_policy)) < LOG_TOL


def test_negative_control_prop_5_2_wrong_beta():
    """The mixture is *not* the Nash equilibrium of the unmodified game (τ, not τ/(1−β))."""
    game = PreferenceGame(random_P(np.random.default_rng(4), 5), None, 0.1)
    mixture = 0.5
    m = geometric_mixture(ipo_md_fixed_point(game, mixture).log_policy, game.log_ref, mixture)
    assert exploitability(game, m) > 1e-4
    # and the Nash equilibrium is not the β = 0.5 fixed point
    assert fixed_point_residual(game, nash_equilibrium(game).log_policy, mixture) > 1e-3


def test_small_beta_fixed_points():
    game = PreferenceGame(random_P(np.random.default_rng(5), 100), None, 1e-3)
    for mixture in (0.0, 0.3, 0.9, 1.0):
        sol = ipo_md_fixed_point(game, mixture)
        assert sol.converged and sol.residual < CERT, mixture


def test_reference_with_zeros():
    """Actions with π_ref = 0 get π = 0 at every fixed point; the rest solve the subgame."""
    P = random_P(np.random.default_rng(6), 4)
    ref = np.array([0.5, 0.0, 0.25, 0.25])
    game = PreferenceGame(P, ref, 0.2, allow_ref_zeros=True)
    sol = nash_equilibrium(game)
    assert sol.log_policy[1] == -np.inf and sol.residual < CERT
    sub = PreferenceGame(P[np.ix_([0, 2, 3], [0, 2, 3])], ref[[0, 2, 3]], 0.2)
    assert np.allclose(sol.log_policy[[0, 2, 3]], nash_equilibrium(sub).log_policy, atol=1e-12)


# ------------------------------------------------------------------ BLAS thread limit

_CONTINUATION = games_module._continuation  # the solver core, before any monkeypatch


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_limit_is_scoped_to_the_solve(monkeypatch):
    """The dense solver runs BLAS on one thread and restores the caller's limit on exit,
    also after an exception (the real BLAS pools, on the calling thread)."""
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library seen by threadpoolctl")
    game = PreferenceGame(random_P(np.random.default_rng(8), 20), None, 0.1)
    inside = []

    def spy(*args):
        inside.append(_blas_threads())
        return _CONTINUATION(*args)

    def boom(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(games_module, "_continuation", spy)
    nash_equilibrium(game)
    assert inside == [{1}] and _blas_threads() == before
    monkeypatch.setattr(games_module, "_continuation", boom)
    with pytest.raises(RuntimeError, match="boom"):
        nash_equilibrium(game)
    assert _blas_threads() == before


class _FakePools:
    """A stand-in for threadpoolctl's controller with one process-wide thread count and
    its semantics: a limiter saves the count on creation and puts it back on restore.
    (Real OpenBLAS can ignore a limit set from a worker thread once the main thread has
    set one, so the overlap below is checked on this model of the pool.)"""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def limit(self, limits: int, user_api: str):
        pools, saved = self, self.threads

        class Limiter:
            def restore_original_limits(self) -> None:
                pools.threads = saved

        self.threads = limits
        return Limiter()


def _overlapped_solves(monkeypatch, game, pools: _FakePools) -> tuple[int, int]:
    """Two dense solves on two threads, A entering first and leaving while B still runs.
    Returns (B's thread count after A left, the thread count after both)."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def overlapped(*args):
        if threading.current_thread().name == "A":
            a_in.set()
            b_in.wait(10)
        else:
            a_in.wait(10)
            b_in.set()
            a_out.wait(10)
            seen.append(pools.threads)
        return _CONTINUATION(*args)

    def first():
        try:
            nash_equilibrium(game)
        finally:
            a_out.set()

    monkeypatch.setattr(games_module, "_blas_pools", lambda: pools)
    monkeypatch.setattr(games_module, "_continuation", overlapped)
    threads = [threading.Thread(target=first, name="A")]
    threads.append(threading.Thread(target=nash_equilibrium, args=(game,), name="B"))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return seen[0], pools.threads


def test_overlapping_solves_share_one_blas_limit(monkeypatch):
    """Solves overlapping on two threads keep BLAS at one thread until the last one
    leaves, which restores the count found by the first."""
    game = PreferenceGame(random_P(np.random.default_rng(8), 20), None, 0.1)
    assert _overlapped_solves(monkeypatch, game, _FakePools(2)) == (1, 2)


def test_negative_control_unshared_blas_limits_leak(monkeypatch):
    """One limiter per solve, without the shared count: B saves the limit A had set and
    restores it last, so the process is left single-threaded (and B's rest ran with A's
    restored count)."""
    game = PreferenceGame(random_P(np.random.default_rng(8), 20), None, 0.1)

    @contextlib.contextmanager
    def unshared():  # what ``with threadpoolctl_controller.limit(...)`` does
        limiter = games_module._blas_pools().limit(limits=1, user_api="blas")
        try:
            yield
        finally:
            limiter.restore_original_limits()

    monkeypatch.setattr(games_module, "_one_blas_thread", unshared)
    assert _overlapped_solves(monkeypatch, game, _FakePools(2)) == (2, 1)


# ------------------------------------------------------------------ bad input

BAD_MATRICES = {
    "not square": (np.full((2, 3), 0.5), "square"),
    "1x1": (np.array([[0.5]]), "n >= 2"),
    "entry > 1": (np.array([[0.5, 1.2], [-0.2, 0.5]]), "[0, 1]"),
    "diagonal": (np.array([[0.4, 0.5], [0.5, 0.6]]), "diagonal"),
    "P + P.T != 1": (np.array([[0.5, 0.8], [0.1, 0.5]]), "P + P.T = 1"),
    "NaN": (np.array([[0.5, np.nan], [0.5, 0.5]]), "finite"),
    "IPO-MD App. F as printed": (
        np.array([[0.5, 0.8, 0.1], [0.1, 0.5, 0.8], [0.9, 0.1, 0.5]]),
        "P + P.T = 1",
    ),
}


@pytest.mark.parametrize("name", list(BAD_MATRICES))
def test_every_invalid_matrix_gets_a_clear_error(name):
    P, words = BAD_MATRICES[name]
    with pytest.raises(ValidationError, match="P") as e:
        PreferenceGame(P, None, 0.1)
    assert words in str(e.value)


def test_one_name_per_concept():
    """The KL strength is ``beta`` (IPO-MD's τ) and the mixture coefficient ``mixture``
    (IPO-MD's β), with no ``tau`` left behind."""
    P = random_P(np.random.default_rng(7), 3)
    game = PreferenceGame(P, beta=0.2)
    assert game.beta == 0.2 and not hasattr(game, "tau")
    assert PreferenceGame.bradley_terry([0.0, 1.0, 2.0], beta=0.3).beta == 0.3
    with pytest.raises(TypeError, match="tau"):
        PreferenceGame(P, tau=0.2)
    sol = ipo_md_fixed_point(game, mixture=0.3)
    assert sol.residual == fixed_point_residual(game, sol.log_policy, mixture=0.3)
    with pytest.raises(ValidationError, match="beta"):
        PreferenceGame(P, beta=0.0)


def test_bad_policy_and_mixture():
    game = PreferenceGame(random_P(np.random.default_rng(7), 3), None, 0.1)
    with pytest.raises(ValidationError, match="log_pi must have shape"):
        exploitability(game, np.log(np.ones(4) / 4))
    with pytest.raises(ValidationError, match="sum to 1"):
        best_response(game, np.zeros(3))
    with pytest.raises(ValidationError, match="mixture"):
        ipo_md_fixed_point(game, 1.5)
    with pytest.raises(ValidationError, match="PreferenceGame"):
        nash_equilibrium("not a game")
