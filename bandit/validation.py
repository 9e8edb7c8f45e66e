"""Input checks shared by every solver, trainer and CLI.

Each check raises :class:`ValidationError` (a ``ValueError``) whose message names the
argument, the offending value or index, and what was expected. Nothing is ever
renormalised or clipped silently.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Tolerance on ``sum(p) == 1`` for probability vectors given by the caller.
SUM_ATOL = 1e-9
#: Tolerance on ``P + P.T == 1`` and ``diag(P) == 1/2`` for preference matrices.
PREF_ATOL = 1e-9


class ValidationError(ValueError):
    """Invalid input: the message names the argument and what was expected."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, requiring it to be finite and > 0 (β, τ, lr, ...)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValidationError(f"{name} must be finite and > 0, got {_fmt(v)}")
    return v


def check_int(name: str, value: object, low: int) -> int:
    """Return ``value`` as an int, requiring an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValidationError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as a float in [0, 1] (IPO-MD's mixture coefficient β)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValidationError(f"{name} must lie in [0, 1], got {_fmt(v)}")
    return v


def check_finite(name: str, x: ArrayLike) -> NDArray[np.float64]:
    """Return ``x`` as float64, requiring every entry to be finite."""
    a = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(f"{name} must be finite, got {a[idx]} at index {idx}")
    return a


def check_distribution(
    name: str, p: ArrayLike, *, allow_zeros: bool = True, atol: float = SUM_ATOL
) -> NDArray[np.float64]:
    """Return ``p`` as float64, requiring each row (last axis) to be a probability vector.

    Entries must be finite and >= 0 (> 0 when ``allow_zeros`` is False) and each row
    must sum to 1 within ``atol``. The vector is returned unchanged, never renormalised.
    """
    a = check_finite(name, p)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValidationError(f"{name} must be a non-empty probability vector, got shape {a.shape}")
    neg = a < 0 if allow_zeros else a <= 0
    if neg.any():
        idx = tuple(int(i) for i in np.argwhere(neg)[0])
        want = ">= 0" if allow_zeros else "> 0 (full support is required here)"
        raise ValidationError(f"{name} must have entries {want}, got {a[idx]} at index {idx}")
    sums = a.sum(axis=-1)
    off = np.abs(sums - 1.0) > atol
    if np.any(off):
        row = tuple(int(i) for i in np.argwhere(np.atleast_1d(off))[0])
        s = np.atleast_1d(sums)[row]
        where = f" in row {row}" if a.ndim > 1 else ""
        raise ValidationError(f"{name} must sum to 1 (atol {atol:g}){where}, got sum {float(s)!r}")
    return a


def check_shape(name: str, x: NDArray, shape: tuple[int, ...]) -> None:
    """Require ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise ValidationError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def check_preference_matrix(
    name: str, P: ArrayLike, *, atol: float = PREF_ATOL
) -> NDArray[np.float64]:
    """Return ``P`` as float64, requiring a valid preference matrix.

    ``P[y, y'] = p(y ≻ y')``: square, entries in [0, 1], diagonal 1/2 and
    ``P + Pᵀ = 1`` within ``atol`` (IPO-MD §2.1, symmetry condition).
    """
    a = check_finite(name, P)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValidationError(
            f"{name} must be a square n×n matrix with n >= 2, got shape {a.shape}"
        )
    out = (a < 0) | (a > 1)
    if out.any():
        i, j = (int(k) for k in np.argwhere(out)[0])
        raise ValidationError(f"{name} entries must lie in [0, 1], got {a[i, j]} at ({i}, {j})")
    d = np.abs(np.diag(a) - 0.5) > atol
    if d.any():
        i = int(np.argmax(d))
        raise ValidationError(f"{name} diagonal must be 1/2, got {a[i, i]} at ({i}, {i})")
    s = np.abs(a + a.T - 1.0) > atol
    if s.any():
        i, j = (int(k) for k in np.argwhere(s)[0])
        raise ValidationError(
            f"{name} must satisfy P + P.T = 1 (atol {atol:g}), got "
            f"P[{i},{j}] + P[{j},{i}] = {float(a[i, j] + a[j, i])!r}"
        )
    return a
