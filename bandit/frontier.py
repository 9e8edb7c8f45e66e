"""Exact β-sweeps and the KL–reward frontier of every method (exact CoPG Figs. 5 and 7).

CoPG §6 shows, on an LLM, the reward of each method against the KL strength β (Fig. 5)
and the KL–reward trade-off (Fig. 7), both noisy and at one scale. On a tabular bandit both
are exact:

- **Sweep.** For each method and each β of a log-spaced grid, its exact fixed point π_β
  (:func:`bandit.fixed_point`, warm-started along the grid, each with its certificate), its
  reward E_{π_β}[R] and its KL(π_β‖π_ref).
- **Frontier.** The optimal policies {π*_β'} (CoPG Eq. 12) trace the best reward reachable at
  each KL: π*_β' maximises E[R] − β'·KL, so every π with KL(π‖π_ref) = k has
  E_π[R] ≤ R*(k) := E_{π*_β'}[R] where KL(π*_β') = k (the KL of π*_β' falls strictly with β'
  unless R is constant on the support of π_ref). For each fixed point we report R*(k) at its
  KL, the deficit R*(k) − E_π[R] ≥ 0 and β'(k), where on the frontier it sits.
- **Finite data** (``seeds > 0``): where the Fig. 1 trainer (:mod:`bandit.trainer`, the
  config's TrainConfig) ends after ``epochs`` epochs at each β, mean ± sd over seeds.
- **Preference-game methods**: ``online_ipo``, ``ipo_md`` and ``nash_md_pg`` on the
  Bradley–Terry game of the same bandit (per prompt, p(y ≻ y') = σ(R(y) − R(y')), τ = β),
  over the KL strength and the mixture coefficient (IPO-MD Eqs. 12, 13).

Layers as in :mod:`bandit.figure1`: :func:`compute` → :class:`FrontierResult` (``to_dict`` is
frontier.json), :func:`plot`, and the command line::

    python -m bandit.frontier [--points 50] [--min 0.01] [--max 100] [--methods ...]
                              [--mixtures 0.5] [--seeds 0] [--epochs 100] [--seed 0]
                              [--config FILE] [--out figures/]
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .cli import (
    ArgumentParser,
    cli,
    comma_list,
    float_in,
    int_at_least,
    method_list,
    nonneg_int,
    positive_float,
    positive_int,
)
from .exact import kl_to_ref, optimal_policy, value
from .figure1 import _LABELS as FIGURE1_LABELS
from .figure1 import Figure1Config
from .methods import OFFLINE_METHODS, get_method
from .outputs import json_text, jsonable, new_figure, save_outputs
from .problems import Bandit, OfflineData
from .validation import ValidationError, check_int, check_positive, real_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .fixed_points import FixedPoint

__all__ = [
    "GAME_METHODS",
    "Frontier",
    "FrontierResult",
    "Sweep",
    "TrainedPoints",
    "compute",
    "frontier",
    "frontier_reward",
    "main",
    "plot",
    "sweep",
]

#: The preference-game methods swept on the Bradley–Terry game (IPO-MD §4–5).
GAME_METHODS = ("online_ipo", "ipo_md", "nash_md_pg")
DEFAULT_METHODS = (*OFFLINE_METHODS, *GAME_METHODS)
DEFAULT_MIXTURES = (0.5,)
#: Seeds per trainer call: memory is O(SEED_CHUNK), whatever ``seeds`` is.
SEED_CHUNK = 16
#: A continuation root is accepted when max|F| (reduced field) is below this, absolute: the
#: roots solver's ROOT_TOL without its relative slack, as the start is already near a root.
_NEWTON_TOL = 1e-11
#: The largest grid :func:`grid` accepts.
MAX_POINTS = 100_000


def _at(bandit: Bandit, beta: float) -> Bandit:
    """The same (already validated) bandit with KL strength ``beta``: a shallow copy, as
    re-validating its arrays at every root-finding step would dominate the sweep."""
    out = copy.copy(bandit)
    object.__setattr__(out, "beta", check_positive("beta", beta))
    return out


def expected_reward(bandit: Bandit, log_pi: Any) -> Any:
    """E_{x∼ρ, y∼π}[R], as J(π) + β·KL(π‖π_ref) (CoPG Eq. 11 with bandit.exact's J and KL)."""
    return value(bandit, log_pi) + bandit.beta * kl_to_ref(bandit, log_pi)


# ------------------------------------------------------------------------------ frontier


@dataclass(frozen=True)
class _Limits:
    """The frontier's two ends: π_ref (KL 0) and the greedy limit β' → 0."""

    reward_ref: float  # E_{π_ref}[R]
    kl_max: float  # KL(π_greedy‖π_ref) = E_ρ[−log π_ref(argmax R | x)]
    reward_max: float  # E_ρ[max_y R(x, y)] over the support of π_ref
    scale: float  # a reward scale, for the bracket in β'


def _limits(bandit: Bandit) -> _Limits:
    R, lr = bandit.rewards, bandit.log_ref
    on = np.isfinite(lr)
    top = np.max(np.where(on, R, -np.inf), axis=-1, keepdims=True)
    best = on & (R == top)
    # π* → π_ref restricted to the best actions: its KL is −log π_ref(best set).
    log_mass = np.log(np.sum(np.where(best, bandit.ref, 0.0), axis=-1))
    spread = float(np.max(np.where(on, top - R, 0.0)))
    return _Limits(
        reward_ref=float(expected_reward(bandit, lr)),
        kl_max=float(-log_mass @ bandit.rho),
        reward_max=float(top[:, 0] @ bandit.rho),
        scale=spread if spread > 0 else 1.0,
    )


def _optimal_batch(bandit: Bandit, betas: NDArray[np.float64]) -> NDArray[np.float64]:
    """log π*_β' for every β' of ``betas`` at once, shape (K, X, n): :func:`optimal_policy`
    (CoPG Eq. 12) on a copy whose β is the (K, 1, 1) array, which it broadcasts."""
    out = copy.copy(bandit)
    object.__setattr__(out, "beta", np.asarray(betas, dtype=np.float64)[:, None, None])
    return optimal_policy(out)


def _kl_star(bandit: Bandit, log_beta: NDArray[np.float64]) -> NDArray[np.float64]:
    """KL(π*_β'‖π_ref) at β' = exp(log_beta), for a vector of log β'."""
    return np.asarray(kl_to_ref(bandit, _optimal_batch(bandit, np.exp(log_beta))))


#: Half-width of the search for β' in log β' around log(reward scale): beyond it π*_β' is
#: π_ref or greedy to rounding.
_LOG_BETA_RANGE = 700.0


def _brackets(bandit: Bandit, k: NDArray[np.float64], lim: _Limits):
    """Per k, (lo, hi) in log β' with KL*(lo) > k ≥ KL*(hi), adjacent points of the lattice
    log(scale) + j·log 10 (|j·log 10| ≤ 700, and β' ≥ 1e-300·max|R| so that R/β' stays
    finite); and masks of the k beyond its ends: greedy (no KL* above k) and π_ref."""
    step = math.log(10.0)
    top = math.log(max(float(np.max(np.abs(bandit.rewards))), 1e-300)) + 300.0 * math.log(0.1)
    j = np.arange(-int(_LOG_BETA_RANGE / step), int(_LOG_BETA_RANGE / step) + 1)
    lattice = math.log(lim.scale) + step * j
    lattice = lattice[lattice >= top]
    kls = _kl_star(bandit, lattice)  # decreasing in log β'
    # The last lattice point whose KL* exceeds k: the bracket's low end.
    above = kls[None, :] > k[:, None]
    last = np.where(above.any(axis=1), above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1), -1)
    greedy = last < 0
    ref = last == len(lattice) - 1
    i = np.clip(last, 0, len(lattice) - 2)
    return lattice[i], lattice[i + 1], greedy, ref


def frontier_reward(bandit: Bandit, kl: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The optimal frontier at given KLs: R*(k) and β'(k) with KL(π*_β'‖π_ref) = k.

    R*(k) = max {E_π[R] : KL(π‖π_ref) ≤ k}, reached by π*_β' (CoPG Eq. 12), β' found by
    bisection in log β' (the KL of π*_β' is strictly decreasing in β'), all k at once, to
    the last bit of log β'. Ends: k ≤ 0 gives π_ref (β' = inf); k at or beyond
    KL_max = E_ρ[−log π_ref(argmax R)] gives the greedy limit R* = E_ρ[max R] (β' = 0),
    since no policy has more reward.

    Args:
      bandit: the (contextual) bandit; its own β is not used.
      kl: KL values, any shape (ρ-averaged KL(π‖π_ref)).
    Returns:
      (R*(kl), β'(kl)), both of kl's shape.
    """
    if not isinstance(bandit, Bandit):
        raise ValidationError(f"bandit must be a Bandit, got {type(bandit).__name__}")
    k = real_array("kl", kl)
    bad = np.flatnonzero(~(k.ravel() >= 0))  # NaN too
    if bad.size:
        raise ValidationError(
            f"kl: expected KL values >= 0, got {float(k.ravel()[bad[0]])!r} at flat index {bad[0]}"
        )
    lim = _limits(bandit)
    flat = k.ravel()
    rew = np.full(flat.shape, lim.reward_ref)
    bet = np.full(flat.shape, math.inf)
    if lim.kl_max == 0.0:
        return rew.reshape(k.shape), bet.reshape(k.shape)
    # Within rounding of KL_max the root in β' is lost in the flat tail: the greedy limit.
    greedy = flat >= lim.kl_max * (1.0 - 1e-13)
    rew[greedy], bet[greedy] = lim.reward_max, 0.0
    todo = np.flatnonzero((flat > 0.0) & ~greedy)
    if todo.size:
        kk = flat[todo]
        lo, hi, to_greedy, to_ref = _brackets(bandit, kk, lim)
        # Bisection keeps KL*(lo) > k ≥ KL*(hi) until no float lies strictly between them
        # (about 55 halvings of a log 10 wide bracket); one batched KL* per step.
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            inside = (mid > lo) & (mid < hi)
            if not inside.any():
                break
            up = _kl_star(bandit, mid) > kk
            lo = np.where(inside & up, mid, lo)
            hi = np.where(inside & ~up, mid, hi)
        b = np.exp(0.5 * (lo + hi))
        star = np.asarray(expected_reward(bandit, _optimal_batch(bandit, b)))
        rew[todo] = np.where(to_greedy, lim.reward_max, np.where(to_ref, lim.reward_ref, star))
        bet[todo] = np.where(to_greedy, 0.0, np.where(to_ref, math.inf, b))
    return rew.reshape(k.shape), bet.reshape(k.shape)


@dataclass(frozen=True, eq=False)
class Frontier:
    """The optimal frontier {π*_β'}: (KL, reward) along β', and its two ends.

    Attributes:
      kl_strength: β' (decreasing KL as β' grows).
      kl: KL(π*_β'‖π_ref), ρ-averaged.
      reward: E_{π*_β'}[R].
      kl_max, reward_max: the greedy end (β' → 0).
      reward_ref: E_{π_ref}[R], the KL = 0 end (β' → ∞).
    """

    kl_strength: NDArray[np.float64]
    kl: NDArray[np.float64]
    reward: NDArray[np.float64]
    kl_max: float
    reward_max: float
    reward_ref: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def frontier(bandit: Bandit, kl_strength: Sequence[float]) -> Frontier:
    """The frontier at the given β' values (each π*_β' in closed form, CoPG Eq. 12)."""
    betas = np.asarray(kl_strength, dtype=np.float64).ravel()
    lp = _optimal_batch(bandit, betas)
    kls = np.atleast_1d(kl_to_ref(bandit, lp))
    rews = np.atleast_1d(expected_reward(bandit, lp))
    lim = _limits(bandit)
    return Frontier(betas, kls, rews, lim.kl_max, lim.reward_max, lim.reward_ref)


# --------------------------------------------------------------------------------- sweep


@dataclass(frozen=True, eq=False)
class Sweep:
    """One method's exact fixed points over the grid of KL strengths.

    Policies are (P, X, n) (P grid points); per-point arrays are (P,).

    Attributes:
      method: the method's name.
      mixture: the mixture coefficient (ipo_md, nash_md_pg), else None.
      kl_strength: the grid β.
      reward: E_π[R] at each fixed point.
      kl: KL(π‖π_ref) at each fixed point (ρ-averaged).
      fixed_point_policy: π at each fixed point.
      residual: each fixed point's certificate (:class:`~bandit.fixed_points.FixedPoint`).
      unique, interior: the solver's flags per point.
      solver: ``"fixed_point"`` or ``"continuation"`` (a Newton step on the exact field from
        the previous point's solution, certified by the same residual).
      frontier_reward: R*(KL) at each fixed point's KL (:func:`frontier_reward`).
      deficit_to_frontier: R*(KL) − E_π[R], ≥ 0 by the frontier theorem.
      frontier_kl_strength: β' with KL(π*_β') = KL: where on the frontier the point sits.
    """

    method: str
    mixture: float | None
    kl_strength: NDArray[np.float64]
    reward: NDArray[np.float64]
    kl: NDArray[np.float64]
    fixed_point_policy: NDArray[np.float64]
    residual: NDArray[np.float64]
    unique: NDArray[np.bool_]
    interior: NDArray[np.bool_]
    solver: tuple[str, ...]
    frontier_reward: NDArray[np.float64]
    deficit_to_frontier: NDArray[np.float64]
    frontier_kl_strength: NDArray[np.float64]

    def to_dict(self, squeeze: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if squeeze:  # a one-prompt bandit given as (n,): policies as (P, n)
            d["fixed_point_policy"] = self.fixed_point_policy[:, 0]
        return jsonable(d)


def _continuation(
    method: str, bandit: Bandit, data: Any, params: dict, prev: list, jac: list
) -> Any:
    """A fixed point by Newton on the exact field from a polynomial prediction in log β.

    ``prev`` holds (log β, logits) of the last one to three solved points, extrapolated by
    the polynomial through them (Lagrange: constant, secant, quadratic; the quadratic cuts
    the Newton steps by a third along the §5 sweep); ``jac`` caches the
    reduced Jacobian of the last point (chord steps with Broyden's rank-one updates: the
    Jacobian moves little between grid points, and is refreshed when the steps stop
    contracting). Returns (log π,
    residual), or None when no root is certified within a few steps. Used for methods
    solved by root finding (pg, pg_value) or by Newton (dpo), after a first point solved by
    :func:`bandit.fixed_point` (which establishes uniqueness and interiority).
    """
    from .fixed_points.gradient import Field
    from .fixed_points.roots import _expand, _reduce, _reduced_system
    from .policy import log_softmax
    from .prepare import prepare

    fld = Field(prepare(method, bandit, data, **params))
    F, JF = _reduced_system(fld)
    t = math.log(bandit.beta)
    z = np.zeros_like(_reduce(prev[-1][1]))
    for i, (ti, lp_i) in enumerate(prev):  # Lagrange extrapolation along the branch
        w = math.prod((t - tj) / (ti - tj) for j, (tj, _) in enumerate(prev) if j != i)
        z = z + w * _reduce(lp_i)
    if not jac:
        jac.append(JF(z))
    fz = F(z)
    last = np.inf
    for _ in range(40):
        err = float(np.max(np.abs(fz))) if np.all(np.isfinite(fz)) else np.inf
        if err <= _NEWTON_TOL:
            lp = log_softmax(_expand(z, fld.shape))
            return lp, fld.residual(lp)
        if not np.isfinite(err):
            return None
        if err > 0.25 * last:  # chord steps stalled: a fresh Jacobian
            jac[0] = JF(z)
        last = err
        try:
            dz = -np.linalg.solve(jac[0], fz)
        except np.linalg.LinAlgError:
            return None
        z = z + dz
        f_new = F(z)
        if np.all(np.isfinite(f_new)):  # Broyden's update: the chord learns the step's slope
            jac[0] = jac[0] + np.outer(f_new - fz - jac[0] @ dz, dz) / float(dz @ dz)
        fz = f_new
    return None


#: Methods whose sweep may continue a branch by Newton (their solver is a root search).
_CONTINUE = {"pg", "pg_value", "dpo"}


def sweep(
    method: str,
    bandit: Bandit,
    data: OfflineData | None,
    kl_strength: Sequence[float],
    *,
    warm: bool = True,
    progress: Callable[[int], Any] | None = None,
    **params: Any,
) -> Sweep:
    """Exact fixed points of ``method`` at each KL strength of ``kl_strength``.

    Warm start (``warm``): each point's solver starts from the previous point's solution
    (``fixed_point(..., init=previous)``); for pg, pg_value and dpo, whose solvers search
    roots, a Newton continuation on the exact field follows the branch from the first
    point and falls back to :func:`bandit.fixed_point` whenever it does not certify a root.
    ``warm=False`` solves every point from scratch (the benchmark's baseline).

    Args:
      method: a method name (offline, or a preference-game method with ``data=None``).
      bandit: the (contextual) bandit; its β is replaced by each grid value.
      data: the offline data (None for online methods).
      kl_strength: the grid of β.
      progress: called with 1 after each point.
      **params: the method's parameters (``mixture``).
    """
    from .fixed_points import fixed_point

    name = get_method(method).name
    betas = np.asarray(kl_strength, dtype=np.float64)
    lps, res, uniq, inter, how = [], [], [], [], []
    prev: list = []
    jac: list = []
    first: FixedPoint | None = None
    for b in betas:
        bb = _at(bandit, float(b))
        out = None
        if warm and name in _CONTINUE and first is not None and first.unique and first.interior:
            out = _continuation(name, bb, data, params, prev, jac)
        if out is not None:
            lp, r = out
            u, i, s = True, True, "continuation"
        else:
            init = prev[-1][1] if (warm and prev) else None
            fp = fixed_point(name, bb, data, init=init, **params)
            first = first or fp
            lp, r, u, i, s = fp.log_policy, fp.residual, fp.unique, fp.interior, "fixed_point"
        lps.append(lp)
        res.append(r)
        uniq.append(u)
        inter.append(i)
        how.append(s)
        if np.all(np.isfinite(lp)):
            prev = [*prev[-2:], (math.log(b), lp)]
        if progress is not None:
            progress(1)
    lps_a = np.stack(lps)
    # KL and E_π[R] do not depend on β: one batched evaluation over the grid.
    kls = np.atleast_1d(kl_to_ref(bandit, lps_a))
    rew = np.atleast_1d(expected_reward(bandit, lps_a))
    fr, fb = frontier_reward(bandit, kls)
    return Sweep(
        method=name,
        mixture=params.get("mixture"),
        kl_strength=betas,
        reward=rew,
        kl=kls,
        fixed_point_policy=np.exp(lps_a),
        residual=np.array(res),
        unique=np.array(uniq),
        interior=np.array(inter),
        solver=tuple(how),
        frontier_reward=fr,
        deficit_to_frontier=fr - rew,
        frontier_kl_strength=fb,
    )


# ---------------------------------------------------------------------------- finite data


@dataclass(frozen=True, eq=False)
class TrainedPoints:
    """Where the Fig. 1 trainer ends at each β: mean and sd over seeds (ddof 1 when > 1)."""

    kl_mean: NDArray[np.float64]
    kl_sd: NDArray[np.float64]
    reward_mean: NDArray[np.float64]
    reward_sd: NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def _chunk_seed(seed: int, chunk: int) -> int:
    """A reproducible, independent integer seed for chunk ``chunk`` of ``seed``."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def train_sweep(
    config: Figure1Config,
    methods: Sequence[str],
    kl_strength: Sequence[float],
    *,
    seeds: int,
    epochs: int,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, TrainedPoints]:
    """Train every offline method at every β on ``seeds`` datasets (Fig. 1's trainer).

    Seeds run in chunks of :data:`SEED_CHUNK`, so memory does not grow with ``seeds``;
    chunk c draws its datasets from ``SeedSequence([seed, c])``. The datasets do not
    depend on β (Bradley–Terry labels on R), so every β and method sees the same data.
    """
    from .trainer import CompiledTrainer, minibatches

    seeds = check_int("seeds", seeds, 1)
    bandit, data = config.problem()
    tc = config.train_config(epochs)
    n_chunks = -(-seeds // SEED_CHUNK)
    S = min(seeds, SEED_CHUNK)
    kl = {m: np.empty((len(kl_strength), seeds)) for m in methods}
    rw = {m: np.empty((len(kl_strength), seeds)) for m in methods}
    for i, b in enumerate(kl_strength):
        bb = _at(bandit, float(b))
        trainer = CompiledTrainer(
            methods, bb, S, tc.epochs, tc.batch_sizes, learning_rate=tc.learning_rate
        )
        for c in range(n_chunks):
            lo, hi = c * SEED_CHUNK, min(seeds, (c + 1) * SEED_CHUNK)
            batches = minibatches(bb, data, n_seeds=S, seed=_chunk_seed(seed, c), config=tc)
            out = trainer.run(batches)
            for m in methods:
                lp = out[m].log_policies[: hi - lo, -1]
                kl[m][i, lo:hi] = kl_to_ref(bb, lp)
                rw[m][i, lo:hi] = expected_reward(bb, lp)
            if progress is not None:
                progress(1)
    ddof = 1 if seeds > 1 else 0
    return {
        m: TrainedPoints(
            kl[m].mean(axis=1), kl[m].std(axis=1, ddof=ddof), rw[m].mean(axis=1),
            rw[m].std(axis=1, ddof=ddof),
        )
        for m in methods
    }  # fmt: skip


# ---------------------------------------------------------------------------- experiment


@dataclass(frozen=True, eq=False)
class FrontierResult:
    """What :func:`compute` returns; ``to_dict()`` is frontier.json.

    Attributes:
      config: the experiment (its ``beta`` is marked on the figure; the sweep replaces it).
      kl_strength: the grid.
      methods: a :class:`Sweep` per offline method.
      game_methods: per preference-game method, a :class:`Sweep` per mixture.
      frontier: the optimal frontier, on a grid 10× wider than the sweep's each way.
      trained: per offline method, where the trainer ends (empty when ``seeds`` = 0).
      seeds, epochs, seed: the finite-data setting.
    """

    config: Figure1Config
    kl_strength: NDArray[np.float64]
    methods: Mapping[str, Sweep]
    game_methods: Mapping[str, Sequence[Sweep]]
    frontier: Frontier
    trained: Mapping[str, TrainedPoints] = field(default_factory=dict)
    seeds: int = 0
    epochs: int = 100
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        sq = np.ndim(self.config.rewards) == 1
        methods = {}
        for m, s in self.methods.items():
            methods[m] = s.to_dict(squeeze=sq)
            if m in self.trained:
                methods[m]["trained"] = self.trained[m].to_dict()
        return jsonable(
            {
                "config": {
                    **asdict(self.config),
                    "methods": [*self.methods, *self.game_methods],
                    "seeds": self.seeds,
                    "epochs": self.epochs,
                    "seed": self.seed,
                },
                "kl_strength": self.kl_strength,
                "methods": methods,
                "game_methods": {
                    m: [s.to_dict(squeeze=sq) for s in runs]
                    for m, runs in self.game_methods.items()
                },
                "frontier": self.frontier.to_dict(),
            }
        )

    def to_json(self) -> str:
        return json_text(self.to_dict())


def grid(points: int, low: float, high: float) -> NDArray[np.float64]:
    """The log-spaced grid of KL strengths, validated."""
    # Each point is an exact solve (milliseconds): 10⁵ points already take minutes.
    points = check_int("points", points, 2, MAX_POINTS)
    low, high = check_positive("min", low), check_positive("max", high)
    if not low < high:
        raise ValidationError(f"min must be below max, got min = {low:g}, max = {high:g}")
    return np.geomspace(low, high, points)


def compute(
    config: Figure1Config | None = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    mixtures: Sequence[float] = DEFAULT_MIXTURES,
    points: int = 50,
    low: float = 1e-2,
    high: float = 1e2,
    seeds: int = 0,
    epochs: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> FrontierResult:
    """Sweep every method over the grid, place it against the frontier, optionally train.

    Args:
      config: the bandit and data (default CoPG §5's); contextual bandits too.
      methods: offline methods and/or online_ipo, ipo_md, nash_md_pg.
      mixtures: the mixture coefficients of ipo_md and nash_md_pg.
      points, low, high: the grid, ``points`` log-spaced KL strengths in [low, high].
      seeds: train the offline methods on this many datasets per β (0: off).
      epochs: the trainer's epochs.
      seed: the datasets' random seed.
      progress: show a progress bar.
    """
    config = config or Figure1Config()
    betas = grid(points, low, high)
    methods = list(dict.fromkeys(get_method(m).name for m in methods))
    bad = [m for m in methods if m not in OFFLINE_METHODS and m not in GAME_METHODS]
    if bad:
        raise ValidationError(
            f"methods: {bad[0]!r} is not swept; expected offline methods "
            f"({', '.join(OFFLINE_METHODS)}) or {', '.join(GAME_METHODS)}"
        )
    mixtures = [float(m) for m in mixtures]
    check_int("seeds", seeds, 0)
    check_int("epochs", epochs, 1)
    bandit, data = config.problem()
    offline = [m for m in methods if m in OFFLINE_METHODS]
    games = [m for m in methods if m in GAME_METHODS]
    runs = {m: [None] if m == "online_ipo" else mixtures for m in games}
    total = len(betas) * (len(offline) + sum(len(v) for v in runs.values()))
    if seeds and offline:
        config.train_config(epochs)
        total += len(betas) * -(-seeds // SEED_CHUNK)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="frontier", unit="point", leave=False)
    tick = bar.update if bar else None
    try:
        # Two threads: one method's XLA compilation and LAPACK/HiGHS solves (GIL released)
        # overlap another's Python; each sweep is independent, so results do not change.
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = {m: pool.submit(sweep, m, bandit, data, betas, progress=tick) for m in offline}
            swept = {m: j.result() for m, j in jobs.items()}
        game = {
            m: [
                sweep(
                    m, bandit, None, betas, progress=tick, **({} if x is None else {"mixture": x})
                )
                for x in xs
            ]
            for m, xs in runs.items()
        }
        trained = {}
        if seeds and offline:
            trained = train_sweep(
                config, offline, betas, seeds=seeds, epochs=epochs, seed=seed, progress=tick
            )
    finally:
        if bar is not None:
            bar.close()
    wide = np.geomspace(betas[0] / 10.0, betas[-1] * 10.0, 4 * len(betas))
    return FrontierResult(
        config, betas, swept, game, frontier(bandit, wide), trained, seeds, epochs, seed
    )


# -------------------------------------------------------------------------------- figure

_LABELS = {
    **FIGURE1_LABELS,
    "online_ipo": "online IPO",
    "ipo_md": "IPO-MD",
    "nash_md_pg": "Nash-MD-PG",
}


def _curves(result: FrontierResult):
    i = 0
    for m, s in result.methods.items():
        yield f"C{i}", _LABELS.get(m, m), "-", s
        i += 1
    for m, runs in result.game_methods.items():
        for s in runs:
            lab = _LABELS.get(m, m) + ("" if s.mixture is None else f" (β = {s.mixture:g})")
            yield f"C{i}", lab, (0, (4, 2)), s
            i += 1


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decades(ax: Any, axis: str) -> None:
    """A log axis labelled 10ⁿ at its decades in plain text: matplotlib's default labels
    are mathtext, whose parsing is most of the time saving this figure takes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    def label(v: float, _pos: Any) -> str:
        e = math.log10(v) if v > 0 else math.nan
        return "10" + str(round(e)).translate(_SUPERSCRIPT) if abs(e - round(e)) < 1e-9 else ""

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(LogLocator(base=10.0, numticks=12))
    a.set_major_formatter(FuncFormatter(label))
    # Labelled decades suffice; minor ticks cost as much to draw as the rest of the axes.
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())


def plot(result: FrontierResult) -> Figure:
    """Reward and KL against β (exact CoPG Fig. 5), the (KL, reward) plane with the
    frontier (exact CoPG Fig. 7) and each method's deficit to it."""
    fig = new_figure(figsize=(11.0, 8.0))
    # Fixed margins, not tight_layout: that costs a full text layout of the figure, and
    # save_figure crops to the drawn extent anyway.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.96, wspace=0.22, hspace=0.3)
    (a, b), (c, d) = fig.subplots(2, 2)
    fr = result.frontier
    betas = result.kl_strength
    star = np.interp(np.log(betas), np.log(fr.kl_strength), fr.reward)
    star_kl = np.interp(np.log(betas), np.log(fr.kl_strength), fr.kl)
    a.plot(betas, star, color="k", lw=2.5, alpha=0.3, label="π*_β")
    b.plot(betas, star_kl, color="k", lw=2.5, alpha=0.3, label="π*_β")
    c.plot(fr.kl, fr.reward, color="k", lw=2.5, alpha=0.3, label="frontier {π*_β′}")
    for color, label, ls, s in _curves(result):
        a.plot(s.kl_strength, s.reward, color=color, ls=ls, label=label)
        b.plot(s.kl_strength, s.kl, color=color, ls=ls, label=label)
        c.plot(s.kl, s.reward, color=color, ls=ls, marker=".", ms=3)  # colours as in (a)
        d.plot(s.kl_strength, np.maximum(s.deficit_to_frontier, 1e-17), color=color, ls=ls)
    for i, (m, t) in enumerate(result.trained.items()):
        color = f"C{list(result.methods).index(m)}"
        a.errorbar(betas, t.reward_mean, t.reward_sd, color=color, fmt="o", ms=2.5, lw=0.8)
        b.errorbar(betas, t.kl_mean, t.kl_sd, color=color, fmt="o", ms=2.5, lw=0.8)
        c.errorbar(t.kl_mean, t.reward_mean, t.reward_sd, t.kl_sd, color=color, fmt="o", ms=2.5,
                   lw=0.6, label="trained, mean ± sd" if i == 0 else None)  # fmt: skip
    for ax in (a, b, d):
        ax.set_xscale("log")
        _decades(ax, "x")
        ax.axvline(result.config.beta, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("KL strength β")
    for ax in (b, d):
        ax.set_yscale("log")
        _decades(ax, "y")
    kl_label = "KL(π ‖ π_ref)"
    a.set_ylabel("E_π[R] at the fixed point")
    b.set_ylabel(kl_label)
    c.set_xlabel(kl_label)
    c.set_ylabel("E_π[R]")
    d.set_ylabel("deficit R*(KL) − E_π[R]")
    c.set_xlim(0, max(fr.kl_max, *(float(np.max(s.kl)) for *_, s in _curves(result))) * 1.05)
    a.set_title("(a) reward vs β (exact CoPG Fig. 5)", fontsize=9)
    b.set_title("(b) KL to π_ref vs β", fontsize=9)
    c.set_title("(c) KL–reward plane (exact CoPG Fig. 7; colours as in (a))", fontsize=9)
    d.set_title("(d) reward deficit to the frontier at equal KL (CoPG: 0)", fontsize=9)
    a.legend(frameon=False, fontsize=7)
    c.legend(frameon=False, fontsize=7, loc="lower right")
    return fig


# -------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m bandit.frontier",
        description="Exact β-sweeps of every method and the KL–reward frontier "
        "(exact CoPG Figs. 5 and 7) on the CoPG §5 bandit or a --config.",
    )
    p.add_argument("--points", type=int_at_least(2), default=50, help="grid points (default 50)")
    p.add_argument("--min", type=positive_float, default=1e-2, help="smallest β (default 0.01)")
    p.add_argument("--max", type=positive_float, default=1e2, help="largest β (default 100)")
    p.add_argument(
        "--methods",
        type=method_list(),
        default=DEFAULT_METHODS,
        help=f"comma-separated methods among {', '.join(DEFAULT_METHODS)} (default all of them)",
    )
    p.add_argument(
        "--mixtures",
        type=comma_list(float_in(0.0, 1.0)),
        default=DEFAULT_MIXTURES,
        help="mixture coefficients of ipo_md and nash_md_pg (default 0.5)",
    )
    p.add_argument(
        "--seeds",
        type=nonneg_int,
        default=0,
        help="also train the offline methods on this many datasets per β (default 0: off)",
    )
    p.add_argument("--epochs", type=positive_int, default=100, help="epochs (default 100)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default figures/)"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file in the figure1 format: rewards, mu1, mu2, ref, rho, beta, "
        "dataset_size, batch_size, learning_rate, drop_last",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write frontier.png, frontier.pdf and frontier.json."""
    args = _parser().parse_args(argv)
    config = Figure1Config.load(args.config)
    config.problem()
    grid(args.points, args.min, args.max)
    for m in args.methods:
        if m not in DEFAULT_METHODS:
            raise ValidationError(
                f"--methods: {m!r} is not swept; expected among {', '.join(DEFAULT_METHODS)}"
            )
    result = compute(
        config,
        methods=args.methods,
        mixtures=args.mixtures,
        points=args.points,
        low=args.min,
        high=args.max,
        seeds=args.seeds,
        epochs=args.epochs,
        seed=args.seed,
        progress=True,
    )
    save_outputs(args.out, "frontier", plot(result), result.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main)())
