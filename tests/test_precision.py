"""The float64 boundary: every public JAX entry point computes in float64 when called from
plain code (no ``jax.enable_x64`` anywhere), from a worker thread too, and leaves the
user's JAX setting as it found it.

Each array-returning function must return float64. Each NumPy-returning function must give
bit-for-bit what it gives under an explicit ``jax.enable_x64(True)``: a float32 computation
would differ from it at the 1e-7 level. Negative control: the undecorated core of
``expected_value`` called the same way computes in float32, and the checks catch it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit import Bandit, OfflineData, PreferenceGame
from bandit.dynamics import exact_dynamics, sampled_dynamics
from bandit.expected import (
    count_loss,
    expected_loss,
    expected_loss_and_grad,
    expected_value,
    loss_fn,
    pair_losses,
    pair_weights,
    tabular_pair,
)
from bandit.fixed_points import field_jacobian, fixed_point
from bandit.prepare import tables
from bandit.trainer import TrainConfig, minibatches, train_all

RNG = np.random.default_rng(3)
BANDIT = Bandit(RNG.normal(size=(2, 3)), beta=0.3)
DATA = OfflineData(RNG.dirichlet(np.ones(3), size=2), RNG.dirichlet(np.ones(3), size=2))
THETA = RNG.normal(size=(2, 3))
GAME = PreferenceGame.bradley_terry([1.0, 0.2, -0.5], beta=0.4)
TAB = tables(BANDIT)


@pytest.fixture(autouse=True)
def _x64_is_off():
    assert not jax.config.jax_enable_x64, "these checks need JAX's default float32 mode"
    yield
    assert not jax.config.jax_enable_x64, "a call left 64-bit mode on"
    assert jnp.ones(1).dtype == jnp.float32


ARRAY_CALLS = {
    "pair_losses": lambda: pair_losses("copg", THETA, TAB),
    "pair_weights": lambda: pair_weights("ipo_md", THETA, TAB, mixture=0.5),
    "expected_value": lambda: expected_value(THETA, TAB, DATA.joint, method="dpo"),
    "count_loss": lambda: count_loss("ipo", THETA, TAB, np.ones((2, 3, 3)), np.ones((2, 3, 3)), 9),
    "tabular_pair": lambda: tabular_pair(THETA, TAB).logratio[0],
    "loss_fn": lambda: loss_fn("copg", BANDIT, DATA)[0](THETA, TAB),
}


@pytest.mark.parametrize("name", ARRAY_CALLS)
def test_array_functions_return_float64(name):
    assert ARRAY_CALLS[name]().dtype == jnp.float64


def _train():
    cfg = TrainConfig(dataset_size=64, batch_size=16, epochs=2)
    batches = minibatches(BANDIT, DATA, n_seeds=2, config=cfg)
    return train_all(["copg", "pg"], BANDIT, batches)["pg"].log_policies


NUMPY_CALLS = {
    "expected_loss_and_grad": lambda: expected_loss_and_grad("slic", BANDIT, THETA, DATA)[1],
    "expected_loss": lambda: np.float64(expected_loss("online_ipo", BANDIT, THETA)),
    "fixed_point": lambda: fixed_point("dpo", BANDIT, DATA).log_policy,
    "field_jacobian": lambda: field_jacobian("pg_value", BANDIT, THETA, DATA),
    "exact_dynamics": lambda: (
        exact_dynamics("ipo_md", GAME, np.zeros(3), steps=20, lr=0.3, mixture=0.5).log_policies
    ),
    "sampled_dynamics": lambda: (
        sampled_dynamics(
            "online_ipo", GAME, np.zeros(3), steps=5, lr=0.3, batch_size=8, seed=1
        ).log_policies
    ),
    "train_all": _train,
}


@pytest.mark.parametrize("name", NUMPY_CALLS)
def test_numpy_functions_compute_in_float64_from_plain_code_and_threads(name):
    call = NUMPY_CALLS[name]
    plain = call()
    with ThreadPoolExecutor(1) as pool:
        threaded = pool.submit(call).result()
    with jax.enable_x64(True):
        want = call()
    np.testing.assert_array_equal(plain, want)
    np.testing.assert_array_equal(threaded, want)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")
def test_negative_control_the_undecorated_core_computes_in_float32():
    raw = expected_value.__wrapped__(THETA, TAB, DATA.joint, method="dpo")
    assert raw.dtype == jnp.float32
    with jax.enable_x64(True):
        want = np.asarray(expected_value(THETA, TAB, DATA.joint, method="dpo"))
    assert float(raw) != float(want)  # float32 rounding shows at the 1e-7 level
