"""Hypothesis strategies for the instances of :mod:`theory.instances` (a dev dependency).

They draw the same raw arrays as the seeded NumPy samplers of :mod:`theory.instances`, over
the same ranges, and build the instances with the same constructors, so every instance
is valid by construction: distributions are softmaxes (full support), preference matrices
satisfy P + Pᵀ = 1 with diag(P) = 1/2, and the KL strengths β are log-uniform.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax

from .instances import (
    BATCH,
    BETA_RANGE,
    GAME_BETA_RANGE,
    MAX_ACTIONS,
    MAX_PROMPTS,
    REWARD_SCALE,
    SPREAD,
    GaussianInstance,
    make_bandit_instance,
    make_game_instance,
)

__all__ = ["STRATEGIES", "bandit_instances", "game_instances", "gaussian_instances"]


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _array(draw, shape, lo, hi) -> np.ndarray:
    return draw(arrays(np.float64, shape, elements=_floats(lo, hi)))


def _dist(draw, shape) -> np.ndarray:
    return softmax(_array(draw, shape, -SPREAD, SPREAD), axis=-1)


def _log_uniform(draw, lo: float, hi: float) -> float:
    return math.exp(draw(_floats(math.log(lo), math.log(hi))))


@st.composite
def bandit_instances(
    draw, max_prompts: int = MAX_PROMPTS, max_actions: int = MAX_ACTIONS, min_actions: int = 2
):
    """A contextual bandit with π, π_old, full-support μ1, μ2, a shift δ(x) with |δ| ≥ ½
    and a fixed batch of (x, y1, y2) triples."""
    X = draw(st.integers(1, max_prompts))
    n = draw(st.integers(min_actions, max_actions))
    batch = np.stack(
        [
            draw(arrays(np.int64, BATCH, elements=st.integers(0, X - 1))),
            draw(arrays(np.int64, BATCH, elements=st.integers(0, n - 1))),
            draw(arrays(np.int64, BATCH, elements=st.integers(0, n - 1))),
        ],
        axis=1,
    )
    sign = draw(arrays(np.float64, X, elements=st.sampled_from([-1.0, 1.0])))
    delta = sign * _array(draw, X, 0.5, 3.0)
    return make_bandit_instance(
        _array(draw, (X, n), -REWARD_SCALE, REWARD_SCALE),
        _dist(draw, (X, n)),
        _dist(draw, X),
        _log_uniform(draw, *BETA_RANGE),
        _array(draw, (X, n), -SPREAD, SPREAD),
        _array(draw, (X, n), -SPREAD, SPREAD),
        _dist(draw, (X, n)),
        _dist(draw, (X, n)),
        delta,
        batch,
    )


@st.composite
def game_instances(draw, n: int | None = None, max_actions: int = MAX_ACTIONS):
    """A preference game with a valid random P, π, a full-support μ, β ∈ [0.05, 0.95]."""
    n = draw(st.integers(2, max_actions)) if n is None else n
    return make_game_instance(
        _array(draw, n * (n - 1) // 2, 0.02, 0.98),
        _dist(draw, n),
        _log_uniform(draw, *GAME_BETA_RANGE),
        _array(draw, n, -SPREAD, SPREAD),
        _dist(draw, n),
        draw(_floats(0.05, 0.95)),
        _array(draw, n, -REWARD_SCALE, REWARD_SCALE),
    )


def gaussian_instances() -> st.SearchStrategy[GaussianInstance]:
    """θ of the Gaussian toy of IPO-MD App. E.1."""
    return _floats(-3.0, 3.0).map(GaussianInstance)


#: The strategy of each instance family of :data:`theory.instances.SAMPLERS`.
STRATEGIES: dict[str, st.SearchStrategy] = {
    "bandit": bandit_instances(),
    "bandit3": bandit_instances(max_prompts=2, min_actions=3),
    "game": game_instances(),
    "game2": game_instances(n=2),
    "gaussian": gaussian_instances(),
}
