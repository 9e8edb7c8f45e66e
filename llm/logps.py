"""Per-sequence log-probabilities from causal-LM logits, without a [B, T, V] log-softmax copy.

log π(y|x) = Σ_t m_t · log π(y_t | x, y_<t) is the quantity every pairwise loss consumes
(CoPG Eq. 5, IPO-MD Eq. 8 and §6: "log π_θ(y|x)" is a sum over the tokens of y). Each token
term is ``log_softmax(logits)[y_t]``. We compute the log-softmax a chunk of rows of the
flattened batch·time axis at a time, upcast to float32 (float64 stays float64) into one
reused buffer and transformed in place, and keep only the label entry, so the extra memory
is that buffer (at most 7% of the logits), not a copy of the logits. The backward pass
recomputes the softmax chunk by chunk: ∂ log π(y_t)/∂ logits = onehot(y_t) − softmax(logits)
(a custom :class:`torch.autograd.Function`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from bandit.validation import ValidationError

__all__ = ["IGNORE_INDEX", "sequence_logps", "token_logps"]

#: The label value Hugging Face uses for "no token here"; the default mask drops it.
IGNORE_INDEX = -100
#: The one float32 work buffer (a chunk of rows) is at most ``_CHUNK_SHARE`` of the logits'
#: size, far below the 10% memory budget, and on CPU at most ``_CPU_CHUNK_BYTES`` so that it
#: stays in cache. On a GPU only the share applies: there each chunk costs kernel launches.
_CHUNK_SHARE = 0.07
_CPU_CHUNK_BYTES = 8 * 2**20


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else (fp32, bf16, fp16) is fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk_rows(
    n_rows: int, vocab: int, itemsize: int, acc_itemsize: int, cap_bytes: int | None
) -> int:
    """Rows per chunk: the work buffer stays under ``_CHUNK_SHARE`` of the logits and
    ``cap_bytes`` (if given)."""
    rows = int(_CHUNK_SHARE * n_rows * itemsize / acc_itemsize)
    if cap_bytes is not None:
        rows = min(rows, cap_bytes // (vocab * acc_itemsize))
    return max(1, min(n_rows, rows))


def _row_blocks(x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """The rows of (B, T, V) ``x`` as (offset, (n, V) view) blocks, in (B, T) order.

    One block when B and T merge into one strided axis (contiguous logits, or a vocabulary
    slice ``logits[..., :V]``); otherwise one per sequence (e.g. ``logits[:, :-1]``), where
    ``reshape`` would copy the whole logits.
    """
    B, T = x.shape[:2]
    if B == 1 or T == 1 or x.stride(0) == T * x.stride(1):
        return [(0, x.flatten(0, 1))]  # a view: the two axes merge
    return [(b * T, x[b]) for b in range(B)]


def _upcast_chunks(x: torch.Tensor, rows: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(s, e, chunk): rows s..e of the flat B·T axis of ``x``, at most ``rows`` at a time,
    upcast to the accumulation dtype into one reused buffer (valid until the next chunk)."""
    n, V = x.shape[0] * x.shape[1], x.shape[-1]
    buf = torch.empty(min(rows, n), V, dtype=_acc_dtype(x.dtype), device=x.device)
    for start, block in _row_blocks(x):
        for s in range(0, block.shape[0], rows):
            part = block[s : s + rows]
            yield start + s, start + s + part.shape[0], buf[: part.shape[0]].copy_(part)


class _TokenLogps(torch.autograd.Function):
    """Token log-probs log softmax(x)[label] for the rows of x (B, T, V); memory-light backward.

    Forward: each chunk of rows is upcast into one reused buffer and log-softmaxed in place;
    only the label entries are kept. Backward: ∂ log softmax(x)[y] / ∂x = onehot(y) −
    softmax(x), recomputed the same way, chunk by chunk, into the gradient. ``labels`` and
    the output are flat over the B·T rows.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, labels: torch.Tensor, rows: int) -> torch.Tensor:
        out = torch.empty(labels.shape[0], 1, dtype=_acc_dtype(x.dtype), device=x.device)
        for s, e, b in _upcast_chunks(x, rows):
            torch.log_softmax(b, -1, out=b)  # in place: no second buffer
            torch.gather(b, -1, labels[s:e, None], out=out[s:e])
        ctx.save_for_backward(x, labels)
        ctx.rows = rows
        return out[:, 0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        x, labels = ctx.saved_tensors
        grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        flat = grad.view(-1, x.shape[-1])
        for s, e, b in _upcast_chunks(x, ctx.rows):
            gs = g[s:e].to(b.dtype)[:, None]
            torch.softmax(b, -1, out=b).mul_(-gs)
            b.scatter_add_(-1, labels[s:e, None], gs)
            flat[s:e] = b
        return grad, None, None


def _check_flag(name: str, value: object) -> None:
    """``value`` is a bool (a NumPy bool too), not a string or a number that looks like one."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationError(f"{name} must be True or False, got {value!r}")


def _check_matches(name: str, t: torch.Tensor, like: torch.Tensor, like_name: str) -> None:
    """``t`` has the (B, T) of ``like`` (logits or hidden states) and lives on its device."""
    B, T = like.shape[:2]
    if tuple(t.shape) != (B, T):
        raise ValidationError(
            f"{name} must have shape (B, T) = {(B, T)} to match {like_name}, got {tuple(t.shape)}"
        )
    if t.device != like.device:
        raise ValidationError(
            f"{name} is on {t.device} but {like_name} is on {like.device}; expected one device"
        )


def _check_float(name: str, x: torch.Tensor, shape: str) -> None:
    """``x`` is a floating-point tensor with the ``len(shape)`` dims its name says."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValidationError(
            f"{name} must be a floating-point torch.Tensor, got "
            f"{getattr(x, 'dtype', type(x).__name__)}"
        )
    if x.ndim != shape.count(",") + 1:
        raise ValidationError(f"{name} must have shape ({shape}), got {tuple(x.shape)}")


def _check_labels(
    labels: torch.Tensor, mask: torch.Tensor | None, like: torch.Tensor, like_name: str
) -> torch.Tensor:
    """Checks integer (B, T) ``labels`` and a 0/1 ``mask`` against ``like``; returns the mask
    as bool (default ``labels != IGNORE_INDEX``)."""
    if (
        not isinstance(labels, torch.Tensor)
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise ValidationError(
            f"labels must be an integer torch.Tensor, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    _check_matches("labels", labels, like, like_name)
    if mask is None:
        return labels != IGNORE_INDEX
    if not isinstance(mask, torch.Tensor):
        raise ValidationError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    _check_matches("mask", mask, like, like_name)
    if mask.dtype != torch.bool:
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise ValidationError(f"mask must hold 0/1 values, got {mask[idx].item()} at {idx}")
        mask = mask != 0
    return mask


def _target_labels(
    labels: torch.Tensor, mask: torch.Tensor, vocab: int, shift: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, mask) aligned with the positions that score them: with ``shift``, position t
    scores labels[:, t + 1] and the last position of each row is masked. Raises on a label
    outside [0, vocab) at a counted position; masked labels become 0 (int64)."""
    _check_flag("shift", shift)
    if shift:
        # Shift the (small) labels and mask, never the logits or hidden states.
        labels = torch.cat([labels[:, 1:], torch.zeros_like(labels[:, :1])], dim=1)
        mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    bad = mask & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        where = f"labels[{b}, {t + 1 if shift else t}]"
        raise ValidationError(
            f"{where} = {int(labels[b, t])} is outside the vocabulary [0, {vocab}) at an "
            "unmasked position; mask it out or fix the label"
        )
    return torch.where(mask, labels, torch.zeros_like(labels)).long(), mask


def _masked_sum(lp: torch.Tensor, mask: torch.Tensor, average: bool, shift: bool) -> torch.Tensor:
    """Σ_t m_t lp_t per row (or its mean over the counted tokens); raises on an empty row."""
    counts = mask.sum(dim=-1)
    empty = counts == 0
    if bool(empty.any()):
        rows = [int(i) for i in empty.nonzero()[:, 0][:8]]
        hint = " after the causal shift" if shift else ""
        raise ValidationError(
            f"mask: row(s) {rows} have no tokens{hint}; every sequence needs at least one "
            "counted completion token"
        )
    total = lp.sum(dim=-1)
    return total / counts.to(total.dtype) if average else total


def token_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    shift: bool = True,
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities log π(y_t | y_<t) and the mask they count under.

    Args: see :func:`sequence_logps`.
    Returns:
      (logps, mask), both of shape (B, T): logps in float32 (float64 for float64 logits),
      zero where the mask is 0; with ``shift`` the last position of every row is masked.
    """
    _check_float("logits", logits, "B, T, V")
    mask = _check_labels(labels, mask, logits, "logits")
    B, T, V = logits.shape
    safe, mask = _target_labels(labels, mask, V, shift)
    safe = safe.reshape(-1)
    acc = _acc_dtype(logits.dtype)
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, (int, np.integer))
        or chunk_rows < 1
    ):
        raise ValidationError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
    if chunk_rows is None:
        acc_size = torch.empty((), dtype=acc).element_size()
        cap = _CPU_CHUNK_BYTES if logits.device.type == "cpu" else None
        chunk_rows = _chunk_rows(B * T, V, logits.element_size(), acc_size, cap)
    lp = _TokenLogps.apply(logits, safe, int(chunk_rows)).reshape(B, T)
    return torch.where(mask, lp, torch.zeros_like(lp)), mask


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    average: bool = False,
    shift: bool = True,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """log π(y|x) = Σ_t m_t log π(y_t | x, y_<t) for each row of a causal-LM batch.

    The papers' losses use the summed sequence log-probability (CoPG Eq. 5, IPO-MD §6);
    ``average=True`` gives the length-averaged Σ_t m_t log π(y_t|·) / Σ_t m_t instead.

    Never materialises a [B, T, V] log-softmax: it is computed in row chunks upcast to
    float32 (bf16/fp16 inputs) and the backward recomputes the softmax the same way.
    Strided logits are read in place, never copied: ``logits[:, :-1]`` with
    ``shift=False``, a vocabulary slice, a batch slice. Gradients flow to ``logits`` only.

    Args:
      logits: (B, T, V) floating point, e.g. ``model(input_ids).logits``.
      labels: (B, T) integer token ids, e.g. ``input_ids``. Labels at masked positions are
        ignored (they may be −100).
      mask: (B, T) bool or 0/1: which label positions count (1 for completion tokens, 0 for
        prompt and padding). Default: ``labels != -100``.
      average: divide each row's sum by its number of counted tokens.
      shift: True (default) for the causal-LM convention where logits[:, t] predicts
        labels[:, t + 1] (pass ``labels=input_ids``, as Hugging Face does); False when
        logits[:, t] already scores labels[:, t].
      chunk_rows: rows of the flattened B·T axis per chunk (default: a size whose float32
        work buffer is at most 7% of the logits and, on CPU, 8 MiB).
    Returns:
      (B,) float32 (float64 for float64 logits).
    Raises:
      ValidationError: bad shapes, dtypes or devices, a label outside the vocabulary at a
        counted position, or a row with no counted token.
    """
    _check_flag("average", average)
    lp, mask = token_logps(logits, labels, mask, shift=shift, chunk_rows=chunk_rows)
    return _masked_sum(lp, mask, average, shift)
