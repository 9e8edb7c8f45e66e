"""A method defined outside the package gets the whole engine, with no module edited.

The method is REBEL (Gao et al. 2024), squared regression of the log-ratio gap onto the
reward gap: ℓ = ((h(y1) − h(y2))/η − (R(y1) − R(y2)))², with its own parameter η > 0.
Its expected loss is a least squares in h whose minimiser, on a connected pair graph,
has h = ηR + const: the KL-regularised optimum π*_{β=1/η}, whatever the bandit's β. That
gives each consumer an exact answer to meet:

- exact expected loss and gradient: a NumPy enumeration of Σ ρ q ℓ and its derivative;
- fixed point: the generic root finder must land on π*_{1/η} (no solver is given);
- trainer: Adam on the exact expected gradient, step by step;
- torch: :func:`llm.method_loss` must equal the formula evaluated by hand.

Negative control: the same method with the reward gap's sign flipped lands on π*_{−1/η}
instead, and the fixed-point check catches it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exact_adam import adam_on_exact_gradient

import llm
from bandit import METHODS, Bandit, Method, Pair, Param, fixed_point, optimal_policy, register
from bandit.expected import expected_loss_and_grad
from bandit.problems import OfflineData
from bandit.trainer import TrainConfig, expected_minibatches, train
from bandit.validation import check_positive


def _rebel(c: Pair, eta: float = 1.0, sign: float = 1.0):
    (h1, h2), (r1, r2) = c.logratio, c.reward
    d = (h1 - h2) / eta - sign * (r1 - r2)
    return d * d


REBEL = Method(
    "rebel",
    _rebel,
    "reward",
    "offline",
    "Gao et al. 2024, Eq. (3)",
    (Param("eta", 1.0, check_positive, "REBEL's η > 0"),),
)
WRONG = Method(
    "rebel_wrong_sign",
    lambda c, eta=1.0: _rebel(c, eta, sign=-1.0),
    "reward",
    "offline",
    "negative control",
    (Param("eta", 1.0, check_positive),),
)

RNG = np.random.default_rng(5)
BANDIT = Bandit(RNG.normal(size=(2, 4)), rho=[0.3, 0.7], beta=0.7)
DATA = OfflineData(RNG.dirichlet(np.ones(4), size=2), RNG.dirichlet(np.ones(4), size=2))
ETA = 2.0


def _numpy_expected(theta: np.ndarray, eta: float) -> tuple[float, np.ndarray]:
    """Σ_x ρ(x) Σ_{y,y'} q(y, y'|x) ℓ and its gradient in θ, enumerated in NumPy."""
    lp = theta - np.log(np.exp(theta).sum(-1, keepdims=True))
    h = lp - BANDIT.log_ref
    R = BANDIT.rewards
    d = (h[:, :, None] - h[:, None, :]) / eta - (R[:, :, None] - R[:, None, :])
    w = BANDIT.rho[:, None, None] * DATA.joint
    value = float(np.sum(w * d * d))
    dh = 2 * (np.sum(w * d, axis=2) - np.sum(w * d, axis=1)) / eta  # ∂/∂h(y)
    pi = np.exp(lp)
    grad = dh - pi * dh.sum(-1, keepdims=True)  # chain rule through log-softmax
    return value, grad


def test_exact_expected_loss_and_gradient_of_a_new_method():
    theta = RNG.normal(size=(2, 4))
    v, g = expected_loss_and_grad(REBEL, BANDIT, theta, DATA, eta=ETA)
    v_np, g_np = _numpy_expected(theta, ETA)
    # Both float64 sums of some tens of O(1) terms: agreement to 1e-12 relative.
    assert abs(v - v_np) <= 1e-12 * abs(v_np)
    np.testing.assert_allclose(g, g_np, rtol=0, atol=1e-12 * np.max(np.abs(g_np)))


def test_generic_root_finder_gives_its_fixed_point_and_catches_the_wrong_sign():
    target = optimal_policy(Bandit(BANDIT.rewards, BANDIT.ref, BANDIT.rho, beta=1 / ETA))
    fp = fixed_point(REBEL, BANDIT, DATA, eta=ETA)
    assert "roots of the exact expected gradient" in fp.message
    assert fp.unique and fp.interior and fp.residual < 1e-10
    # A root with |g| < 1e-10 on a Hessian of eigenvalues ≳ 1e-2 is within 1e-8 of the minimiser.
    assert np.max(np.abs(fp.log_policy - target)) < 1e-8
    wrong = fixed_point(WRONG, BANDIT, DATA, eta=ETA)
    assert wrong.residual < 1e-10
    assert np.max(np.abs(wrong.log_policy - target)) > 1e-2


def test_the_trainer_runs_a_new_method_as_adam_on_its_exact_gradient():
    cfg = TrainConfig(dataset_size=40, batch_size=16, epochs=2, learning_rate=0.05)
    ours = train(REBEL, BANDIT, expected_minibatches(BANDIT, DATA, config=cfg), learning_rate=0.05)
    steps = cfg.epochs * len(cfg.batch_sizes)
    want = adam_on_exact_gradient(REBEL, BANDIT, DATA, learning_rate=0.05, steps=steps)
    # Both are float64 Adam on the same gradient up to summation order.
    np.testing.assert_allclose(ours.log_policies[0, -1], want, rtol=0, atol=1e-10)


def test_torch_wrapper_of_a_new_method():
    g = torch.Generator().manual_seed(0)
    pol = torch.randn(5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    ref = torch.randn(5, 2, dtype=torch.float64, generator=g)
    r = torch.randn(5, 2, dtype=torch.float64, generator=g)
    loss = llm.method_loss(REBEL, pol, ref, rewards=r, beta=0.5, eta=ETA, reduction="none")
    h = pol - ref
    want = ((h[:, 0] - h[:, 1]) / ETA - (r[:, 0] - r[:, 1])) ** 2
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="eta"):
        llm.method_loss(REBEL, pol, ref, rewards=r, beta=0.5, eta=-1.0)


def test_registering_makes_the_name_work_everywhere():
    register(REBEL)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register(REBEL)
        fp = fixed_point("rebel", BANDIT, DATA, eta=ETA)
        assert fp.method == "rebel"
        v, _ = expected_loss_and_grad("rebel", BANDIT, BANDIT.log_ref, DATA, eta=ETA)
        assert v == expected_loss_and_grad(REBEL, BANDIT, BANDIT.log_ref, DATA, eta=ETA)[0]
    finally:
        METHODS.pop("rebel")
    with pytest.raises(ValueError, match="unknown method 'rebel'"):
        fixed_point("rebel", BANDIT, DATA)


def test_a_bad_method_definition_is_refused():
    with pytest.raises(ValueError, match="sampling"):
        Method("x", _rebel, "reward", "sometimes", "")
    with pytest.raises(ValueError, match="signal"):
        Method("x", _rebel, "vibes", "offline", "")
    with pytest.raises(ValueError, match="eta: not a parameter"):
        fixed_point("copg", BANDIT, DATA, eta=1.0)
