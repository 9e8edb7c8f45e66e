"""The result every fixed-point solver returns: a policy with its certificate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FixedPoint"]


@dataclass(frozen=True, repr=False)
class FixedPoint:
    """A method's fixed point with its certificate.

    Attributes:
      method: the method's name.
      log_policy: log π of the limit policy, shape (X, n); −inf where the limit puts no mass.
      residual: the certificate: max |∇_θ E[ℓ]| at ``log_policy`` (:mod:`bandit.expected`),
        or the defining equation's residual where that is sharper: the LP duality gap for
        slic; for the game methods the larger of the Eq. (12)/(13) residual (the duality
        gap 2τ KL(π‖BR(π)) for β = 0) and max |∇_θ E[ℓ]|.
      unique: False when the data do not identify the fixed point (support violations,
        disconnected pair graphs, several roots, a non-unique LP optimum).
      interior: False when no fixed point with full support exists; ``log_policy`` is then
        the limit of the flow on the boundary.
      message: how it was solved, and why it is not unique or not interior.
      details: structured extras (pair-graph components, roots found, SLiC intervals, ...).
    """

    method: str
    log_policy: NDArray[np.float64]
    residual: float
    unique: bool
    interior: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # One prompt: show its (n,) row, not the nested (1, n) array.
        lp = self.log_policy
        shown = repr(lp[0]) if np.ndim(lp) == 2 and np.shape(lp)[0] == 1 else repr(lp)
        return (
            f"FixedPoint(method={self.method!r}, log_policy={shown}, residual={self.residual!r}, "
            f"unique={self.unique!r}, interior={self.interior!r}, message={self.message!r})"
        )

    @property
    def policy(self) -> NDArray[np.float64]:
        """π = exp(log π), shape (X, n)."""
        return np.exp(self.log_policy)
