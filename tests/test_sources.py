"""Data sources (bandit.sources): their pair distributions, the exact and sampled source
dynamics, their fixed points, and their validation; each family with a negative control.

References are independent of the engine's source code: pair distributions are written
out in NumPy, the exact dynamics are stepped one by one in NumPy with the engine's
gradient on *fixed* data (``OfflineData.from_joint``), and the sampled dynamics' first
step is compared, within CLT bounds, with the gradient at the exact law of the sampled
pairs.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from scipy.special import log_softmax, softmax

from bandit import Bandit, OfflineData, PreferenceGame, ValidationError, prepare
from bandit.dynamics import sampled_source_dynamics, source_dynamics
from bandit.exact import optimal_policy, regret
from bandit.expected import expected_loss_and_grad, loss_fn
from bandit.fixed_points import fixed_point as offline_fixed_point
from bandit.games import nash_equilibrium
from bandit.methods import METHODS
from bandit.sources import (
    DemoReplay,
    MuMixture,
    Offline,
    Online,
    Replay,
    as_source,
    fixed_point,
    frozen_data,
)
from theory.online import instance_sources
from theory.strategies import bandit_instances

BANDIT = Bandit.single([2.5, 2.0, 1.0], 0.5)
MU1, MU2 = np.array([0.1, 0.2, 0.7]), np.array([0.05, 0.05, 0.9])
DATA = OfflineData(MU1, MU2)
# Float64: every gradient is a sum of ≤ X·n² = 48 terms of size ≤ 1 + max|R| + β max|h|, a
# few ulps each (≈ 1e-14 relative); 1e-10 leaves a margin of 1e4.
TOL = 1e-10


def _reference_joint(kind: str, log_pi, inst):
    """q(y, y'|x) at a stationary buffer, written out: π⊗π, μ1⊗π, m⊗m with m ∝ π^½ μ2^½."""
    pi = np.exp(log_pi)
    if kind in ("online", "replay", "replay_ema"):
        a = b = pi
    elif kind == "demo_replay":
        a, b = inst.mu1, pi
    elif kind == "mu_mixture":
        a = b = softmax(0.5 * log_pi + 0.5 * np.log(inst.mu2), axis=-1)
    elif kind == "wrong_mixture":  # the negative control: π_ref in place of μ
        a = b = softmax(0.5 * log_pi + 0.5 * inst.bandit.log_ref, axis=-1)
    return a[:, :, None] * b[:, None, :]


def _eager(method, problem, logits, data):
    """(E[ℓ], ∇E[ℓ]) by :func:`bandit.expected.loss_fn`, differentiated eagerly (no jit:
    op-by-op is faster here than compiling one program per method, source and shape)."""
    f, tab = loss_fn(method, problem, data)
    with jax.enable_x64(True):
        th = jnp.asarray(np.reshape(logits, np.shape(tab.log_ref)))
        v, g = jax.value_and_grad(f)(th, jax.tree_util.tree_map(jnp.asarray, tab))
    return float(v), np.asarray(g)


def _sources(inst):
    """The sources of our theory claims (theory.online), by kind."""
    return instance_sources(inst)


@settings(max_examples=max(3, settings.default.max_examples // 8))  # each shape compiles
@given(inst=bandit_instances())
def test_every_source_is_the_expected_loss_on_its_pairs(inst):
    """For copg and ipo, the engine's expected gradient under each source equals the
    gradient on fixed data q, with q the source's pairs written out in NumPy."""
    b, th = inst.bandit, inst.logits
    lp = log_softmax(th, axis=-1)
    for kind, src in _sources(inst).items():
        q = OfflineData.from_joint(_reference_joint(kind, lp, inst))
        for m in ("copg", "ipo"):
            _, g = _eager(m, b, th, src)
            _, want = _eager(m, b, th, q)
            assert np.max(np.abs(g - want)) <= TOL * (1 + np.max(np.abs(want))), (kind, m)


def test_negative_control_mixture_with_the_wrong_data_policy():
    """The reference above, with π_ref in place of μ, is rejected (μ ≠ π_ref here)."""
    from theory.instances import make_bandit_instance

    th = np.array([[0.3, -0.2, 0.1]])
    z = np.zeros((1, 3))
    inst = make_bandit_instance(
        BANDIT.rewards, BANDIT.ref, [1.0], 0.5, th, z, MU1[None], MU2[None], [1.0],
        np.zeros((4, 3), dtype=np.int64),
    )  # fmt: skip
    wrong = OfflineData.from_joint(_reference_joint("wrong_mixture", log_softmax(th, -1), inst))
    _, g = expected_loss_and_grad("ipo", BANDIT, th, _sources(inst)["mu_mixture"])
    _, bad = expected_loss_and_grad("ipo", BANDIT, th, wrong)
    assert np.max(np.abs(g - bad)) > 1e-3


def test_every_pair_method_takes_every_source():
    """Every registered method with pairs runs on every source (finite loss and gradient);
    an online method on Offline data is that method's loss on the data."""
    th = np.array([0.3, -0.2, 0.1])
    srcs = [Offline(DATA), Online(), Replay(last=2), DemoReplay(MU1, Replay(ema=0.5))]
    srcs.append(MuMixture(MU2, 0.3))
    for name in METHODS:
        for src in srcs:
            val, g = _eager(name, BANDIT, th, src)
            assert np.isfinite(val) and np.all(np.isfinite(g)), (name, src.kind)
    # online_ipo given fixed data is offline IPO on those data.
    a = expected_loss_and_grad("online_ipo", BANDIT, th, Offline(DATA))
    b = expected_loss_and_grad("ipo", BANDIT, th, DATA)
    assert a[0] == pytest.approx(b[0], abs=TOL) and np.allclose(a[1], b[1], atol=TOL)
    # ... and online IPO's own sampler is the Online source.
    c = expected_loss_and_grad("online_ipo", BANDIT, th)
    d = expected_loss_and_grad("ipo", BANDIT, th, Online())
    assert np.allclose(c[1], d[1], atol=TOL)
    assert not np.allclose(a[1], d[1], atol=1e-4)  # negative control: the source matters


def test_replay_of_one_iterate_is_online():
    """Replay(last=1) and Replay(ema=1) hold only π_t: their dynamics are online's, to
    the bit; a longer buffer lags behind (negative control)."""
    kw = dict(steps=30, lr=0.5, record_every=10)
    on = source_dynamics("ipo", BANDIT, Online(), BANDIT.log_ref, **kw).log_policies
    for src in (Replay(last=1), Replay(ema=1.0)):
        same = source_dynamics("ipo", BANDIT, src, BANDIT.log_ref, **kw).log_policies
        assert np.array_equal(same, on)
    lag = source_dynamics("ipo", BANDIT, Replay(last=5), BANDIT.log_ref, **kw).log_policies
    assert np.max(np.abs(lag - on)) > 1e-6  # (≈ 1e-4 here, far above rounding)


def _numpy_replay_dynamics(method, src_kind, K, steps, lr, push_first=True):
    """Step by step: the buffer (a list of the last K policies, filled with π_0) receives
    π_t, q_t = μ_t ⊗ μ_t (or μ1 ⊗ μ_t), and θ takes a gradient step on fixed data q_t."""
    th = BANDIT.log_ref.copy()
    buf = [np.exp(log_softmax(th, axis=-1))] * K
    out = []
    for _ in range(steps):
        pi = np.exp(log_softmax(th, axis=-1))
        if push_first:
            buf = [pi, *buf[:-1]]
        mu = np.mean(buf, axis=0)
        a = MU1[None] if src_kind == "demo_replay" else mu
        q = OfflineData.from_joint(a[:, :, None] * mu[:, None, :])
        if not push_first:  # the negative control: q read before π_t enters the buffer
            buf = [pi, *buf[:-1]]
        th = th - lr * expected_loss_and_grad(method, BANDIT, th, q)[1]
        out.append(log_softmax(th, axis=-1))
    return np.array(out)


@pytest.mark.parametrize("kind", ["replay", "demo_replay"])
def test_exact_source_dynamics_match_a_step_by_step_reference(kind):
    src = Replay(last=3) if kind == "replay" else DemoReplay(MU1, Replay(last=3))
    traj = source_dynamics("copg", BANDIT, src, BANDIT.log_ref, steps=12, lr=0.3)
    got = traj.log_policies[0, 1:]
    want = _numpy_replay_dynamics("copg", kind, 3, 12, 0.3)
    # 12 steps, each a float64 gradient (≤ 1e-15 relative) times lr: ≤ 1e-13 after all.
    assert np.max(np.abs(got - want)) <= 1e-12
    lagged = _numpy_replay_dynamics("copg", kind, 3, 12, 0.3, push_first=False)
    assert np.max(np.abs(got - lagged)) > 1e-6  # negative control: off by one step


def test_exact_source_dynamics_with_adam_match_optax_step_by_step():
    opt = optax.adam(0.05)
    traj = source_dynamics("ipo", BANDIT, Online(), BANDIT.log_ref, steps=8, optimizer=opt)
    with jax.enable_x64(True):  # optax's state in float64, as in the engine
        th = jnp.asarray(BANDIT.log_ref)
        state = opt.init(th)
        for _ in range(8):
            q = frozen_data(Online(), log_softmax(np.asarray(th), axis=-1))
            g = expected_loss_and_grad("ipo", BANDIT, np.asarray(th), q)[1]
            upd, state = opt.update(jnp.asarray(g), state, th)
            th = optax.apply_updates(th, upd)
        th = np.asarray(th)
    assert np.max(np.abs(traj.log_policies[0, -1] - log_softmax(th, axis=-1))) <= 1e-12


def _first_step_gradients(src, seeds, batch, fresh, lr=1.0):
    """ĝ per seed from one SGD step of the sampled dynamics: θ1 = θ0 − lr·ĝ."""
    traj = sampled_source_dynamics(
        "ipo", BANDIT, src, BANDIT.log_ref, steps=1, batch_size=batch, seeds=seeds,
        seed=7, fresh=fresh, lr=lr,
    )  # fmt: skip
    th0 = BANDIT.log_ref
    th1 = traj.log_policies[:, 1]  # log π, equal to θ up to a constant per seed
    g = (th0 - th1) / lr
    return g - g.mean(axis=-1, keepdims=True)  # the gradient sums to 0 over actions


def _centred(g):
    return g - g.mean(axis=-1, keepdims=True)


def _ipo_grad_at_start(data):
    """The exact IPO gradient at π_ref on ``data`` (a source or fixed data), centred."""
    return _centred(expected_loss_and_grad("ipo", BANDIT, BANDIT.log_ref, data)[1])


def test_sampled_replay_step_is_unbiased_for_the_buffer_law():
    """One step from a buffer of N = K·M i.i.d. draws from π_0: E[μ̂⊗μ̂] = μ⊗μ + (diag μ −
    μμᵀ)/N (multinomial covariance), and the minibatch gradient is linear in the pair
    counts and the labels, so E[ĝ] = g at that q. ĝ is read off one SGD step,
    (θ0 − θ1)/lr, exactly (θ1 = θ0 − lr·ĝ; log π and θ differ by a constant per seed,
    which centring removes up to rounding, ≈ 1e-16/lr = 1e-13)."""
    K, M, S, B, lr = 1, 2, 2000, 32, 1e-3
    g = _first_step_gradients(Replay(last=K), S, B, M, lr)
    mu = BANDIT.ref[0]
    N = K * M
    q = mu[:, None] * mu[None, :] + (np.diag(mu) - np.outer(mu, mu)) / N
    want = _ipo_grad_at_start(OfflineData.from_joint(q))
    naive = _ipo_grad_at_start(OfflineData(mu, mu))
    se = g.std(axis=0, ddof=1) / np.sqrt(S)
    # CLT: each coordinate's mean is within 5 standard errors (two-sided p ≈ 6e-7); the
    # 1e-6 absorbs the rounding of reading ĝ off the step.
    assert np.all(np.abs(g.mean(axis=0) - want[0]) <= 5 * se[0] + 1e-6)
    # Negative control: the naive law μ⊗μ (ignoring that y and y' share the buffer) is
    # rejected by the same bound.
    assert np.any(np.abs(g.mean(axis=0) - naive[0]) > 5 * se[0] + 1e-6)


def test_sampled_online_step_is_unbiased():
    S, B, lr = 2000, 16, 1e-3
    g = _first_step_gradients(Online(), S, B, 1, lr)
    want = _ipo_grad_at_start(Online())
    se = g.std(axis=0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(g.mean(axis=0) - want[0]) <= 5 * se[0] + 1e-6)
    wrong = _ipo_grad_at_start(DATA)
    assert np.any(np.abs(g.mean(axis=0) - wrong[0]) > 5 * se[0] + 1e-6)


def test_sampled_same_seed_same_numbers():
    kw = dict(steps=20, batch_size=8, seeds=3, seed=5, lr=0.1, record_every=10)
    src = DemoReplay(MU1, Replay(last=2))
    a = sampled_source_dynamics("copg", BANDIT, src, BANDIT.log_ref, **kw).log_policies
    b = sampled_source_dynamics("copg", BANDIT, src, BANDIT.log_ref, **kw).log_policies
    assert np.array_equal(a, b)
    c = sampled_source_dynamics("copg", BANDIT, src, BANDIT.log_ref, **{**kw, "seed": 6})
    assert not np.array_equal(a, c.log_policies)
    assert not np.array_equal(a[0], a[1])  # seeds differ from one another


def test_fixed_points_under_sources():
    """CoPG: π* under every source (certified); IPO under online and replay: the Nash
    equilibrium of the Bradley–Terry game (online IPO's fixed point); PG with the value
    baseline under demonstrations + replay: not π* (the control of issue 20)."""
    star = optimal_policy(BANDIT)
    srcs = [Online(), Replay(last=4), Replay(ema=0.2), DemoReplay(MU1, Replay(last=4))]
    srcs.append(MuMixture(MU2, 0.5))
    for src in srcs:
        fp = fixed_point("copg", BANDIT, src)
        assert fp.residual <= 1e-12 and fp.unique
        assert np.array_equal(fp.log_policy, star)
    game = PreferenceGame.bradley_terry(BANDIT.rewards[0], beta=BANDIT.beta)
    nash = nash_equilibrium(game).log_policy
    for src in (Online(), Replay(last=4)):
        fp = fixed_point("ipo", BANDIT, src)
        assert fp.residual <= 1e-12
        # Two certified solutions (max|g| ≤ 1e-12; Jacobian eigenvalues ≥ 2τ·min q ≳ 0.1):
        assert np.max(np.abs(fp.log_policy[0] - nash)) <= 1e-9
    pg = fixed_point("pg_value", BANDIT, DemoReplay(MU1, Replay(last=4)))
    assert pg.residual <= 1e-12 and regret(BANDIT, pg.log_policy) > 1e-3
    # IPO moves with the source: demonstrations + replay is not the Nash equilibrium.
    ipo_demo = fixed_point("ipo", BANDIT, DemoReplay(MU1, Replay(last=4)))
    assert np.max(np.abs(ipo_demo.log_policy[0] - nash)) > 1e-3
    # Fixed data: the offline solver's answer.
    assert np.array_equal(
        fixed_point("ipo", BANDIT, Offline(DATA)).log_policy,
        offline_fixed_point("ipo", BANDIT, DATA).log_policy,
    )


def test_dynamics_reach_the_fixed_points():
    """Adam on the exact dynamics ends at each run's fixed point (CoPG: π* under replay)."""
    opt = optax.adam(0.05)
    for m in ("copg", "ipo"):
        src = DemoReplay(MU1, Replay(last=3))
        end = source_dynamics(m, BANDIT, src, BANDIT.log_ref, steps=3000, optimizer=opt)
        fp = fixed_point(m, BANDIT, src)
        assert np.max(np.abs(np.exp(end.final[0]) - fp.policy)) <= 1e-6


def test_bad_sources_are_refused():
    with pytest.raises(ValidationError, match="exactly one of last"):
        Replay()
    with pytest.raises(ValidationError, match="exactly one of last"):
        Replay(last=2, ema=0.5)
    with pytest.raises(ValidationError, match="last"):
        Replay(last=0)
    with pytest.raises(ValidationError, match="ema"):
        Replay(ema=0.0)
    with pytest.raises(ValidationError, match="mu"):
        MuMixture([0.0, 0.5, 0.5], 0.5)  # log μ enters: full support needed
    with pytest.raises(ValidationError, match="mixture"):
        MuMixture(MU1, 1.5)
    with pytest.raises(ValidationError, match="replay"):
        DemoReplay(MU1, Online())
    with pytest.raises(ValidationError, match="demos must have shape"):
        prepare("copg", BANDIT, DemoReplay([0.5, 0.5], Replay(last=2)))
    with pytest.raises(ValidationError, match="k = 3"):
        prepare("rloo", BANDIT, Online(), k=3)
    with pytest.raises(ValidationError, match="mixture"):
        prepare("ipo_md", BANDIT, Online(), mixture=0.5)
    with pytest.raises(ValidationError, match="finite buffer"):
        sampled_source_dynamics("copg", BANDIT, Replay(ema=0.5), BANDIT.log_ref, steps=1,
                                batch_size=2, seeds=1, seed=0, lr=0.1)  # fmt: skip
    with pytest.raises(ValidationError, match="source must be"):
        as_source("online")
    with pytest.raises(ValidationError, match="problem must be"):
        source_dynamics("copg", "bandit", Online(), BANDIT.log_ref, steps=1, lr=0.1)
    # Valid counterparts pass (the checks above are not vacuous).
    assert prepare("rloo", BANDIT, Online(), k=2).source.kind == "online"
    assert prepare("ipo_md", BANDIT, Online()).dynamic_source is not None


@pytest.mark.parametrize("bad", [np.full((3, 3), 0.5 + 0j), [["a"] * 3] * 3, np.full((3, 3), True)])
def test_preferences_must_be_real(bad):
    """Issue 21: complex, string and boolean preferences are refused, naming the argument."""
    with pytest.raises(ValidationError, match="preferences"):
        prepare("ipo", BANDIT, DATA, preferences=bad)
    ok = np.full((3, 3), 0.5)
    assert prepare("ipo", BANDIT, DATA, preferences=ok).preferences is not None


def test_sources_are_import_light():
    code = "import sys, bandit.sources; print('jax' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr
