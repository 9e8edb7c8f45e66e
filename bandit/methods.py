"""The method registry: a :class:`Method` carries everything the engine needs to run it.

A method is its per-pair loss (written once, on per-completion quantities, so the tabular
engine, ``theory/`` and ``llm/`` all evaluate the same function), where its pairs come
from, its parameters with their checks, and, where it has one, a structured fixed-point
solver. Names are resolved once, at the edge, by :func:`get_method`; everything past it
holds the object. :func:`register` adds a method from outside the package.

Import-light: no JAX, no torch. Solvers are referenced lazily (:class:`_Lazy`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module
from typing import Any, Literal

from array_api_compat import array_namespace

from . import losses as L
from .validation import ValidationError, check_int, check_positive, check_unit_interval

__all__ = [
    "METHODS",
    "OFFLINE_METHODS",
    "ONLINE_METHODS",
    "Method",
    "Pair",
    "Param",
    "get_method",
    "register",
]

Array = Any
Sampling = Literal["offline", "policy", "mixture", "policy_vs_mixture"]


@dataclass(frozen=True)
class Pair:
    """What a per-pair loss sees: per-completion quantities of k completions of one prompt.

    Each tuple holds k broadcastable arrays, one per completion (k = 2 for a pair). The
    tabular engine broadcasts completion j over its own action axis; ``llm`` splits the
    last axis of (..., k) tensors.

    Attributes:
      logratio: h(y_j) = log π(y_j) − log π_ref(y_j); differentiable.
      logp: log π(y_j); differentiable.
      old_logp: log π_old(y_j) of the sampler, constants (sg[log π] on-policy).
      old_logratio: log π_old(y_j) − log π_ref(y_j), constants.
      reward: R(y_j), or None for a preference game.
      preference: p(y_1 ≻ y_2), linear in every preference loss (0/1 for hard labels).
      value: the value baseline E_{y∼π}[R(y)], stop-gradient (exact in the tabular engine,
        the caller's estimate in ``llm``); None without rewards.
      beta: the KL strength (CoPG's β, IPO-MD's τ).
    """

    logratio: tuple[Array, ...]
    logp: tuple[Array, ...]
    old_logp: tuple[Array, ...]
    old_logratio: tuple[Array, ...]
    reward: tuple[Array, ...] | None
    preference: Array | None
    value: Array | None
    beta: Any


@dataclass(frozen=True)
class Param:
    """A method parameter: its name, default and check (``check(name, value) -> value``)."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str = ""


class _Lazy:
    """A function imported on first call, so this module stays free of JAX."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(self.module), self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Method:
    """A training method and its behaviour.

    Attributes:
      name: the method's name (API, CLI, JSON).
      loss: the per-pair loss, ``loss(pair: Pair, **params) -> Array``, to be minimised,
        built from :mod:`bandit.losses`.
      signal: ``"reward"`` (learns from R) or ``"preference"`` (from p(y ≻ y')).
      sampling: where pairs come from: ``"offline"`` (y ∼ μ1, y' ∼ μ2), ``"policy"``
        (y, y' ∼ sg[π]), ``"mixture"`` (y, y' ∼ sg[π^(1−m)π_ref^m], m the ``mixture``)
        or ``"policy_vs_mixture"`` (y ∼ sg[π], y' ∼ sg[π^(1−m)π_ref^m]).
      paper: where it is defined.
      params: its parameters, with defaults and checks.
      fixed_point: a structured solver ``f(problem, theta0, field) -> FixedPoint`` (see
        :mod:`bandit.fixed_points`); None uses the generic root finder.
      arity: the number of completions per sample (2), or the name of the parameter that
        gives it (``"k"`` for rloo).
    """

    name: str
    loss: Callable[..., Array]
    signal: Literal["reward", "preference"]
    sampling: Sampling
    paper: str
    params: tuple[Param, ...] = ()
    fixed_point: Callable[..., Any] | None = field(default=None, compare=False)
    arity: int | str = 2

    def __post_init__(self) -> None:
        if self.signal not in ("reward", "preference"):
            raise ValidationError(f"signal must be 'reward' or 'preference', got {self.signal!r}")
        if self.sampling not in ("offline", "policy", "mixture", "policy_vs_mixture"):
            raise ValidationError(
                "sampling must be 'offline', 'policy', 'mixture' or 'policy_vs_mixture', "
                f"got {self.sampling!r}"
            )
        if self.sampling in ("offline", "policy_vs_mixture") and self.arity != 2:
            raise ValidationError(f"sampling {self.sampling!r} draws pairs: arity must be 2")

    @property
    def offline(self) -> bool:
        return self.sampling == "offline"

    @property
    def uses_mixture(self) -> bool:
        return self.sampling in ("mixture", "policy_vs_mixture")

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The checked parameters, defaults filled in; unknown names are refused."""
        allowed = {p.name: p for p in self.params}
        extra = sorted(set(params) - set(allowed))
        if extra:
            raise ValidationError(
                f"{extra[0]}: not a parameter of method {self.name!r} "
                f"(allowed: {sorted(allowed) or 'none'})"
            )
        return {
            name: p.check(name, params[name]) if name in params else p.default
            for name, p in allowed.items()
        }

    def n_completions(self, params: Mapping[str, Any]) -> int:
        """k, the completions per sample, for checked ``params``."""
        return self.arity if isinstance(self.arity, int) else int(params[self.arity])


MIXTURE = Param("mixture", 0.0, check_unit_interval, "IPO-MD's β ∈ [0, 1] of π^(1−β)π_ref^β")
CLIP_EPS = Param("clip_eps", 0.2, check_positive, "P3O's clipping ε > 0")
K = Param("k", 2, partial(check_int, low=2), "samples per prompt, k >= 2")


# ----------------------------------------------------------------- per-pair losses
# One line each: the formulas live in bandit.losses; these only say which quantities enter.


def _copg(c: Pair) -> Array:
    (h1, h2), (r1, r2) = c.logratio, c.reward
    return L.copg_loss(h1, h2, r1, r2, c.beta)


def _pg(c: Pair) -> Array:
    (h1, h2), (r1, r2) = c.logratio, c.reward
    return L.pg_loss(h1, h2, r1, r2, c.beta, 0.0)


def _pg_value(c: Pair) -> Array:
    (h1, h2), (r1, r2) = c.logratio, c.reward
    return L.pg_loss(h1, h2, r1, r2, c.beta, c.value)


def _stacked(xs: Sequence[Array]) -> Array:
    xp = array_namespace(*xs)
    return xp.stack(xp.broadcast_arrays(*xs), axis=-1)


def _rloo(c: Pair, k: int = 2) -> Array:
    return L.rloo_loss(_stacked(c.logratio), _stacked(c.reward), c.beta)


def _preference(loss: Callable[..., Array], c: Pair, **_: Any) -> Array:
    h1, h2 = c.logratio
    return loss(h1, h2, c.preference, c.beta)


def _nash_md_pg(c: Pair, mixture: float = 0.0) -> Array:
    # The mixture only moves where y' comes from (the sampler), not the loss on a pair.
    return L.nash_md_pg_loss(c.logratio[0], c.preference, c.beta)


def _p3o(c: Pair, variant: int, clip_eps: float = 0.2) -> Array:
    # P3O folds the KL penalty into the reward at the behaviour policy: R − β h_old.
    r1, r2 = (
        L.regularised_reward(r, h, c.beta) for r, h in zip(c.reward, c.old_logratio, strict=True)
    )
    (lp1, lp2), (o1, o2) = c.logp, c.old_logp
    return L.p3o_loss(lp1, lp2, o1, o2, r1, r2, clip_eps, variant)


def _solver(name: str) -> _Lazy:
    module, _, attr = name.rpartition(".")
    return _Lazy(f"bandit.fixed_points.{module}", attr)


METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to :data:`METHODS`, so that every name-taking API accepts its name.

    Any function that takes a method also takes the :class:`Method` itself, so
    registering is only needed for names (CLIs, configs).
    """
    if not isinstance(method, Method):
        raise ValidationError(f"method must be a Method, got {type(method).__name__}")
    if method.name in METHODS and not replace:
        raise ValidationError(f"method: {method.name!r} is already registered (replace=True)")
    METHODS[method.name] = method
    return method


for _m in [
    Method("copg", _copg, "reward", "offline", "CoPG Eq. (5), Alg. 1",
           fixed_point=_solver("offline.copg")),
    Method("pg", _pg, "reward", "offline", "CoPG §5, b = 0",
           fixed_point=_solver("offline.policy_gradient")),
    Method("pg_value", _pg_value, "reward", "offline", "CoPG §5, b = E_π[R]",
           fixed_point=_solver("offline.policy_gradient")),
    Method("rloo", _rloo, "reward", "policy", "CoPG Prop. 2", (K,),
           fixed_point=_solver("online.optimal"), arity="k"),
    Method("ipo", partial(_preference, L.ipo_loss), "preference", "offline", "IPO-MD Eq. (8)",
           fixed_point=_solver("offline.ipo")),
    Method("dpo", partial(_preference, L.dpo_loss), "preference", "offline", "IPO-MD Eq. (4)",
           fixed_point=_solver("offline.dpo")),
    Method("slic", partial(_preference, L.slic_loss), "preference", "offline",
           "IPO-MD Eq. (5)", fixed_point=_solver("offline.slic")),
    Method("online_ipo", partial(_preference, L.ipo_loss), "preference", "policy",
           "IPO-MD Eq. (11), Alg. 2", fixed_point=_solver("online.game")),
    Method("ipo_md", partial(_preference, L.ipo_loss), "preference", "mixture",
           "IPO-MD §5.1, Alg. 3", (MIXTURE,), fixed_point=_solver("online.game")),
    Method("nash_md_pg", _nash_md_pg, "preference", "policy_vs_mixture", "IPO-MD §2.6",
           (MIXTURE,), fixed_point=_solver("online.game")),
    Method("online_dpo", partial(_preference, L.dpo_loss), "preference", "policy",
           "IPO-MD App. G", fixed_point=_solver("online.online_dpo")),
    Method("p3o_v1", partial(_p3o, variant=1), "reward", "policy",
           "P3O §4.2, separate clipping", (CLIP_EPS,), fixed_point=_solver("online.optimal")),
    Method("p3o_v2", partial(_p3o, variant=2), "reward", "policy",
           "P3O §4.2, joint clipping", (CLIP_EPS,), fixed_point=_solver("online.optimal")),
]:  # fmt: skip
    register(_m)

OFFLINE_METHODS = tuple(n for n, m in METHODS.items() if m.offline)
ONLINE_METHODS = tuple(n for n, m in METHODS.items() if not m.offline)


def get_method(method: str | Method) -> Method:
    """Resolve a name (or pass a :class:`Method` through), with a clear error if unknown."""
    if isinstance(method, Method):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        raise ValidationError(
            f"method: unknown method {method!r}; expected one of {', '.join(METHODS)}"
        ) from None
