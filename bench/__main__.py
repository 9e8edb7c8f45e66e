"""Run every benchmark: ``python -m bench`` (add ``--quick`` for a short pass).

Each ``bench/bench_*.py`` is also runnable on its own (``python -m bench.bench_nash``)
and prints its own table, with the speed ratio against a baseline measured in the same
run, and a progress bar over its sizes. The scripts are found through this package's own
path, so ``python -m bench`` works from any directory once the project is installed
(``pip install -e .``).

Other arguments go to the scripts that take them (``--seeds 20`` to bench_figure1 only,
``--device cuda`` to the logps and fused benchmarks): every one is checked, by each
script's own parser (:mod:`bench._options`), before any benchmark starts, so a bad value
or an option no script takes is one line and exit status 2, not a failure minutes in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.cli import ArgumentParser, cli
from bandit.validation import ValidationError
from bench._options import PARSERS

#: The folder of this package, which holds the benchmark scripts.
HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The benchmark scripts ``bench_*.py`` of this package, in name order."""
    return sorted(HERE.glob("bench_*.py"))


def _without(argv: list[str], unknown: list[str]) -> list[str]:
    """``argv`` less the tokens a parser left over (``unknown``, in their order)."""
    out, rest = [], list(unknown)
    for tok in argv:
        if rest and tok == rest[0]:
            rest.pop(0)
        else:
            out.append(tok)
    return out


def split_arguments(argv: list[str], names: Sequence[str]) -> dict[str, list[str]]:
    """The arguments for each script, checked by its parser: a bad value raises (one
    line), and so does an argument no script takes. A script without a parser in
    :data:`bench._options.PARSERS` gets every argument."""
    per_script: dict[str, list[str]] = {}
    left_over: list[set[str]] = []
    for name in names:
        if name not in PARSERS:
            per_script[name] = list(argv)
            continue
        _, unknown = PARSERS[name]().parse_known_args(argv)
        per_script[name] = _without(argv, unknown)
        left_over.append({t for t in unknown if t.startswith("-")})
    nowhere = set.intersection(*left_over) if left_over else set()
    if nowhere:
        raise ValidationError(
            f"unrecognized arguments: {' '.join(sorted(nowhere))} (no benchmark takes them; "
            "see python bench/bench_NAME.py --help)"
        )
    return per_script


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = ArgumentParser(
        prog="python -m bench",
        description="Run every benchmark (bench/bench_*.py), each against its baseline.",
        epilog="Other arguments are passed on to the benchmark scripts that take them.",
    )
    ap.add_argument("--quick", action="store_true", help="a short pass of every benchmark")
    ap.add_argument("--list", action="store_true", help="list the benchmark scripts and exit")
    args, _ = ap.parse_known_args(argv)
    if args.list:
        for script in scripts():
            print(script)
        return 0
    argv = [a for a in argv if a != "--list"]
    per_script = split_arguments(argv, [s.stem for s in scripts()])
    status = 0
    for script in scripts():
        print(f"\n=== {script.stem} ===", flush=True)
        status |= subprocess.run([sys.executable, str(script), *per_script[script.stem]]).returncode
    return status


if __name__ == "__main__":
    sys.exit(cli(main)())
