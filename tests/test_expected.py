"""The exact expected-gradient engine (bandit.expected) against sampling and finite differences.

Claim: for every method, ∇_θ E[ℓ] (expected_loss_and_grad) is the mean gradient of the per-pair
losses over pairs drawn from the method's own sampling distribution: y ∼ μ1, y' ∼ μ2 offline;
y, y' ∼ π online; the geometric mixture π^(1−β)π_ref^β for IPO-MD (§5.1); y ∼ π, y' ∼ mixture
for Nash-MD-PG (§2.6); k draws from π for RLOO. The pairs are drawn here from those definitions,
independently of the engine's pair_weights; the per-pair losses are the shared ones
(bandit.expected.pair_losses), differentiated by jax.grad with empirical-count weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, ndtri

from bandit import METHODS, Bandit, get_method
from bandit.expected import expected_loss, expected_loss_and_grad, pair_losses
from bandit.prepare import tables
from bandit.problems import OfflineData

N_SAMPLES = 20_000
#: Family-wise false-alarm rate of the whole sampled-vs-exact suite (all methods, coordinates).
ALPHA = 1e-4
PARAMS = {"ipo_md": {"mixture": 0.5}, "nash_md_pg": {"mixture": 0.5}, "rloo": {"k": 3}}


def _instance():
    """A contextual bandit (X = 2, n = 3), full-support data and a policy away from π_ref."""
    rng = np.random.default_rng(12345)
    X, n = 2, 3
    bandit = Bandit(
        rng.normal(0.0, 1.0, (X, n)), rng.dirichlet(np.ones(n) * 3, X), [0.4, 0.6], beta=0.7
    )
    data = OfflineData(rng.dirichlet(np.ones(n) * 2, X), rng.dirichlet(np.ones(n) * 2, X))
    logits = rng.normal(0.0, 1.0, (X, n))
    return bandit, data, logits


def _sampling_probs(method, bandit, data, logits, *, mixture=0.0, k=2, wrong=None):
    """Distribution of one sample (x, y1, ..., yk), shape (X, n, ..., n), from the definitions.

    ``wrong`` builds the negative controls: 'policy' samples offline pairs from π ⊗ π, 'no_mix'
    samples IPO-MD / Nash-MD pairs from π instead of the geometric mixture.
    """
    m = METHODS[method]
    pi = np.exp(log_softmax(logits, axis=-1))
    mix = np.exp(log_softmax((1 - mixture) * np.log(pi) + mixture * bandit.log_ref, axis=-1))
    if wrong == "no_mix":
        mix = pi
    rho = bandit.rho
    if m.sampling == "offline" and wrong != "policy":
        return rho[:, None, None] * data.mu1[:, :, None] * data.mu2[:, None, :]
    if method == "rloo":
        p = rho.reshape((-1,) + (1,) * k)
        for j in range(k):
            p = p * pi.reshape((pi.shape[0], *[pi.shape[1] if a == j else 1 for a in range(k)]))
        return p
    first = pi
    second = mix if m.sampling in ("mixture", "policy_vs_mixture") else pi
    if m.sampling == "mixture":
        first = mix
    return rho[:, None, None] * first[:, :, None] * second[:, None, :]


def _sampled_gradients(
    method, bandit, data, logits, probs, seed, *, baseline_method=None, **params
):
    """Mean and per-coordinate sd of per-pair gradients over N sampled pairs.

    The mean is jax.grad of Σ (counts/N)·pair_losses; the sd uses the per-pair gradient grid.
    """
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N_SAMPLES, probs.ravel()).reshape(probs.shape)
    tab = tables(bandit)
    loss_method = baseline_method or method
    with jax.enable_x64(True):
        tab64 = jax.tree_util.tree_map(jnp.asarray, tab)
        th = jnp.asarray(logits)
        c = jnp.asarray(counts / N_SAMPLES)

        def emp(t):
            return jnp.sum(c * pair_losses(loss_method, t, tab64, **params))

        mean = np.asarray(jax.grad(emp)(th))
        grid = np.asarray(jax.jacrev(lambda t: pair_losses(loss_method, t, tab64, **params))(th))
    grid = grid.reshape(counts.size, -1)  # one gradient per pair (flattened θ)
    w = counts.ravel() / N_SAMPLES
    var = w @ (grid - mean.ravel()) ** 2
    sd = np.sqrt(var * N_SAMPLES / (N_SAMPLES - 1)).reshape(mean.shape)
    return mean, sd, mean.dtype


def _z_crit(n_tests: int) -> float:
    # Two-sided Bonferroni over every coordinate of every method: P(any false alarm) <= ALPHA.
    return float(ndtri(1 - ALPHA / (2 * n_tests)))


N_TESTS = len(METHODS) * 2 * 3


@pytest.mark.parametrize("method", list(METHODS))
def test_exact_gradient_is_mean_of_sampled_pair_gradients(method):
    """∇E[ℓ] = mean sampled per-pair gradient, within z·sd/√N per coordinate (CLT)."""
    bandit, data, logits = _instance()
    params = PARAMS.get(method, {})
    d = data if METHODS[method].sampling == "offline" else None
    _, exact = expected_loss_and_grad(method, bandit, logits, d, **params)
    probs = _sampling_probs(method, bandit, data, logits, **params)
    mean, sd, dtype = _sampled_gradients(
        method, bandit, data, logits, probs, seed=7, **{k: v for k, v in params.items()}
    )
    assert dtype == np.float64 and exact.dtype == np.float64
    bound = _z_crit(N_TESTS) * sd / np.sqrt(N_SAMPLES) + 1e-12  # 1e-12: sd = 0 coordinates
    assert np.all(np.abs(mean - exact) <= bound), (method, mean - exact, bound)
    # The test has power: the sampled mean is not trivially close (most coordinates vary).
    assert np.count_nonzero(sd > 0) >= exact.size // 2


@pytest.mark.parametrize(
    ("method", "wrong"),
    [
        ("copg", "policy"),  # offline pairs drawn from π ⊗ π instead of μ1 ⊗ μ2
        ("ipo_md", "no_mix"),  # IPO-MD pairs drawn from π instead of π^(1−β)π_ref^β
        ("pg_value", "baseline"),  # pg's b = 0 gradients compared with pg_value's b = E_π[R]
    ],
)
def test_clt_bound_rejects_wrong_sampling(method, wrong):
    """Negative control: the same CLT bound catches a wrong sampler or a wrong baseline."""
    bandit, data, logits = _instance()
    params = PARAMS.get(method, {})
    d = data if METHODS[method].sampling == "offline" else None
    _, exact = expected_loss_and_grad(method, bandit, logits, d, **params)
    probs = _sampling_probs(
        method, bandit, data, logits, wrong=None if wrong == "baseline" else wrong, **params
    )
    mean, sd, _ = _sampled_gradients(
        method,
        bandit,
        data,
        logits,
        probs,
        seed=7,
        baseline_method="pg" if wrong == "baseline" else None,
        **params,
    )
    bound = _z_crit(N_TESTS) * sd / np.sqrt(N_SAMPLES) + 1e-12
    assert np.any(np.abs(mean - exact) > bound)


def _central_differences(method, bandit, logits, data, h: float = 1e-5):
    """∂E[ℓ]/∂θ by central differences of the exact expected loss, coordinate by coordinate."""
    fd = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        e = np.zeros_like(logits)
        e[idx] = h
        fd[idx] = (
            expected_loss(method, bandit, logits + e, data)
            - expected_loss(method, bandit, logits - e, data)
        ) / (2 * h)
    return fd


@pytest.mark.parametrize("method", ["copg", "ipo", "dpo", "slic"])
def test_autodiff_matches_finite_differences(method):
    """Offline losses have no stop-gradient in θ: ∇E[ℓ] is the derivative of E[ℓ] itself.

    Central differences with step h have error ≤ h²·max|f'''|/6 + ε·|f|/h; with h = 1e-5 and
    O(1) derivatives that is ~1e-10, so 1e-7 is a safe tolerance (SLiC: θ random, so no kink
    lies within h with probability 1).
    """
    bandit, data, logits = _instance()
    _, g = expected_loss_and_grad(method, bandit, logits, data)
    assert np.max(np.abs(_central_differences(method, bandit, logits, data) - g)) < 1e-7


def test_finite_differences_catch_a_stop_gradient():
    """Negative control: pg's loss has a stop-gradient on R_β^π, so the derivative of its
    expected *value* is not its update direction, and the same check fails."""
    bandit, data, logits = _instance()
    _, g = expected_loss_and_grad("pg", bandit, logits, data)
    assert np.max(np.abs(_central_differences("pg", bandit, logits, data) - g)) > 1e-3


@pytest.mark.parametrize("method", sorted(METHODS))
def test_exact_loss_and_gradient_stay_finite_at_extreme_scales(method):
    """β from 1e-4 to 1e4 and rewards up to 1e6 (the package's range): the exact expected
    loss and gradient stay finite at π_ref, away from it, and at the logits of π*
    (log π_ref + R/β, up to 1e10 in size). Negative control: a softmax without the max
    shift turns those logits into NaN."""
    rng = np.random.default_rng(99)
    bandit0, data, logits = _instance()
    for beta in (1e-4, 1e4):
        bandit = Bandit(1e6 * np.tanh(bandit0.rewards), bandit0.ref, bandit0.rho, beta=beta)
        star = bandit.log_ref + bandit.rewards / beta
        for theta in (bandit.log_ref, 30.0 * logits + rng.normal(size=logits.shape), star):
            d = data if get_method(method).offline else None
            v, g = expected_loss_and_grad(method, bandit, theta, d, **PARAMS.get(method, {}))
            assert np.isfinite(v) and np.all(np.isfinite(g)), (beta, v, g)
    star = bandit0.log_ref + 1e6 * np.tanh(bandit0.rewards) / 1e-4
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(star) / np.exp(star).sum(-1, keepdims=True)
    assert not np.all(np.isfinite(naive))
