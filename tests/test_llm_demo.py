"""The end-to-end demo, shortened: it runs, writes figure and JSON, is reproducible, and
rejects bad input with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm import demo

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    "--steps", "4", "--warmup-steps", "6", "--pairs", "24", "--batch", "8",
    "--eval-every", "2", "--eval-prompts", "16", "--digits", "3",
]  # fmt: skip


def test_sort_reward_is_the_three_unit_tests():
    assert demo.sort_reward("3142", "1234") == 1.0
    assert demo.sort_reward("3142", "4321") == pytest.approx(2 / 3)  # length, permutation
    assert demo.sort_reward("3142", "1111") == pytest.approx(2 / 3)  # length, sorted
    assert demo.sort_reward("3142", "") == pytest.approx(1 / 3)  # only "sorted" holds
    assert demo.sort_reward("3142", "91") == pytest.approx(0.0)


def test_short_demo_writes_outputs_and_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert demo.run([*SHORT, "--out", str(a)]) == 0
    assert demo.run([*SHORT, "--out", str(b)]) == 0
    for ext in ("png", "pdf", "json"):
        assert (a / f"llm_demo.{ext}").stat().st_size > 0
    ja, jb = ((p / "llm_demo.json").read_text() for p in (a, b))
    assert ja == jb  # same seed, same bytes
    res = json.loads(ja)
    for m in demo.METHODS:
        c = res["curves"][m]
        assert c["step"] == [0, 2, 4]
        assert len(c["loss"]) == 4
        # At step 0 every policy is π_ref: same samples, same reward, KL exactly 0.
        assert c["reward"][0] == res["ref_reward"]
        assert c["kl"][0] == 0.0
    assert 0.0 <= res["dataset"]["mean_reward"] <= 1.0
    # Negative control: another seed gives other data.
    assert demo.run([*SHORT, "--seed", "1", "--out", str(b)]) == 0
    assert (b / "llm_demo.json").read_text() != ja


def test_local_checkpoint_via_model_flag(tmp_path):
    """--model loads a local checkpoint and tokenizer (saved here; nothing downloaded)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    args = demo._parser().parse_args([])
    model, char_tok = demo.build_model(args)
    vocab = {c: i for i, c in enumerate(char_tok.vocab)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    hf.save_pretrained(ckpt)
    out = tmp_path / "out"
    assert demo.run([*SHORT, "--model", str(ckpt), "--out", str(out)]) == 0
    assert json.loads((out / "llm_demo.json").read_text())["config"]["model"] == str(ckpt)


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
        (["--beta", "-1"], "--beta must be finite and > 0"),
        (["--batch", "99", "--pairs", "10"], "exceeds --pairs"),
        (["--device", "tpu"], "--device must be cpu or cuda"),
        (["--model", "/nonexistent/ckpt"], "--model"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, msg, capsys):
    assert demo.run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_help_runs():
    r = subprocess.run(
        [sys.executable, "-m", "llm.demo", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0 and "--model" in r.stdout
