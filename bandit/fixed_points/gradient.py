"""The exact expected-gradient field g(θ) of one method, as the fixed-point solvers use it.

g is :class:`bandit.expected.ExactLoss`'s jitted float64 gradient; its Jacobian comes from
central differences of g (the losses' stop-gradients hide part of it from autodiff).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..expected import ExactLoss

#: Logit used in place of −∞ (relative to the largest logit) to evaluate gradients on a face.
FACE_LOGIT = -700.0


class Field(ExactLoss):
    """The exact expected gradient g(θ) of one prepared method and its Jacobian."""

    def jac(self, theta: NDArray) -> NDArray[np.float64]:
        """∂g/∂θ, shape (X, n, X, n), by central differences of the exact gradient g.

        Autodiff cannot give it: the losses' stop-gradients (SG[π] in IPO-MD Eq. 11) are
        constants to a second differentiation too, but the *field* g depends on θ through
        them. Columns are computed one by one with the compiled g (2·X·n calls of some tens
        of µs each), which costs less than compiling a Jacobian program.
        """
        th = np.asarray(theta, dtype=np.float64)
        eps = 1e-6 * (1.0 + np.abs(th))
        cols = []
        for i in np.ndindex(self.shape):
            e = np.zeros(self.shape)
            e[i] = eps[i]
            cols.append((self.grad(th + e) - self.grad(th - e)) / (2 * eps[i]))
        return np.stack(cols, axis=-1).reshape(self.shape + self.shape)

    def residual(self, log_policy: NDArray) -> float:
        """max |g| at a policy; −inf log-probabilities are evaluated at FACE_LOGIT."""
        return float(np.max(np.abs(self.grad(face_logits(log_policy, self.beta)))))


def face_logits(log_policy: NDArray, beta: float) -> NDArray[np.float64]:
    """Finite logits for a policy with zeros: −∞ becomes FACE_LOGIT·max(1, 1/β) below the top,
    so that pair terms in βΔ (DPO, SLiC) are also e^-700 small there."""
    lp = np.asarray(log_policy, dtype=np.float64)
    top = np.max(lp, axis=-1, keepdims=True)
    return np.where(np.isfinite(lp), lp, top + FACE_LOGIT * max(1.0, 1.0 / beta))
