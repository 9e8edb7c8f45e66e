"""Run every benchmark: ``python -m bench`` (add ``--quick`` for a short pass).

Each ``bench/bench_*.py`` is also runnable on its own (``python -m bench.bench_nash``)
and prints its own table, with the speed ratio against a baseline measured in the same
run. The scripts are found through this package's own path, so ``python -m bench`` works
from any directory once the project is installed (``pip install -e .``); every argument
is passed on to each script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: The folder of this package, which holds the benchmark scripts.
HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The benchmark scripts ``bench_*.py`` of this package, in name order."""
    return sorted(HERE.glob("bench_*.py"))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run every benchmark (bench/bench_*.py), each against its baseline.",
        epilog="Other arguments are passed on to each benchmark script.",
    )
    ap.add_argument("--quick", action="store_true", help="a short pass of every benchmark")
    ap.add_argument("--list", action="store_true", help="list the benchmark scripts and exit")
    args, _ = ap.parse_known_args(argv)
    if args.list:
        for script in scripts():
            print(script)
        return 0
    status = 0
    for script in scripts():
        print(f"\n=== {script.stem} ===", flush=True)
        status |= subprocess.run([sys.executable, str(script), *argv]).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
