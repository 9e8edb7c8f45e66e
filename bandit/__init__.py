"""copg-lab's tabular engine: bandits and preference games solved exactly.

Import-light on purpose: NumPy and SciPy only. The JAX-based parts (exact expected
gradients, trainers, game dynamics) load on first use, so ``import bandit`` never pulls
in JAX or torch, and ``llm`` can share :mod:`bandit.losses`.
"""

from __future__ import annotations

from .cli import exit_on_interrupt_while_importing as _exit_on_interrupt_while_importing

_exit_on_interrupt_while_importing()  # python -m bandit.X: Ctrl-C while importing → one line, 130

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

from .exact import kl_to_ref, optimal_policy, optimal_value, regret, value
from .games import (
    GameSolution,
    best_response,
    exploitability,
    game_value,
    ipo_md_fixed_point,
    nash_equilibrium,
)
from .methods import (
    METHODS,
    OFFLINE_METHODS,
    ONLINE_METHODS,
    Method,
    Pair,
    Param,
    get_method,
    register,
)
from .policy import geometric_mixture, kl, log_softmax
from .prepare import Prepared, Tables, prepare, tables
from .problems import Bandit, OfflineData, PreferenceGame
from .sources import DemoReplay, MuMixture, Offline, Online, Replay, Source
from .validation import ValidationError

# Public names served lazily from JAX-backed modules: name -> module.
try:
    __version__ = _version("copg-lab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "expected_loss": "expected",
    "expected_loss_and_grad": "expected",
    "loss_fn": "expected",
    "FixedPoint": "fixed_points",
    "GradientCovariance": "variance",
    "frontier_reward": "frontier",
    "gradient_covariance": "variance",
    "fixed_point": "fixed_points",
    "Trajectory": "dynamics",
    "exact_dynamics": "dynamics",
    "sampled_source_dynamics": "dynamics",
    "source_dynamics": "dynamics",
    "sampled_dynamics": "dynamics",
    "SampledMinibatches": "trainer",
    "TrainConfig": "trainer",
    "sampled_minibatches": "trainer",
    "minibatches": "trainer",
    "train": "trainer",
    "train_all": "trainer",
}

__all__ = [
    "METHODS",
    "OFFLINE_METHODS",
    "ONLINE_METHODS",
    "Bandit",
    "DemoReplay",
    "GameSolution",
    "Method",
    "MuMixture",
    "Offline",
    "OfflineData",
    "Online",
    "Pair",
    "Param",
    "PreferenceGame",
    "Prepared",
    "Replay",
    "Source",
    "Tables",
    "ValidationError",
    "best_response",
    "exploitability",
    "game_value",
    "geometric_mixture",
    "get_method",
    "ipo_md_fixed_point",
    "kl",
    "kl_to_ref",
    "log_softmax",
    "nash_equilibrium",
    "optimal_policy",
    "optimal_value",
    "prepare",
    "register",
    "regret",
    "tables",
    "value",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bandit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
