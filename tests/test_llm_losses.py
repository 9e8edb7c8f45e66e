"""The PyTorch losses reproduce the tabular engine exactly on a one-token language model.

A "language model" that emits one token out of K, with logits θ ∈ R^K, is the tabular
policy π = softmax(θ). Its sequence log-probs come from :func:`llm.sequence_logps`, the
per-pair losses from :mod:`llm.losses`, and the expected loss is the sum over every pair
(every k-tuple for RLOO) weighted by the method's (stop-gradient) sampling probability.
That must equal :func:`bandit.expected.expected_loss_and_grad` (JAX, float64), value and
gradient, for every registered method.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import llm
from bandit import METHODS, Bandit, geometric_mixture
from bandit.expected import expected_loss_and_grad
from bandit.problems import OfflineData
from bandit.validation import ValidationError

# Every registered method, plus RLOO with three samples.
CASES = [(m, 2) for m in METHODS] + [("rloo", 3)]


def _instance(seed: int, K: int, log_beta: float) -> dict:
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(K)) * 0.9 + 0.1 / K  # full support (CoPG Thm 1)
    return {
        "theta": rng.normal(0.0, 1.5, K),
        "R": rng.uniform(-3.0, 3.0, K),
        "ref": ref / ref.sum(),
        "mu1": rng.dirichlet(np.ones(K)) * 0.9 + 0.1 / K,
        "mu2": rng.dirichlet(np.ones(K)) * 0.9 + 0.1 / K,
        "beta": float(np.exp(log_beta)),
        "mixture": float(rng.uniform(0.0, 1.0)),
        "clip_eps": float(rng.uniform(0.05, 0.5)),
    }


def _params(method: str, k: int, inst: dict) -> dict:
    if method in ("ipo_md", "nash_md_pg"):
        return {"mixture": inst["mixture"]}
    if method == "rloo":
        return {"k": k}
    if method.startswith("p3o"):
        return {"clip_eps": inst["clip_eps"]}
    return {}


def _torch_expected(method: str, k: int, inst: dict, *, swap: bool = False):
    """Σ_pairs w·ℓ through sequence_logps and llm.losses; returns (value, grad θ).

    ``swap`` passes (ref, policy) in place of (policy, ref): the negative control.
    """
    dt = torch.float64
    K = inst["theta"].shape[0]
    theta = torch.tensor(inst["theta"], dtype=dt, requires_grad=True)
    R = torch.tensor(inst["R"], dtype=dt)
    log_ref = torch.tensor(np.log(inst["ref"]), dtype=dt)
    beta = inst["beta"]
    kk = k if method == "rloo" else 2
    grid = torch.tensor(list(itertools.product(range(K), repeat=kk)))  # (K^kk, kk)
    n = grid.numel()
    # The one-token LM: every sequence has logits θ at its single position.
    logits = theta.expand(n, 1, K)
    pol = llm.sequence_logps(logits, grid.reshape(n, 1), shift=False).reshape(grid.shape)
    ref = log_ref[grid]
    rew = R[grid]
    log_pi = torch.log_softmax(theta, -1).detach()
    pi = log_pi.exp()
    mix = geometric_mixture(log_pi, log_ref, inst["mixture"]).exp()
    sampling = METHODS[method].sampling
    if sampling == "offline":
        q1, q2 = torch.tensor(inst["mu1"], dtype=dt), torch.tensor(inst["mu2"], dtype=dt)
    elif sampling == "policy":
        q1 = q2 = pi
    elif sampling == "mixture":
        q1 = q2 = mix
    else:  # policy_vs_mixture: y ∼ π, y' ∼ mixture
        q1, q2 = pi, mix
    w = q1[grid[:, 0]] * q2[grid[:, 1]]
    for j in range(2, kk):
        w = w * q1[grid[:, j]]
    a, b = (ref, pol) if swap else (pol, ref)
    pref = torch.sigmoid(rew[:, 0] - rew[:, 1])  # Bradley–Terry, the engine's default
    kw = {"beta": beta, "reduction": "none"}
    if method == "copg":
        loss = llm.copg_loss(a, b, rew, **kw)
    elif method == "pg":
        loss = llm.pg_loss(a, b, rew, **kw)
    elif method == "pg_value":
        loss = llm.pg_loss(a, b, rew, baseline=(pi * R).sum(), **kw)
    elif method == "rloo":
        loss = llm.rloo_loss(a, b, rew, **kw)
    elif method == "ipo":
        loss = llm.ipo_loss(a, b, pref, **kw)
    elif method in ("online_ipo", "ipo_md"):
        loss = llm.ipo_md_loss(a, b, pref, **kw)
    elif method in ("dpo", "online_dpo"):
        loss = llm.dpo_loss(a, b, pref, **kw)
    elif method == "slic":
        loss = llm.slic_loss(a, b, pref, **kw)
    elif method == "nash_md_pg":
        loss = llm.nash_md_pg_loss(a, b, pref, **kw)
    elif method.startswith("p3o"):
        old = a.detach()
        variant = 1 if method == "p3o_v1" else 2
        loss = llm.p3o_loss(a, old, b, rew, clip_eps=inst["clip_eps"], variant=variant, **kw)
    else:
        raise AssertionError(f"no torch case for registered method {method!r}")
    total = (w * loss).sum()
    # A swapped call may leave no path to θ at all (P3O's ratios then use π_ref): grad 0.
    g = torch.autograd.grad(total, theta, allow_unused=True)[0] if total.requires_grad else None
    g = torch.zeros_like(theta) if g is None else g
    return total.item(), g.numpy(), (w * loss).abs().sum().item()


def _engine(method: str, k: int, inst: dict):
    problem = Bandit.single(inst["R"], inst["beta"], ref=inst["ref"])
    data = OfflineData(inst["mu1"], inst["mu2"]) if METHODS[method].sampling == "offline" else None
    with jax.enable_x64(True):
        return expected_loss_and_grad(
            method, problem, inst["theta"], data, **_params(method, k, inst)
        )


@pytest.mark.parametrize(("method", "k"), CASES)
@given(
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(2, 5),
    log_beta=st.floats(np.log(0.05), np.log(20.0)),
)
def test_one_token_lm_matches_tabular_engine(method: str, k: int, seed: int, K: int, log_beta):
    """Value and gradient agree to 1e-10 (float64) for every method."""
    inst = _instance(seed, K, log_beta)
    val, grad, scale = _torch_expected(method, k, inst)
    ref_val, ref_grad = _engine(method, k, inst)
    # Both sides sum at most K^3 = 125 float64 terms: rounding is below
    # 125·2.2e-16·Σ|terms| ≈ 3e-14·scale, far inside the 1e-10 (scaled by the
    # loss's own magnitude so that large 1/β losses are judged relatively).
    tol = 1e-10 * max(1.0, scale)
    np.testing.assert_allclose(val, ref_val, rtol=0, atol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=tol)


@pytest.mark.parametrize(("method", "k"), CASES)
def test_negative_control_swapped_policy_and_ref_is_caught(method: str, k: int):
    """Passing (ref, policy) for (policy, ref), a plausible bug, must fail the same check."""
    inst = _instance(7, 4, 0.0)
    val, grad, _ = _torch_expected(method, k, inst, swap=True)
    ref_val, ref_grad = _engine(method, k, inst)
    gap = max(abs(val - ref_val), float(np.abs(grad - ref_grad).max()))
    assert gap > 1e-4, f"{method}: the swapped variant went undetected (gap {gap:.2e})"


def test_wrappers_call_the_shared_definition(monkeypatch):
    """One definition: replacing bandit.losses.copg_loss changes llm.copg_loss."""
    import bandit.losses as L

    monkeypatch.setattr(L, "copg_loss", lambda *a, **k: a[0] * 0 + 123.0)
    x = torch.zeros(3, 2)
    assert torch.all(llm.copg_loss(x, x, x, beta=1.0, reduction="none") == 123.0)


# --- reductions, dtypes and input checks -------------------------------------------------


def _pair_inputs(dtype=torch.float32, shape=(4, 2)):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(shape, generator=g, dtype=dtype),
        torch.randn(shape, generator=g, dtype=dtype),
        torch.randn(shape, generator=g),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reduction_modes(reduction):
    pol, ref, rew = _pair_inputs(shape=(3, 5, 2))
    per = llm.copg_loss(pol, ref, rew, beta=0.5, reduction="none")
    assert per.shape == (3, 5)
    out = llm.copg_loss(pol, ref, rew, beta=0.5, reduction=reduction)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("dtype", "out"),
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_upcast(dtype, out):
    pol, ref, rew = _pair_inputs(dtype)
    assert llm.ipo_loss(pol, ref, torch.ones(4), beta=0.1).dtype == out
    assert llm.copg_loss(pol, ref, rew, beta=0.1).dtype == out


def test_hard_labels_accept_integer_and_bool_preferences():
    pol, ref, _ = _pair_inputs()
    p = torch.tensor([1, 0, 1, 1])
    a = llm.dpo_loss(pol, ref, p, beta=0.3, reduction="none")
    b = llm.dpo_loss(pol, ref, p.bool(), beta=0.3, reduction="none")
    c = llm.dpo_loss(pol, ref, p.float(), beta=0.3, reduction="none")
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    torch.testing.assert_close(b, c, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p, r, w: llm.copg_loss(p[:, :1], r, w, beta=1.0), r"policy_logps .*\(\.\.\., 2\)"),
        (lambda p, r, w: llm.copg_loss(p, r[:3], w, beta=1.0), "ref_logps must have the shape"),
        (lambda p, r, w: llm.copg_loss(p, r, w[:2], beta=1.0), "rewards must have shape"),
        (lambda p, r, w: llm.copg_loss(p, r, w, beta=0.0), "beta must be finite and > 0"),
        (lambda p, r, w: llm.copg_loss(p, r, w, beta=1.0, reduction="avg"), "reduction"),
        (lambda p, r, w: llm.copg_loss(p.long(), r, w, beta=1.0), "floating point"),
        (lambda p, r, w: llm.ipo_loss(p, r, torch.ones(3), beta=1.0), "preference must have"),
        (lambda p, r, w: llm.ipo_loss(p, r, torch.full((4,), 1.5), beta=1.0), r"\[0, 1\]"),
        (lambda p, r, w: llm.ipo_loss(p, r, torch.ones(4, 2), beta=1.0), "preference must have"),
        (lambda p, r, w: llm.rloo_loss(p[:, :1], r[:, :1], w[:, :1], beta=1.0), "k >= 2"),
        (lambda p, r, w: llm.p3o_loss(p, r[:2], r, w, beta=1.0), "old_logps must match"),
        (lambda p, r, w: llm.p3o_loss(p, p, r, w, beta=1.0, variant=3), "variant"),
        (lambda p, r, w: llm.p3o_loss(p, p, r, w, beta=-1.0), "beta"),
    ],
)
def test_bad_input_raises_clear_error(call, match):
    pol, ref, rew = _pair_inputs()
    with pytest.raises(ValidationError, match=match):
        call(pol, ref, rew)


def test_device_mismatch_is_reported():
    pol, ref, rew = _pair_inputs()
    meta = torch.empty(4, 2, device="meta")
    with pytest.raises(ValidationError, match="expected one device"):
        llm.copg_loss(pol, meta, rew, beta=1.0)
    with pytest.raises(ValidationError, match="expected one device"):
        llm.copg_loss(pol, ref, meta, beta=1.0)


# --- extreme scales ----------------------------------------------------------------------

#: Every loss, called on (policy, ref, rewards, preference) the way a training loop would.
LOSS_CALLS = {
    "copg": lambda p, r, w, q, b: llm.copg_loss(p, r, w, beta=b),
    "pg": lambda p, r, w, q, b: llm.pg_loss(p, r, w, beta=b),
    "rloo": lambda p, r, w, q, b: llm.rloo_loss(p, r, w, beta=b),
    "ipo": lambda p, r, w, q, b: llm.ipo_loss(p, r, q, beta=b),
    "dpo": lambda p, r, w, q, b: llm.dpo_loss(p, r, q, beta=b),
    "slic": lambda p, r, w, q, b: llm.slic_loss(p, r, q, beta=b),
    "ipo_md": lambda p, r, w, q, b: llm.ipo_md_loss(p, r, q, beta=b),
    "nash_md_pg": lambda p, r, w, q, b: llm.nash_md_pg_loss(p, r, q, beta=b),
    "p3o_v1": lambda p, r, w, q, b: llm.p3o_loss(p, p.detach() + 0.1, r, w, beta=b, variant=1),
    "p3o_v2": lambda p, r, w, q, b: llm.p3o_loss(p, p.detach() + 0.1, r, w, beta=b, variant=2),
}


def _extreme_inputs(dtype: torch.dtype, scale: float):
    """Sequence log-probs of long completions (≈ −1000 ± 200, log-ratios up to ±600) and
    rewards up to ``scale``."""
    g = torch.Generator().manual_seed(1)
    pol = (torch.randn(32, 2, generator=g) * 200 - 1000).to(dtype).requires_grad_(True)
    ref = (torch.randn(32, 2, generator=g) * 200 - 1000).to(dtype)
    rew = (torch.rand(32, 2, generator=g) * 2 - 1) * scale
    pref = torch.rand(32, generator=g)
    return pol, ref, rew, pref


@pytest.mark.parametrize("name", list(LOSS_CALLS))
@pytest.mark.parametrize("beta", [1e-4, 1.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_losses_stay_finite_at_extreme_scales(name, beta, dtype):
    """β from 1e-4 to 1e4 and rewards up to 1e6 (the package's range), on half- and
    single-precision log-probs: the value and the gradient stay finite."""
    pol, ref, rew, pref = _extreme_inputs(dtype, 1e6)
    loss = LOSS_CALLS[name](pol, ref, rew, pref, beta)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pol.grad).all()


def test_extreme_scale_check_catches_a_naive_formula():
    """Negative control for the test above: DPO written as −log σ(β·margin) overflows on the
    same inputs at β = 1e4, where llm.dpo_loss (a log-sigmoid) does not."""
    pol, ref, _, pref = _extreme_inputs(torch.float32, 1e6)
    h = (pol - ref).detach()
    margin = 1e4 * (h[:, 0] - h[:, 1])
    naive = -(
        pref * torch.log(torch.sigmoid(margin)) + (1 - pref) * torch.log(torch.sigmoid(-margin))
    )
    assert not torch.isfinite(naive).all()
    assert torch.isfinite(llm.dpo_loss(pol, ref, pref, beta=1e4, reduction="none")).all()
