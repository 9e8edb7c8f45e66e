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
#: The most memory one allocation of a trainer or dynamics run may take (bytes): larger
#: layouts (huge ``epochs``, ``steps``, ``batch_size``, ``dataset_size`` or seeds) are
#: refused with a one-line error before allocating.
MAX_BYTES = 4 * 2**30


class ValidationError(ValueError):
    """Invalid input: the message names the argument and what was expected."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _is_complex(value: object) -> bool:
    """Whether ``value`` is complex (a Python, NumPy or JAX number or array, a torch tensor),
    without converting it (a GPU tensor cannot be)."""
    if isinstance(value, (complex, np.complexfloating)):
        return True
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    is_complex = getattr(value, "is_complex", None)  # torch.Tensor
    return bool(is_complex()) if callable(is_complex) else False


def _real_scalar(name: str, value: object, want: str) -> float:
    """``value`` as a float, refusing what ``float()`` would take silently but is not a real
    number: strings ("0.5"), booleans, and complex numbers (NumPy's are cut to their real
    part with only a ComplexWarning)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or _is_complex(value):
        raise ValidationError(f"{name} must be {want}, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be {want}, got {value!r}") from None


def real_array(name: str, x: ArrayLike) -> NDArray[np.float64]:
    """Return ``x`` as a float64 array, requiring real numbers (or booleans).

    Refused with a message naming ``name``: complex values (NumPy would cut them to their
    real part), strings (NumPy would parse "1.5"), ragged nested lists and any other object
    that is not a number. Nothing else is checked (see :func:`check_finite`).
    """
    try:
        raw = np.asarray(x)
    except (ValueError, TypeError):  # ragged: "inhomogeneous shape"
        raise ValidationError(
            f"{name} must be an array of real numbers, got a ragged nested sequence (its "
            "rows differ in length or depth)"
        ) from None
    kind = raw.dtype.kind
    if kind in "biuf":
        return np.asarray(raw, dtype=np.float64)
    if kind == "c":
        raise ValidationError(
            f"{name} must be an array of real numbers, got complex values (dtype {raw.dtype}); "
            "pass the real part explicitly if that is what you mean"
        )
    if kind == "O" and not any(
        v is None or isinstance(v, (str, bytes, complex, np.complexfloating)) for v in raw.flat
    ):
        try:
            return np.asarray(raw, dtype=np.float64)
        except (ValueError, TypeError):
            pass
    what = {"U": "strings", "S": "bytes", "M": "datetimes", "m": "timedeltas"}.get(kind)
    got = f"{what} (dtype {raw.dtype})" if what else f"{type(x).__name__} {_short(x)}"
    if x is None:
        got = "None"
    raise ValidationError(f"{name} must be an array of real numbers, got {got}")


def _short(x: object) -> str:
    r = repr(x)
    return r if len(r) <= 80 else r[:77] + "..."


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, requiring it to be finite and > 0 (β, τ, lr, ...)."""
    v = _real_scalar(name, value, "a finite number > 0")
    if not math.isfinite(v) or v <= 0.0:
        raise ValidationError(f"{name} must be finite and > 0, got {_fmt(v)}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float, requiring it to be finite and >= 0 (P3O's β, where 0
    disables the KL penalty)."""
    v = _real_scalar(name, value, "a finite number >= 0")
    if not math.isfinite(v) or v < 0.0:
        raise ValidationError(f"{name} must be finite and >= 0, got {_fmt(v)}")
    return v


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int, requiring an integer (not a bool) >= ``low`` (and
    <= ``high`` where given: JAX keys and loop counters are 64-bit)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValidationError(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValidationError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_bytes(what: str, nbytes: float, hint: str) -> None:
    """Refuse an allocation of ``nbytes`` above :data:`MAX_BYTES` before making it."""
    if nbytes > MAX_BYTES:
        raise ValidationError(
            f"{what} would take {nbytes / 2**30:.3g} GiB (limit {MAX_BYTES / 2**30:g} GiB); {hint}"
        )


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` as a bool, requiring a real boolean (``True``/``False``, NumPy's too):
    ``"no"`` or ``1`` would be truthy or ambiguous, so they are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationError(f"{name} must be a boolean (true or false), got {value!r}")
    return bool(value)


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as a float in [0, 1] (IPO-MD's mixture coefficient β)."""
    v = _real_scalar(name, value, "a number in [0, 1]")
    if not (0.0 <= v <= 1.0):
        raise ValidationError(f"{name} must lie in [0, 1], got {_fmt(v)}")
    return v


def check_finite(name: str, x: ArrayLike) -> NDArray[np.float64]:
    """Return ``x`` as float64, requiring real numbers (:func:`real_array`), all finite."""
    a = real_array(name, x)
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
