"""Exact fixed points (bandit.fixed_points): certificates, support violations, closed forms,
and the claim that the exact expected-gradient flow from π_ref converges to them."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

from bandit import METHODS, Bandit, PreferenceGame, ValidationError, optimal_policy
from bandit.expected import expected_loss, expected_loss_and_grad, loss_fn
from bandit.fixed_points import field_jacobian, fixed_point
from bandit.games import fixed_point_residual, nash_equilibrium
from bandit.problems import OfflineData

PARAMS = {"ipo_md": {"mixture": 0.4}, "nash_md_pg": {"mixture": 0.7}}
THOROUGH = os.environ.get("COPG_HYPOTHESIS") == "thorough"
#: Random instances per method for the (costly: one jit compile each) flow tests.
FLOW_EXAMPLES = 40 if THOROUGH else 2


def _fp(method, problem, data, **kw):
    d = data if METHODS[method].sampling == "offline" else None
    return fixed_point(method, problem, d, **PARAMS.get(method, {}), **kw)


def _section5():
    """CoPG §5: R = (2.5, 2, 1), μ1 = (.1, .2, .7), μ2 = (.05, .05, .9), β = 0.5, uniform ref."""
    return Bandit.single([2.5, 2.0, 1.0], 0.5), OfflineData([0.1, 0.2, 0.7], [0.05, 0.05, 0.9])


# --------------------------------------------------------------------------- certificates


@pytest.mark.parametrize("method", list(METHODS))
def test_residual_below_1e_10_on_the_copg_section5_bandit(method):
    bandit, data = _section5()
    fp = _fp(method, bandit, data)
    assert fp.residual < 1e-10
    assert fp.interior and fp.log_policy.shape == (1, 3)
    np.testing.assert_allclose(np.exp(fp.log_policy).sum(axis=-1), 1.0, atol=1e-14)
    if method in ("copg", "dpo", "rloo", "p3o_v1", "p3o_v2", "online_dpo"):
        # These reach π* here: CoPG Thm 1, DPO under Bradley–Terry, on-policy methods, Thm G.7.
        np.testing.assert_allclose(fp.log_policy, optimal_policy(bandit), atol=1e-10)


instances = st.builds(
    lambda seed, n, X: (seed, n, X),
    st.integers(0, 2**31 - 1),
    st.integers(2, 4),
    st.integers(1, 2),
)


def _random_instance(seed, n, X, *, beta_range=(0.3, 3.0)):
    rng = np.random.default_rng(seed)
    bandit = Bandit(
        rng.uniform(-1.5, 1.5, (X, n)),
        rng.dirichlet(np.ones(n) * 2 + 1, X),
        rng.dirichlet(np.ones(X) * 2 + 1),
        float(np.exp(rng.uniform(*np.log(beta_range)))),
    )
    data = OfflineData(rng.dirichlet(np.ones(n) * 2 + 1, X), rng.dirichlet(np.ones(n) * 2 + 1, X))
    return bandit, data


@settings(max_examples=60 if THOROUGH else 2)
@given(instances)
def test_residual_below_1e_10_on_random_instances(inst):
    """Every method's certificate is below 1e-10 on random contextual instances."""
    bandit, data = _random_instance(*inst)
    for method in METHODS:
        fp = _fp(method, bandit, data)
        assert fp.residual < 1e-10, (method, fp.residual, fp.message)


def test_residual_certifies_the_fixed_point():
    """Negative control: the same certificate is large at a perturbed fixed point."""
    bandit, data = _section5()
    for method in ("copg", "ipo", "pg", "pg_value", "online_ipo"):
        fp = _fp(method, bandit, data)
        moved = log_softmax(fp.log_policy + np.array([[1e-3, 0.0, 0.0]]), axis=-1)
        d = data if METHODS[method].sampling == "offline" else None
        _, g = expected_loss_and_grad(method, bandit, moved, d)
        assert np.max(np.abs(g)) > 1e-6, method


# --------------------------------------------------------------------------- closed forms


@settings(max_examples=200 if THOROUGH else 10)
@given(instances)
def test_ipo_linear_solve_is_ipo_md_eq7_when_mu1_equals_mu2(inst):
    """IPO-MD Eq. (7): μ1 = μ2 = μ ⇒ π ∝ π_ref exp(p(y ≻ μ)/τ) (the 1/2 is a constant)."""
    bandit, data = _random_instance(*inst)
    mu = data.mu1
    fp = fixed_point("ipo", bandit, OfflineData(mu, mu))
    P = 1.0 / (1.0 + np.exp(-(bandit.rewards[:, :, None] - bandit.rewards[:, None, :])))
    eq7 = log_softmax(bandit.log_ref + np.einsum("xab,xb->xa", P, mu) / bandit.beta, axis=-1)
    # Both sides are O(1) log-probabilities from one well-conditioned solve: 1e-10 is rounding.
    np.testing.assert_allclose(fp.log_policy, eq7, atol=1e-10)
    # Negative control: with μ2 ≠ μ1, Eq. (7) with μ = μ1 is not the answer.
    other = fixed_point("ipo", bandit, OfflineData(mu, data.mu2))
    # (n = 2 has one pair, whose difference is c(2p − 1) whatever μ: no control possible.)
    # The control is caught when the same 1e-10 check rejects it (its gap can be small, e.g.
    # when the rewards are close and every p(y ≻ y') is near 1/2).
    if bandit.n_actions > 2 and np.max(np.abs(data.mu2 - mu)) > 0.05:
        assert np.max(np.abs(other.log_policy - eq7)) > 1e-10


def test_online_ipo_is_the_nash_equilibrium_and_ipo_md_solves_eq13():
    """IPO-MD Prop. 4.1 (online IPO → Eq. 12) and Eq. (13) checked from their definitions."""
    P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # not Bradley–Terry
    game = PreferenceGame(P, [0.2, 0.3, 0.5], beta=0.4)
    fp = fixed_point("online_ipo", game)
    np.testing.assert_allclose(fp.log_policy[0], nash_equilibrium(game).log_policy, atol=1e-10)
    for beta in (0.3, 1.0):
        for method in ("ipo_md", "nash_md_pg"):
            fp = fixed_point(method, game, mixture=beta)
            assert fixed_point_residual(game, fp.log_policy[0], beta) < 1e-10
            assert fp.residual < 1e-10
    # Negative control: the Nash equilibrium does not solve Eq. (13) for β = 0.3.
    assert fixed_point_residual(game, nash_equilibrium(game).log_policy, 0.3) > 1e-6


def test_online_dpo_without_bradley_terry_is_a_root_and_not_nash():
    """IPO-MD Thm G.6/G.7: online DPO's fixed point is π* under BT, and differs from online
    IPO's otherwise (no 2-action non-uniform game has them agree)."""
    game = PreferenceGame(np.array([[0.5, 0.8], [0.2, 0.5]]), beta=0.5)
    dpo, ipo = fixed_point("online_dpo", game), fixed_point("online_ipo", game)
    assert dpo.residual < 1e-10 and ipo.residual < 1e-10
    assert np.max(np.abs(dpo.log_policy - ipo.log_policy)) > 1e-3
    P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
    fp = fixed_point("online_dpo", PreferenceGame(P, beta=0.5))
    assert fp.residual < 1e-10 and "not Bradley–Terry" in fp.message


# --------------------------------------------------------------------------- support


def test_copg_support_violation_is_flagged_and_identifies_what_it_can():
    """CoPG Thm 1 needs a shared support. With action 2 in no pair, R_β^π is equal on {0, 1}
    only: π(0)/π(1) = π*(0)/π*(1), while the mass of action 2 stays where the flow started."""
    bandit, _ = _section5()
    data = OfflineData([0.5, 0.5, 0.0], [0.3, 0.7, 0.0])
    star = optimal_policy(bandit)[0]
    fps = [fixed_point("copg", bandit, data, init=i) for i in ([0.0, 0.0, 0.0], [0.0, 0.0, 2.0])]
    for fp in fps:
        assert not fp.unique and "not unique" in fp.message and fp.residual < 1e-12
        lp = fp.log_policy[0]
        assert abs((lp[0] - lp[1]) - (star[0] - star[1])) < 1e-12
    # The free direction is real: two starts give two different fixed points.
    assert abs(fps[0].log_policy[0, 2] - fps[1].log_policy[0, 2]) > 0.1


def test_copg_connected_pair_graph_is_unique_beyond_thm1():
    """μ1 = δ_0 violates Thm 1's shared support, yet every action is paired with action 0, so
    L R_β^π = 0 forces R_β^π constant: π* from any start (negative control above: free mass)."""
    bandit, _ = _section5()
    data = OfflineData([1.0, 0.0, 0.0], [0.2, 0.3, 0.5])
    for init in ([0.0, 0.0, 0.0], [3.0, -1.0, 2.0]):
        fp = fixed_point("copg", bandit, data, init=init)
        assert fp.unique and not fp.details["thm1_support"]
        np.testing.assert_allclose(fp.log_policy, optimal_policy(bandit), atol=1e-12)


def test_disconnected_joint_data_leave_relative_mass_free():
    """A joint q pairing only {0,1} and {2,3}: two components, unique=False for copg/ipo/dpo."""
    q = np.zeros((4, 4))
    q[0, 1], q[3, 2] = 0.5, 0.5
    bandit = Bandit.single([1.0, 0.0, 2.0, 1.5], 1.0)
    for method in ("copg", "ipo", "dpo", "slic"):
        fp = fixed_point(method, bandit, OfflineData.from_joint(q))
        assert not fp.unique and fp.details["components"] == [[0, 0, 1, 1]]
        assert fp.residual < 1e-10


def test_dpo_hard_labels_have_no_finite_minimiser():
    bandit = Bandit.single([0.0, 0.0], 1.0)
    data = OfflineData([0.5, 0.5], [0.5, 0.5])
    fp = fixed_point("dpo", bandit, data, preferences=[[0.5, 1.0], [0.0, 0.5]])
    assert not fp.interior and "NO FINITE MINIMISER" in fp.message
    np.testing.assert_array_equal(fp.log_policy, [[0.0, -np.inf]])
    # Negative control: soft labels on the same data have an interior minimiser.
    soft = fixed_point("dpo", bandit, data, preferences=[[0.5, 0.9], [0.1, 0.5]])
    assert soft.interior and soft.residual < 1e-10


def test_slic_reports_a_non_unique_lp_optimum():
    """SLiC with p = 1/2 on its only pair: every Δ ∈ [−1/β, 1/β] is optimal; the set is reported."""
    beta = 0.5
    tie = fixed_point("slic", Bandit.single([1.0, 1.0], beta), OfflineData([0.5, 0.5], [0.5, 0.5]))
    iv = np.array(tie.details["h_minus_anchor_intervals"][0])
    assert not tie.unique and tie.residual < 1e-10
    np.testing.assert_allclose(iv[1], [-1 / beta, 1 / beta], atol=1e-9)
    h = tie.log_policy[0] - tie.log_policy[0, 0]  # uniform π_ref: h differences = θ differences
    assert np.all(iv[:, 0] - 1e-9 <= h) and np.all(h <= iv[:, 1] + 1e-9)
    # Negative control: p ≠ 1/2 pins the difference to 1/β, and on the §5 bandit the LP
    # optimum is unique too.
    two = fixed_point("slic", Bandit.single([1.0, 0.0], beta), OfflineData([0.5, 0.5], [0.5, 0.5]))
    assert two.unique
    assert abs(two.log_policy[0, 0] - two.log_policy[0, 1] - 1 / beta) < 1e-9
    assert fixed_point("slic", *_section5()).unique


def test_pg_without_data_on_an_action_has_no_interior_fixed_point():
    """Naive PG (b = 0) never samples action 2: its logit gets −π(2)·Σ m R_β^π, which is < 0 at
    the face here (large positive rewards), so π(2) → 0 and the limit is on the face."""
    bandit, _ = _section5()
    fp = fixed_point("pg", bandit, OfflineData([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]))
    assert not fp.interior and fp.log_policy[0, 2] == -np.inf and "boundary" in fp.message
    assert fp.residual < 1e-10 and min(fp.details["transversal_rate"]) > 0
    # Negative control: negative rewards flip the sign, and the fixed point is interior.
    neg = Bandit.single([-2.5, -2.0, -1.0], 0.5)
    fp = fixed_point("pg", neg, OfflineData([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]))
    assert fp.interior and fp.residual < 1e-10


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b, d: fixed_point("nope", b, d), "method"),
        (lambda b, d: fixed_point("copg", b), "data"),
        (lambda b, d: fixed_point("copg", b, d, init=[0.0, 1.0]), "init"),
        (lambda b, d: fixed_point("copg", b, d, init=[0.0, np.nan, 1.0]), "init"),
        (lambda b, d: fixed_point("ipo_md", b, mixture=1.5), "mixture"),
        (lambda b, d: fixed_point("copg", b, d, clip_eps=0.1), "clip_eps"),
        (lambda b, d: fixed_point("copg", PreferenceGame([[0.5, 0.4], [0.6, 0.5]]), d), "reward"),
        (
            lambda b, d: fixed_point(
                "copg",
                Bandit.single([1.0, 2.0, 3.0], 1.0, [0.5, 0.5, 0.0], allow_ref_zeros=True),
                d,
            ),
            "ref",
        ),
    ],
)
def test_bad_input_is_a_validation_error(call, match):
    bandit, data = _section5()
    with pytest.raises(ValidationError, match=match):
        call(bandit, data)


# --------------------------------------------------------------------------- flows


def _gd(method, bandit, data, eta, steps, *, chunks=10, gtol=1e-10):
    """Gradient descent θ ← θ − η ∇E[ℓ](θ) from θ = log π_ref (a jitted scan of `steps` steps),
    repeated up to `chunks` times until max |∇E[ℓ]| ≤ gtol (the way in from π_ref can be slower
    than the local rate, e.g. while the online sampler puts little mass on the good actions)."""
    d = data if METHODS[method].sampling == "offline" else None
    f, tab = loss_fn(method, bandit, d, **PARAMS.get(method, {}))
    with jax.enable_x64(True):
        tab64 = jax.tree_util.tree_map(jnp.asarray, tab)
        g = jax.grad(f)

        @jax.jit
        def run(th):
            def step(t, _):
                return t - eta * g(t, tab64), None

            th = jax.lax.scan(step, th, None, length=steps)[0]
            return th, jnp.max(jnp.abs(g(th, tab64)))

        th = jnp.asarray(bandit.log_ref)
        for _ in range(chunks):
            th, gmax = run(th)
            if float(gmax) <= gtol:
                break
        return np.asarray(th)


def _reduced(th):
    return (th[:, :-1] - th[:, -1:]).ravel()


def _flow_plan(method, bandit, data, fp):
    """Step size and step count from the linearisation at the fixed point.

    With λ the eigenvalues of the reduced Jacobian J, η ≤ min Re λ / |λ|² makes every
    |1 − ηλ| < 1, and ρ = max |1 − ηλ| is the local contraction; 3·log(1e-12)/log ρ steps
    leave a margin for the non-linear way in from π_ref (and _gd repeats them if needed).
    """
    d = data if METHODS[method].sampling == "offline" else None
    J = field_jacobian(method, bandit, fp.log_policy, d, **PARAMS.get(method, {}))
    lam = np.linalg.eigvals(J)
    assume(np.all(lam.real > 1e-3))  # a stable fixed point the flow can reach in time
    # The cap 0.5 keeps Euler from overshooting on the way in, where the linearisation at
    # the fixed point does not hold (e.g. online samplers near a vertex barely move).
    eta = min(0.5, 0.9 * float(np.min(lam.real / np.abs(lam) ** 2)))
    rho = float(np.max(np.abs(1 - eta * lam)))
    steps = int(np.ceil(3 * np.log(1e-12) / np.log(rho)))
    assume(steps <= 20_000)
    return J, eta, steps


FLOW_METHODS = [m for m in METHODS if m != "slic"]


@pytest.mark.parametrize("method", FLOW_METHODS)
@settings(max_examples=FLOW_EXAMPLES)
@given(instances)
def test_flow_from_reference_converges_to_the_fixed_point(method, inst):
    """For every bandit with full-support μ1, μ2, the exact expected-gradient flow from π_ref
    converges to fixed_point(method).

    Tolerance: near a root, θ − θ* = J⁻¹F(θ) + O(‖F‖²), and ‖Δ log π‖∞ ≤ 2‖Δz‖₂, so
    ‖Δ log π‖∞ ≤ 4‖J⁻¹‖₂‖F(θ_T)‖₂ (factor 2 of room for the second-order term) + 1e-9
    (rounding of O(1) logits). ‖F(θ_T)‖ itself must have come down to 1e-8.
    """
    bandit, data = _random_instance(*inst, beta_range=(0.5, 2.0))
    fp = _fp(method, bandit, data)
    assert fp.interior
    J, eta, steps = _flow_plan(method, bandit, data, fp)
    th = _gd(method, bandit, data, eta, steps)
    d = data if METHODS[method].sampling == "offline" else None
    _, g = expected_loss_and_grad(method, bandit, th, d, **PARAMS.get(method, {}))
    F = _reduced(g)
    assert np.linalg.norm(F) < 1e-8
    tol = 4 * np.linalg.norm(np.linalg.inv(J), 2) * np.linalg.norm(F) + 1e-9
    lp = log_softmax(th, axis=-1)
    assert np.max(np.abs(lp - fp.log_policy)) <= tol
    # Negative control: a fixed point moved by 1e-4 in one logit fails the same check.
    moved = log_softmax(fp.log_policy + 1e-4 * np.eye(bandit.n_actions)[0], axis=-1)
    assert tol < 1e-5 and np.max(np.abs(lp - moved)) > tol


@settings(max_examples=FLOW_EXAMPLES * 2)
@given(instances)
@example((74134139, 4, 2))  # where a fixed 2-logit control fell inside the bound
def test_slic_subgradient_flow_reaches_the_lp_optimum(inst):
    """SLiC: averaged subgradient descent obeys f(θ̄_T) − f* ≤ (‖θ0 − θ*‖² + η² Σ‖g_t‖²)/(2ηT)
    (convexity; Nesterov 2004, §3.2.3), with θ* the LP minimiser and f* its value."""
    bandit, data = _random_instance(*inst, beta_range=(0.5, 2.0))
    fp = fixed_point("slic", bandit, data)
    # θ* in the flow's own gauge (component sums of log π_ref): shift per prompt.
    th_star = fp.log_policy + (bandit.log_ref.mean(-1) - fp.log_policy.mean(-1))[:, None]
    f_star = expected_loss("slic", bandit, th_star, data)
    eta, steps = 1e-2, 20_000
    f, tab = loss_fn("slic", bandit, data)
    with jax.enable_x64(True):
        tab64 = jax.tree_util.tree_map(jnp.asarray, tab)
        g = jax.grad(f)

        @jax.jit
        def run(th):
            def step(carry, _):
                t, acc = carry
                gt = g(t, tab64)
                return (t - eta * gt, acc + t), jnp.sum(gt * gt)

            return jax.lax.scan(step, (th, jnp.zeros_like(th)), None, length=steps)

        (_, acc), sq = run(jnp.asarray(bandit.log_ref))
        acc, sq = np.asarray(acc), np.asarray(sq)
    avg = acc / steps
    bound = (np.sum((bandit.log_ref - th_star) ** 2) + eta**2 * float(np.sum(sq))) / (
        2 * eta * steps
    )
    gap = expected_loss("slic", bandit, avg, data) - f_star
    assert -1e-10 <= gap <= bound + 1e-12
    # Negative control: the bound rejects a flow that stopped short. f is convex along
    # θ* + c·e₀, so f(θ* + c e₀) − f* ≥ (c/2)(f(θ* + 2e₀) − f*) for c ≥ 2: at the c below,
    # that lower bound is twice the bound. (A fixed c = 2 is not enough on every instance.)
    e0 = np.eye(bandit.n_actions)[0]
    rise = expected_loss("slic", bandit, th_star + 2.0 * e0, data) - f_star
    assert rise > 0  # e₀ is no flat direction: preferences are never exactly 1/2 here
    c = 2.0 * max(1.0, 2.0 * bound / rise)
    assert expected_loss("slic", bandit, th_star + c * e0, data) - f_star > bound


@pytest.mark.parametrize("method", ["copg", "pg", "online_ipo"])
def test_prompt_with_zero_weight_is_flagged_and_stays_at_init(method):
    """ρ(x) = 0: no method gets a gradient there, so the prompt keeps π_ref (not unique)."""
    bandit = Bandit(np.array([[2.5, 2.0, 1.0], [0.0, 1.0, 2.0]]), None, [1.0, 0.0], 0.5)
    data = OfflineData([[0.1, 0.2, 0.7]] * 2, [[0.05, 0.05, 0.9]] * 2)
    fp = _fp(method, bandit, data)
    assert not fp.unique and "ρ(x) = 0" in fp.message and fp.residual < 1e-10
    np.testing.assert_allclose(fp.log_policy[1], bandit.log_ref[1], atol=1e-14)
    # Negative control: the weighted prompt is solved, not left at π_ref.
    assert np.max(np.abs(fp.log_policy[0] - bandit.log_ref[0])) > 0.1


# ------------------------------------------------ pg, pg_value on many actions (#21)


@settings(max_examples=20 if THOROUGH else 3)
@given(st.integers(0, 2**16), st.sampled_from(["pg", "pg_value"]))
def test_pg_marginal_solver_finds_the_generic_roots(seed, method):
    """The marginal solver (used above 64 actions) and the generic root finder (used below)
    agree on small random instances: both are roots of the same exact field, certified by
    the engine's residual to 1e-10, so their policies agree to the root's conditioning."""
    from bandit.fixed_points.offline import solve_pg_marginal
    from bandit.prepare import prepare

    bandit, data = _random_instance(seed, 4, 2)
    fp = fixed_point(method, bandit, data)
    assume(fp.unique and fp.interior and fp.residual < 1e-10)
    starts = [np.asarray(bandit.log_ref), np.asarray(optimal_policy(bandit))]
    roots, ok = solve_pg_marginal(prepare(method, bandit, data).tables, data, starts,
                                  method == "pg_value")  # fmt: skip
    assert ok >= 1
    assert min(np.max(np.abs(np.exp(r) - fp.policy)) for r in roots) < 1e-8
    # Negative control: the other method's marginal field has other roots.
    wrong, _ = solve_pg_marginal(prepare(method, bandit, data).tables, data, starts,
                                 method != "pg_value")  # fmt: skip
    assert all(np.max(np.abs(np.exp(r) - fp.policy)) > 1e-6 for r in wrong)


@pytest.mark.parametrize("method", ["pg", "pg_value"])
def test_pg_on_300_actions_is_certified_quickly(method):
    """Above 64 actions the finite-difference Jacobians of the generic solver (2·n exact
    gradients of O(n²) each) are replaced: the root is certified by the engine's residual."""
    rng = np.random.default_rng(0)
    n = 300
    bandit = Bandit.single(np.linspace(0.0, 1.0, n), 0.5)
    data = OfflineData(rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n)))
    fp = fixed_point(method, bandit, data)
    assert fp.residual < 1e-10 and fp.interior and "marginal form" in fp.message
    if method == "pg":  # Σ π_ref e^{R/β} > 1: the root is proven unique
        assert fp.unique
    # Negative control: the certificate is large at a perturbed policy.
    moved = log_softmax(fp.log_policy + np.r_[1e-3, np.zeros(n - 1)], axis=-1)
    _, g = expected_loss_and_grad(method, bandit, moved, data)
    assert np.max(np.abs(g)) > 1e-8


def test_fixed_point_takes_a_policy_dependent_source():
    """bandit.fixed_point given an online or replay source solves for the fixed point of
    (θ, buffer), as bandit.sources.fixed_point does; online IPO's and IPO's under an online
    source coincide (the same pairs sg[π] ⊗ sg[π]) and differ from offline IPO's."""
    from bandit import Online, Replay
    from bandit.sources import fixed_point as source_fixed_point

    b = Bandit.single([2.5, 2.0, 1.0], 0.5)
    online = fixed_point("ipo", b, Online())
    assert online.residual < 1e-10
    np.testing.assert_allclose(
        online.log_policy, source_fixed_point("ipo", b, Online()).log_policy, atol=1e-12
    )
    replay = fixed_point("ipo", b, Replay(last=4))
    np.testing.assert_allclose(replay.log_policy, online.log_policy, atol=1e-9)
    offline = fixed_point("ipo", b, OfflineData([0.1, 0.2, 0.7], [0.05, 0.05, 0.9]))
    assert np.abs(offline.log_policy - online.log_policy).max() > 1e-3
