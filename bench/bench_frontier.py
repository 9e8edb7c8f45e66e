"""Benchmark: the warm-started exact β-sweep against solving every grid point from scratch.

    python bench/bench_frontier.py [--quick] [--points 50]

Both sweeps solve each offline method's exact fixed point (bandit.fixed_point, certified by
its residual) at every point of the default log-spaced grid (1e-2 to 1e2) on the CoPG §5
bandit. The warm sweep starts each point from the previous one (Newton continuation on the
exact field for pg, pg_value and dpo, ``init=`` for the others); the baseline calls
``fixed_point`` cold at every point. A first pass of both compiles the JAX functions, so
both timings are warm; the cold CLI time (JAX import and compilation included) is timed in
a fresh process at the end. Prints a table per method with the ratio, and checks that both
sweeps agree.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit import OFFLINE_METHODS
from bandit.cli import cli
from bandit.figure1 import Figure1Config
from bandit.frontier import grid, sweep
from bench import _options


def main(argv: list[str] | None = None) -> int:
    args = _options.frontier().parse_args(argv)
    points = args.points or (20 if args.quick else 50)
    bandit, data = Figure1Config().problem()
    betas = grid(points, 1e-2, 1e2)
    for m in OFFLINE_METHODS:  # compile every method's exact field once
        sweep(m, bandit, data, betas[:2])
        sweep(m, bandit, data, betas[:2], warm=False)
    print(f"exact β-sweep on the CoPG §5 bandit, {points} points in [1e-2, 1e2]")
    print(f"{'method':<9} {'warm s':>8} {'cold s':>8} {'ratio':>7} {'max |Δπ|':>10} {'max res':>9}")
    tw = tc = 0.0
    for m in OFFLINE_METHODS:
        t = time.perf_counter()
        w = sweep(m, bandit, data, betas)
        t1 = time.perf_counter()
        c = sweep(m, bandit, data, betas, warm=False)
        t2 = time.perf_counter()
        tw, tc = tw + t1 - t, tc + t2 - t1
        diff = float(np.max(np.abs(w.fixed_point_policy - c.fixed_point_policy)))
        res = float(max(w.residual.max(), c.residual.max()))
        print(
            f"{m:<9} {t1 - t:>8.3f} {t2 - t1:>8.3f} {(t2 - t1) / (t1 - t):>6.1f}x "
            f"{diff:>10.1e} {res:>9.1e}"
        )
    print(f"{'all':<9} {tw:>8.3f} {tc:>8.3f} {tc / tw:>6.1f}x")
    if not args.quick:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "bandit.frontier", "--out", out]
            cmd += ["--methods", ",".join(OFFLINE_METHODS), "--points", str(points)]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            print(
                f"cold `python -m bandit.frontier` (offline methods, figure and JSON "
                f"included): {time.perf_counter() - t:.1f} s (target: under 10 s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())
