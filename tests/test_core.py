"""Issue 2: the exact tabular core (CoPG §2, §3.1, App. A) and its validation.

Tolerances: every compared quantity is a sum of at most n terms of magnitude at most
M = max|R| + β·max|log π| (+ the same for π*), so float64 rounding is bounded by
c·n·ε·M; we use c = 64 (ε = 2.2e-16), generous but still 10⁻¹³·M.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bandit import (
    Bandit,
    PreferenceGame,
    ValidationError,
    geometric_mixture,
    kl,
    log_softmax,
    optimal_policy,
    optimal_value,
    regret,
    value,
)

EPS = np.finfo(np.float64).eps


@st.composite
def bandits(draw, max_reward=1e3, betas=(1e-2, 1e2)):
    X = draw(st.integers(1, 3))
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, max_reward]))
    R = rng.uniform(-scale, scale, (X, n))
    ref = rng.dirichlet(np.ones(n), X)
    assume(ref.min() > 1e-12)
    rho = rng.dirichlet(np.ones(X))
    lo, hi = np.log10(betas[0]), np.log10(betas[1])
    beta = 10 ** draw(st.floats(lo, hi))
    return Bandit(R, ref / ref.sum(-1, keepdims=True), rho / rho.sum(), beta)


def random_policy(b: Bandit, seed: int, temperature: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return log_softmax(rng.normal(0, temperature, b.rewards.shape))


def tol(b: Bandit, *log_pis: np.ndarray) -> float:
    mags = [np.abs(b.rewards).max(), b.beta * np.abs(b.log_ref).max()]
    mags += [b.beta * np.abs(lp[np.isfinite(lp)]).max() for lp in log_pis]
    return 64 * b.n_actions * EPS * max(1.0, *mags)


@given(bandits(), st.integers(0, 2**32 - 1), st.floats(0.1, 5.0))
def test_optimal_policy_maximises_J(b: Bandit, seed: int, temp: float) -> None:
    """For every bandit and every π: J(π*) ≥ J(π), with equality only at π* (CoPG Eq. 12)."""
    lp = random_policy(b, seed, temp)
    star = optimal_policy(b)
    gap = optimal_value(b) - value(b, lp)
    t = tol(b, lp, star)
    assert gap >= -t
    assert regret(b, lp) >= 0  # β·KL in Bregman form: never negative, even from rounding
    # The gap is exactly β·KL(π‖π*), which is > 0 unless π = π*.
    assert gap == pytest.approx(regret(b, lp), abs=t)
    if np.max(np.abs(np.exp(lp) - np.exp(star))) > 1e-3:
        assert regret(b, lp) > 0
    assert regret(b, star) == pytest.approx(0.0, abs=t)


@given(bandits())
def test_closed_form_value_equals_J_at_optimum(b: Bandit) -> None:
    """β·logsumexp(log π_ref + R/β) = J(π*) evaluated from Eq. (11)."""
    star = optimal_policy(b)
    np.testing.assert_allclose(
        optimal_value(b, average=False), value(b, star, average=False), atol=tol(b, star), rtol=0
    )


@given(bandits(), st.integers(0, 2**32 - 1))
def test_negative_control_wrong_optimum_is_caught(b: Bandit, seed: int) -> None:
    """A deliberately wrong π* (∝ π_ref·exp(βR) instead of exp(R/β)) is beaten by the true one."""
    assume(abs(b.beta - 1.0) > 0.1 and np.ptp(b.rewards, axis=-1).min() > 1e-3)
    wrong = log_softmax(b.log_ref + b.rewards * b.beta)
    assume(np.abs(np.exp(wrong) - np.exp(optimal_policy(b))).max() > 1e-6)
    assert optimal_value(b) - value(b, wrong) > tol(b, wrong)


def _reference_value(R: np.ndarray, ref: np.ndarray, beta: float) -> float:
    """β·ln Σ ref·exp(R/β) in 60-digit decimal arithmetic (independent of NumPy)."""
    getcontext().prec = 60
    B = Decimal(beta)
    terms = [
        Decimal(p) * ((Decimal(r) - Decimal(R.max())) / B).exp()
        for r, p in zip(R, ref, strict=True)
    ]
    return float(Decimal(R.max()) + B * sum(terms).ln())


@pytest.mark.parametrize("beta", [1e-4, 1e-2, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_extreme_beta_and_rewards_stay_finite_and_correct(beta: float, scale: float) -> None:
    rng = np.random.default_rng(int(beta * 1e4 + scale) % 2**32)
    R = rng.uniform(-scale, scale, 5)
    ref = rng.dirichlet(np.ones(5))
    b = Bandit.single(R, beta, ref / ref.sum())
    star = optimal_policy(b)
    assert np.all(np.isfinite(star)) and np.exp(star).sum() == pytest.approx(1.0, abs=1e-14)
    J = optimal_value(b)
    assert J == pytest.approx(_reference_value(R, ref / ref.sum(), beta), abs=tol(b, star))
    lp = log_softmax(rng.normal(size=5))
    r = regret(b, lp)
    assert np.isfinite(r) and r >= 0
    assert np.isfinite(value(b, lp))


def test_regret_has_no_cancellation_near_optimum() -> None:
    """Regret stays accurate when J(π*) − J(π) is far below the precision of J itself."""
    b = Bandit.single([1e6, 1e6 - 1.0, -1e6], beta=1.0)
    star = optimal_policy(b)
    lp = log_softmax(star + np.array([1e-6, 0.0, 0.0]))
    # Second-order expansion: β·KL ≈ ½β·Var_π*(δ) for a logit perturbation δ.
    p = np.exp(star[0])
    var = p[0] * (1 - p[0]) * 1e-12
    assert regret(b, lp) == pytest.approx(0.5 * var, rel=1e-4)


def test_batched_policies() -> None:
    """Leading axes of a policy are a batch: one regret per policy, same as one at a time."""
    b = Bandit(np.array([[1.0, 0.0, 2.0], [0.5, 0.5, -1.0]]), rho=[0.3, 0.7], beta=0.7)
    lps = log_softmax(np.random.default_rng(0).normal(size=(4, 5, 2, 3)))
    batched = regret(b, lps)
    assert batched.shape == (4, 5)
    np.testing.assert_allclose(batched[2, 3], regret(b, lps[2, 3]), rtol=1e-15)
    assert value(b, lps, average=False).shape == (4, 5, 2)


def test_policy_helpers() -> None:
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([0.5, 0.5, 0.0]))
    lq = np.log(np.array([0.25, 0.25, 0.5]))
    assert kl(lp, lq) == pytest.approx(np.log(2.0))
    assert kl(lq, lp) == np.inf
    ref = np.log(np.array([0.2, 0.3, 0.5]))
    pi = np.log(np.array([0.6, 0.3, 0.1]))
    np.testing.assert_allclose(geometric_mixture(pi, ref, 0.0), pi, atol=1e-15)
    np.testing.assert_allclose(geometric_mixture(pi, ref, 1.0), ref, atol=1e-15)
    half = np.exp(geometric_mixture(pi, ref, 0.5))
    np.testing.assert_allclose(half, np.sqrt(np.exp(pi + ref)) / np.sqrt(np.exp(pi + ref)).sum())


def test_contextual_average_and_single_constructor() -> None:
    R = np.array([[1.0, 0.0], [0.0, 3.0]])
    b = Bandit(R, rho=[0.25, 0.75], beta=0.5)
    per = optimal_value(b, average=False)
    assert optimal_value(b) == pytest.approx(0.25 * per[0] + 0.75 * per[1])
    one = Bandit.single([1.0, 0.0], beta=0.5)
    assert optimal_value(one) == pytest.approx(per[0])


# ---------------------------------------------------------------- validation


BAD_DISTRIBUTIONS = {
    "negative": [0.5, 0.6, -0.1],
    "nan": [0.5, float("nan"), 0.5],
    "sum": [0.5, 0.4, 0.05],
    "inf": [float("inf"), 0.0, 0.0],
}


@pytest.mark.parametrize("kind", BAD_DISTRIBUTIONS)
@pytest.mark.parametrize("arg", ["ref", "rho"])
def test_bad_distributions_name_the_argument(kind: str, arg: str) -> None:
    bad = BAD_DISTRIBUTIONS[kind]
    kwargs = {"rewards": np.zeros((3, 3)), "beta": 1.0, arg: bad}
    with pytest.raises(ValueError, match=arg):
        Bandit(**kwargs)


@given(st.lists(st.floats(-1, 1), min_size=3, max_size=3))
def test_distribution_check_never_renormalises(p: list[float]) -> None:
    """A valid vector is stored bit for bit; anything else is an error, never a silent fix."""
    a = np.array(p)
    if (a > 0).all() and abs(a.sum() - 1) <= 1e-9:
        np.testing.assert_array_equal(Bandit.single([0.0, 1.0, 2.0], 1.0, a).ref[0], a)
    else:
        with pytest.raises(ValidationError, match="ref"):
            Bandit.single([0.0, 1.0, 2.0], 1.0, a)


def test_zeros_in_reference_need_explicit_permission() -> None:
    with pytest.raises(ValidationError, match=r"ref.*full support"):
        Bandit.single([1.0, 2.0], 1.0, [1.0, 0.0])
    b = Bandit.single([1.0, 2.0], 1.0, [1.0, 0.0], allow_ref_zeros=True)
    assert np.exp(optimal_policy(b))[0, 1] == 0.0
    assert np.isfinite(optimal_value(b))


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_beta(beta) -> None:
    with pytest.raises(ValueError, match="beta"):
        Bandit.single([1.0, 2.0], beta)
    with pytest.raises(ValueError, match="beta"):
        PreferenceGame([[0.5, 0.5], [0.5, 0.5]], beta=beta)


def test_bad_rewards_and_shapes() -> None:
    with pytest.raises(ValueError, match="rewards"):
        Bandit.single([1.0, float("nan")], 1.0)
    with pytest.raises(ValueError, match=r"ref.*shape"):
        Bandit(np.zeros((2, 3)), ref=np.full((2, 4), 0.25), beta=1.0)
    with pytest.raises(ValueError, match=r"rho.*shape"):
        Bandit(np.zeros((2, 3)), rho=[1.0], beta=1.0)
    with pytest.raises(ValueError, match=r"log_pi.*shape"):
        value(Bandit.single([1.0, 2.0], 1.0), np.log([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match="log_pi"):
        value(Bandit.single([1.0, 2.0], 1.0), np.log([0.2, 0.3]))


BAD_MATRICES = {
    "not square": ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], "square"),
    "out of range": ([[0.5, 1.5], [-0.5, 0.5]], r"\[0, 1\]"),
    "diagonal": ([[0.4, 0.5], [0.5, 0.6]], "diagonal"),
    "antisymmetry": ([[0.5, 0.8], [0.1, 0.5]], r"P \+ P.T = 1"),
    "nan": ([[0.5, float("nan")], [0.5, 0.5]], "finite"),
}


@pytest.mark.parametrize("case", BAD_MATRICES)
def test_bad_preference_matrices(case: str) -> None:
    P, msg = BAD_MATRICES[case]
    with pytest.raises(ValueError, match=msg) as e:
        PreferenceGame(P, beta=0.1)
    assert "P" in str(e.value)


@given(st.integers(2, 6), st.integers(0, 2**32 - 1), st.floats(1e-6, 0.4))
def test_perturbed_preference_matrix_is_rejected(n: int, seed: int, eps: float) -> None:
    """Negative control: any valid P stays valid; one perturbed entry breaks P + Pᵀ = 1."""
    rng = np.random.default_rng(seed)
    U = np.triu(rng.uniform(0, 1, (n, n)), 1)
    P = U + np.tril(1 - U.T, -1) + 0.5 * np.eye(n)
    PreferenceGame(P, beta=1.0)
    i, j = (int(v) for v in rng.choice(n, 2, replace=False))
    P[i, j] = P[i, j] + eps if P[i, j] + eps <= 1 else P[i, j] - eps
    with pytest.raises(ValidationError, match=rf"P\[{min(i, j)},{max(i, j)}\]|P\[{i},{j}\]"):
        PreferenceGame(P, beta=1.0)


@pytest.mark.parametrize(
    "code",
    [
        # The issue's own check, run exactly as written there.
        "import bandit, theory, sys; assert 'torch' not in sys.modules",
        # The tabular core loads JAX only when a JAX-backed function is first used.
        "import bandit, sys; assert 'jax' not in sys.modules and 'torch' not in sys.modules",
    ],
)
def test_imports_stay_light(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)
