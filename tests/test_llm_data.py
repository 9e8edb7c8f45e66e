"""llm.data: the TRL layout helpers, the pairing check, the formats, tokenisation and the
collated batch."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from hypothesis import given
from hypothesis import strategies as st

from bandit import METHODS, get_method
from bandit.validation import ValidationError
from llm import _trainer_ddp as T
from llm.data import (
    PairCollator,
    check_pairs,
    dataset_format,
    from_trl_layout,
    to_trl_layout,
    tokenize_dataset,
    tokenize_row,
)

ids = st.lists(st.integers(2, 50), min_size=1, max_size=5)


@given(b=st.integers(1, 6), extra=st.lists(st.integers(1, 3), max_size=2), seed=st.integers(0, 99))
def test_trl_layout_round_trip_is_the_identity(b, extra, seed):
    x = torch.randn(2 * b, *extra, generator=torch.Generator().manual_seed(seed))
    ours = from_trl_layout(x)
    assert ours.shape == (b, 2, *extra)
    # Row i of TRL's first half is completion 0 (chosen) of pair i, row B + i completion 1.
    assert torch.equal(ours[:, 0], x[:b]) and torch.equal(ours[:, 1], x[b:])
    assert torch.equal(to_trl_layout(ours), x)
    assert torch.equal(from_trl_layout(to_trl_layout(ours)), ours)


def _batch(prompts, chosen, rejected, pad=0):
    """A collated batch of (chosen, rejected) pairs, and the same rows in TRL's layout."""
    rows = [
        {"prompt": p, "prompt_ids": p, "completion_ids": [c, r]}
        for p, c, r in zip(prompts, chosen, rejected, strict=True)
    ]
    batch = PairCollator(pad)(rows)
    trl = {k: to_trl_layout(batch[k]) for k in ("input_ids", "attention_mask", "completion_mask")}
    return batch, trl


@given(
    prompts=st.lists(ids, min_size=2, max_size=5, unique_by=tuple),
    data=st.data(),
)
def test_check_pairs_accepts_from_trl_layout_and_catches_a_plain_reshape(prompts, data):
    n = len(prompts)
    chosen = data.draw(st.lists(ids, min_size=n, max_size=n))
    rejected = data.draw(st.lists(ids, min_size=n, max_size=n))
    batch, trl = _batch(prompts, chosen, rejected)
    converted = [
        from_trl_layout(trl[k]) for k in ("input_ids", "attention_mask", "completion_mask")
    ]
    check_pairs(*converted)  # the helper pairs them right
    assert torch.equal(converted[0], batch["input_ids"])
    # Negative control: reading TRL's rows as ours by a reshape pairs chosen₀ with chosen₁,
    # completions of two different prompts (the prompts are distinct): caught.
    naive = [trl[k].view(n, 2, -1) for k in ("input_ids", "attention_mask", "completion_mask")]
    with pytest.raises(ValidationError, match="mispaired"):
        check_pairs(*naive)


def test_collated_batch_layout():
    prompts, a, b = [[5, 6], [7]], [[8], [9, 9, 9]], [[10, 11], [12]]
    batch, _ = _batch(prompts, a, b, pad=0)
    assert batch["input_ids"].shape == (2, 2, 4)
    assert batch["input_ids"][1, 1].tolist() == [7, 12, 0, 0]
    assert batch["completion_mask"][0, 1].tolist() == [False, False, True, True]
    assert batch["attention_mask"][1, 1].tolist() == [1, 1, 0, 0]
    # The prompts alone, left-padded for generation.
    assert batch["prompt_input_ids"].tolist() == [[5, 6], [0, 7]]
    assert batch["prompt_attention_mask"].tolist() == [[1, 1], [0, 1]]
    # Completion tokens are exactly the completions, in order.
    for i, (c0, c1) in enumerate(zip(a, b, strict=True)):
        for j, c in enumerate((c0, c1)):
            assert batch["input_ids"][i, j][batch["completion_mask"][i, j]].tolist() == c


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_reads_its_format(method):
    m = get_method(method)
    ds = Dataset.from_dict(T.columns(method, rows=3))
    fmt = dataset_format(ds.column_names, method)
    want = "prompt" if not m.offline else ("reward" if m.signal == "reward" else "preference")
    assert fmt == want
    rows = tokenize_dataset(ds, method)
    batch = PairCollator(0)([rows[i] for i in range(3)])
    if m.offline:
        assert batch["input_ids"].shape[:2] == (3, 2)
        key = "rewards" if m.signal == "reward" else "preference"
        assert batch[key].dtype == torch.float64
    else:
        assert "input_ids" not in batch and batch["prompt_input_ids"].shape[0] == 3


def test_soft_preferences_weights_and_text():
    tok = T.char_tokenizer()
    ds = Dataset.from_dict(
        {
            "prompt": ["ab", "c"],
            "completion_a": ["d", "ef"],
            "completion_b": ["g", "h"],
            "preference": [0.25, 1.0],
            "weight": [2.0, 0.0],
        }
    )
    rows = tokenize_dataset(ds, "ipo", tok)
    assert rows[0]["prompt_ids"] == [2, 3]
    assert rows[0]["completion_ids"] == [[5, T.EOS], [8, T.EOS]]  # EOS appended to text
    batch = PairCollator(tok.pad_token_id)([rows[0], rows[1]])
    assert batch["preference"].tolist() == [0.25, 1.0]
    assert batch["weight"].tolist() == [2.0, 0.0]


@pytest.mark.parametrize(
    ("columns", "method", "match"),
    [
        ({"chosen": [[2]], "rejected": [[3]]}, "dpo", "missing column 'prompt'"),
        ({"prompt": [[2]], "chosen": [[2]]}, "dpo", "needs columns"),
        ({"prompt": [[2]], "chosen": [[2]], "rejected": [[3]]}, "copg", "missing 'completion_a'"),
        ({"prompt": [[2]], "completion_a": [[2]], "completion_b": [[3]]}, "copg", "'reward_a'"),
    ],
)
def test_missing_columns_are_named(columns, method, match):
    with pytest.raises(ValidationError, match=match):
        tokenize_dataset(Dataset.from_dict(columns), method)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"prompt": [2], "chosen": [], "rejected": [3]}, "chosen .row 0. is empty"),
        ({"prompt": [], "chosen": [2], "rejected": [3]}, "prompt .row 0. is empty"),
        ({"prompt": "ab", "chosen": [2], "rejected": [3]}, "no processing_class"),
        ({"prompt": [2], "chosen": [2.5], "rejected": [3]}, "list of token ids"),
        ({"prompt": [2], "chosen": [-1], "rejected": [3]}, "list of token ids"),
        ({"prompt": [2], "chosen": [2], "rejected": [3], "weight": -1.0}, "weight .row 0."),
    ],
)
def test_bad_rows_are_refused(row, match):
    with pytest.raises(ValidationError, match=match):
        tokenize_row(row, "preference", index=0)


def test_bad_labels_are_refused():
    base = {"prompt": [2], "completion_a": [2], "completion_b": [3]}
    with pytest.raises(ValidationError, match=r"preference \(row 0\) must be in"):
        tokenize_row({**base, "preference": 1.5}, "soft_preference", index=0)
    with pytest.raises(ValidationError, match=r"reward_a \(row 0\) must be finite"):
        tokenize_row({**base, "reward_a": float("nan"), "reward_b": 0.0}, "reward", index=0)
    with pytest.raises(ValidationError, match=r"reward_b \(row 0\) must be a real number"):
        tokenize_row({**base, "reward_a": 1.0, "reward_b": "1"}, "reward", index=0)


def test_layout_helpers_refuse_bad_shapes():
    with pytest.raises(ValidationError, match="even number of rows"):
        from_trl_layout(torch.zeros(3, 4))
    with pytest.raises(ValidationError, match=r"shape \(B, 2, \.\.\.\)"):
        to_trl_layout(torch.zeros(3, 3, 4))
    with pytest.raises(ValidationError, match=r"torch\.Tensor"):
        from_trl_layout([1, 2])
