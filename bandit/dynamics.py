"""Learning dynamics on a preference game, in the logit parameterisation π = softmax(θ).

Exact dynamics take discrete optimiser steps along the exact expected gradient of a
method's population loss (IPO-MD §4–5):

  offline IPO          ``"ipo"``         pairs y, y' ∼ μ (a fixed policy)       Eq. (10)
  online IPO           ``"online_ipo"``  y, y' ∼ sg[π] (self-play)              Eq. (11)
  IPO-MD(β)            ``"ipo_md"``      y, y' ∼ sg[π^(1−β) π_ref^β]            §5.1
  Nash-MD-PG(β)        ``"nash_md_pg"``  y ∼ sg[π], y' ∼ sg[π^(1−β) π_ref^β]    §2.6
  online DPO           ``"online_dpo"``  y, y' ∼ sg[π]                          App. G

Any preference method of the registry runs here (offline ones on pairs from μ ⊗ μ). The
expected loss is :func:`bandit.expected.expected_value` (the one definition of each
loss), differentiated by ``jax.grad`` and stepped with optax inside ``lax.scan``, in
float64. Sampled dynamics replace the expectation by a minibatch: each step draws B pairs
from the method's exact pair distribution (:func:`bandit.expected.pair_weights`) and a
Bernoulli label for each from P, and minimises the minibatch mean of the per-sample
losses (:func:`bandit.expected.count_loss`, the trainer's estimator too).
Same seed → same trajectory.

Data sources (:mod:`bandit.sources`). :func:`source_dynamics` runs any pair method of the
registry on a bandit or a game with its pairs from a source (offline, online, a replay
buffer, demonstrations + replay, the μ-mixture), carrying the source's buffer in the
scan: at step t the buffer receives π_t, and the step follows the exact gradient of
E_{q_t}[ℓ](θ) with q_t built from the buffer under stop-gradient. With ``lr`` it is plain
gradient descent, the Euler scheme of the expected-gradient flow; ``optimizer`` takes any
optax transformation (Adam). :func:`sampled_source_dynamics` is its finite-sample
counterpart for many seeds at once (vmap over seeds, scan over steps): a replay buffer is
filled by sampling ``fresh`` completions per prompt from π_t each step, and each step's
minibatch of pairs is drawn from the buffer's empirical distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike, NDArray

from .expected import count_loss, device_source, device_tables, expected_value, pair_weights
from .methods import Method, get_method
from .policy import log_softmax
from .precision import float64
from .prepare import Prepared, prepare
from .problems import Bandit, OfflineData, PreferenceGame
from .sources import Source, as_source
from .validation import (
    ValidationError,
    check_bytes,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
)

__all__ = [
    "Trajectory",
    "exact_dynamics",
    "sampled_dynamics",
    "sampled_source_dynamics",
    "source_dynamics",
    "stacked_source_dynamics",
]


@dataclass(frozen=True)
class Trajectory:
    """Recorded policies of one run per starting point.

    Attributes:
      log_policies: log π at the recorded steps, shape (S, T, n) for S starts (game
        dynamics), or (S, T, X, n) for S seeds (source dynamics; S = 1 when exact).
      steps: the step index of each record, shape (T,); 0 is the start.
    """

    log_policies: NDArray[np.float64]
    steps: NDArray[np.int64]

    @property
    def final(self) -> NDArray[np.float64]:
        """log π after the last step, shape (S, n) (or (S, X, n))."""
        return self.log_policies[:, -1]


def _draw_pairs(k_pair, k_label, w, P_flat, batch_size: int, shape):
    """A minibatch as counts: ``batch_size`` pairs from the flat pair weights ``w``
    (ρ(x) q(y, y'|x)) and a label 1[y ≻ y'] ∼ Bernoulli(P) each; (pairs, wins) of ``shape``."""
    idx = jax.random.categorical(k_pair, jnp.log(w), shape=(batch_size,))
    labels = jax.random.bernoulli(k_label, P_flat[idx]).astype(jnp.float64)
    size = int(np.prod(shape))
    pairs = jnp.zeros(size).at[idx].add(1.0).reshape(shape)
    wins = jnp.zeros(size).at[idx].add(labels).reshape(shape)
    return pairs, wins


#: Longest run (steps) accepted: loop counters are 64-bit, and 2³¹ steps already take hours.
MAX_STEPS = 2**31 - 1
#: Largest seed: JAX keys are made from a signed 64-bit integer.
MAX_SEED = 2**63 - 1
#: Bytes one drawn pair takes in a step (its index, its label and the scatter's update).
PAIR_BYTES = 24


def _check_steps(steps: object, record_every: object, size: int) -> None:
    """``steps`` and ``record_every`` valid, and the recorded log-policies (``size`` numbers
    each time) within :data:`bandit.validation.MAX_BYTES`, before anything is compiled."""
    check_int("steps", steps, 0, MAX_STEPS)
    check_int("record_every", record_every, 1, MAX_STEPS)
    if steps % record_every:  # type: ignore[operator]
        raise ValidationError(
            f"steps ({steps}) must be a multiple of record_every ({record_every})"
        )
    check_bytes(
        "the recorded log-policies",
        8.0 * size * (steps // record_every + 1),  # type: ignore[operator]
        "use fewer steps, a larger record_every or fewer starting points",
    )


def _check_batch(batch_size: object, runs: int, name: str = "batch_size") -> int:
    """``batch_size`` valid and one step's minibatch of every run within the memory limit."""
    check_int(name, batch_size, 1)
    check_bytes(
        "one step's minibatches",
        float(PAIR_BYTES) * runs * batch_size,  # type: ignore[operator]
        f"use a smaller {name}",
    )
    return int(batch_size)  # type: ignore[call-overload]


def _setup(method, game, logits0, steps, record_every, mixture, mu) -> tuple[Any, Prepared]:
    m = get_method(method)
    if m.signal != "preference":
        raise ValidationError(
            f"method: {m.name!r} learns from rewards; a preference game has none (expected a "
            "preference method, e.g. ipo, online_ipo, ipo_md, nash_md_pg, online_dpo)"
        )
    if not isinstance(game, PreferenceGame):
        raise ValidationError(f"game must be a PreferenceGame, got {type(game).__name__}")
    n = game.n_actions
    th = check_finite("logits0", logits0)
    if th.ndim == 1:
        th = th[None]
    if th.ndim != 2 or th.shape[1] != n:
        raise ValidationError(f"logits0 must have shape (n,) or (S, n) with n={n}, got {th.shape}")
    _check_steps(steps, record_every, th.size)
    params: dict[str, Any] = {}
    if any(p.name == "mixture" for p in m.params):
        params["mixture"] = mixture
    elif mixture != 0.0:
        raise ValidationError(f"mixture: method {m.name!r} takes no mixture β (got {mixture})")
    data = None
    if m.offline:
        if mu is None:
            raise ValidationError(
                f"mu: offline {m.name!r} needs the data policy μ (pairs y, y' ∼ μ)"
            )
        mu_a = check_distribution("mu", mu)
        data = OfflineData(mu_a, mu_a)
    elif mu is not None:
        raise ValidationError(f"mu: only offline methods take a data policy, not {m.name!r}")
    return th, prepare(m, game, data, **params)


def _scan(step_fn, th0, opt_state0, key0, steps, record_every):
    """Run ``steps`` steps, recording log π every ``record_every`` steps (and at step 0)."""

    def chunk(carry, _):
        carry = jax.lax.fori_loop(0, record_every, lambda _, c: step_fn(c), carry)
        return carry, log_softmax(carry[0])

    _, rec = jax.lax.scan(chunk, (th0, opt_state0, key0), None, length=steps // record_every)
    return jnp.concatenate([log_softmax(th0)[None], rec], axis=0)


def _optimiser(lr: float | None, optimizer: optax.GradientTransformation | None):
    if optimizer is not None:
        return optimizer
    return optax.sgd(check_positive("lr", lr))


@float64
def exact_dynamics(
    method: str | Method,
    game: PreferenceGame,
    logits0: ArrayLike,
    *,
    steps: int,
    lr: float | None = None,
    mixture: float = 0.0,
    mu: ArrayLike | None = None,
    record_every: int = 1,
    optimizer: optax.GradientTransformation | None = None,
) -> Trajectory:
    """Discrete steps along the exact expected gradient of ``method``'s population loss.

    Args:
      method: a preference method (table in the module doc); offline ones take ``mu``.
      game: the preference game; its τ is the loss's KL strength.
      logits0: starting logits, shape (n,) or (S, n) for S starting points (run in parallel).
      steps: number of optimiser steps.
      lr: step size of plain gradient descent (``optax.sgd``), unless ``optimizer`` is given.
      mixture: β of IPO-MD(β) / Nash-MD-PG(β), in [0, 1].
      mu: the data policy of offline IPO (``method="ipo"``), shape (n,).
      record_every: keep log π every this many steps.
      optimizer: any optax transformation, replacing ``optax.sgd(lr)``.
    Returns:
      A :class:`Trajectory` with log-policies of shape (S, steps // record_every + 1, n).
    """
    th, prep = _setup(method, game, logits0, steps, record_every, mixture, mu)
    opt = _optimiser(lr, optimizer)
    tab, joint = device_tables(prep)
    grad = jax.grad(partial(expected_value, method=prep.method, **prep.params))

    def step(carry):
        theta, state, key = carry
        updates, state = opt.update(grad(theta, tab, joint), state, theta)
        return optax.apply_updates(theta, updates), state, key

    def run(theta0):
        theta0 = theta0[None]  # one prompt: shape (1, n)
        rec = _scan(step, theta0, opt.init(theta0), jax.random.key(0), steps, record_every)
        return rec[:, 0]

    out = jax.jit(jax.vmap(run))(jnp.asarray(th))
    return Trajectory(np.asarray(out, dtype=np.float64), np.arange(0, steps + 1, record_every))


@float64
def sampled_dynamics(
    method: str | Method,
    game: PreferenceGame,
    logits0: ArrayLike,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float | None = None,
    mixture: float = 0.0,
    mu: ArrayLike | None = None,
    record_every: int = 1,
    optimizer: optax.GradientTransformation | None = None,
) -> Trajectory:
    """Like :func:`exact_dynamics`, but each step uses a minibatch of ``batch_size`` pairs.

    Each step draws pairs (y, y') from the method's pair distribution at the current
    policy (exactly :func:`bandit.expected.pair_weights`: μ⊗μ, sg[π]⊗sg[π], the mixture's
    square, or sg[π]⊗sg[mixture]) and a label 1[y ≻ y'] ∼ Bernoulli(P[y, y']) per pair,
    then steps on the minibatch loss. Its gradient is an unbiased estimate of the exact
    one. Starting point s uses the key ``fold_in(key(seed), s)``, so runs are reproducible.
    """
    th, prep = _setup(method, game, logits0, steps, record_every, mixture, mu)
    _check_batch(batch_size, th.shape[0])
    check_int("seed", seed, 0, MAX_SEED)
    opt = _optimiser(lr, optimizer)
    n = game.n_actions
    m, params = prep.method, prep.params
    tab, joint = device_tables(prep)
    P_flat = tab.pref.reshape(-1)
    grad = jax.grad(partial(count_loss, m), argnums=0)

    def step(carry):
        theta, state, key = carry
        key, k_pair, k_label = jax.random.split(key, 3)
        w = pair_weights(m, theta, tab, joint, **params).reshape(-1)
        pairs, wins = _draw_pairs(k_pair, k_label, w, P_flat, batch_size, (1, n, n))
        g = grad(theta, tab, pairs, wins, float(batch_size), **params)
        updates, state = opt.update(g, state, theta)
        return optax.apply_updates(theta, updates), state, key

    def run(theta0, key):
        theta0 = theta0[None]
        return _scan(step, theta0, opt.init(theta0), key, steps, record_every)[:, 0]

    base = jax.random.key(int(seed))
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(th.shape[0]))
    out = jax.jit(jax.vmap(run))(jnp.asarray(th), keys)
    return Trajectory(np.asarray(out, dtype=np.float64), np.arange(0, steps + 1, record_every))


# ----------------------------------------------------------------------- data sources


def inverse_cdf(u: Any, p: Any) -> Any:
    """Draws from the distribution ``p`` (last axis, ≥ 0) by inverting its CDF at the
    uniforms ``u`` (leading axes of ``u`` broadcast against ``p``'s): cell k is drawn iff
    C(k−1) ≤ u < C(k), so a cell of probability 0 never is. One uniform per draw."""
    c = jnp.cumsum(p, axis=-1)
    c = c / c[..., -1:]
    n = p.shape[-1]
    idx = jnp.sum(u[..., None] >= c, axis=-1)  # = searchsorted(c, u, "right"), vectorised
    return jnp.minimum(idx, n - 1)


def _counts(idx: Any, n: int, weights: Any = None) -> Any:
    """How often each of n cells occurs in ``idx`` (axis 0), optionally weighted."""
    one = jax.nn.one_hot(idx, n, dtype=jnp.float64)
    if weights is not None:
        one = one * weights.reshape(weights.shape + (1,) * (one.ndim - weights.ndim))
    return jnp.sum(one, axis=0)


#: The PRNG of the sampled source dynamics. XLA's CPU compiler takes ~20 s on a scan that
#: draws threefry bits every step under vmap (jax 0.10), against ~3 s for "rbg", which
#: draws with XLA's RngBitGenerator (splits and fold-ins stay threefry): same seed, same
#: numbers on a given platform.
SOURCE_PRNG = "rbg"


def _source_setup(method, problem, source, logits0, steps, record_every, preferences, params):
    if not isinstance(problem, (Bandit, PreferenceGame)):
        raise ValidationError(
            f"problem must be a Bandit or PreferenceGame, got {type(problem).__name__}"
        )
    src = as_source(source)
    prep = prepare(method, problem, src, preferences=preferences, **params)
    th = prep.logits("logits0", logits0)
    _check_steps(steps, record_every, th.size)
    return th, prep, src


@float64
def source_dynamics(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    source: Source | OfflineData,
    logits0: ArrayLike,
    *,
    steps: int,
    lr: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    record_every: int = 1,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> Trajectory:
    """Exact expected dynamics of ``method`` with its pairs from ``source``.

    Step t: the source's buffer receives π_t (:meth:`~bandit.sources.Source.push`), q_t is
    read from it (:meth:`~bandit.sources.Source.joint`, stop-gradient), and θ moves along
    ∇_θ E_{q_t}[ℓ](θ_t) (:func:`bandit.expected.expected_value`, the one definition of each
    loss), by ``optax.sgd(lr)`` or ``optimizer`` (e.g. ``optax.adam``). The buffer is
    part of the scan's carry.

    Args:
      method: any pair method of the registry (name or :class:`~bandit.methods.Method`).
      problem: a :class:`Bandit` or :class:`PreferenceGame`.
      source: a :class:`~bandit.sources.Source` (or ``OfflineData``).
      logits0: θ_0, shape (X, n) ((n,) for one prompt).
      steps, lr, optimizer, record_every: as for :func:`exact_dynamics`.
      preferences: p(y ≻ y'|x) overriding Bradley–Terry on R.
      **params: the method's parameters.
    Returns:
      A :class:`Trajectory` with log-policies of shape (1, steps // record_every + 1, X, n).
    """
    th, prep, src = _source_setup(
        method, problem, source, logits0, steps, record_every, preferences, params
    )
    opt = _optimiser(lr, optimizer)
    tab, _ = device_tables(prep)
    run = _exact_runner(prep.method, tuple(sorted(prep.params.items())), opt, steps, record_every)
    out = run(jnp.asarray(th), tab, device_source(src))
    return Trajectory(
        np.asarray(out, dtype=np.float64)[None], np.arange(0, steps + 1, record_every)
    )


@cache
def _exact_runner(
    m: Method, params: tuple, opt: Any, steps: int, record_every: int, batched: bool = False
):
    """The jitted exact source dynamics (θ0, tables, source) → log π records: one program
    per method, optimiser and source kind (tables and source are arguments, so runs that
    differ only in their arrays, e.g. the μ-mixture's β, share it). ``batched``: vmapped
    over a :class:`~bandit.sources.Stacked` source's runs (one program for every kind)."""
    grad = jax.grad(partial(expected_value, method=m, **dict(params)))

    def run(theta0, tab, dsrc):
        def step(carry):
            theta, state, buf = carry
            lp = jax.lax.stop_gradient(log_softmax(theta))
            buf = dsrc.push(buf, lp)
            updates, state = opt.update(grad(theta, tab, dsrc.joint(buf, lp)), state, theta)
            return optax.apply_updates(theta, updates), state, buf

        buf0 = dsrc.init(log_softmax(theta0))
        return _scan(step, theta0, opt.init(theta0), buf0, steps, record_every)

    return jax.jit(jax.vmap(run, in_axes=(None, None, 0)) if batched else run)


@float64
def sampled_source_dynamics(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    source: Source | OfflineData,
    logits0: ArrayLike,
    *,
    steps: int,
    batch_size: int,
    seeds: int,
    seed: int,
    fresh: int | None = None,
    lr: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    record_every: int = 1,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> Trajectory:
    """:func:`source_dynamics` with finite samples, for ``seeds`` seeds at once.

    Step t: the policy generates ``fresh`` completions per prompt (default ``batch_size``)
    into the source's buffer (:meth:`~bandit.sources.Source.sample_push`; a
    ``Replay(last=K)`` keeps the last K batches, filled from π_0 at the start), then
    ``batch_size`` pairs (x, y, y') are drawn from ρ(x)·q̂_t (q̂_t the buffer's empirical
    pairs, :meth:`~bandit.sources.Source.sample_joint`; the exact q_t for sources without
    a buffer), a label 1[y ≻ y'] ∼ Bernoulli(p) for each, and θ steps on the minibatch's
    mean loss (:func:`bandit.expected.count_loss`). Given the buffer the step is an
    unbiased estimate of the exact gradient at q̂_t. Seed s uses the key
    ``fold_in(key(seed), s)``: same seed, same numbers.

    Returns:
      A :class:`Trajectory` with log-policies of shape (seeds, steps // record_every + 1,
      X, n).
    """
    th, prep, src = _source_setup(
        method, problem, source, logits0, steps, record_every, preferences, params
    )
    check_int("seeds", seeds, 1)
    _check_steps(steps, record_every, seeds * th.size)
    _check_batch(batch_size, seeds)
    check_int("seed", seed, 0, MAX_SEED)
    fresh = batch_size if fresh is None else _check_batch(fresh, seeds, "fresh")
    opt = _optimiser(lr, optimizer)
    tab, _ = device_tables(prep)
    params = tuple(sorted(prep.params.items()))
    run = _sampled_runner(
        prep.method, params, opt, steps, record_every, batch_size, fresh, prep.shape
    )
    base = jax.random.key(int(seed), impl=SOURCE_PRNG)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    th0 = jnp.broadcast_to(jnp.asarray(th), (seeds, *th.shape))
    out = run(th0, keys, tab, device_source(src))
    return Trajectory(np.asarray(out, dtype=np.float64), np.arange(0, steps + 1, record_every))


@cache
def _sampled_runner(
    m: Method,
    params: tuple,
    opt: Any,
    steps: int,
    record_every: int,
    batch_size: int,
    fresh: int,
    shape: tuple[int, int],
    batched: bool = False,
):
    """The jitted sampled source dynamics (θ0 and key per seed, tables, source) → records,
    vmapped over seeds: one program per method, optimiser, sizes and source kind."""
    X, n = shape
    size = X * n * n
    kw = dict(params)
    grad = jax.grad(partial(count_loss, m), argnums=0)

    def one(theta0, key, tab, dsrc):
        P_flat = tab.pref.reshape(-1)

        def step(carry):
            theta, state, (key, buf) = carry
            key, k_gen, k_step = jax.random.split(key, 3)
            lp = jax.lax.stop_gradient(log_softmax(theta))
            buf = dsrc.sample_push(k_gen, buf, lp, fresh)
            w = (tab.rho[:, None, None] * dsrc.sample_joint(buf, lp)).reshape(-1)
            u = jax.random.uniform(k_step, (2, batch_size), dtype=jnp.float64)
            idx = inverse_cdf(u[0], w)  # the pairs (x, y, y'), flat
            labels = (u[1] < P_flat[idx]).astype(jnp.float64)  # 1[y ≻ y'] ∼ Bernoulli(p)
            pairs = _counts(idx, size).reshape(X, n, n)
            wins = _counts(idx, size, labels).reshape(X, n, n)
            g = grad(theta, tab, pairs, wins, float(batch_size), **kw)
            updates, state = opt.update(g, state, theta)
            return optax.apply_updates(theta, updates), state, (key, buf)

        key, k_init = jax.random.split(key)
        buf0 = dsrc.sample_init(k_init, log_softmax(theta0), fresh)
        return _scan(step, theta0, opt.init(theta0), (key, buf0), steps, record_every)

    seeds = jax.vmap(one, in_axes=(0, 0, None, None))
    return jax.jit(jax.vmap(seeds, in_axes=(None, None, None, 0)) if batched else seeds)


@float64
def stacked_source_dynamics(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    sources: Sequence[Source],
    logits0: ArrayLike,
    *,
    steps: int,
    batch_size: int,
    seeds: int,
    seed: int,
    lr: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    record_every: int = 1,
    **params: Any,
) -> list[tuple[Trajectory, Trajectory]]:
    """:func:`source_dynamics` and :func:`sampled_source_dynamics` (``fresh`` =
    ``batch_size``) for several sources at once, as (exact, sampled) per source, equal to
    the one-source calls: the sources are merged into one
    :class:`~bandit.sources.Stacked` (their replay buffers of one length K), so one
    program per method serves every kind, vmapped over the runs."""
    from .sources import stack

    preps = [
        _source_setup(method, problem, s, logits0, steps, record_every, None, params)
        for s in sources
    ]
    th, prep, _ = preps[0]
    check_int("seeds", seeds, 1)
    _check_steps(steps, record_every, 2 * len(preps) * seeds * th.size)  # exact + sampled
    _check_batch(batch_size, len(preps) * seeds)
    check_int("seed", seed, 0, MAX_SEED)
    opt = _optimiser(lr, optimizer)
    tab, _ = device_tables(prep)
    dsrc = device_source(stack([p[2] for p in preps], prep.shape))
    params_t = tuple(sorted(prep.params.items()))
    ex = _exact_runner(prep.method, params_t, opt, steps, record_every, True)
    ex_out = np.asarray(ex(jnp.asarray(th), tab, dsrc), dtype=np.float64)
    sm = _sampled_runner(
        prep.method, params_t, opt, steps, record_every, batch_size, batch_size, prep.shape,
        True,
    )  # fmt: skip
    base = jax.random.key(int(seed), impl=SOURCE_PRNG)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    th0 = jnp.broadcast_to(jnp.asarray(th), (seeds, *th.shape))
    sm_out = np.asarray(sm(th0, keys, tab, dsrc), dtype=np.float64)
    t = np.arange(0, steps + 1, record_every)
    return [(Trajectory(e[None], t), Trajectory(s, t)) for e, s in zip(ex_out, sm_out, strict=True)]
