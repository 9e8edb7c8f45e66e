"""Exact expected losses and gradients of every method on tabular problems.

For a policy given by logits θ (shape (X, n)) the expected loss of a method is the sum,
over all prompts and pairs, of the pair's probability times the method's per-pair loss
(:attr:`bandit.methods.Method.loss`, built from :mod:`bandit.losses`):

    E[ℓ](θ) = Σ_x ρ(x) Σ_{y,y'} q_x(y, y') ℓ(θ; x, y, y'),

with q = μ1 ⊗ μ2 for offline data, or sg[π] ⊗ sg[π], sg[π̃] ⊗ sg[π̃] (π̃ the geometric
mixture), sg[π] ⊗ sg[π̃] for online methods, or the q_t of a data source
(:mod:`bandit.sources`: online, replay, demonstrations + replay, μ-mixture), which then
replaces the method's sampler. A source's q depends on the trajectory only under
stop-gradient; at a fixed point its buffer holds π, so the functions here evaluate it at
:meth:`~bandit.sources.Source.stationary_joint` (sg[π]). Preferences enter through p(y ≻ y'), since
every preference loss is linear in p. Gradients are JAX autodiff in float64: the public
functions cross the float64 boundary of :mod:`bandit.precision`.

The traceable functions (:func:`pair_losses`, :func:`pair_weights`, :func:`expected_value`)
take a method's parameters unchecked, so that they can be traced; :func:`bandit.prepare`
checks them.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .methods import Method, Pair, get_method
from .policy import geometric_mixture, log_softmax
from .precision import float64
from .prepare import Prepared, Tables, prepare
from .problems import Bandit, OfflineData, PreferenceGame
from .sources import Source, register_pytrees
from .validation import ValidationError

register_pytrees()  # sources are JAX pytrees from here on

__all__ = [
    "ExactLoss",
    "compiled",
    "compiled_source",
    "count_loss",
    "expected_loss",
    "expected_loss_and_grad",
    "expected_value",
    "loss_fn",
    "pair_losses",
    "pair_weights",
    "source_value",
    "tabular_pair",
]

Array = Any


def _sg(x: Array) -> Array:
    return jax.lax.stop_gradient(x)


def _method_params(m: Method, params: dict[str, Any]) -> dict[str, Any]:
    """The method's own parameters out of ``params`` (others ignored), defaults filled."""
    return {p.name: params.get(p.name, p.default) for p in m.params}


@float64
def tabular_pair(logits: Array, tab: Tables, k: int = 2, pref: Array | None = None) -> Pair:
    """Every k-tuple of actions at once: completion j varies along axis 1 + j.

    The engine's :class:`~bandit.methods.Pair`: log-ratios, log-probabilities, the on-policy
    sampler sg[π], rewards, the value E_π[R] (exact, stop-gradient) and p(y ≻ y') (``pref``
    overrides the problem's), each broadcastable to (X,) + (n,)*k.
    """
    log_pi = log_softmax(logits)
    h = log_pi - tab.log_ref
    X, n = h.shape

    def per(a: Array) -> tuple[Array, ...]:
        return tuple(a.reshape((X, *(n if i == j else 1 for i in range(k)))) for j in range(k))

    R = tab.rewards
    value = None
    if R is not None:
        value = _sg(jnp.sum(jnp.exp(log_pi) * R, axis=-1)).reshape((X,) + (1,) * k)
    old = _sg(log_pi)
    return Pair(
        logratio=per(h),
        logp=per(log_pi),
        old_logp=per(old),
        old_logratio=per(_sg(h)),
        reward=None if R is None else per(R),
        preference=tab.pref if pref is None else pref,
        value=value,
        beta=tab.beta,
    )


@float64
def pair_losses(
    method: str | Method, logits: Array, tab: Tables, *, pref: Array | None = None, **params: Any
) -> Array:
    """Per-pair losses of ``method`` on every pair, shape (X, n, n) ((X,) + (n,)*k for rloo).

    Entry [x, y, y'] is the method's loss on the pair (y, y') at prompt x. ``pref``
    overrides tab.pref (the trainer passes empirical label frequencies). Parameters the
    method does not have are ignored. Traceable and differentiable in ``logits``.
    """
    m = get_method(method)
    kw = _method_params(m, params)
    return m.loss(tabular_pair(logits, tab, m.n_completions(kw), pref), **kw)


def _product(rho: Array, dists: list[Array]) -> Array:
    """ρ(x)·Π_j d_j(y_j|x) over k independent draws, shape (X,) + (n,)*k."""
    if len(dists) == 2:
        a, b = dists
        return rho[:, None, None] * (a[:, :, None] * b[:, None, :])
    X, n = dists[0].shape
    k = len(dists)
    w = rho.reshape((X,) + (1,) * k)
    for j, d in enumerate(dists):
        w = w * d.reshape((X, *(n if i == j else 1 for i in range(k))))
    return w


@float64
def pair_weights(
    method: str | Method,
    logits: Array,
    tab: Tables,
    data: OfflineData | Array | None = None,
    **params: Any,
) -> Array:
    """Probability of each pair under the method's sampling distribution, times ρ(x).

    Same shape as :func:`pair_losses`; always stop-gradient (SG[π] in IPO-MD Eq. 11).
    ``data`` is an :class:`OfflineData` or a joint pair distribution q (X, n, n) as an
    array (traceable): required by offline methods, and for any pair method it replaces
    the method's own sampler (a source's q_t, :mod:`bandit.sources`, held fixed in θ).
    """
    m = get_method(method)
    kw = _method_params(m, params)
    if data is not None or m.offline:
        if data is None:
            raise ValidationError(
                f"data: method {m.name!r} is offline and needs OfflineData(mu1, mu2)"
            )
        if m.n_completions(kw) != 2:
            raise ValidationError(f"data: {m.name!r} with k = {m.n_completions(kw)} has no pairs")
        return tab.rho[:, None, None] * _sg(jnp.asarray(getattr(data, "joint", data)))
    log_pi = _sg(log_softmax(logits))
    pi = jnp.exp(log_pi)
    k = m.n_completions(kw)
    if m.sampling == "policy":
        return _product(tab.rho, [pi] * k)
    mix = jnp.exp(geometric_mixture(log_pi, tab.log_ref, kw["mixture"]))
    if m.sampling == "mixture":
        return _product(tab.rho, [mix] * k)
    return _product(tab.rho, [pi, mix])  # policy_vs_mixture


@float64
def expected_value(
    logits: Array, tab: Tables, joint: Array | None = None, *, method: str | Method, **params: Any
) -> Array:
    """E[ℓ](θ) = Σ_x ρ(x) Σ_{pairs} q_x(pair)·ℓ(θ; x, pair): the one expectation of a method.

    Pure JAX: ``joint`` is the offline pair distribution (X, n, n) (None for online
    methods); differentiate in ``logits`` with ``method`` and integer parameters static.
    """
    w = pair_weights(method, logits, tab, joint, **params)
    return jnp.sum(w * pair_losses(method, logits, tab, **params))


@float64
def count_loss(
    method: str | Method,
    logits: Array,
    tab: Tables,
    pairs: Array,
    wins: Array,
    size: Array | float,
    **params: Any,
) -> Array:
    """A minibatch's mean loss from its counts: (1/|B|) Σ_{x,y,y'} c·ℓ(θ; x, y, y', p̂).

    ``pairs`` (X, n, n) counts each pair in the batch, ``wins`` how many of them carry the
    label y ≻ y'; p̂ = wins/pairs. Every loss is linear in p, so c·ℓ(p̂) is the sum of the
    pair's hard-label losses and this is the batch mean of the per-sample losses. Pairs
    not drawn get weight 0 (and p̂ = 1/2, which keeps their loss finite).
    """
    has = pairs > 0
    p = jnp.where(has, wins / jnp.where(has, pairs, 1.0), 0.5)
    return jnp.sum(pairs * pair_losses(method, logits, tab, pref=p, **params)) / size


@float64
def source_value(
    logits: Array, tab: Tables, source: Source, *, method: str | Method, **params: Any
) -> Array:
    """E_{q(π)}[ℓ](θ) with q(π) = source.stationary_joint(sg[log π]) held fixed: its
    gradient is the source's exact expected-gradient field at a stationary buffer (whose
    roots are the fixed points of (θ, buffer)). Pure JAX; ``source`` is a pytree."""
    q = source.stationary_joint(_sg(log_softmax(logits)))
    return expected_value(logits, tab, q, method=method, **params)


@cache
def compiled_source(method: Method, **params: Any):
    """:func:`compiled` for :func:`source_value`: functions of (logits, tab, source),
    compiled once per source kind and shape."""
    f = partial(source_value, method=method, **params)
    return jax.jit(f), jax.jit(jax.value_and_grad(f))


#: XLA:CPU compiles these small programs twice as fast without its fusion emitters, to
#: bit-identical results at the same speed (checked on every method): a cold sweep of 9
#: methods compiles in ~2 s instead of ~4.5 s on 2 cores. Used on the CPU backend only.
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@cache
def compiled(method: Method, **params: Any):
    """(loss, value_and_grad), jitted functions of (logits, tab, joint) for one method and
    parameter set, compiled once per array shape and reused across problems and calls."""
    f = partial(expected_value, method=method, **params)
    # The option is XLA:CPU's own; other backends would refuse it.
    opts = COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(f, compiler_options=opts), jax.jit(jax.value_and_grad(f), compiler_options=opts)


def device_tables(prep: Prepared) -> tuple[Tables, Array | None]:
    """The prepared arrays as float64 JAX arrays: (tables, joint), joint the fixed pair
    distribution (None when pairs come from the policy). Call inside float64."""
    tab = jax.tree_util.tree_map(jnp.asarray, prep.tables)
    return tab, None if prep.joint is None else jnp.asarray(prep.joint)


def device_source(source: Source) -> Source:
    """A source with float64 JAX arrays as leaves. Call inside float64."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), source)


class ExactLoss:
    """E[ℓ](θ) and its gradient for one prepared method, as float64 NumPy functions.

    The jitted functions are shared across instances (:func:`compiled`), so only the first
    use of a method and shape pays for compilation. With a trajectory-dependent source the
    loss is :func:`source_value` (q at the stationary buffer of π, stop-gradient), so the
    gradient is the field whose roots are the source's fixed points.
    """

    @float64
    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.shape = prep.shape
        self.beta = float(prep.tables.beta)
        tab, joint = device_tables(prep)
        if prep.dynamic_source is not None:
            self._args = (tab, device_source(prep.dynamic_source))
            self._f, self._vg = compiled_source(prep.method, **prep.params)
        else:
            self._args = (tab, joint)
            self._f, self._vg = compiled(prep.method, **prep.params)

    @float64
    def loss(self, theta: ArrayLike) -> float:
        return float(self._f(jnp.asarray(theta, dtype=jnp.float64), *self._args))

    @float64
    def value_and_grad(self, theta: ArrayLike) -> tuple[float, NDArray[np.float64]]:
        val, g = self._vg(jnp.asarray(theta, dtype=jnp.float64), *self._args)
        return float(val), np.array(g, dtype=np.float64)

    def grad(self, theta: ArrayLike) -> NDArray[np.float64]:
        return self.value_and_grad(theta)[1]


def loss_fn(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
):
    """Return (f, tab) with f(logits, tab) the exact expected loss (:func:`expected_value`
    with this problem's data): a pure JAX function to jit, grad or vmap; called directly it
    computes in float64."""
    prep = prepare(method, problem, data, preferences=preferences, **params)
    source, joint = prep.dynamic_source, prep.joint

    @float64
    def f(logits: Array, tab: Tables) -> Array:
        if source is not None:
            return source_value(logits, tab, source, method=prep.method, **prep.params)
        return expected_value(logits, tab, joint, method=prep.method, **prep.params)

    return f, prep.tables


def expected_loss_and_grad(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | tuple | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> tuple[float, NDArray[np.float64]]:
    """Exact expected loss and its gradient with respect to the logits (float64).

    Args:
      method: a :class:`~bandit.methods.Method` or a name from :data:`bandit.METHODS`.
      problem: a :class:`Bandit` (contextual or not) or :class:`PreferenceGame`.
      logits: θ of shape (X, n) (or (n,) for one prompt); π = softmax(θ).
      data: ``OfflineData(mu1, mu2)`` (or a tuple) for offline methods, or any
        :class:`~bandit.sources.Source` for any pair method (it replaces the method's
        sampler; a trajectory-dependent source is taken at its stationary buffer, q(sg[π])).
      preferences: optional p(y ≻ y'|x) overriding Bradley–Terry on R.
      **params: the method's parameters, e.g. ``mixture`` (IPO-MD's β), ``k`` (rloo),
        ``clip_eps`` (P3O).
    Returns:
      (E[ℓ](θ), ∇_θ E[ℓ](θ)), the gradient with the logits' shape.
    """
    prep = prepare(method, problem, data, preferences=preferences, **params)
    th = prep.logits("logits", logits)
    val, g = ExactLoss(prep).value_and_grad(th)
    return val, g.reshape(np.shape(logits))


def expected_loss(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | tuple | None = None,
    **kw: Any,
) -> float:
    """Exact expected loss only; see :func:`expected_loss_and_grad`."""
    return expected_loss_and_grad(method, problem, logits, data, **kw)[0]
