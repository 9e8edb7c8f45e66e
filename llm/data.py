"""Datasets for :class:`llm.trainer.PairwiseTrainer`: columns, tokenisation, the collator, and
the one helper between TRL's batch layout and ours.

Dataset columns (a ``datasets.Dataset``; text, or lists of token ids when no tokenizer is
given; local data only):

- TRL's preference columns ``prompt``, ``chosen``, ``rejected`` (preference 1 for chosen):
  ``ipo``, ``dpo``, ``slic``.
- Soft preference pairs ``prompt``, ``completion_a``, ``completion_b``, ``preference``
  (p(a ≻ b) in [0, 1]): the same methods.
- Unranked reward pairs ``prompt``, ``completion_a``, ``completion_b``, ``reward_a``,
  ``reward_b``: ``copg``, ``pg``, ``pg_value``.
- Prompt-only ``prompt``: the online methods, which generate and score their completions.

Optional in every format: ``weight`` (≥ 0, the pair's weight in the batch mean, see
:class:`llm.trainer.PairwiseTrainer`), and for ``pg_value`` ``baseline`` (the value
baseline E_π[R] of the prompt). ``chosen``/``rejected`` is the pair (chosen, rejected) with
preference 1. An online method given a dataset with completions uses them as its samples
(e.g. every pair of an enumerable problem with exact weights) instead of generating.

Tokenised rows (:func:`tokenize_dataset`): ``prompt_ids``, ``completion_ids`` (one list per
completion), and ``rewards`` / ``preference`` / ``weight`` / ``baseline`` where given.

The collated batch (:class:`PairCollator`), B prompts, k completions each (k = 2 for pairs),
pair on axis 1 — this package's layout, the losses' ``(..., k)``:

- ``input_ids`` (B, k, T) long: prompt then completion, right-padded with ``pad_token_id``.
- ``attention_mask`` (B, k, T) long: 1 on real tokens.
- ``completion_mask`` (B, k, T) bool: 1 on completion tokens (the ones whose log-probs count).
- ``rewards`` (B, k) float64; or ``preference`` (B,) float64, p(completion 0 ≻ completion 1).
- ``weight`` (B,) float64 and ``baseline`` (B,) float64 when the dataset has them.
- ``prompt_input_ids`` (B, P) long and ``prompt_attention_mask`` (B, P) long: the prompts
  alone, left-padded, for generation (online methods, and the KL estimate).
- ``prompt`` (list of B): the prompts as given (text or ids), for ``reward_fn``.

Offline rows are absent from a prompt-only batch. Flattening (B, k, T) to (B·k, T) puts the
k completions of prompt i in rows k·i … k·i + k − 1, the layout of :func:`llm.pair_logps`.

TRL's trainers instead concatenate a batch as all chosen rows then all rejected rows,
[c₀ … c_{B−1}, r₀ … r_{B−1}]. :func:`from_trl_layout` and :func:`to_trl_layout` convert,
and :func:`check_pairs` catches a mispaired batch (two completions of one pair whose
prompts differ).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bandit.methods import Method, get_method
from bandit.validation import ValidationError

__all__ = [
    "PairCollator",
    "check_pairs",
    "dataset_format",
    "from_trl_layout",
    "to_trl_layout",
    "tokenize_dataset",
    "tokenize_row",
]


# ----------------------------------------------------------------- TRL layout <-> ours


def _paired_rows(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValidationError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValidationError(f"{name} must have at least one axis, got a 0-d tensor")
    return x


def from_trl_layout(x: torch.Tensor) -> torch.Tensor:
    """TRL's concatenated batch (2B, ...) = [chosen₀ … chosen_{B−1}, rejected₀ … rejected_{B−1}]
    to ours, (B, 2, ...) with ``[:, 0]`` chosen and ``[:, 1]`` rejected.

    The inverse of :func:`to_trl_layout`. A plain ``x.view(B, 2, ...)`` would pair chosen₀
    with chosen₁: :func:`check_pairs` catches that.
    """
    x = _paired_rows("x", x)
    if x.shape[0] % 2:
        raise ValidationError(
            f"x must have an even number of rows (B chosen then B rejected), got {x.shape[0]}"
        )
    return x.unflatten(0, (2, x.shape[0] // 2)).transpose(0, 1)


def to_trl_layout(x: torch.Tensor) -> torch.Tensor:
    """Ours, (B, 2, ...) with the pair on axis 1, to TRL's (2B, ...): all completions 0 (chosen),
    then all completions 1 (rejected). The inverse of :func:`from_trl_layout`."""
    x = _paired_rows("x", x)
    if x.ndim < 2 or x.shape[1] != 2:
        raise ValidationError(f"x must have shape (B, 2, ...), got {tuple(x.shape)}")
    return x.transpose(0, 1).flatten(0, 1)


def check_pairs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> None:
    """Refuse a batch (B, k, T) whose k completions of one prompt do not share the prompt.

    The prompt of a row is its tokens with attention 1 and completion 0. A mispaired batch
    (e.g. TRL's layout reshaped as ours without :func:`from_trl_layout`) pairs completions of
    different prompts; unless those prompts are equal, this raises, naming the pair.
    """
    for name, x in (
        ("input_ids", input_ids),
        ("attention_mask", attention_mask),
        ("completion_mask", completion_mask),
    ):
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ValidationError(f"{name} must be a (B, k, T) tensor, got {_describe(x)}")
        if x.shape != input_ids.shape:
            raise ValidationError(
                f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(x.shape)}"
            )
    prompt = attention_mask.bool() & ~completion_mask.bool()
    lengths = prompt.sum(-1)  # (B, k)
    # Prompts come first in every row, so equal prompts are equal lengths and equal tokens.
    tokens = torch.where(prompt, input_ids, torch.full_like(input_ids, -1))
    same = (lengths == lengths[:, :1]).all(-1) & (tokens == tokens[:, :1]).all(-1).all(-1)
    if not bool(same.all()):
        i = int((~same).nonzero()[0])
        raise ValidationError(
            f"input_ids: the completions of pair {i} have different prompts (lengths "
            f"{lengths[i].tolist()}); the batch is mispaired — convert TRL's chosen-then-"
            "rejected layout with llm.data.from_trl_layout"
        )


# ----------------------------------------------------------------- formats


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def dataset_format(columns: Sequence[str], method: str | Method) -> str:
    """``"preference"``, ``"soft_preference"``, ``"reward"`` or ``"prompt"``: the format of a
    dataset with ``columns`` for ``method``, or a ValidationError naming what is missing."""
    m = get_method(method)
    cols = set(columns)
    if "prompt" not in cols:
        raise ValidationError(f"train_dataset: missing column 'prompt' (columns: {sorted(cols)})")
    pairs = {"completion_a", "completion_b"} <= cols
    trl = {"chosen", "rejected"} <= cols
    if m.signal == "reward":
        if pairs and {"reward_a", "reward_b"} <= cols:
            return "reward"
        if m.offline or pairs:
            need = ["completion_a", "completion_b", "reward_a", "reward_b"]
            missing = [c for c in need if c not in cols]
            raise ValidationError(
                f"train_dataset: method {m.name!r} learns from rewards and needs columns "
                f"'prompt', {', '.join(repr(c) for c in need)}; missing "
                f"{', '.join(repr(c) for c in missing)}"
            )
        return "prompt"
    if trl:
        return "preference"
    if pairs and "preference" in cols:
        return "soft_preference"
    if m.offline or pairs:
        raise ValidationError(
            f"train_dataset: method {m.name!r} learns from preferences and needs columns "
            "'prompt', 'chosen', 'rejected' (TRL's) or 'prompt', 'completion_a', "
            f"'completion_b', 'preference'; got {sorted(cols)}"
        )
    return "prompt"


_COMPLETIONS = {
    "preference": ("chosen", "rejected"),
    "soft_preference": ("completion_a", "completion_b"),
    "reward": ("completion_a", "completion_b"),
    "prompt": (),
}


def _ids(name: str, value: object, tokenizer: Any, special: bool) -> list[int]:
    """Token ids of a text (with ``tokenizer``) or of a list of ids (as given)."""
    if isinstance(value, str):
        if tokenizer is None:
            raise ValidationError(
                f"{name}: got text {value[:40]!r} but no processing_class (tokenizer) to "
                "tokenise it; pass one, or give token ids (lists of int)"
            )
        return list(tokenizer(value, add_special_tokens=special)["input_ids"])
    if isinstance(value, Sequence) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) and t >= 0 for t in value
    ):
        return [int(t) for t in value]
    raise ValidationError(
        f"{name} must be a string or a list of token ids (int >= 0), got "
        f"{type(value).__name__} {str(value)[:60]}"
    )


def _number(name: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and low <= v <= high):
        want = "finite" if math.isinf(low) and math.isinf(high) else f"in [{low:g}, {high:g}]"
        raise ValidationError(f"{name} must be {want}, got {v!r}")
    return v


def tokenize_row(
    row: Mapping[str, Any],
    fmt: str,
    tokenizer: Any = None,
    *,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
    eos_token_id: int | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """One dataset row as ``prompt_ids``, ``completion_ids`` (list of k lists) and its labels.

    Texts are tokenised with ``tokenizer`` (the prompt with its special tokens, completions
    without, then ``eos_token_id`` appended if given); lists of ids are taken as they are.
    Prompts keep their last ``max_prompt_length`` tokens, completions their first
    ``max_completion_length``. Empty prompts or completions are refused.
    """
    at = "" if index is None else f" (row {index})"
    prompt = _ids(f"prompt{at}", row["prompt"], tokenizer, True)
    if max_prompt_length is not None:
        prompt = prompt[-max_prompt_length:]
    if not prompt:
        raise ValidationError(
            f"prompt{at} is empty: a causal LM needs at least one prompt token (e.g. BOS) "
            "before the completion"
        )
    out: dict[str, Any] = {"prompt": row["prompt"], "prompt_ids": prompt}
    completions = []
    for col in _COMPLETIONS[fmt]:
        ids = _ids(f"{col}{at}", row[col], tokenizer, False)
        if eos_token_id is not None and isinstance(row[col], str):
            ids = [*ids, int(eos_token_id)]
        if max_completion_length is not None:
            ids = ids[:max_completion_length]
        if not ids:
            raise ValidationError(f"{col}{at} is empty: every completion needs a token")
        completions.append(ids)
    if completions:
        out["completion_ids"] = completions
    if fmt == "reward":
        out["rewards"] = [_number(f"{c}{at}", row[c]) for c in ("reward_a", "reward_b")]
    elif fmt == "preference":
        out["preference"] = 1.0
    elif fmt == "soft_preference":
        out["preference"] = _number(f"preference{at}", row["preference"], 0.0, 1.0)
    if "weight" in row:
        out["weight"] = _number(f"weight{at}", row["weight"], 0.0)
    if "baseline" in row:
        out["baseline"] = _number(f"baseline{at}", row["baseline"])
    return out


def tokenize_dataset(
    dataset: Any,
    method: str | Method,
    tokenizer: Any = None,
    *,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
    append_eos: bool = True,
) -> Any:
    """``dataset`` (a ``datasets.Dataset``) tokenised for ``method`` (:func:`tokenize_row` on
    every row), with only the tokenised columns kept. With ``append_eos``, text completions
    end with the tokenizer's EOS (as the model's own samples do)."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise ValidationError(
            f"train_dataset must be a datasets.Dataset, got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValidationError("train_dataset is empty")
    fmt = dataset_format(dataset.column_names, method)
    kw = {
        "max_prompt_length": max_prompt_length,
        "max_completion_length": max_completion_length,
        "eos_token_id": getattr(tokenizer, "eos_token_id", None) if append_eos else None,
    }
    return dataset.map(
        lambda row, i: tokenize_row(row, fmt, tokenizer, index=i, **kw),
        with_indices=True,
        remove_columns=dataset.column_names,
        desc="tokenising",
    )


# ----------------------------------------------------------------- collator


@dataclass
class PairCollator:
    """Pads tokenised rows into the batch documented in :mod:`llm.data` (this package's
    layout, completions on axis 1) and checks the pairing (:func:`check_pairs`)."""

    pad_token_id: int = 0

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValidationError("rows: an empty batch")
        pad = self.pad_token_id
        prompts = [list(r["prompt_ids"]) for r in rows]
        P = max(map(len, prompts))
        batch: dict[str, Any] = {
            "prompt_input_ids": torch.tensor([[pad] * (P - len(p)) + p for p in prompts]),
            "prompt_attention_mask": torch.tensor(
                [[0] * (P - len(p)) + [1] * len(p) for p in prompts]
            ),
            "prompt": [r["prompt"] for r in rows],
        }
        if "completion_ids" in rows[0]:
            seqs = [
                [p + list(c) for c in r["completion_ids"]]
                for p, r in zip(prompts, rows, strict=True)
            ]
            T = max(len(s) for pair in seqs for s in pair)
            batch["input_ids"] = torch.tensor(
                [[s + [pad] * (T - len(s)) for s in pair] for pair in seqs]
            )
            batch["attention_mask"] = torch.tensor(
                [[[1] * len(s) + [0] * (T - len(s)) for s in pair] for pair in seqs]
            )
            batch["completion_mask"] = torch.tensor(
                [
                    [
                        [False] * len(p) + [True] * (len(s) - len(p)) + [False] * (T - len(s))
                        for s in pair
                    ]
                    for p, pair in zip(prompts, seqs, strict=True)
                ]
            )
            check_pairs(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        for key in ("rewards", "preference", "weight", "baseline"):
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        return batch
