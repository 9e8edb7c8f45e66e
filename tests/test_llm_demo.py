"""The end-to-end demo, shortened: offline and online methods over seeds; it runs, writes
figure and JSON, is reproducible, and rejects bad input with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm import demo

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    "--steps", "4", "--warmup-steps", "4", "--pairs", "8", "--batch", "4",
    "--eval-every", "2", "--eval-prompts", "8", "--digits", "3", "--seeds", "2",
]  # fmt: skip
#: One offline method and the online sampler that uses both π and the mixture.
FEW = ["--methods", "copg,nash_md_pg"]


def test_sort_reward_is_the_three_unit_tests():
    assert demo.sort_reward("3142", "1234") == 1.0
    assert demo.sort_reward("3142", "4321") == pytest.approx(2 / 3)  # length, permutation
    assert demo.sort_reward("3142", "1111") == pytest.approx(2 / 3)  # length, sorted
    assert demo.sort_reward("3142", "") == pytest.approx(1 / 3)  # only "sorted" holds
    assert demo.sort_reward("3142", "91") == pytest.approx(0.0)


def test_every_method_over_seeds(tmp_path):
    """Every default method, offline and online, over 2 seeds: curves are the seeds' mean,
    bands their sd."""
    assert demo.run([*SHORT, "--out", str(tmp_path)]) == 0
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"llm_demo.{ext}").stat().st_size > 0
    res = json.loads((tmp_path / "llm_demo.json").read_text())
    assert res["config"]["methods"] == list(demo.METHODS)
    assert sorted(res["curves"]) == sorted(demo.METHODS)  # (the JSON sorts its keys)
    assert set(demo.ONLINE) <= set(res["curves"])
    for m in demo.METHODS:
        c = res["curves"][m]
        assert c["step"] == [0, 2, 4]
        assert len(c["loss"]) == 4
        assert c["reward"][0] == res["ref_reward"] and c["kl"][0] == 0.0  # step 0 is π_ref
        runs = res["runs"][m]
        assert len(runs) == 2
        r = np.array([run["reward"] for run in runs])
        assert np.allclose(c["reward"], r.mean(0)) and np.allclose(c["reward_sd"], r.std(0, ddof=1))
        assert res["final"][m]["reward"] == c["reward"][-1]
    # The seeds differ (negative control of the bands: identical seeds would give sd 0).
    assert any(max(res["curves"][m]["kl_sd"][1:]) > 0 for m in demo.METHODS)
    assert 0.0 <= res["dataset"]["mean_reward"] <= 1.0


def test_short_demo_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert demo.run([*SHORT, *FEW, "--out", str(a)]) == 0
    assert demo.run([*SHORT, *FEW, "--out", str(b)]) == 0
    ja, jb = ((p / "llm_demo.json").read_text() for p in (a, b))
    assert ja == jb  # same seed, same bytes
    # Negative control: another seed gives other data.
    assert demo.run([*SHORT, *FEW, "--seed", "1", "--out", str(b)]) == 0
    assert (b / "llm_demo.json").read_text() != ja


def test_step_zero_is_pi_ref():
    """The step-0 point of every curve is π_ref's own evaluation (not sampled again): a copy
    of π_ref evaluates to the same reward and to KL exactly 0."""
    import copy

    import torch

    args = demo._parser().parse_args(["--digits", "3", "--eval-prompts", "16"])
    demo._check(args)
    torch.manual_seed(0)
    ref, tok = demo.build_model(args)
    prompts = demo.make_prompts(np.random.default_rng(0), 16, 3)
    r_ref, _ = demo.evaluate(ref, ref, tok, prompts, args)
    r, kl = demo.evaluate(copy.deepcopy(ref), ref, tok, prompts, args)
    assert r == r_ref and kl == 0.0
    # Negative control: a perturbed copy has a positive KL.
    moved = copy.deepcopy(ref)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert demo.evaluate(moved, ref, tok, prompts, args)[1] != 0.0


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("online_ipo", (0.0, 0.0)),
        ("rloo", (0.0, 0.0)),
        ("ipo_md", (0.3, 0.3)),
        ("nash_md_pg", (0.0, 0.3)),
    ],
)
def test_online_samplers_follow_the_method(method, expected):
    """Where each online method's completions come from is bandit's Method.sampling."""
    assert demo.sampler_mixtures(method, 0.3) == expected


def test_online_only_run_needs_no_offline_data(tmp_path):
    argv = [*SHORT, "--methods", "nash_md_pg", "--seeds", "1", "--pairs", "1"]
    assert demo.run([*argv, "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "llm_demo.json").read_text())
    assert list(res["curves"]) == ["nash_md_pg"] and res["dataset"]["mean_reward"] is None


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
    assert demo.run([*SHORT, *FEW, "--seeds", "1", "--model", str(ckpt), "--out", str(out)]) == 0
    assert json.loads((out / "llm_demo.json").read_text())["config"]["model"] == str(ckpt)


def test_pickle_checkpoint_is_refused_with_one_line(tmp_path, capsys):
    """A checkpoint with only pickle weights (unpickling can run code) is refused before
    anything is loaded; the same folder with safetensors loads (test above)."""
    import torch

    args = demo._parser().parse_args([])
    model, _ = demo.build_model(args)
    ckpt = tmp_path / "pickle"
    ckpt.mkdir()
    model.config.save_pretrained(ckpt)
    torch.save(model.state_dict(), ckpt / "pytorch_model.bin")
    assert demo.run([*SHORT, "--model", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pytorch_model.bin" in err[0] and "safetensors" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
        (["--beta", "-1"], "argument --beta: expected a finite number > 0, got -1"),
        (["--lr", "nan"], "argument --lr: expected a finite number > 0, got nan"),
        (["--mixture", "1.5"], "argument --mixture: expected a number in [0, 1], got 1.5"),
        (["--digits", "100"], f"argument --digits: expected an integer <= {demo.MAX_DIGITS}"),
        (["--threads", "100000"], "argument --threads: expected an integer <="),
        (["--seeds", "0"], "argument --seeds: expected an integer >= 1, got 0"),
        (["--methods", "copg,ppo"], "argument --methods"),
        (["--batch", "99", "--pairs", "10"], "exceeds --pairs"),
        (["--device", "tpu"], "argument --device: expected cpu, cuda or cuda:N, got 'tpu'"),
        (["--model", "/nonexistent/ckpt"], "--model"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, msg, capsys):
    assert demo.run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_help_runs():
    r = subprocess.run(
        [sys.executable, "-m", "llm.demo", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0 and "--model" in r.stdout


@given(steps=st.integers(1, 300), every=st.integers(1, 40))
def test_evaluation_count_in_closed_form_equals_the_step_loop(steps, every):
    """#21 rerun: ``--steps 99999999999999999999`` hung before any progress bar, in a
    Python loop over the steps that counted evaluations. The closed form counts the
    same steps (every ``every``-th and the last); the loop is the reference."""
    from argparse import Namespace

    args = Namespace(steps=steps, eval_every=every)
    want = sum(1 for s in range(1, steps + 1) if s % every == 0 or s == steps)
    assert demo._n_evals(args) == want
    # Negative control: the count without the last step misses it when it is not a multiple.
    assert (steps // every == want) == (steps % every == 0)


def test_evaluation_count_of_a_huge_run_is_immediate():
    from argparse import Namespace

    assert demo._n_evals(Namespace(steps=10**20, eval_every=10)) == 10**19
