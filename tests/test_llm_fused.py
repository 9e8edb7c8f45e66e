"""fused_sequence_logps: the logits path's numbers and gradients from hidden states and the
LM head, without the logits, in memory that does not grow with V·N."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import llm.fused
from bandit.validation import ValidationError
from bench._memory import peak_bytes
from llm import fused_sequence_logps, model_sequence_logps, pair_logps, sequence_logps

HEADS = {  # (logit_scale, softcap, temperature)
    "plain": (1.0, None, 1.0),
    "scale+temperature": (0.7, None, 1.3),
    "softcap": (1.5, 2.0, 0.8),
}


def _problem(seed: int, B: int, T: int, H: int, V: int, dtype=torch.float64, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, H, generator=g, dtype=torch.float64).to(dtype)
    W = (torch.randn(V, H, generator=g, dtype=torch.float64) / H**0.5 * 3).to(dtype)
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype) if bias else None
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) < 0.7
    mask[:, -1] = True
    return h, W, b, labels, mask


def _logits(h, W, b, scale, softcap, temperature):
    """The model's head, naively: full logits."""
    z = h @ W.T + (0 if b is None else b)
    z = z * scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return z / temperature


def _max_error(h, W, b, labels, mask, head, tile, average=False) -> float:
    """|fused − (full logits, log_softmax, gather, sum)| in float64."""
    scale, cap, temp = head
    got = fused_sequence_logps(
        h,
        W,
        labels,
        mask,
        bias=b,
        logit_scale=scale,
        softcap=cap,
        temperature=temp,
        tile=tile,
        average=average,
    )
    z = _logits(h.double(), W.double(), None if b is None else b.double(), scale, cap, temp)
    x, y, m = z[:, :-1], labels[:, 1:], mask[:, 1:]
    lp = x.log_softmax(-1).gather(-1, y[..., None])[..., 0]
    want = (lp * m).sum(-1) / (m.sum(-1) if average else 1)
    return (got - want).abs().max().item()


@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 3),
    T=st.integers(2, 6),
    H=st.integers(1, 8),
    V=st.integers(2, 50),
    head=st.sampled_from(list(HEADS)),
    bias=st.booleans(),
    average=st.booleans(),
    tile=st.one_of(st.none(), st.tuples(st.integers(1, 7), st.integers(1, 13))),
)
def test_matches_log_softmax_gather_float64(seed, B, T, H, V, head, bias, average, tile):
    """Float64: |z| ≲ 10 and at most 50 terms per logsumexp, so rounding is ≲ 1e-13 per
    token; 1e-10 leaves three orders of margin and still catches any wrong term."""
    h, W, b, labels, mask = _problem(seed, B, T, H, V, bias=bias)
    assert _max_error(h, W, b, labels, mask, HEADS[head], tile, average) < 1e-10


def test_wrong_tile_offset_is_caught(monkeypatch):
    """Negative control: tiles labelled one column off (the label of a token is looked up
    in the wrong tile position) fail the same 1e-10 check, in values and gradients."""
    h, W, b, labels, mask = _problem(3, 3, 6, 5, 40)
    tile = (4, 7)
    assert _max_error(h, W, b, labels, mask, HEADS["plain"], tile) < 1e-10
    right = llm.fused._logit_tiles

    def shifted(*args):
        for v0, v1, *rest in right(*args):
            yield (v0 + 1 if v0 else v0), v1, *rest

    monkeypatch.setattr(llm.fused, "_logit_tiles", shifted)
    assert _max_error(h, W, b, labels, mask, HEADS["plain"], tile) > 1e-3


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("tile", [(2, 5), None])
def test_gradcheck_float64(head, tile):
    h, W, b, labels, mask = _problem(1, 2, 5, 4, 17)
    scale, cap, temp = HEADS[head]
    args = tuple(t.requires_grad_(True) for t in (h, W, b))
    assert torch.autograd.gradcheck(
        lambda h, W, b: fused_sequence_logps(
            h,
            W,
            labels,
            mask,
            bias=b,
            logit_scale=scale,
            softcap=cap,
            temperature=temp,
            tile=tile,
        ),
        args,
    )


def test_gradient_matches_logits_path():
    """The same gradients as autograd through the full logits and ``sequence_logps``."""
    h, W, b, labels, mask = _problem(2, 3, 7, 6, 29)
    ours = [t.clone().requires_grad_(True) for t in (h, W, b)]
    ref = [t.clone().requires_grad_(True) for t in (h, W, b)]
    w = torch.randn(3, dtype=torch.float64)
    (fused_sequence_logps(*ours[:2], labels, mask, bias=ours[2], tile=(4, 6)) * w).sum().backward()
    (sequence_logps(_logits(*ref, 1.0, None, 1.0), labels, mask) * w).sum().backward()
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, r.grad, rtol=0, atol=1e-12)


def test_bf16_reduces_in_float32():
    """bf16 inputs: float32 output, equal to the logits path on the model's own bf16 logits
    up to float32 reduction error (≲ T·(V·6e-8·|lse| + 1e-6) per sequence). The negative
    control, a log-softmax done in bf16, exceeds that bound many times over."""
    h, W, _, labels, mask = _problem(4, 4, 16, 32, 1000, dtype=torch.bfloat16, bias=False)
    got = fused_sequence_logps(h, W, labels, mask)
    assert got.dtype == torch.float32
    z = h @ W.T  # the model's bf16 logits
    want = sequence_logps(z.double(), labels, mask)
    lse = z.double().logsumexp(-1).abs().max().item()
    bound = 16 * (1000 * 6e-8 * lse + 1e-6)
    assert (got.double() - want).abs().max().item() < bound
    naive = sequence_logps(z.log_softmax(-1).double(), labels, mask)
    assert (naive - want).abs().max().item() > 10 * bound


class _GemmRows(TorchDispatchMode):
    """Counts the rows (tokens) of the hidden-state operand of every mm / addmm."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden, self.rows = hidden, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in ("mm", "addmm"):
            a = args[-2]
            if a.shape[-1] == self.hidden:
                self.rows += a.shape[0]
        return func(*args, **(kwargs or {}))


def test_cost_follows_counted_tokens():
    """The forward projects each counted token once per vocabulary tile, and nothing else:
    B·T = 64 positions, of which the mask keeps 10."""
    h, W, b, labels, mask = _problem(5, 4, 16, 8, 64, dtype=torch.float32)
    mask[:] = False
    mask[0, 5:11] = mask[1, 2:4] = mask[2, 8:9] = mask[3, 15] = True
    counted = int(mask[:, 1:].sum())
    tile = (3, 16)
    with _GemmRows(8) as mode:
        fused_sequence_logps(h, W, labels, mask, bias=b, tile=tile)
    assert mode.rows == counted * (64 // 16)


@pytest.mark.parametrize(("T", "V"), [(64, 4096), (256, 4096), (64, 16384), (256, 16384)])
def test_peak_memory_does_not_grow_with_vocab_times_tokens(T, V):
    """With tiles of (tok, voc), the forward's extra memory is at most a few tiles and
    token blocks plus O(N) vectors, whatever V·N (here 1–16 × 2^20 logits):
      bound = 4·tok·voc·4 + 4·tok·H·4 + 64·N bytes.
    The backward adds the gradients of h and W themselves. Negative control: the logits
    path at the same size needs the N × V logits."""
    B, H, tile = 4, 32, (64, 512)
    h, W, _, labels, _ = _problem(6, B, T, H, V, dtype=torch.float32, bias=False)
    mask = torch.ones(B, T, dtype=torch.bool)
    N = B * T
    tok, voc = tile
    bound = 4 * tok * voc * 4 + 4 * tok * H * 4 + 64 * N
    assert peak_bytes(lambda: fused_sequence_logps(h, W, labels, mask, tile=tile)) < bound
    hg, Wg = h.clone().requires_grad_(True), W.clone().requires_grad_(True)

    def step():
        fused_sequence_logps(hg, Wg, labels, mask, tile=tile).sum().backward()

    grads = h.numel() * 4 + W.numel() * 4
    assert peak_bytes(step) < bound + grads
    full = peak_bytes(lambda: sequence_logps(h @ W.T, labels, mask))
    assert full >= N * V * 4 > bound


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h, W, y, m, b: (h[0], W, y, m, b), r"hidden must have shape \(B, T, H\)"),
        (lambda h, W, y, m, b: (h, W[:, :-1], y, m, b), r"weight must have shape \(V, H\)"),
        (lambda h, W, y, m, b: (h, W.float(), y, m, b), "expected one dtype"),
        (lambda h, W, y, m, b: (h, W, y, m, b[:-1]), r"bias must have shape \(V,\)"),
        (lambda h, W, y, m, b: (h, W, y.double(), m, b), "labels must be an integer"),
        (lambda h, W, y, m, b: (h, W, y[:, :-1], m, b), "labels must have shape"),
        (lambda h, W, y, m, b: (h, W, y, m[:1], b), "mask must have shape"),
        (lambda h, W, y, m, b: (h, W, torch.where(m, 99, y), m, b), r"outside the vocabulary"),
        (lambda h, W, y, m, b: (h, W, y, m & False, b), r"row\(s\) \[0, 1, 2\] have no tokens"),
        (lambda h, W, y, m, b: (h, W.to("meta"), y, m, b), "expected one device"),
    ],
)
def test_bad_input_raises(mutate, match):
    h, W, b, labels, mask = _problem(8, 3, 5, 4, 6)
    h, W, labels, mask, b = mutate(h, W, labels, mask, b)
    with pytest.raises(ValidationError, match=match):
        fused_sequence_logps(h, W, labels, mask, bias=b)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"softcap": -1.0}, "softcap"),
        ({"logit_scale": float("nan")}, "logit_scale"),
        ({"tile": (0, 4)}, "tile"),
    ],
)
def test_bad_head_parameters_raise(kw, match):
    h, W, _, labels, mask = _problem(9, 2, 4, 3, 5)
    with pytest.raises(ValidationError, match=match):
        fused_sequence_logps(h, W, labels, mask, **kw)


def _tiny(kind: str):
    from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2)
        return GPT2LMHeadModel(cfg).double().eval()  # no dropout: runs comparable
    cfg = Gemma2Config(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=3.0,
    )
    return Gemma2ForCausalLM(cfg).double().eval()


@pytest.mark.parametrize("kind", ["gpt2", "gemma2 (softcapping)"])
def test_model_helper_matches_the_models_own_logits(kind):
    """One backbone run and the fused head give what the model's own logits give (Gemma 2
    applies its final-logit softcapping inside ``forward``), values and gradients."""
    model = _tiny(kind.split()[0])
    ids = torch.randint(0, 40, (4, 9))
    attn = torch.ones_like(ids)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 4:] = True
    got = model_sequence_logps(model, ids, mask, attention_mask=attn)
    got.sum().backward()
    g_ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want = sequence_logps(model(input_ids=ids, attention_mask=attn).logits, ids, mask)
    want.sum().backward()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    for a, p in zip(g_ours, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=0, atol=1e-10)


def test_pair_logps_shapes_and_reference_without_grad():
    policy, ref = _tiny("gpt2"), _tiny("gpt2")
    ids = torch.randint(0, 40, (6, 8))
    mask = torch.ones_like(ids, dtype=torch.bool)
    logps, ref_logps = pair_logps(policy, ref, ids, mask)
    assert logps.shape == ref_logps.shape == (3, 2)
    assert logps.requires_grad and not ref_logps.requires_grad
    with pytest.raises(ValidationError, match="B even"):
        pair_logps(policy, ref, ids[:5], mask[:5])


def test_model_helpers_refuse_bad_input():
    """Issue 21 rerun: these raised AttributeError or were accepted; control: the same call
    with valid input runs."""
    model = _tiny("gpt2")
    ids = torch.randint(0, 40, (2, 6))
    mask = torch.ones_like(ids, dtype=torch.bool)
    cases = [
        (lambda: model_sequence_logps(model, ids, mask, average="no"), "average"),
        (lambda: model_sequence_logps(model, ids.tolist(), mask), "input_ids"),
        (lambda: model_sequence_logps(model, ids.double(), mask), "input_ids"),
        (lambda: model_sequence_logps(model, ids[0], mask), "input_ids"),
        (lambda: model_sequence_logps(None, ids, mask), "model"),
        (lambda: pair_logps(None, model, ids, mask), "model"),
        (
            lambda: fused_sequence_logps(
                torch.randn(2, 6, 16), torch.randn(40, 16), ids, mask, average=1
            ),
            "average",
        ),
        (
            lambda: fused_sequence_logps(
                torch.randn(2, 6, 16), torch.randn(40, 16), ids, mask, shift="yes"
            ),
            "shift",
        ),
    ]
    for call, word in cases:
        with pytest.raises(ValidationError, match=word):
            call()
    assert torch.isfinite(model_sequence_logps(model, ids, mask, average=True)).all()


def test_import_llm_does_not_import_trl():
    """TRL is the benchmark's optional extra: ``import llm`` must not need it."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, llm; assert 'trl' not in sys.modules, 'llm imported trl'"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
