"""Sequence log-probabilities straight from the final hidden states and the LM head.

The logits z = h·Wᵀ + b of a causal LM are N × V numbers (8 GiB in float32 at V = 128k and
N = 16k tokens) that every pairwise loss reduces to one number per token,
log π(y_t|·) = z[y_t] − logsumexp(z) (CoPG Eq. 5 and IPO-MD §6 use the sum over the tokens
of y). Here the projection and the reduction are fused: the counted positions are
projected in tiles of tokens × vocabulary, each tile is folded into a running
(max, Σexp) per token — the online logsumexp — and dropped. The backward recomputes each
tile and turns it into the gradient in place,

    ∂ log π(y)/∂z = onehot(y) − softmax(z),    ∂/∂h = G·W,  ∂/∂W = Gᵀ·h,  ∂/∂b = Σ_n G,

so neither pass holds an N × V tensor. Only the positions the mask keeps are projected:
the cost follows the number of completion tokens, not B·T. Low-precision (bf16/fp16) tiles
are upcast and reduced in float32; float64 stays float64.

Head transforms of real models are applied to each tile, in this order (as Hugging Face
models and TRL's ``add_fused_lm_head`` do): z ← scale·z; z ← c·tanh(z/c) (Gemma's
``final_logit_softcapping`` c); z ← z / temperature.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from bandit.validation import ValidationError

from .logps import (
    _acc_dtype,
    _check_flag,
    _check_float,
    _check_labels,
    _masked_sum,
    _target_labels,
)

__all__ = [
    "fused_sequence_logps",
    "fused_token_logps",
    "head_transform",
    "model_sequence_logps",
    "pair_logps",
]

#: Shares of the logits' bytes that a token block's gathered hidden rows (with their
#: gradient) and a tile (tokens × vocabulary, with its raw GEMM output) may take, so the
#: extra memory of either pass stays under 5% of the logits whatever V, N and H are: the
#: rest is O(N) vectors. On CPU a tile, and the LM-head slice the token blocks pass over, are
#: also capped at ``_CPU_TILE_BYTES``, to stay in cache (at H = 4096 the uncapped slice was
#: all of W, read from memory once per token block: 1.45× slower in the forward).
_ROWS_SHARE, _TILE_SHARE = 0.015, 0.025
_CPU_TILE_BYTES = 8 * 2**20
#: Floors, below which a GEMM call costs more than it computes; they bind only for logits
#: of a few MiB, where 5% of them is less than one such tile.
_MIN_TOKENS, _MIN_VOCAB = 16, 256


def _tiles(
    n_tokens: int, vocab: int, hidden: int, itemsize: int, acc: int, cpu: bool, n_logits: int
) -> tuple[int, int]:
    """(tokens, vocabulary entries) per tile within the shares above."""
    logits = n_logits * itemsize
    rows = int(_ROWS_SHARE * logits // (hidden * (itemsize + acc)))
    tok = min(n_tokens, max(_MIN_TOKENS, rows))
    cap = _TILE_SHARE * logits
    if cpu:
        cap = min(cap, _CPU_TILE_BYTES)
    per_entry = acc + (itemsize if itemsize != acc else 0)  # the tile, and its raw GEMM output
    voc = int(cap // (tok * per_entry))
    if cpu:  # the W slice too stays in cache while the token blocks pass over it
        voc = min(voc, _CPU_TILE_BYTES // (hidden * itemsize))
    return tok, min(vocab, max(_MIN_VOCAB, voc))


def _head(z: torch.Tensor, scale: float, softcap: float | None, inv_t: float) -> torch.Tensor:
    """The model's head transform, in place on the tile. Without softcapping the tile ends
    as the final logits; with it, as tanh(scale·z/c), which the backward needs, and the
    final logits are c/temperature times that."""
    if softcap is None:
        if scale * inv_t != 1.0:
            z.mul_(scale * inv_t)
        return z
    return z.mul_(scale / softcap).tanh_()


class _FusedTokenLogps(torch.autograd.Function):
    """log softmax(head(h[idx]·Wᵀ + b))[labels] for the selected rows ``idx`` of the flat
    hidden states ``h`` (N, H); tiled forward, recomputing backward.

    Both passes run vocabulary slices in the outer loop and token blocks in the inner one,
    so the LM head is read once per pass; a running (max, Σexp) per token carries the
    logsumexp across slices.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, idx, labels, scale, softcap, inv_t, tok, voc):
        acc = _acc_dtype(h.dtype)
        M = idx.shape[0]
        m = torch.full((M,), -math.inf, dtype=acc, device=h.device)
        tot = torch.zeros(M, dtype=acc, device=h.device)
        picked = torch.zeros(M, dtype=acc, device=h.device)
        for v0, v1, s, e, _, z in _logit_tiles(h, idx, weight, bias, tok, voc, acc):
            z = _head(z, scale, softcap, inv_t)
            if softcap is not None:
                z.mul_(softcap * inv_t)
            col, here = _in_tile(labels[s:e], v0, v1)
            picked[s:e] = torch.where(here, z.gather(-1, col)[:, 0], picked[s:e])
            # Online logsumexp: rescale the running sum to the new max, add this tile.
            m_new = torch.maximum(m[s:e], z.amax(-1))
            tot[s:e] = tot[s:e] * torch.exp(m[s:e] - m_new) + z.sub_(m_new[:, None]).exp_().sum(-1)
            m[s:e] = m_new
        lse = m + tot.log()
        ctx.save_for_backward(h, weight, bias, idx, labels, lse)
        ctx.head = (scale, softcap, inv_t, tok, voc)
        return picked - lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        h, weight, bias, idx, labels, lse = ctx.saved_tensors
        scale, softcap, inv_t, tok, voc = ctx.head
        acc = lse.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        # Gradients accumulate in the accumulation dtype: in place when that is the
        # parameter's own dtype, else (bf16/fp16) in float32 buffers, as TRL does.
        gh = torch.zeros(h.shape, dtype=h.dtype, device=h.device) if need_h else None
        gh_acc = (
            gh
            if gh is None or h.dtype == acc
            else torch.zeros(idx.shape[0], h.shape[1], dtype=acc, device=h.device)
        )
        gw = torch.zeros(weight.shape, dtype=acc, device=h.device) if need_w else None
        gb = torch.zeros(weight.shape[0], dtype=acc, device=h.device) if need_b else None
        g = g.to(acc)
        for v0, v1, s, e, hc, z in _logit_tiles(h, idx, weight, bias, tok, voc, acc):
            lse_c, g_c = lse[s:e, None], g[s:e, None]
            t = _head(z, scale, softcap, inv_t)
            if softcap is None:  # z is the final logit: G = g·(onehot − softmax)
                G = z.sub_(lse_c).exp_().mul_(-g_c)
            else:  # t = tanh(scale·y/c): z = c·t/temperature, dz/dy = scale·(1 − t²)/T
                G = torch.exp(t * (softcap * inv_t) - lse_c).mul_(-g_c)
            col, here = _in_tile(labels[s:e], v0, v1)
            G.scatter_add_(-1, col, (g[s:e] * here)[:, None])
            if softcap is not None:
                G.mul_(t.square_().neg_().add_(1))
            if scale * inv_t != 1.0:
                G.mul_(scale * inv_t)
            # The gradient GEMMs run in the inputs' dtype (as the model's own backward
            # does) and add into accumulation-dtype buffers.
            Gd, w = G.to(h.dtype), weight[v0:v1]
            if need_h:
                part = torch.mm(Gd, w)
                if gh_acc is gh:
                    gh.index_add_(0, idx[s:e], part)
                else:
                    gh_acc[s:e] += part
            if need_w:
                if Gd is G:
                    gw[v0:v1].addmm_(G.t(), hc)
                else:
                    gw[v0:v1] += torch.mm(Gd.t(), hc)
            if need_b:
                gb[v0:v1] += G.sum(0)
        if need_h and gh_acc is not gh:
            gh.index_add_(0, idx, gh_acc.to(h.dtype))
        gw = gw.to(weight.dtype) if need_w else None
        gb = gb.to(bias.dtype) if need_b else None
        return gh, gw, gb, None, None, None, None, None, None, None


def _in_tile(labels: torch.Tensor, v0: int, v1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(column, here): each label's column in the vocabulary tile [v0, v1) (clamped, as a
    (rows, 1) index) and whether the label lies in that tile."""
    lab = labels - v0
    here = (lab >= 0) & (lab < v1 - v0)
    return lab.clamp(0, v1 - v0 - 1)[:, None], here


_TORCH_2_8 = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 8)


def _mm_out_dtype(device: torch.device) -> bool:
    """Whether ``torch.mm(..., out_dtype=float32)`` takes bf16/fp16 inputs here (CUDA,
    torch ≥ 2.8): the tile is then never rounded to low precision."""
    return device.type == "cuda" and _TORCH_2_8


def _logit_tiles(
    h: torch.Tensor,
    idx: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tok: int,
    voc: int,
    acc: torch.dtype,
) -> Iterator[tuple[int, int, int, int, torch.Tensor, torch.Tensor]]:
    """(v0, v1, s, e, rows, z): the raw logits z = h[idx[s:e]]·W[v0:v1]ᵀ + b[v0:v1] in
    ``acc``, vocabulary slices outside and token blocks inside, so that W is read once;
    ``rows`` are the gathered hidden rows. Each z is written into one reused buffer (valid
    until the next tile); with one token block the rows are gathered once.

    Low-precision inputs are multiplied in their own dtype, as the model's own LM head
    does (the GEMM accumulates in float32 inside; on CUDA the tile is also written in
    float32), then upcast for the reduction.
    """
    M, V = idx.shape[0], weight.shape[0]
    low = h.dtype != acc and not _mm_out_dtype(h.device)
    buf = torch.empty(min(tok, M), min(voc, V), dtype=acc, device=h.device)
    raw = torch.empty_like(buf, dtype=h.dtype) if low else buf
    blocks = [(s, min(s + tok, M)) for s in range(0, M, tok)]
    single = h.index_select(0, idx) if len(blocks) == 1 else None
    for v0 in range(0, V, voc):
        v1 = min(v0 + voc, V)
        w = weight[v0:v1].t()
        for s, e in blocks:
            rows = single if single is not None else h.index_select(0, idx[s:e])
            z, r = buf[: e - s, : v1 - v0], raw[: e - s, : v1 - v0]
            if low:
                torch.mm(rows, w, out=r)
                z.copy_(r)
            elif h.dtype != acc:
                z.copy_(torch.mm(rows, w, out_dtype=acc))
            else:
                torch.mm(rows, w, out=z)
            if bias is not None:
                z.add_(bias[v0:v1])
            yield v0, v1, s, e, rows, z


def _check_head(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    _check_float("hidden", hidden, "B, T, H")
    _check_float("weight", weight, "V, H")
    if weight.shape[1] != hidden.shape[-1]:
        raise ValidationError(
            f"weight must have shape (V, H) with H = {hidden.shape[-1]} to match hidden, got "
            f"{tuple(weight.shape)}"
        )
    tensors = [("weight", weight)] + ([("bias", bias)] if bias is not None else [])
    if bias is not None:
        _check_float("bias", bias, "V")
        if bias.shape[0] != weight.shape[0]:
            raise ValidationError(
                f"bias must have shape (V,) = ({weight.shape[0]},) to match weight, got "
                f"{tuple(bias.shape)}"
            )
    for name, t in tensors:
        if t.device != hidden.device:
            raise ValidationError(
                f"{name} is on {t.device} but hidden is on {hidden.device}; expected one device"
            )
        if t.dtype != hidden.dtype:
            raise ValidationError(
                f"{name} has dtype {t.dtype} but hidden has {hidden.dtype}; expected one dtype "
                "(cast the head or the hidden states)"
            )


def _positive(name: str, value: float) -> float:
    v = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if v is None or not math.isfinite(v) or v <= 0:
        raise ValidationError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def fused_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    shift: bool = True,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    tile: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t | y_<t) from hidden states and the LM head; see
    :func:`fused_sequence_logps`.

    Returns:
      (logps, mask), both (B, T): logps in float32 (float64 for float64 inputs), zero where
      the mask is 0; with ``shift`` the last position of every row is masked.
    """
    _check_head(hidden, weight, bias)
    mask = _check_labels(labels, mask, hidden, "hidden")
    scale = _positive("logit_scale", logit_scale)
    inv_t = 1.0 / _positive("temperature", temperature)
    cap = None if softcap is None else _positive("softcap", softcap)
    (B, T, H), V = hidden.shape, weight.shape[0]
    safe, mask = _target_labels(labels, mask, V, shift)
    flat = mask.reshape(-1)
    idx = flat.nonzero()[:, 0]
    acc = _acc_dtype(hidden.dtype)
    if tile is None:
        acc_size = torch.empty((), dtype=acc).element_size()
        cpu = hidden.device.type == "cpu"
        tile = _tiles(max(1, idx.numel()), V, H, hidden.element_size(), acc_size, cpu, B * T * V)
    tok, voc = (int(t) for t in tile)
    if tok < 1 or voc < 1:
        raise ValidationError(f"tile must be two positive integers (tokens, vocab), got {tile}")
    h = hidden.reshape(B * T, H)  # a view for the usual contiguous hidden states
    lp = _FusedTokenLogps.apply(
        h, weight, bias, idx, safe.reshape(-1)[idx], scale, cap, inv_t, tok, voc
    )
    out = torch.zeros(B * T, dtype=lp.dtype, device=lp.device).index_put((idx,), lp)
    return out.view(B, T), mask


def fused_sequence_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    average: bool = False,
    shift: bool = True,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    tile: tuple[int, int] | None = None,
) -> torch.Tensor:
    """log π(y|x) = Σ_t m_t log softmax(z_t)[y_t], z_t = head(h_t·Wᵀ + b), per row, without
    the logits.

    The quantity :func:`llm.sequence_logps` computes from logits (CoPG Eq. 5, IPO-MD §6),
    computed from the final hidden states and the LM head instead, in tiles, so that
    neither the forward nor the backward holds a (B·T, V) tensor; only counted positions are
    projected. Gradients flow to ``hidden``, ``weight`` and ``bias``.

    Args:
      hidden: (B, T, H) final hidden states (after the final norm), e.g.
        ``model.model(input_ids).last_hidden_state``.
      weight: (V, H) LM-head weight (``model.get_output_embeddings().weight``), same dtype
        and device as ``hidden``.
      labels: (B, T) integer token ids, e.g. ``input_ids``; masked labels are ignored.
      mask: (B, T) bool or 0/1, which label positions count. Default ``labels != -100``.
      bias: optional (V,) LM-head bias.
      average: divide each row's sum by its number of counted tokens.
      shift: True (default): hidden[:, t] predicts labels[:, t + 1], as in Hugging Face.
      logit_scale: multiplies the logits first (Cohere's ``logit_scale``, Granite's
        1/``logits_scaling``).
      softcap: final-logit softcapping c, z ← c·tanh(z/c) (Gemma 2/3), or None.
      temperature: divides the logits last, as sampling with that temperature does.
      tile: (tokens, vocabulary entries) per tile; default a size whose token block takes
        at most 1.5% and whose tile at most 2.5% of the logits' bytes (on CPU a tile is at
        most 8 MiB), so the extra memory stays under 5% of the logits.
    Returns:
      (B,) float32 (float64 for float64 inputs): bf16/fp16 inputs are reduced in float32.
    Raises:
      ValidationError: bad shapes, dtypes or devices, a label outside the vocabulary at a
        counted position, a row with no counted token, a non-positive scale, softcap or
        temperature.
    """
    _check_flag("average", average)  # before the forward, not after it
    lp, mask = fused_token_logps(
        hidden,
        weight,
        labels,
        mask,
        bias=bias,
        shift=shift,
        logit_scale=logit_scale,
        softcap=softcap,
        temperature=temperature,
        tile=tile,
    )
    return _masked_sum(lp, mask, average, shift)


def head_transform(config) -> dict[str, float | None]:
    """``logit_scale`` and ``softcap`` read off a Hugging Face config, under the names models
    use: ``final_logit_softcapping`` (Gemma), ``logit_scale`` (Cohere), ``logits_scaling``
    (Granite divides by it)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = getattr(cfg, "logit_scale", None)
    if scale is None and getattr(cfg, "logits_scaling", None) is not None:
        scale = 1.0 / cfg.logits_scaling
    return {
        "logit_scale": 1.0 if scale is None else float(scale),
        "softcap": getattr(cfg, "final_logit_softcapping", None),
    }


def model_sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    average: bool = False,
    temperature: float = 1.0,
    **backbone_kwargs,
) -> torch.Tensor:
    """log π(y|x) per row for a Hugging Face causal LM, with the fused head: one backbone
    forward, then :func:`fused_sequence_logps` on its last hidden states, with the model's
    LM head and head transform (:func:`head_transform`). Never builds the logits.

    Gradients follow the caller's autograd mode: call it under ``torch.no_grad()`` for a
    reference model.

    Args:
      model: a ``transformers`` causal LM (``base_model`` is its backbone and
        ``get_output_embeddings()`` its head), or a PEFT wrapper of one.
      input_ids: (B, T) prompt and completion tokens.
      mask: (B, T) which tokens of ``input_ids`` count (the completion).
      attention_mask: (B, T) padding mask for the backbone.
      average, temperature: as in :func:`fused_sequence_logps`.
      backbone_kwargs: passed to the backbone (e.g. ``position_ids``).
    Returns:
      (B,) float32.
    """
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "get_output_embeddings"):
        raise ValidationError(
            f"model: expected a Hugging Face causal LM (a torch.nn.Module with "
            f"get_output_embeddings), got {type(model).__name__}"
        )
    if not (
        isinstance(input_ids, torch.Tensor)
        and input_ids.ndim == 2
        and not input_ids.dtype.is_floating_point
        and not input_ids.dtype.is_complex
        and input_ids.dtype != torch.bool
    ):
        got = (
            f"a {input_ids.ndim}-d {input_ids.dtype} tensor"
            if isinstance(input_ids, torch.Tensor)
            else type(input_ids).__name__
        )
        raise ValidationError(f"input_ids: expected a (B, T) integer tensor, got {got}")
    _check_flag("average", average)
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValidationError(
            f"model: expected a causal LM whose get_output_embeddings() is an nn.Linear, got "
            f"{type(head).__name__}"
        )
    # A PEFT model wraps the transformers model; its backbone carries the adapters.
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = inner.base_model(input_ids=input_ids, attention_mask=attention_mask, **backbone_kwargs)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    return fused_sequence_logps(
        hidden.to(head.weight.dtype),
        head.weight,
        input_ids,
        mask,
        bias=head.bias,
        average=average,
        temperature=temperature,
        **head_transform(model.config),
    )


def pair_logps(
    policy: torch.nn.Module,
    ref_model: torch.nn.Module,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    average: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy, reference) log π(y|x) per pair of completions, shaped (B/2, 2) for the pair
    losses: rows 2i and 2i + 1 of the batch are the two completions of prompt i.

    The policy's run keeps the graph; the reference's runs under ``torch.no_grad()``.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] % 2:
        raise ValidationError(
            f"input_ids must have shape (B, T) with B even (two completions per prompt), got "
            f"{tuple(getattr(input_ids, 'shape', ()))}"
        )
    kw = {"attention_mask": attention_mask, "average": average}
    logps = model_sequence_logps(policy, input_ids, mask, **kw)
    with torch.no_grad():
        ref = model_sequence_logps(ref_model, input_ids, mask, **kw)
    return logps.view(-1, 2), ref.view(-1, 2)
