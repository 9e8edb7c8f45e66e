"""The one definition of each loss runs unchanged on NumPy, JAX and PyTorch.

Values must agree to float64 rounding (≤ 1e-12 relative on O(1..1e3) inputs), and the
stop-gradients must act identically in JAX and PyTorch, so that ``llm`` and the tabular
engine really train the same objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bandit import losses as L

PREF = ["ipo_loss", "dpo_loss", "slic_loss"]


def _args(name: str, rng: np.random.Generator, size: int = 7):
    h1, h2, r1, r2 = (rng.normal(0, 2, size) for _ in range(4))
    p = rng.uniform(0, 1, size)
    beta = float(rng.uniform(0.05, 3.0))
    if name in PREF:
        return (h1, h2, p, beta), (0, 1)
    if name == "copg_loss":
        return (h1, h2, r1, r2, beta), (0, 1)
    if name == "pg_loss":
        return (h1, h2, r1, r2, beta, 0.3), (0, 1)
    if name == "nash_md_pg_loss":
        return (h1, p, beta), (0,)
    if name == "rloo_loss":
        return (rng.normal(0, 2, (size, 3)), rng.normal(0, 2, (size, 3)), beta), (0,)
    if name == "p3o_loss":
        old1, old2 = h1 + rng.normal(0, 0.3, size), h2 + rng.normal(0, 0.3, size)
        return (h1, h2, old1, old2, r1, r2, 0.2, int(rng.integers(1, 3))), (0, 1)
    raise AssertionError(name)


LOSSES = [
    "copg_loss",
    "pg_loss",
    "rloo_loss",
    "ipo_loss",
    "dpo_loss",
    "slic_loss",
    "nash_md_pg_loss",
    "p3o_loss",
]


def _to(backend: str, a):
    if not isinstance(a, np.ndarray):
        return a
    if backend == "jax":
        return jnp.asarray(a)
    if backend == "torch":
        return torch.tensor(a, dtype=torch.float64, requires_grad=True)
    return a


@pytest.mark.parametrize("name", LOSSES)
@given(seed=st.integers(0, 2**32 - 1))
def test_same_values_and_gradients_on_every_backend(name: str, seed: int) -> None:
    args, diff = _args(name, np.random.default_rng(seed))
    fn = getattr(L, name)
    ref = fn(*args)
    with jax.enable_x64(True):
        jargs = [_to("jax", a) for a in args]
        np.testing.assert_allclose(np.asarray(fn(*jargs)), ref, rtol=1e-12, atol=1e-12)

        def total(*xs):
            full = list(jargs)
            for i, x in zip(diff, xs, strict=True):
                full[i] = x
            return jnp.sum(fn(*full))

        jgrads = jax.grad(total, argnums=tuple(range(len(diff))))(*[jargs[i] for i in diff])
    targs = [_to("torch", a) for a in args]
    out = fn(*targs)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    for i, g in zip(diff, jgrads, strict=True):
        np.testing.assert_allclose(targs[i].grad.numpy(), np.asarray(g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PREF)
@given(seed=st.integers(0, 2**32 - 1))
def test_preference_losses_are_symmetric_in_the_pair(name: str, seed: int) -> None:
    """ℓ(y1, y2, p) = ℓ(y2, y1, 1 − p): the label names the winner, not the slot."""
    (h1, h2, p, beta), _ = _args(name, np.random.default_rng(seed))
    fn = getattr(L, name)
    np.testing.assert_allclose(fn(h1, h2, p, beta), fn(h2, h1, 1 - p, beta), rtol=1e-12)


def test_stop_gradient_blocks_the_weight() -> None:
    """pg_loss: ∇_h1 = −(R_β(y1) − b) exactly; without sg it would gain +β·h1 (negative control)."""
    h1 = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    h2 = torch.tensor([-0.2], dtype=torch.float64)
    L.pg_loss(h1, h2, 2.0, 1.0, 0.5, 0.3).sum().backward()
    assert h1.grad.item() == pytest.approx(-(2.0 - 0.5 * 0.7 - 0.3), abs=1e-15)
    no_sg = -((2.0 - 0.5 * h1 - 0.3) * h1)
    (g,) = torch.autograd.grad(no_sg.sum(), h1)
    assert abs(g.item() - h1.grad.item()) > 0.1


def test_dpo_is_stable_for_large_margins() -> None:
    z = np.array([-800.0, 0.0, 800.0])
    out = L.dpo_loss(z, 0 * z, 1.0, 1.0)
    np.testing.assert_allclose(out, [800.0, np.log(2.0), 0.0], atol=1e-12)


def test_rloo_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="k >= 2"):
        L.rloo_loss(np.zeros((3, 1)), np.zeros((3, 1)), 1.0)


def test_p3o_variant_is_checked() -> None:
    with pytest.raises(ValueError, match="variant"):
        L.p3o_loss(0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 3)
