"""Tabular policies held as log-probabilities (actions on the last axis).

These helpers are the only place where the softmax, the KL and the geometric mixture are
written; the exact solvers (NumPy, float64) and the JAX engine both call them. They
dispatch on the array type, so a JAX array stays a (traceable) JAX array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_jax_array, is_torch_array
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_softmax as _np_log_softmax

__all__ = ["geometric_mixture", "kl", "log_softmax"]

Array = Any


def log_softmax(logits: Array) -> Array:
    """log π = logits − logsumexp(logits) over the last axis (float64 for NumPy input)."""
    if is_jax_array(logits):
        import jax

        return jax.nn.log_softmax(logits, axis=-1)
    if is_torch_array(logits):
        return logits.log_softmax(dim=-1)
    from .validation import real_array

    return _np_log_softmax(real_array("logits", logits), axis=-1)


def kl(log_p: ArrayLike, log_q: ArrayLike) -> NDArray[np.float64]:
    """KL(p‖q) over the last axis (NumPy, float64), in the Bregman form

    KL(p‖q) = Σ_y p(y)·(d + expm1(−d)),  d = log p(y) − log q(y),

    equal to Σ p·d when p and q both sum to 1, but every term is ≥ 0 and accurate when
    p ≈ q, so a tiny KL (a regret near the optimum) has no cancellation and is never
    negative. Where p(y) = 0 the term is q(y); p(y) > 0 = q(y) gives +inf.

    Raises:
      ValidationError: a NaN or +inf log-probability in ``log_p`` or ``log_q`` (−inf,
        probability 0, is fine).
    """
    from .validation import ValidationError, real_array

    lp = real_array("log_p", log_p)
    lq = real_array("log_q", log_q)
    for name, a in (("log_p", lp), ("log_q", lq)):
        bad = np.isnan(a) | (a == np.inf)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValidationError(
                f"{name} must be log-probabilities (finite or −inf), got {a[idx]} at index {idx}"
            )
    p = np.exp(lp)
    with np.errstate(invalid="ignore", over="ignore"):
        d = lp - lq
        # p·(d + e^−d − 1) = p·d + q − p: the first form is accurate for small |d|, the
        # second cannot overflow for large |d|; where p = 0 the term is q.
        q = np.exp(lq)
        near = np.abs(d) < 1
        terms = np.where(near, p * (d + np.expm1(-np.where(near, d, 0.0))), p * d + (q - p))
        terms = np.where(p > 0, terms, q)
    return terms.sum(axis=-1)


def geometric_mixture(log_pi: Array, log_ref: Array, mixture: float | Array) -> Array:
    """Normalised geometric mixture π^(1−m)·π_ref^m, as log-probabilities.

    IPO-MD §2.6 and §5.1: the sampling policy of Nash-MD-PG(β) and IPO-MD(β), with the
    mixture coefficient m = IPO-MD's β ∈ [0, 1]. A concrete number is range-checked; a
    traced or tensor coefficient is the caller's to check. Lists are read as float64
    arrays (refusing complex, strings, ragged input).
    """
    if not (is_jax_array(log_pi) or is_torch_array(log_pi)):
        from .validation import real_array

        log_pi = real_array("log_pi", log_pi)
    if not (is_jax_array(log_ref) or is_torch_array(log_ref)):
        from .validation import real_array

        log_ref = real_array("log_ref", log_ref)
    concrete: Any = None if is_torch_array(mixture) else mixture
    if is_jax_array(mixture):
        try:
            concrete = np.asarray(mixture)
        except Exception:  # a tracer under jit/grad: only the caller can check it
            concrete = None
    if concrete is not None:
        from .validation import ValidationError, check_unit_interval, real_array

        if np.ndim(concrete) == 0 or isinstance(concrete, (str, bytes)):
            mixture = check_unit_interval("mixture", concrete)
            if mixture == 0.0:  # avoid 0·(−inf) = nan where π_ref has zeros
                return log_softmax(log_pi)
            if mixture == 1.0:
                return log_softmax(log_ref)
        else:  # one coefficient per row: each in [0, 1]
            m = real_array("mixture", concrete)
            if not np.all((m >= 0.0) & (m <= 1.0)):
                raise ValidationError(
                    f"mixture must be in [0, 1] everywhere, got values in "
                    f"[{np.min(m):.6g}, {np.max(m):.6g}]"
                )
    return log_softmax((1 - mixture) * log_pi + mixture * log_ref)
