"""Exact quantities of a KL-regularised bandit (CoPG §2, App. A), float64 and log-space.

Everything is per prompt (shape (..., X)) with a ρ-averaged companion (shape (...)); leading
axes of a policy are a batch (seeds, steps). They stay finite and
accurate for β ∈ [1e-4, 1e4] and |R| ≤ 1e6: π* is a log-softmax, J(π*) a scaled
logsumexp, and the regret is computed as β·KL(π‖π*) so it never cancels two large J's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .policy import kl, log_softmax
from .problems import Bandit
from .validation import ValidationError

__all__ = [
    "kl_to_ref",
    "optimal_policy",
    "optimal_value",
    "regret",
    "value",
]


def _bandit(bandit: object) -> Bandit:
    """``bandit``, required to be a :class:`Bandit` (a PreferenceGame has no rewards)."""
    if not isinstance(bandit, Bandit):
        hint = (
            "; it has no rewards, so no J(π)" if type(bandit).__name__ == "PreferenceGame" else ""
        )
        raise ValidationError(f"bandit must be a Bandit, got {type(bandit).__name__}{hint}")
    return bandit


def _average(average: object) -> bool:
    if not isinstance(average, (bool, np.bool_)):
        raise ValidationError(f"average must be True or False, got {average!r}")
    return bool(average)


def _avg(bandit: Bandit, per_prompt: NDArray[np.float64], average: bool):
    if not average:
        return per_prompt
    out = per_prompt @ bandit.rho
    return float(out) if np.ndim(out) == 0 else out


def optimal_policy(bandit: Bandit) -> NDArray[np.float64]:
    """log π*(y|x) with π* ∝ π_ref·exp(R/β) (CoPG Eq. 12), shape (X, n)."""
    bandit = _bandit(bandit)
    return log_softmax(bandit.log_ref + bandit.rewards / bandit.beta)


def optimal_value(bandit: Bandit, *, average: bool = True) -> float | NDArray[np.float64]:
    """J(π*) = β·log Σ_y π_ref(y|x) exp(R(x, y)/β) (closed form of CoPG Eq. 11 at Eq. 12)."""
    bandit = _bandit(bandit)
    average = _average(average)
    per = bandit.beta * logsumexp(bandit.log_ref + bandit.rewards / bandit.beta, axis=-1)
    return _avg(bandit, per, average)


def kl_to_ref(bandit: Bandit, log_pi: ArrayLike, *, average: bool = True):
    """KL(π(·|x) ‖ π_ref(·|x)), per prompt or ρ-averaged."""
    bandit = _bandit(bandit)
    average = _average(average)
    lp = bandit.check_policy("log_pi", log_pi)
    return _avg(bandit, kl(lp, bandit.log_ref), average)


def value(bandit: Bandit, log_pi: ArrayLike, *, average: bool = True):
    """J(π) = E_{y∼π}[R] − β KL(π‖π_ref) (CoPG Eq. 11), per prompt or ρ-averaged."""
    bandit = _bandit(bandit)
    average = _average(average)
    lp = bandit.check_policy("log_pi", log_pi)
    pi = np.exp(lp)
    reward = np.where(pi > 0, pi * bandit.rewards, 0.0).sum(axis=-1)
    return _avg(bandit, reward - bandit.beta * kl(lp, bandit.log_ref), average)


def regret(bandit: Bandit, log_pi: ArrayLike, *, average: bool = True):
    """J(π*) − J(π), computed without cancellation as β·KL(π‖π*).

    The identity follows from R = β log(π*/π_ref) + β log Z* (CoPG Eq. 12): substituting
    into Eq. (11) gives J(π) = β log Z* − β KL(π‖π*).
    """
    bandit = _bandit(bandit)
    average = _average(average)
    lp = bandit.check_policy("log_pi", log_pi)
    return _avg(bandit, bandit.beta * kl(lp, optimal_policy(bandit)), average)
