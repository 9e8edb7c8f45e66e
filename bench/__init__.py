"""Benchmarks (``python -m bench``): each ``bench_*.py`` against a baseline in one run."""

from bandit.cli import exit_on_interrupt_while_importing as _exit_on_interrupt_while_importing

# python -m bench: Ctrl-C while the benchmarks import (JAX, torch) exits 130 with one line.
_exit_on_interrupt_while_importing()
