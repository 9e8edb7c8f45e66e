"""The tabular problems, a (contextual) bandit and a preference game, and offline data.

All arrays are float64 and validated on construction (see :mod:`bandit.validation`).
Policies are held as log-probabilities with actions on the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .validation import (
    ValidationError,
    check_distribution,
    check_finite,
    check_positive,
    check_preference_matrix,
    check_shape,
    real_array,
)

__all__ = ["Bandit", "OfflineData", "PreferenceGame"]


def _log(p: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        return np.log(p)


@dataclass(frozen=True, eq=False)
class Bandit:
    """KL-regularised contextual bandit (CoPG §2 and App. A).

    Prompts x have weights ρ(x), actions y have rewards R(x, y), the reference policy is
    π_ref(·|x) and the regularisation is β > 0, so that
    J(π) = E_{x∼ρ, y∼π}[R(x, y)] − β E_{x∼ρ} KL(π(·|x) ‖ π_ref(·|x))   (CoPG Eq. 11).

    Attributes:
      rewards: R, shape (X, n).
      ref: π_ref, shape (X, n); each row a distribution.
      rho: ρ, shape (X,).
      beta: β > 0.
      allow_ref_zeros: accept π_ref(y|x) = 0. CoPG Thm 1 assumes full support, so this
        must be asked for explicitly.
    """

    rewards: NDArray[np.float64]
    ref: NDArray[np.float64]
    rho: NDArray[np.float64]
    beta: float
    allow_ref_zeros: bool = False
    log_ref: NDArray[np.float64] = field(init=False, repr=False)

    def __init__(
        self,
        rewards: ArrayLike,
        ref: ArrayLike | None = None,
        rho: ArrayLike | None = None,
        beta: float = 1.0,
        *,
        allow_ref_zeros: bool = False,
    ) -> None:
        R = check_finite("rewards", rewards)
        if R.ndim != 2 or R.shape[0] < 1 or R.shape[1] < 1:
            raise ValidationError(
                f"rewards must have shape (X, n) with X >= 1 prompts and n >= 1 actions, "
                f"got {R.shape}"
            )
        X, n = R.shape
        if ref is None:
            ref_a = np.full((X, n), 1.0 / n)
        else:
            ref_a = check_distribution("ref", ref, allow_zeros=allow_ref_zeros)
            if ref_a.ndim == 1:
                ref_a = np.broadcast_to(ref_a, (X, ref_a.shape[0])).copy()
            check_shape("ref", ref_a, (X, n))
        rho_a = np.full(X, 1.0 / X) if rho is None else check_distribution("rho", rho)
        check_shape("rho", rho_a, (X,))
        object.__setattr__(self, "rewards", R)
        object.__setattr__(self, "ref", ref_a)
        object.__setattr__(self, "rho", rho_a)
        object.__setattr__(self, "beta", check_positive("beta", beta))
        object.__setattr__(self, "allow_ref_zeros", bool(allow_ref_zeros))
        object.__setattr__(self, "log_ref", _log(ref_a))

    @classmethod
    def single(cls, rewards: ArrayLike, beta: float, ref: ArrayLike | None = None, **kw) -> Bandit:
        """The plain (one-prompt) bandit: ``rewards`` and ``ref`` of shape (n,)."""
        R = check_finite("rewards", rewards)
        if R.ndim != 1:
            raise ValidationError(f"rewards must have shape (n,), got {R.shape}")
        if ref is not None:
            ref = check_distribution("ref", ref, allow_zeros=kw.get("allow_ref_zeros", False))
            check_shape("ref", ref, R.shape)
            ref = ref[None]
        return cls(R[None], ref, None, beta, **kw)

    @property
    def n_prompts(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_actions(self) -> int:
        return self.rewards.shape[1]

    def check_policy(self, name: str, log_pi: ArrayLike) -> NDArray[np.float64]:
        """Validate log-probabilities of shape (..., X, n), or (..., n) when X = 1.

        Leading axes are a batch of policies (seeds, steps); each row must be a distribution.
        """
        lp = real_array(name, log_pi)
        X, n = self.rewards.shape
        if lp.ndim == 0:
            raise ValidationError(
                f"{name} must hold log-probabilities of shape (..., {X}, {n}), got a scalar "
                f"{log_pi!r}"
            )
        if X == 1 and (lp.ndim == 1 or lp.shape[-2:-1] != (1,)):
            lp = lp[..., None, :]
        if lp.ndim < 2 or lp.shape[-2:] != (X, n):
            raise ValidationError(f"{name} must have shape (..., {X}, {n}), got {lp.shape}")
        if np.isnan(lp).any() or np.isposinf(lp).any():
            raise ValidationError(f"{name} must hold log-probabilities (no NaN or +inf)")
        check_distribution(f"exp({name})", np.exp(lp))
        return lp


@dataclass(frozen=True, eq=False)
class PreferenceGame:
    """The KL-regularised two-player preference game of IPO-MD Eq. (9).

    Player i receives E_{y∼π_i, y'∼π_−i}[p(y ≻ y')] − β KL(π_i‖π_ref) + β KL(π_−i‖π_ref),
    with β the KL strength (IPO-MD's τ).

    Attributes:
      P: P[y, y'] = p(y ≻ y'), shape (n, n), with P + Pᵀ = 1 and diag(P) = 1/2.
      ref: π_ref, shape (n,).
      beta: the KL strength β > 0 (IPO-MD's τ).
    """

    P: NDArray[np.float64]
    ref: NDArray[np.float64]
    beta: float
    allow_ref_zeros: bool = False
    log_ref: NDArray[np.float64] = field(init=False, repr=False)

    def __init__(
        self,
        P: ArrayLike,
        ref: ArrayLike | None = None,
        beta: float = 1.0,
        *,
        allow_ref_zeros: bool = False,
    ) -> None:
        Pa = check_preference_matrix("P", P)
        n = Pa.shape[0]
        ref_a = (
            np.full(n, 1.0 / n)
            if ref is None
            else check_distribution("ref", ref, allow_zeros=allow_ref_zeros)
        )
        check_shape("ref", ref_a, (n,))
        object.__setattr__(self, "P", Pa)
        object.__setattr__(self, "ref", ref_a)
        object.__setattr__(self, "beta", check_positive("beta", beta))
        object.__setattr__(self, "allow_ref_zeros", bool(allow_ref_zeros))
        object.__setattr__(self, "log_ref", _log(ref_a))

    @classmethod
    def bradley_terry(
        cls, rewards: ArrayLike, ref: ArrayLike | None = None, beta: float = 1.0, **kw
    ) -> PreferenceGame:
        """The game whose preferences are Bradley–Terry on rewards: p(y≻y') = σ(R(y) − R(y'))."""
        from scipy.special import expit

        R = check_finite("rewards", rewards)
        if R.ndim != 1:
            raise ValidationError(f"rewards must have shape (n,), got {R.shape}")
        return cls(expit(R[:, None] - R[None, :]), ref, beta, **kw)

    @property
    def n_actions(self) -> int:
        return self.P.shape[0]


@dataclass(frozen=True)
class OfflineData:
    """Offline pair distribution q(y, y'|x), shape (X, n, n).

    ``OfflineData(mu1, mu2)`` is the independent case y ∼ μ1(·|x), y' ∼ μ2(·|x) (CoPG Eq. 6);
    ``OfflineData.from_joint(q)`` takes any joint pair distribution, e.g. the empirical
    frequencies of a finite dataset. ``mu1``/``mu2`` are always the marginals.
    """

    mu1: NDArray[np.float64]
    mu2: NDArray[np.float64]
    joint: NDArray[np.float64]

    def __init__(self, mu1: ArrayLike, mu2: ArrayLike) -> None:
        a = np.atleast_2d(check_distribution("mu1", mu1))
        b = np.atleast_2d(check_distribution("mu2", mu2))
        if a.ndim != 2:
            raise ValidationError(f"mu1 must have shape (n,) or (X, n), got {a.shape}")
        check_shape("mu2", b, a.shape)
        object.__setattr__(self, "mu1", a)
        object.__setattr__(self, "mu2", b)
        object.__setattr__(self, "joint", a[:, :, None] * b[:, None, :])

    @classmethod
    def from_joint(cls, joint: ArrayLike) -> OfflineData:
        """A joint pair distribution q(y, y'|x) of shape (X, n, n) or (n, n)."""
        q = check_finite("joint", joint)
        if q.ndim == 2:
            q = q[None]
        if q.ndim != 3 or q.shape[1] != q.shape[2]:
            raise ValidationError(f"joint must have shape (X, n, n), got {q.shape}")
        flat = check_distribution("joint (flattened per prompt)", q.reshape(q.shape[0], -1))
        self = object.__new__(cls)
        q = flat.reshape(q.shape)
        object.__setattr__(self, "mu1", q.sum(axis=2))
        object.__setattr__(self, "mu2", q.sum(axis=1))
        object.__setattr__(self, "joint", q)
        return self

    @property
    def is_product(self) -> bool:
        """Whether q = μ1 ⊗ μ2 (the setting of CoPG Thm 1)."""
        return bool(
            np.allclose(self.joint, self.mu1[:, :, None] * self.mu2[:, None, :], atol=1e-15)
        )
