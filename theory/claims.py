"""A small registry of falsifiable claims, the instances they are tried on, and the runner.

A :class:`Claim` computes both sides of one statement of a paper exactly (float64, sums
over all outcomes, JAX autodiff) and returns the residual between them. It carries the
tolerance with its reason, a *negative control* (a deliberately wrong variant that the
same check must reject) and, where the printed statement needed a corrected constant or
condition, the statement *as printed*, which must fail: both directions are checked.

Instances come from seeded NumPy samplers here (``python -m theory`` needs no pytest or
hypothesis); :mod:`theory.strategies` builds the same instance types with hypothesis.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray
from scipy.special import softmax

from bandit.expected import expected_value, tables
from bandit.policy import log_softmax
from bandit.problems import Bandit, PreferenceGame

__all__ = [
    "CLAIMS",
    "SAMPLERS",
    "BanditInstance",
    "Claim",
    "ClaimResult",
    "GameInstance",
    "GaussianInstance",
    "make_bandit_instance",
    "make_game_instance",
    "register",
    "rel_err",
    "run_claim",
    "run_claims",
]

Residual = float


# ----------------------------------------------------------------------------- instances


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
      game: P (n, n) with P + Pᵀ = 1, π_ref (n,), τ.
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


def make_game_instance(upper, ref, tau, logits, mu, mixture, rewards) -> GameInstance:
    """Build a :class:`GameInstance`; ``upper`` fills P strictly above the diagonal and the
    rest follows from P + Pᵀ = 1, diag(P) = 1/2, so every draw is a valid preference matrix."""
    n = len(ref)
    P = np.full((n, n), 0.5)
    iu = np.triu_indices(n, 1)
    P[iu] = np.asarray(upper, dtype=np.float64)
    P[(iu[1], iu[0])] = 1.0 - P[iu]
    return GameInstance(
        PreferenceGame(P, ref, tau),
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
BETA_RANGE = (0.05, 20.0)  # log-uniform
TAU_RANGE = (0.05, 5.0)  # log-uniform
MAX_PROMPTS = 3
MAX_ACTIONS = 4  # few distinct shapes: each is compiled once
BATCH = 4  # the fixed batch size of P3O Def. 2 instances


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _dist(rng: np.random.Generator, shape) -> NDArray[np.float64]:
    return softmax(rng.uniform(-SPREAD, SPREAD, shape), axis=-1)


def sample_bandit(rng: np.random.Generator) -> BanditInstance:
    """A random contextual bandit instance (1–3 prompts, 2–5 actions)."""
    X = int(rng.integers(1, MAX_PROMPTS + 1))
    n = int(rng.integers(2, MAX_ACTIONS + 1))
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
        _log_uniform(rng, *TAU_RANGE),
        rng.uniform(-SPREAD, SPREAD, n),
        _dist(rng, n),
        rng.uniform(0.05, 0.95),
        rng.uniform(-REWARD_SCALE, REWARD_SCALE, n),
    )


def sample_gaussian(rng: np.random.Generator) -> GaussianInstance:
    return GaussianInstance(float(rng.uniform(-3.0, 3.0)))


SAMPLERS: dict[str, Callable[[np.random.Generator], Any]] = {
    "bandit": sample_bandit,
    "game": sample_game,
    "game2": lambda rng: sample_game(rng, n=2),
    "gaussian": sample_gaussian,
}


# ----------------------------------------------------------------------------- residuals


def rel_err(a, b) -> float:
    """max |a − b| / max(1, max |a|, max |b|): an absolute error for O(1) quantities and a
    relative one for large ones, so one float64 tolerance fits every instance."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Claim:
    """One executable, falsifiable claim.

    Attributes:
      id: a short stable id, e.g. ``"copg.thm1"``.
      paper: ``"CoPG"``, ``"IPO-MD"`` or ``"P3O"``.
      ref: where the paper states it (``"Thm 1"``, ``"Prop. 5.1"``).
      statement: one line, the statement that is checked (corrected where needed).
      family: which instance sampler/strategy generates its instances (see SAMPLERS).
      check: instance -> residual between the two independently computed sides.
      tol: the residual must be at most this.
      tol_reason: why this tolerance (derived from the mathematics / float64).
      negative: instance -> residual of a deliberately wrong variant; must exceed ``tol``.
      negative_desc: what the wrong variant is.
      printed: instance -> residual of the statement exactly as printed, where it differs
        from ``statement``; it must exceed ``tol`` on some instance (else no correction
        was needed and the claim fails).
      correction: what was corrected (constant, sign, condition), for the report.
    """

    id: str
    paper: str
    ref: str
    statement: str
    family: str
    check: Callable[[Any], Residual]
    tol: float
    tol_reason: str
    negative: Callable[[Any], Residual]
    negative_desc: str
    printed: Callable[[Any], Residual] | None = None
    correction: str = ""


CLAIMS: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add a claim to :data:`CLAIMS` (ids are unique)."""
    if claim.id in CLAIMS:
        raise ValueError(f"claim id {claim.id!r} is registered twice")
    if claim.family not in SAMPLERS:
        raise ValueError(f"claim {claim.id!r}: unknown instance family {claim.family!r}")
    CLAIMS[claim.id] = claim
    return claim


@dataclass
class ClaimResult:
    """The outcome of trying one claim on a set of instances."""

    id: str
    paper: str
    ref: str
    statement: str
    instances: int
    max_residual: float
    tol: float
    tol_reason: str
    negative_desc: str
    negative_min_residual: float
    negative_caught: bool
    as_printed: str  # "holds" or "corrected"
    printed_max_residual: float | None
    correction: str
    status: str  # "pass" or "FAIL"
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _nan_to_inf(r: float) -> float:
    return math.inf if not math.isfinite(r) else float(r)


def claim_rng(claim_id: str, seed: int, i: int) -> np.random.Generator:
    """The generator of instance ``i`` of a claim: fixed by (seed, claim id, i)."""
    return np.random.default_rng([seed, zlib.crc32(claim_id.encode()), i])


def run_claim(claim: Claim, instances: int, seed: int = 0) -> ClaimResult:
    """Try ``claim`` on ``instances`` seeded random instances; nothing is random elsewhere."""
    worst, neg_min, printed_max = 0.0, math.inf, -math.inf
    errors: list[str] = []
    for i in range(instances):
        inst = SAMPLERS[claim.family](claim_rng(claim.id, seed, i))
        try:
            worst = max(worst, _nan_to_inf(claim.check(inst)))
            neg_min = min(neg_min, _nan_to_inf(claim.negative(inst)))
            if claim.printed is not None:
                printed_max = max(printed_max, _nan_to_inf(claim.printed(inst)))
        except Exception as e:  # a crash is a failed claim, reported, never hidden
            errors.append(f"instance {i}: {type(e).__name__}: {e}")
            worst = math.inf
    caught = neg_min > claim.tol
    needed = claim.printed is None or printed_max > claim.tol
    ok = worst <= claim.tol and caught and needed and not errors
    return ClaimResult(
        claim.id,
        claim.paper,
        claim.ref,
        claim.statement,
        instances,
        worst,
        claim.tol,
        claim.tol_reason,
        claim.negative_desc,
        neg_min,
        caught,
        "holds" if claim.printed is None else "corrected",
        None if claim.printed is None else printed_max,
        claim.correction,
        "pass" if ok else "FAIL",
        errors,
    )


def run_claims(
    ids: Iterable[str] | None = None,
    *,
    instances: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> list[ClaimResult]:
    """Run the registered claims (all, or ``ids``) and return one result per claim."""
    from . import copg, ipo_md, p3o  # noqa: F401  (registers the claims)

    chosen = list(CLAIMS) if ids is None else list(ids)
    unknown = [c for c in chosen if c not in CLAIMS]
    if unknown:
        raise ValueError(f"claims: unknown claim id {unknown[0]!r}; expected one of {list(CLAIMS)}")
    it = chosen
    if progress:
        from tqdm import tqdm

        it = tqdm(chosen, desc="claims", unit="claim")
    return [run_claim(CLAIMS[c], instances, seed) for c in it]


# ----------------------------------------------------------------------------- JAX helpers
# Every check runs its JAX code inside ``jax.enable_x64(True)`` (never the global flag).
# The cores are jitted module-level functions of arrays, so one compilation per shape
# serves every instance and claim of that shape (eager autodiff would recompile each
# primitive and be ~10× slower).


def exact(fn: Callable[..., float]) -> Callable[..., float]:
    """Run ``fn`` under ``jax.enable_x64(True)`` so that every JAX array is float64."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def jtables(problem, preferences=None):
    """:func:`bandit.expected.tables` as float64 JAX arrays (call under x64)."""
    return jax.tree_util.tree_map(jnp.asarray, tables(problem, preferences))


@jax.jit
def scores(logits):
    """∇_θ log π(y|x) for every (x, y): shape logits.shape + logits.shape (autodiff)."""
    return jax.jacobian(log_softmax)(logits)


def _expected_loss(logits, tab, joint, mixture, method, k, clip_eps):
    """E[ℓ](θ) from the shared engine (:func:`bandit.expected.expected_value`), with the
    mixture traced (one compile for every β) and the method's name and integers static."""
    return expected_value(
        logits, tab, joint, method=method, mixture=mixture, k=k, clip_eps=clip_eps
    )


_STATIC = (4, 5, 6)
E_LOSS = jax.jit(_expected_loss, static_argnums=_STATIC)
E_GRAD = jax.jit(jax.grad(_expected_loss), static_argnums=_STATIC)
E_HESS = jax.jit(jax.hessian(_expected_loss), static_argnums=_STATIC)


def engine(fn, method: str, logits, tab, data=None, *, mixture=0.0, k=2, clip_eps=0.2):
    """Call E_LOSS / E_GRAD / E_HESS with the method's sampling (``data``: OfflineData)."""
    joint = None if data is None else jnp.asarray(data.joint)
    th = jnp.asarray(logits).reshape(tab.log_ref.shape)
    return fn(th, tab, joint, jnp.float64(mixture), method, k, float(clip_eps))


def stationary_residual(
    method: str,
    problem,
    data,
    log_pi,
    scale: float,
    *,
    preferences=None,
    unique: bool = True,
    mixture: float = 0.0,
) -> float:
    """Residual of "log_pi is the unique minimiser of the method's expected loss".

    The gradient of the exact expected loss (shared engine, autodiff) at ``log_pi``, in
    max-norm over ``scale``. With ``unique``, also the uniqueness certificate for the
    losses that are convex quadratics in the logits (CoPG, IPO): the Hessian's null space
    must be exactly the per-prompt shifts θ(x, ·) + c(x), whose dimension is the number of
    prompts X; if the (X+1)-th smallest eigenvalue is at rounding level, the minimiser is
    not unique and the residual is inf.
    """
    tab = jtables(problem, preferences)
    th = np.asarray(log_pi, dtype=np.float64).reshape(tab.log_ref.shape)
    g = np.asarray(engine(E_GRAD, method, th, tab, data, mixture=mixture))
    res = float(np.max(np.abs(g))) / scale
    if unique:
        N = th.size
        H = np.asarray(engine(E_HESS, method, th, tab, data, mixture=mixture)).reshape(N, N)
        ev = np.linalg.eigvalsh((H + H.T) / 2)
        X = th.shape[0]
        # Rounding leaves |eigenvalues| ~ 1e-15 where the Hessian vanishes; on these
        # instances a connected pair graph gives λ_(X+1) ≥ β ρ_min q_min ≳ 1e-8 (ranges
        # of theory.claims), so the floor 1e-12 separates the two by 4 orders each way.
        if ev[X] <= max(1e-11 * ev[-1], 1e-12):
            return math.inf
    return res
