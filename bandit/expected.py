"""Exact expected losses and gradients of every method on tabular problems.

For a policy given by logits θ (shape (X, n)) the expected loss of a method is the sum,
over all prompts and pairs, of the pair's probability times the per-pair loss of
:mod:`bandit.losses`:

    E[ℓ](θ) = Σ_x ρ(x) Σ_{y,y'} q_x(y, y') ℓ(θ; x, y, y'),

with q = μ1 ⊗ μ2 for offline data, or sg[π] ⊗ sg[π], sg[π̃] ⊗ sg[π̃] (π̃ the geometric
mixture), sg[π] ⊗ sg[π̃] for online methods. Preferences enter through p(y ≻ y'), since
every preference loss is linear in p. Gradients are JAX autodiff in float64: the public
functions run inside ``jax.enable_x64`` and never flip the global flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from . import losses as L
from .methods import get_method
from .policy import geometric_mixture, log_softmax
from .problems import Bandit, PreferenceGame
from .validation import (
    ValidationError,
    check_distribution,
    check_finite,
    check_positive,
    check_preference_matrix,
    check_shape,
    check_unit_interval,
)

__all__ = [
    "OfflineData",
    "Tables",
    "compiled",
    "expected_loss",
    "expected_loss_and_grad",
    "expected_value",
    "loss_fn",
    "pair_losses",
    "pair_weights",
    "tables",
]

Array = Any


_NEEDS_DATA = "data: method {method!r} is offline and needs OfflineData(mu1, mu2)"


class Tables(NamedTuple):
    """A tabular problem as arrays (a JAX pytree). Shapes: X prompts, n actions."""

    log_ref: Array  # (X, n)
    rho: Array  # (X,)
    rewards: Array  # (X, n); NaN when the problem has no rewards (a preference game)
    pref: Array  # (X, n, n), pref[x, y, y'] = p(y ≻ y' | x)
    beta: Array  # () KL strength: CoPG's β, IPO-MD's τ


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


def tables(problem: Bandit | PreferenceGame, preferences: ArrayLike | None = None) -> Tables:
    """The arrays of a problem. A bandit's preferences default to Bradley–Terry on R,
    p(y ≻ y'|x) = σ(R(x, y) − R(x, y')); ``preferences`` (X, n, n) or (n, n) overrides them."""
    if isinstance(problem, PreferenceGame):
        if preferences is not None:
            raise ValidationError("preferences: a PreferenceGame already holds its matrix P")
        n = problem.n_actions
        return Tables(
            problem.log_ref[None],
            np.ones(1),
            np.full((1, n), np.nan),
            problem.P[None],
            np.float64(problem.tau),
        )
    if not isinstance(problem, Bandit):
        raise ValidationError(f"problem must be a Bandit or PreferenceGame, got {type(problem)}")
    R = problem.rewards
    X, n = R.shape
    if preferences is None:
        pref = expit(R[:, :, None] - R[:, None, :])
    else:
        pref = np.asarray(preferences, dtype=np.float64)
        if pref.ndim == 2:
            pref = pref[None]
        check_shape("preferences", pref, (X, n, n))
        for x in range(X):
            check_preference_matrix(f"preferences[{x}]", pref[x])
    return Tables(problem.log_ref, problem.rho, R, pref, np.float64(problem.beta))


def _sg(x: Array) -> Array:
    return jax.lax.stop_gradient(x)


def _outer(a: Array, b: Array) -> Array:
    return a[:, :, None] * b[:, None, :]


def pair_losses(
    method: str,
    logits: Array,
    tab: Tables,
    *,
    pref: Array | None = None,
    mixture: float = 0.0,
    k: int = 2,
    clip_eps: float = 0.2,
) -> Array:
    """Per-pair losses of ``method`` on every pair, shape (X, n, n) ((X,) + (n,)*k for rloo).

    Entry [x, y, y'] is the loss of :mod:`bandit.losses` on the pair (y, y') at prompt x.
    ``pref`` overrides tab.pref (the trainer passes empirical label frequencies).
    ``mixture`` is accepted for a uniform parameter set and ignored: the mixture changes
    where pairs come from (:func:`pair_weights`), not the loss on a pair.
    Traceable and differentiable in ``logits``.
    """
    m = get_method(method)
    log_pi = log_softmax(logits)
    h = log_pi - tab.log_ref
    beta = tab.beta
    p = tab.pref if pref is None else pref
    h1, h2 = h[:, :, None], h[:, None, :]
    R = tab.rewards
    if m.signal == "reward":
        R1, R2 = R[:, :, None], R[:, None, :]
    if method == "copg":
        return L.copg_loss(h1, h2, R1, R2, beta)
    if method == "pg":
        return L.pg_loss(h1, h2, R1, R2, beta, 0.0)
    if method == "pg_value":
        b = _sg(jnp.sum(jnp.exp(log_pi) * R, axis=-1))[:, None, None]
        return L.pg_loss(h1, h2, R1, R2, beta, b)
    if m.loss == "ipo_loss":
        return L.ipo_loss(h1, h2, p, beta)
    if m.loss == "dpo_loss":
        return L.dpo_loss(h1, h2, p, beta)
    if method == "slic":
        return L.slic_loss(h1, h2, p, beta)
    if method == "nash_md_pg":
        return L.nash_md_pg_loss(h1, p, beta)
    if m.loss == "p3o_loss":
        # On-policy P3O at π_old = sg[π], with the KL penalty folded into the reward.
        old = _sg(log_pi)
        Rb = L.regularised_reward(R, _sg(h), beta)
        return L.p3o_loss(
            log_pi[:, :, None],
            log_pi[:, None, :],
            old[:, :, None],
            old[:, None, :],
            Rb[:, :, None],
            Rb[:, None, :],
            clip_eps,
            1 if method == "p3o_v1" else 2,
        )
    if method == "rloo":
        _X, n = h.shape
        idx = jnp.stack(jnp.meshgrid(*([jnp.arange(n)] * k), indexing="ij"), axis=-1)
        return L.rloo_loss(h[:, idx], R[:, idx], beta)  # (X, n, ..., n)
    raise AssertionError(method)  # every registered method is handled above


def pair_weights(
    method: str,
    logits: Array,
    tab: Tables,
    data: OfflineData | Array | None = None,
    *,
    mixture: float = 0.0,
    k: int = 2,
) -> Array:
    """Probability of each pair under the method's sampling distribution, times ρ(x).

    Same shape as :func:`pair_losses`; always stop-gradient (SG[π] in IPO-MD Eq. 11).
    ``data`` is an :class:`OfflineData` or its joint pair distribution q (X, n, n) as an
    array (traceable), for offline methods.
    """
    m = get_method(method)
    rho = tab.rho[:, None, None]
    if m.sampling == "offline":
        if data is None:
            raise ValidationError(
                f"data: method {method!r} is offline and needs OfflineData(mu1, mu2)"
            )
        return rho * jnp.asarray(getattr(data, "joint", data))
    log_pi = _sg(log_softmax(logits))
    pi = jnp.exp(log_pi)
    if m.sampling == "policy" and method == "rloo":
        w = tab.rho
        X, n = pi.shape
        w = tab.rho.reshape((X,) + (1,) * k)
        for j in range(k):
            w = w * pi.reshape((X, *tuple(n if a == j else 1 for a in range(k))))
        return w
    if m.sampling == "policy":
        return rho * _outer(pi, pi)
    mix = jnp.exp(geometric_mixture(log_pi, tab.log_ref, mixture))
    if m.sampling == "mixture":
        return rho * _outer(mix, mix)
    return rho * _outer(pi, mix)  # policy_vs_mixture


def expected_value(
    logits: Array,
    tab: Tables,
    joint: Array | None = None,
    *,
    method: str,
    mixture: float = 0.0,
    k: int = 2,
    clip_eps: float = 0.2,
) -> Array:
    """E[ℓ](θ) = Σ_x ρ(x) Σ_{pairs} q_x(pair)·ℓ(θ; x, pair): the one expectation of a method.

    Pure JAX: ``joint`` is the offline pair distribution (X, n, n) (None for online
    methods); differentiate in ``logits`` with ``method``, ``mixture``, ``k``, ``clip_eps``
    static. Call under ``jax.enable_x64(True)`` for float64.
    """
    w = pair_weights(method, logits, tab, joint, mixture=mixture, k=k)
    return jnp.sum(w * pair_losses(method, logits, tab, k=k, clip_eps=clip_eps))


@cache
def compiled(method: str, **params: Any):
    """(loss, value_and_grad), jitted functions of (logits, tab, joint) for one method and
    parameter set, compiled once per array shape and reused across problems and calls."""
    f = partial(expected_value, method=method, **params)
    return jax.jit(f), jax.jit(jax.value_and_grad(f))


def _joint(method: str, tab: Tables, data: OfflineData | tuple | None) -> NDArray | None:
    """Validate ``data`` for ``method`` and return its joint pair distribution (or None)."""
    if get_method(method).sampling != "offline":
        return None
    if data is None:
        raise ValidationError(_NEEDS_DATA.format(method=method))
    if not isinstance(data, OfflineData):
        data = OfflineData(*data)
    check_shape("data.mu1", data.mu1, tab.log_ref.shape)
    return data.joint


def loss_fn(
    method: str,
    problem: Bandit | PreferenceGame,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
):
    """Return (f, tab) with f(logits, tab) the exact expected loss (:func:`expected_value`
    with this problem's data): a pure JAX function to jit, grad or vmap. Call it under
    ``jax.enable_x64(True)`` for float64."""
    m = get_method(method)
    params = _check_params(method, params)
    tab = tables(problem, preferences)
    if m.signal == "reward" and np.isnan(tab.rewards).any():
        raise ValidationError(f"method: {method!r} learns from rewards; a PreferenceGame has none")
    joint = _joint(method, tab, data)

    def f(logits: Array, tab: Tables) -> Array:
        return expected_value(logits, tab, joint, method=method, **params)

    return f, tab


def _check_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    allowed = {
        "ipo_md": {"mixture"},
        "nash_md_pg": {"mixture"},
        "rloo": {"k"},
        "p3o_v1": {"clip_eps"},
        "p3o_v2": {"clip_eps"},
    }.get(method, set())
    extra = set(params) - allowed
    if extra:
        raise ValidationError(
            f"{sorted(extra)[0]}: not a parameter of method {method!r} "
            f"(allowed: {sorted(allowed) or 'none'})"
        )
    out = dict(params)
    if "mixture" in out:
        out["mixture"] = check_unit_interval("mixture", out["mixture"])
    if "clip_eps" in out:
        out["clip_eps"] = check_positive("clip_eps", out["clip_eps"])
    if "k" in out and (not isinstance(out["k"], int) or out["k"] < 2):
        raise ValidationError(f"k must be an integer >= 2, got {out['k']!r}")
    return out


def _as_logits(tab: Tables, logits: ArrayLike) -> NDArray[np.float64]:
    th = check_finite("logits", logits)
    if th.ndim == 1 and tab.log_ref.shape[0] == 1:
        th = th[None]
    check_shape("logits", th, tab.log_ref.shape)
    return th


def expected_loss_and_grad(
    method: str,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> tuple[float, NDArray[np.float64]]:
    """Exact expected loss and its gradient with respect to the logits (float64).

    Args:
      method: a name from :data:`bandit.METHODS`.
      problem: a :class:`Bandit` (contextual or not) or :class:`PreferenceGame`.
      logits: θ of shape (X, n) (or (n,) for one prompt); π = softmax(θ).
      data: ``OfflineData(mu1, mu2)`` (or a tuple) for offline methods.
      preferences: optional p(y ≻ y'|x) overriding Bradley–Terry on R.
      **params: ``mixture`` (IPO-MD/Nash-MD β), ``k`` (rloo), ``clip_eps`` (P3O).
    Returns:
      (E[ℓ](θ), ∇_θ E[ℓ](θ)), the gradient with the logits' shape (X, n).
    """
    _, tab = loss_fn(method, problem, data, preferences=preferences, **params)
    th = _as_logits(tab, logits)
    joint = _joint(method, tab, data)
    with jax.enable_x64(True):
        tab64 = jax.tree_util.tree_map(jnp.asarray, tab)
        j64 = None if joint is None else jnp.asarray(joint)
        val, g = compiled(method, **_check_params(method, params))[1](jnp.asarray(th), tab64, j64)
        return float(val), np.asarray(g, dtype=np.float64).reshape(np.shape(logits))


def expected_loss(
    method: str,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | tuple | None = None,
    **kw: Any,
) -> float:
    """Exact expected loss only; see :func:`expected_loss_and_grad`."""
    return expected_loss_and_grad(method, problem, logits, data, **kw)[0]
