"""The one float64 boundary of the JAX engine.

JAX computes in float32 unless 64-bit mode is on. Every public entry point of the engine
is wrapped in :func:`float64`, which turns 64-bit mode on for the duration of the call
only, in the calling thread (``jax.enable_x64`` is a thread-local context). So a call
from anywhere, a worker thread included, computes in float64, and a user's own JAX code
keeps its setting. Inside the engine no function switches again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["float64"]

F = TypeVar("F", bound=Callable[..., Any])


def float64(fn: F) -> F:
    """Run ``fn`` with JAX's 64-bit mode on (locally, restored on return)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import jax

        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
