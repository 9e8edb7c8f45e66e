"""Exact minibatch-gradient covariance (bandit.variance): properties with negative controls."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit import Bandit, OfflineData, expected_loss_and_grad
from bandit.cli import cli
from bandit.expected import count_loss, device_tables, pair_weights
from bandit.precision import float64
from bandit.prepare import prepare
from bandit.variance import SELF_PLAY, covariance_traces, gradient_covariance, main, prop_e1


@st.composite
def instances(draw, X: int = 2, n: int = 3):
    """A random contextual bandit of one shape (each new shape costs a JAX compilation)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    R = rng.uniform(-3, 3, (X, n))
    ref = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    beta = float(rng.choice([0.1, 0.5, 2.0]))
    mu1 = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    mu2 = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    theta = rng.normal(0, 1, (X, n))
    rho = rng.dirichlet(np.ones(X))
    return Bandit(R, ref, rho, beta), OfflineData(mu1, mu2), theta


OFFLINE = ("copg", "pg", "pg_value", "ipo", "dpo", "slic")


@settings(max_examples=6)
@given(instances())
def test_mean_is_the_exact_expected_gradient(inst):
    bandit, data, theta = inst
    for m in OFFLINE:
        g = expected_loss_and_grad(m, bandit, theta, data)[1]
        gc = gradient_covariance(m, bandit, theta, data, batch_size=7)
        # Both are the same finite sum in float64: agreement to rounding.
        np.testing.assert_allclose(gc.mean, g, atol=1e-12)
        cov = gc.covariance
        np.testing.assert_allclose(cov, cov.T, atol=1e-14)
        assert np.min(np.linalg.eigvalsh(cov)) >= -1e-14 * max(1.0, gc.trace)
    for m in ("online_ipo", "nash_md_pg", "rloo"):
        g = expected_loss_and_grad(m, bandit, theta)[1]
        np.testing.assert_allclose(gradient_covariance(m, bandit, theta).mean, g, atol=1e-12)
    # Control: another method's gradient is not this one's mean.
    other = expected_loss_and_grad("ipo", bandit, theta, data)[1]
    assert np.max(np.abs(gradient_covariance("copg", bandit, theta, data).mean - other)) > 1e-8


@float64
def _monte_carlo(method, bandit, data, theta, B: int, M: int, seed: int) -> np.ndarray:
    """M minibatch gradients g_B by the trainer's estimator (count_loss) on i.i.d. draws."""
    prep = prepare(method, bandit, data)
    tab, joint = device_tables(prep)
    w = np.asarray(pair_weights(prep.method, jnp.asarray(theta), tab, joint))
    p = np.asarray(tab.pref)
    probs = np.stack([w * (1 - p), w * p], -1).ravel()
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(B, probs / probs.sum(), size=M).reshape((M, *w.shape, 2))
    counts = jnp.asarray(counts, dtype=jnp.float64)

    def grad(c):
        return jax.grad(count_loss, argnums=1)(
            prep.method, jnp.asarray(theta), tab, c.sum(-1), c[..., 1], float(B)
        )

    return np.asarray(jax.jit(jax.vmap(grad))(counts))


@pytest.mark.parametrize("method", ["copg", "pg", "ipo", "dpo"])
def test_exact_variance_matches_monte_carlo(method):
    """E‖g_B − ḡ‖² = tr Cov_B with Cov_B = Cov_1/B for i.i.d. draws (with replacement).

    The MC mean of M = 4000 squared norms has standard error sd/√M; the exact trace must lie
    within 5 of those (a false alarm has probability < 1e-6 by the CLT). Controls: the
    same check with the trace of batch size 2B, or with a shifted mean ḡ + δ, fails.
    """
    rng = np.random.default_rng(3)
    bandit = Bandit(rng.uniform(-2, 2, (2, 3)), None, [0.4, 0.6], 0.5)
    data = OfflineData(rng.dirichlet(np.ones(3), 2), rng.dirichlet(np.ones(3), 2))
    theta = rng.normal(0, 1, (2, 3))
    B, M = 8, 4000
    gc = gradient_covariance(method, bandit, theta, data, batch_size=B)
    g = _monte_carlo(method, bandit, data, theta, B, M, seed=0)

    def check(trace, mean):
        sq = np.sum((g - mean) ** 2, axis=(1, 2))
        return abs(sq.mean() - trace) <= 5 * sq.std(ddof=1) / np.sqrt(M)

    assert check(gc.trace, gc.mean)
    half = gradient_covariance(method, bandit, theta, data, batch_size=2 * B).trace
    assert not check(half, gc.mean)  # wrong B
    delta = np.sqrt(gc.trace) * np.ones_like(gc.mean) / np.sqrt(gc.mean.size)
    assert not check(gc.trace, gc.mean + delta)  # wrong ḡ (‖δ‖² = tr Cov_B)


@settings(max_examples=4)
@given(instances())
def test_reward_shift(inst):
    """R → R + c: PG without a baseline has a per-sample gradient affine in c, so tr Cov is
    a quadratic in c with positive leading coefficient; CoPG (differences of R), PG with the
    value baseline (R − E_π R) and the preference methods (σ(R(y) − R(y'))) are invariant."""
    bandit, data, theta = inst
    cs = np.array([0.0, 10.0, 20.0, 30.0])

    def traces(m):
        return np.array(
            [
                covariance_traces(
                    m, Bandit(bandit.rewards + c, bandit.ref, bandit.rho, bandit.beta), theta[None],
                    data, batch_size=4,
                )[0]
                for c in cs
            ]
        )  # fmt: skip

    pg = traces("pg")
    d2, d3 = np.diff(pg, 2), np.diff(pg, 3)
    # Third differences of a quadratic vanish up to rounding of values ~ tr(c = 30).
    assert abs(d3[0]) <= 1e-9 * pg.max() and np.all(d2 > 0)
    for m in ("copg", "pg_value", "ipo", "dpo", "slic"):
        t = traces(m)
        # Shifts change R only by a constant that cancels exactly in these losses; their
        # squares round at 1e-16·(|R| + c)²: 1e-9 relative is ample.
        np.testing.assert_allclose(t, t[0], rtol=1e-9, atol=1e-14)
    # Control: the invariance check flags PG without a baseline.
    assert not np.allclose(pg, pg[0], rtol=1e-9, atol=1e-14)


@settings(max_examples=6)
@given(instances())
def test_prop_e1(inst):
    """IPO-MD Prop. E.1 on the Bradley–Terry game: the proof's identity
    Var(ĝ_c) = ½(Var(ĝ_nc) + Cov(X1, X2)), Cov = −E[∂log π(y)∂log π(y')f²] − c² with
    c = E[ĝ_nc], exact per logit; so where Eq. (14) holds, Var(ĝ_c) ≤ Var(ĝ_nc)."""
    bandit, _, theta = inst
    lp = np.stack([theta - np.log(np.exp(theta).sum(-1, keepdims=True))])
    e = prop_e1(bandit, lp)
    c = gradient_covariance(SELF_PLAY, bandit, theta, labels="expected").mean
    want = 0.5 * (e.var_non_contrastive - e.condition - c**2)
    # Sums of n² terms of size ≤ max Var: rounding ~1e-15 relative.
    scale = max(1.0, float(np.max(e.var_non_contrastive)))
    np.testing.assert_allclose(e.var_contrastive, want, atol=1e-12 * scale)
    assert e.violations == 0
    # Same expectation (App. E): (τ/4)·online IPO's gradient is E[ĝ_nc].
    g = expected_loss_and_grad("online_ipo", bandit, theta)[1]
    np.testing.assert_allclose(bandit.beta / 4 * g, c, atol=1e-12)
    # Control: the identity with the sign of Eq. (14) flipped fails.
    flipped = 0.5 * (e.var_non_contrastive + e.condition - c**2)
    assert np.max(np.abs(e.var_contrastive - flipped)) > 1e-9 * scale or np.allclose(
        e.condition, 0, atol=1e-12
    )


def test_cli_writes_three_files(tmp_path):
    args = ["--epochs", "2", "--methods", "copg,pg", "--shifts", "3", "--out", str(tmp_path)]
    assert main(args) == 0
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"variance.{ext}").stat().st_size > 0
    d = json.loads((tmp_path / "variance.json").read_text())
    assert len(d["trajectory_trace"]["copg"]) == 3 and len(d["shift_trace"]["pg"]) == 3
    assert d["shift_trace"]["pg"][2] > d["shift_trace"]["pg"][0]
    assert d["prop_e1"]["violations"] == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--epochs", "0"], "epochs"),
        (["--methods", "online_ipo"], "online"),
        (["--shifts", "1"], "shifts"),
        (["--shift-max", "-3"], "shift-max"),
    ],
)
def test_cli_bad_input_is_one_line(argv, words, capsys, tmp_path):
    assert cli(main)([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_bad_arguments():
    b = Bandit.single([1.0, 0.0], 1.0)
    d = OfflineData([0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="batch_size"):
        gradient_covariance("copg", b, [0.0, 0.0], d, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        gradient_covariance("ipo", b, [0.0, 0.0], d, labels="soft")
