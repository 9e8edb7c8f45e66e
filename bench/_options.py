"""The command line of every benchmark script, in one import-light place.

Each ``bench/bench_*.py`` builds its parser here (:data:`PARSERS`, by script name), so
``python -m bench`` can check every argument before any benchmark starts, and hand each
script only the options it takes, without importing torch, JAX or TRL. The parsers are
:class:`bandit.cli.ArgumentParser`: a bad value is one line and exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bandit.cli import ArgumentParser, comma_list, float_in, int_at_least, int_in, positive_int
from bandit.cli import torch_device as device

__all__ = ["PARSERS", "figure1", "frontier", "fused", "logps", "nash"]


def _dtype(s: str) -> str:
    if s not in ("fp32", "bf16"):
        raise argparse.ArgumentTypeError(f"expected fp32 or bf16, got {s!r}")
    return s


_dtype.__name__ = "dtype"


def _parser(prog: str, description: str) -> ArgumentParser:
    return ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        # No prefixes: python -m bench splits options between scripts by their full names
        # (--seed must not pass as bench_figure1's --seeds and leave the others full-size).
        allow_abbrev=False,
    )


def logps() -> ArgumentParser:
    p = _parser("bench_logps", "llm.sequence_logps against the usual ways of getting log-probs.")
    p.add_argument("--quick", action="store_true", help="one small size only")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed calls per round")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds the methods take turns")
    p.add_argument(
        "--worker",
        nargs=6,
        metavar=("METHOD", "V", "BT", "DTYPE", "REPEATS", "MEMORY"),
        help=argparse.SUPPRESS,
    )
    return p


#: ``--hidden``, ``--vocab``, ``--tokens``: comma-separated positive integers.
_sizes = comma_list(positive_int)


def fused() -> ArgumentParser:
    p = _parser("bench_fused", "llm.fused_sequence_logps against the full logits and TRL.")
    p.add_argument("--quick", action="store_true", help="one small size (H 256, V 8192, N 512)")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed calls per method")
    p.add_argument("--hidden", type=_sizes, default=(1024, 4096), help="hidden sizes H")
    p.add_argument(
        "--vocab", type=_sizes, default=(32768, 131072, 262144), help="vocabulary sizes V"
    )
    p.add_argument("--tokens", type=_sizes, default=(1024, 4096), help="tokens N")
    p.add_argument("--dtypes", type=comma_list(_dtype), default=("fp32", "bf16"), help="dtypes")
    p.add_argument(
        "--completion",
        type=float_in(0.01, 1.0),
        default=0.75,
        help="share of the tokens that are counted (completion)",
    )
    return p


def nash() -> ArgumentParser:
    p = _parser("bench_nash", "The Nash solver against two baselines at the same gap.")
    p.add_argument("--quick", action="store_true", help="n <= 1000 and a 5 s baseline budget")
    return p


def figure1() -> ArgumentParser:
    p = _parser("bench_figure1", "The default CoPG Fig. 1 against a plain PyTorch loop.")
    p.add_argument("--quick", action="store_true", help="one PyTorch seed per method")
    # Bounded here, so that `python -m bench` refuses a huge count before any benchmark runs
    # (the trainer's own memory check would only fire when bench_figure1's turn comes).
    p.add_argument(
        "--seeds", type=int_in(1, 10_000), default=100, help="seeds of the fast figure (≤ 10000)"
    )
    p.add_argument(
        "--torch-seeds",
        type=positive_int,
        default=None,
        help="PyTorch seeds per method (default: 3, 1 with --quick)",
    )
    p.add_argument("--epochs", type=positive_int, default=100, help="epochs")
    return p


def frontier() -> ArgumentParser:
    p = _parser("bench_frontier", "The exact β-sweep, warm against cold.")
    p.add_argument("--quick", action="store_true", help="20 grid points, no cold CLI run")
    p.add_argument("--points", type=int_at_least(2), default=None, help="grid points (50)")
    return p


#: The parser of each benchmark script, by its name.
PARSERS: dict[str, Callable[[], ArgumentParser]] = {
    "bench_figure1": figure1,
    "bench_frontier": frontier,
    "bench_fused": fused,
    "bench_logps": logps,
    "bench_nash": nash,
}
