"""Exact and sampled dynamics (bandit.dynamics) end where the theory says (IPO-MD §4–5, App. G).

Tolerance. Gradient descent on these losses contracts linearly near the fixed point, so
after enough steps the distance is at the float64 floor (~1e-15); we ask for 1e-9 in
probability, leaving a wide margin for the slowest contraction rate in the fixture set.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from bandit.dynamics import exact_dynamics, sampled_dynamics
from bandit.expected import expected_loss_and_grad
from bandit.games import best_response, ipo_md_fixed_point, nash_equilibrium
from bandit.problems import PreferenceGame
from bandit.validation import ValidationError

END_TOL = 1e-9


def random_P(rng, n):
    U = rng.uniform(size=(n, n))
    P = np.triu(U, 1)
    P = P + np.tril(1.0 - P.T, -1)
    np.fill_diagonal(P, 0.5)
    return P


@pytest.fixture(scope="module")
def game():
    rng = np.random.default_rng(0)
    return PreferenceGame(random_P(rng, 4), rng.dirichlet(np.ones(4)) * 0.5 + 0.125, 0.3)


@pytest.fixture(scope="module")
def starts():
    return np.log(np.random.default_rng(1).dirichlet(np.ones(4), size=3))


def _end_distance(traj, target_lp):
    return np.max(np.abs(np.exp(traj.final) - np.exp(target_lp)))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_ipo_md_ends_at_its_fixed_point(game, starts, beta):
    traj = exact_dynamics(
        "ipo_md", game, starts, steps=3000, lr=0.02, mixture=beta, record_every=3000
    )
    fp = ipo_md_fixed_point(game, beta)
    assert _end_distance(traj, fp.log_policy) < END_TOL


def test_online_ipo_ends_at_nash(game, starts):
    traj = exact_dynamics("online_ipo", game, starts, steps=3000, lr=0.02, record_every=3000)
    assert _end_distance(traj, nash_equilibrium(game).log_policy) < END_TOL


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_nash_md_pg_ends_at_the_same_fixed_point(game, starts, beta):
    """IPO-MD §5.2: Nash-MD-PG(β) and IPO-MD(β) share the fixed point of Eq. (13)."""
    traj = exact_dynamics(
        "nash_md_pg", game, starts, steps=3000, lr=1.0, mixture=beta, record_every=3000
    )
    assert _end_distance(traj, ipo_md_fixed_point(game, beta).log_policy) < END_TOL


def test_offline_ipo_ends_at_best_response_to_mu(game, starts):
    """Offline IPO against μ converges to π ∝ π_ref exp(P μ/τ) (IPO-MD Eq. 7)."""
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    traj = exact_dynamics("ipo", game, starts, steps=3000, lr=0.02, mu=mu, record_every=3000)
    assert _end_distance(traj, best_response(game, np.log(mu))) < END_TOL


def test_online_dpo_ends_at_rlhf_solution_under_bradley_terry(starts):
    """IPO-MD Thm G.7: under Bradley–Terry, π ∝ π_ref exp(r/τ) is stationary for online DPO."""
    r = np.array([0.3, -0.2, 0.5, 0.0])
    game = PreferenceGame.bradley_terry(r, None, 0.5)
    traj = exact_dynamics("online_dpo", game, starts, steps=4000, lr=2.0, record_every=4000)
    assert _end_distance(traj, log_softmax(game.log_ref + r / game.beta)) < END_TOL


def test_negative_control_beta_changes_the_end_point(game, starts):
    """A check that cannot tell fixed points apart would pass anything: β = 0.5 ends away
    from the Nash equilibrium."""
    traj = exact_dynamics(
        "ipo_md", game, starts, steps=3000, lr=0.02, mixture=0.5, record_every=3000
    )
    assert _end_distance(traj, nash_equilibrium(game).log_policy) > 1e-3


def test_first_step_is_the_exact_gradient_step(game, starts):
    """The recorded first step equals θ − lr ∇E[ℓ] computed by bandit.expected."""
    lr = 0.02
    traj = exact_dynamics("ipo_md", game, starts, steps=1, lr=lr, mixture=0.3)
    for s in range(starts.shape[0]):
        _, g = expected_loss_and_grad("ipo_md", game, starts[s], mixture=0.3)
        expect = log_softmax(starts[s] - lr * g)
        assert np.allclose(traj.log_policies[s, 1], expect, atol=1e-13)


# ------------------------------------------------------------------ sampled


def test_sampled_same_seed_same_output(game, starts):
    kw = dict(steps=20, batch_size=16, lr=0.05, mixture=0.5)
    a = sampled_dynamics("ipo_md", game, starts, seed=3, **kw)
    b = sampled_dynamics("ipo_md", game, starts, seed=3, **kw)
    c = sampled_dynamics("ipo_md", game, starts, seed=4, **kw)
    assert np.array_equal(a.log_policies, b.log_policies)
    assert not np.array_equal(a.log_policies, c.log_policies)


@pytest.mark.parametrize(
    ("method", "kw"),
    [
        ("ipo_md", {"mixture": 0.5}),
        ("nash_md_pg", {"mixture": 0.5}),
        ("online_dpo", {}),
        ("ipo", {"mu": np.array([0.1, 0.2, 0.3, 0.4])}),
    ],
)
def test_sampled_step_is_unbiased(game, method, kw):
    """Mean of S independent one-step sampled updates = the exact update, within a CLT bound.

    With a tiny lr the update of log π is linear in the gradient up to O(lr²·|g|²), far
    below the Monte-Carlo error; we require each coordinate's mean within 5 standard errors.
    """
    S, lr = 4000, 1e-6
    th0 = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    exact = exact_dynamics(method, game, th0, steps=1, lr=lr, **kw).log_policies[0, 1]
    samp = sampled_dynamics(
        method, game, np.tile(th0, (S, 1)), steps=1, lr=lr, batch_size=8, seed=0, **kw
    ).log_policies[:, 1]
    d = (samp - th0) / lr
    de = (exact - th0) / lr
    se = d.std(axis=0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(d.mean(axis=0) - de) <= 5 * se + 1e-6)
    # negative control: the bound is tight enough to reject a 10%-rescaled update
    assert np.any(np.abs(d.mean(axis=0) - 1.1 * de) > 5 * se)


# ------------------------------------------------------------------ bad input


def test_bad_input(game, starts):
    with pytest.raises(ValidationError, match="method"):
        exact_dynamics("copg", game, starts, steps=1, lr=0.1)
    with pytest.raises(ValidationError, match="mixture"):
        exact_dynamics("online_ipo", game, starts, steps=1, lr=0.1, mixture=0.5)
    with pytest.raises(ValidationError, match="mu"):
        exact_dynamics("ipo", game, starts, steps=1, lr=0.1)
    with pytest.raises(ValidationError, match="logits0"):
        exact_dynamics("online_ipo", game, np.zeros(5), steps=1, lr=0.1)
    with pytest.raises(ValidationError, match="lr"):
        exact_dynamics("online_ipo", game, starts, steps=1, lr=-1.0)
    with pytest.raises(ValidationError, match="record_every"):
        exact_dynamics("online_ipo", game, starts, steps=10, lr=0.1, record_every=3)
    with pytest.raises(ValidationError, match="batch_size"):
        sampled_dynamics("online_ipo", game, starts, steps=1, lr=0.1, batch_size=0, seed=0)
