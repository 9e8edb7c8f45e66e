"""The logps benchmark's verdicts: met by best times, parity within round-to-round noise,
NOT met when slower in every round. Synthetic round times, no timing."""

from __future__ import annotations

import pytest

from bench.bench_logps import _ratios, _verdict


def test_ratios_pair_rounds():
    # Ours: 10, 12, 9 ms; the best alternative of each round: 10, 10, 8 (from two methods).
    ratio, best_round = _ratios([10.0, 12.0, 9.0], [[11.0, 10.0, 8.5], [10.0, 30.0, 8.0]])
    assert ratio == 9.0 / 8.0
    assert best_round == 1.0


def test_verdict_classes():
    met = {"a": _ratios([1.0, 1.0], [[2.0, 2.0]])}
    # Slower by best times (1.0 vs 0.9) but faster in round 0 (1.0 vs 1.1).
    parity = {"b": _ratios([1.0, 1.05], [[1.1, 0.9]])}
    slower = {"c": _ratios([1.2, 1.3], [[1.0, 1.0]])}
    assert _verdict(met) == "met at every size"
    v = _verdict({**met, **parity})
    assert v.startswith("met at every size but these, at parity within noise: b (1.111x")
    assert "NOT met" not in v and "a (" not in v
    v = _verdict({**parity, **slower})
    assert v.startswith("NOT met at c (1.200x)") and v.endswith(
        "; parity at b (1.111x; 0.909x in its best round)"
    )


def test_bench_runs_from_any_directory(tmp_path):
    """``python -m bench`` finds its scripts from outside the repository (installed package).
    Negative control: a plain script path relative to the root is not found from there."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) >= 4 and all(p.endswith(".py") and "bench_" in p for p in out)
    missing = subprocess.run(
        [sys.executable, "bench/bench_nash.py", "--help"], cwd=tmp_path, capture_output=True
    )
    assert missing.returncode != 0


def test_every_script_has_its_parser():
    """Each bench script's command line is in bench._options, so python -m bench can check
    it before running anything."""
    from bench import _options
    from bench.__main__ import scripts

    assert sorted(s.stem for s in scripts()) == sorted(_options.PARSERS)


def test_arguments_go_to_the_scripts_that_take_them():
    from bench.__main__ import split_arguments

    names = ["bench_figure1", "bench_fused", "bench_logps", "bench_nash"]
    per = split_arguments(["--quick", "--seeds", "5", "--device", "cpu"], names)
    assert per["bench_figure1"] == ["--quick", "--seeds", "5"]
    assert per["bench_logps"] == per["bench_fused"] == ["--quick", "--device", "cpu"]
    assert per["bench_nash"] == ["--quick"]
    # A script without a registered parser (a new one) gets everything.
    assert split_arguments(["--x", "1"], ["bench_new"]) == {"bench_new": ["--x", "1"]}


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--seeds", "0"], "argument --seeds: expected an integer"),
        (["--seeds", "99999999999999999999"], "argument --seeds: expected an integer"),
        (["--epochs", "-1"], "argument --epochs: expected an integer >= 1, got -1"),
        (["--device", "tpu"], "argument --device: expected cpu, cuda or cuda:N, got 'tpu'"),
        (["--dtypes", "fp16"], "argument --dtypes: expected fp32 or bf16"),
        (["--seed", "3"], "unrecognized arguments: --seed"),  # no script takes it
    ],
)
def test_bad_arguments_are_one_line_before_any_benchmark(argv, msg):
    """Issue #21: plain argparse gave multi-line errors minutes in. Negative control: a
    good command line passes the same check (above)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and msg in err[0], r.stderr
    assert "===" not in r.stdout  # no benchmark started
