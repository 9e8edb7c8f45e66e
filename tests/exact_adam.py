"""Reference for the trainer tests: optax Adam, step by step, on the exact expected gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bandit.expected import expected_loss_and_grad


def adam_on_exact_gradient(method, bandit, data, *, learning_rate: float, steps: int, **params):
    """log π after ``steps`` Adam steps from π_ref on ∇E[ℓ] (float64), shape (X, n)."""
    opt = optax.adam(learning_rate)
    with jax.enable_x64(True):
        theta = jnp.asarray(bandit.log_ref)
        state = opt.init(theta)
        for _ in range(steps):
            _, g = expected_loss_and_grad(method, bandit, np.asarray(theta), data, **params)
            upd, state = opt.update(jnp.asarray(g), state, theta)
            theta = optax.apply_updates(theta, upd)
        return np.asarray(jax.nn.log_softmax(theta))
