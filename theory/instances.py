"""The instances every claim is tried on: their types, builders and seeded samplers.

A :class:`BanditInstance` is a contextual bandit with policies and offline data, a
:class:`GameInstance` a preference game (IPO-MD Eq. 9) with a policy, data and a mixture
coefficient, a :class:`GaussianInstance` the Gaussian toy of IPO-MD App. E.1. The seeded
NumPy samplers here (``python -m theory`` needs no pytest or hypothesis) and the hypothesis
strategies of :mod:`theory.strategies` draw the same raw arrays over the same ranges and
build the instances with the same constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import softmax

from bandit.problems import Bandit, PreferenceGame

__all__ = [
    "BATCH",
    "BETA_RANGE",
    "GAME_BETA_RANGE",
    "MAX_ACTIONS",
    "MAX_PROMPTS",
    "REWARD_SCALE",
    "SAMPLERS",
    "SPREAD",
    "BanditInstance",
    "GameInstance",
    "GaussianInstance",
    "make_bandit_instance",
    "make_game_instance",
    "sample_bandit",
    "sample_game",
    "sample_gaussian",
]


@dataclass(frozen=True, eq=False)
class BanditInstance:
    """A contextual bandit with a current policy, an old policy and offline data.

    Attributes:
      bandit: R (X, n), π_ref (X, n), ρ (X,), β.
      logits: θ of the current policy π = softmax(θ), shape (X, n).
      old_logits: θ_old of π_old (P3O / PPO importance sampling), shape (X, n).
      mu1, mu2: full-support data distributions μ1(·|x), μ2(·|x), shape (X, n), μ1 ≠ μ2.
      delta: a prompt-dependent reward shift δ(x), shape (X,), |δ| ≥ 1/2 (P3O Def. 1).
      batch: a fixed batch of (x, y1, y2) index triples, shape (B, 3) (P3O Def. 2).
    """

    bandit: Bandit
    logits: NDArray[np.float64]
    old_logits: NDArray[np.float64]
    mu1: NDArray[np.float64]
    mu2: NDArray[np.float64]
    delta: NDArray[np.float64]
    batch: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class GameInstance:
    """A preference game (IPO-MD Eq. 9) with a policy, a data distribution and a mixture β.

    Attributes:
      game: P (n, n) with P + Pᵀ = 1, π_ref (n,), the KL strength β (IPO-MD's τ).
      logits: θ of π, shape (n,).
      mu: a full-support data distribution, shape (n,).
      mixture: IPO-MD's β in (0, 1).
      rewards: r (n,), for the Bradley–Terry game σ(r(y) − r(y')) (IPO-MD Thm G.7).
    """

    game: PreferenceGame
    logits: NDArray[np.float64]
    mu: NDArray[np.float64]
    mixture: float
    rewards: NDArray[np.float64]


@dataclass(frozen=True)
class GaussianInstance:
    """IPO-MD App. E.1: π_θ = N(θ, 1) and p(y ≻ y') = 1{y ≥ y'}."""

    theta: float


def make_bandit_instance(
    rewards, ref, rho, beta, logits, old_logits, mu1, mu2, delta, batch
) -> BanditInstance:
    """Build a :class:`BanditInstance` from raw arrays (shared by both generators)."""
    return BanditInstance(
        Bandit(rewards, ref, rho, beta),
        np.asarray(logits, dtype=np.float64),
        np.asarray(old_logits, dtype=np.float64),
        np.asarray(mu1, dtype=np.float64),
        np.asarray(mu2, dtype=np.float64),
        np.asarray(delta, dtype=np.float64),
        np.asarray(batch, dtype=np.int64),
    )


def make_game_instance(upper, ref, beta, logits, mu, mixture, rewards) -> GameInstance:
    """Build a :class:`GameInstance`; ``upper`` fills P strictly above the diagonal and the
    rest follows from P + Pᵀ = 1, diag(P) = 1/2, so every draw is a valid preference matrix."""
    n = len(ref)
    P = np.full((n, n), 0.5)
    iu = np.triu_indices(n, 1)
    P[iu] = np.asarray(upper, dtype=np.float64)
    P[(iu[1], iu[0])] = 1.0 - P[iu]
    return GameInstance(
        PreferenceGame(P, ref, beta),
        np.asarray(logits, dtype=np.float64),
        np.asarray(mu, dtype=np.float64),
        float(mixture),
        np.asarray(rewards, dtype=np.float64),
    )


# Ranges shared with theory.strategies. Distributions are softmaxes of values in
# [-SPREAD, SPREAD], so no probability is below e^(-2·SPREAD)/n: the instances stay well
# conditioned and the float64 tolerances below hold with a wide margin.
SPREAD = 2.0
REWARD_SCALE = 3.0
BETA_RANGE = (0.05, 20.0)  # log-uniform, the bandits' KL strength β
GAME_BETA_RANGE = (0.05, 5.0)  # log-uniform, the games' KL strength β (IPO-MD's τ)
MAX_PROMPTS = 3
MAX_ACTIONS = 4  # few distinct shapes: each is compiled once
BATCH = 4  # the fixed batch size of P3O Def. 2 instances


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _dist(rng: np.random.Generator, shape) -> NDArray[np.float64]:
    return softmax(rng.uniform(-SPREAD, SPREAD, shape), axis=-1)


def sample_bandit(
    rng: np.random.Generator, min_actions: int = 2, max_prompts: int = MAX_PROMPTS
) -> BanditInstance:
    """A random contextual bandit instance (1–3 prompts, 2–4 actions by default)."""
    X = int(rng.integers(1, max_prompts + 1))
    n = int(rng.integers(min_actions, MAX_ACTIONS + 1))
    B = BATCH
    batch = np.stack([rng.integers(0, X, B), rng.integers(0, n, B), rng.integers(0, n, B)], axis=1)
    delta = rng.choice([-1.0, 1.0], X) * rng.uniform(0.5, 3.0, X)
    return make_bandit_instance(
        rng.uniform(-REWARD_SCALE, REWARD_SCALE, (X, n)),
        _dist(rng, (X, n)),
        _dist(rng, (X,)),
        _log_uniform(rng, *BETA_RANGE),
        rng.uniform(-SPREAD, SPREAD, (X, n)),
        rng.uniform(-SPREAD, SPREAD, (X, n)),
        _dist(rng, (X, n)),
        _dist(rng, (X, n)),
        delta,
        batch,
    )


def sample_game(rng: np.random.Generator, n: int | None = None) -> GameInstance:
    """A random preference game (2–5 actions unless ``n`` is given)."""
    n = int(rng.integers(2, MAX_ACTIONS + 1)) if n is None else n
    return make_game_instance(
        rng.uniform(0.02, 0.98, n * (n - 1) // 2),
        _dist(rng, n),
        _log_uniform(rng, *GAME_BETA_RANGE),
        rng.uniform(-SPREAD, SPREAD, n),
        _dist(rng, n),
        rng.uniform(0.05, 0.95),
        rng.uniform(-REWARD_SCALE, REWARD_SCALE, n),
    )


def sample_gaussian(rng: np.random.Generator) -> GaussianInstance:
    return GaussianInstance(float(rng.uniform(-3.0, 3.0)))


SAMPLERS: dict[str, Callable[[np.random.Generator], Any]] = {
    "bandit": sample_bandit,
    # At least 3 actions (with 2, IPO's optimum does not depend on the data: IPO-MD Eq. 7)
    # and at most 2 prompts (fewer shapes to compile): the data-source claims.
    "bandit3": lambda rng: sample_bandit(rng, min_actions=3, max_prompts=2),
    "game": sample_game,
    "game2": lambda rng: sample_game(rng, n=2),
    "gaussian": sample_gaussian,
}
