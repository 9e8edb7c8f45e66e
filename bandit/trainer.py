"""Shuffled-minibatch Adam on a finite offline dataset, for many seeds at once (CoPG §5).

The experiment of CoPG §5 trains a tabular softmax policy π = softmax(θ), θ₀ = log π_ref,
with Adam on minibatches of a fixed dataset of N pairs (x, y, y') ∼ ρ ⊗ q (q = μ1 ⊗ μ2 in
CoPG Eq. 6), each with its reward and a Bradley–Terry label, reshuffled every epoch.

For a tabular policy the minibatch loss (1/|B|) Σ_{i∈B} ℓ(θ; xᵢ, yᵢ, y'ᵢ, labelᵢ) depends on
the batch only through its *counts* c[x, y, y', label]:

    L_B(θ) = (1/|B|) Σ_{x,y,y'} c[x, y, y'] · ℓ(θ; x, y, y', p̂[x, y, y']),

with c[x, y, y'] = Σ_label c[x, y, y', label] and p̂ the batch's fraction of label 1 (y ≻ y')
among those pairs: every preference loss of :mod:`bandit.losses` is linear in p, so this
equals the sum of the hard-label losses. So we never materialise samples:

* a dataset is its count vector over the K = X·n·n·2 tuples, drawn once per seed from the
  multinomial law Mult(N, ρ(x) q(y, y'|x) p(y ≻ y'|x)^label (1 − p)^(1 − label));
* an epoch is a uniform random permutation cut into consecutive batches. The counts of the
  successive batches are then a chain of multivariate hypergeometric draws without
  replacement from what remains of the dataset, which is exactly their law under shuffling.
  Each multivariate hypergeometric draw is itself the chain of univariate hypergeometric
  conditionals over the categories (numpy's ``method="marginals"``); we run that chain with
  ``Generator.hypergeometric``, vectorised over seeds and epochs (epochs are independent
  permutations of the same dataset).

**Large category spaces: the sample form.** When K = X·n·n·2 exceeds the dataset size N
(3000 actions give K = 18·10⁶ for N = 10⁴), counts over every category are mostly zeros:
a minibatch's gradient depends only on the (at most |B|) pairs it holds. There the trainer
works on samples instead (:func:`sampled_minibatches`, :class:`SampledMinibatches`): each
seed's dataset is its N labelled pairs drawn i.i.d. from the same law, each epoch a uniform
permutation of them cut into the same batches, and the batch loss the mean of the per-pair
hard-label losses on the gathered pairs (the same quantity as the count form's, by the
linearity in p above). Each seed has its own random streams, so seeds are drawn in chunks
(a chunk's epochs only when it trains) and memory does not grow with the number of
seeds beyond one (S, N) array of category indices. :func:`uses_samples` says which form a
problem gets.

**Seeds in chunks.** :class:`CompiledTrainer` trains at most ``seed_chunk`` seeds at a time
(chosen from the layout so that one chunk's batches take at most 64 MiB), so 1000 seeds
take the memory of a few dozen; each seed's trajectory does not depend on the chunking.

**Last partial batch.** With N = 10⁴ and |B| = 512, an epoch is 19 full batches and one of
272 pairs. By default (``drop_last=False``, PyTorch's ``DataLoader`` default) that batch is
kept and its loss is the mean over its own 272 pairs, so every pair is seen once per epoch;
``drop_last=True`` drops the 272 pairs that the permutation put last instead.

The per-pair losses and their gradients come from the shared definitions
(:func:`bandit.expected.pair_losses`; pg_value's baseline E_π[R] is exact there), Adam from
optax, and the update loop is ``jit`` + ``lax.scan`` over the batches of an epoch, ``vmap``
over seeds, in float64 (:mod:`bandit.precision`). Regrets are float64 β·KL(π‖π*), the
batched form of :func:`bandit.exact.regret`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .exact import regret
from .methods import OFFLINE_METHODS, Method, get_method
from .policy import log_softmax
from .precision import float64
from .prepare import tables
from .problems import Bandit
from .validation import ValidationError, check_bool, check_int, check_positive
from .validation import check_bytes as _check_bytes

__all__ = [
    "CompiledTrainer",
    "Minibatches",
    "SampledMinibatches",
    "TrainConfig",
    "TrainResult",
    "check_layout",
    "expected_minibatches",
    "minibatches",
    "minibatches_from_permutations",
    "sample_datasets",
    "sampled_minibatches",
    "shuffle_counts",
    "train",
    "train_all",
    "uses_samples",
]

#: Target size of one chunk of seeds' batches in the compiled run (bytes).
CHUNK_BYTES = 64 * 2**20
#: Upper bounds on a TrainConfig: N pairs and the batches of one epoch.
MAX_DATASET_SIZE = 2**31 - 1


def _config(config: object) -> TrainConfig:
    """``config`` or the default, refusing anything that is not a :class:`TrainConfig`."""
    if config is None:
        return TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValidationError(
            f"config must be a bandit.TrainConfig or None, got {type(config).__name__}"
        )
    return config


def _check_bandit(bandit: object) -> None:
    if not isinstance(bandit, Bandit):
        raise ValidationError(f"bandit must be a bandit.Bandit, got {type(bandit).__name__}")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation setting; the defaults are CoPG §5's.

    Attributes:
      dataset_size: N, the number of pairs in each seed's dataset (10⁴).
      batch_size: |B| (512).
      epochs: passes over the dataset (100).
      learning_rate: Adam's step size (1e-3).
      drop_last: drop the last partial batch of each epoch (default: keep it).
    """

    dataset_size: int = 10_000
    batch_size: int = 512
    epochs: int = 100
    learning_rate: float = 1e-3
    drop_last: bool = False

    def __post_init__(self) -> None:
        check_int("dataset_size", self.dataset_size, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 0)
        check_positive("learning_rate", self.learning_rate)
        check_bool("drop_last", self.drop_last)
        if self.dataset_size > MAX_DATASET_SIZE:
            raise ValidationError(
                f"dataset_size must be at most {MAX_DATASET_SIZE} (2³¹ − 1), "
                f"got {self.dataset_size}"
            )
        _check_bytes(
            "the batch sizes of one epoch",
            8.0 * self.dataset_size / self.batch_size,
            "use a larger batch_size",
        )
        if self.drop_last and self.batch_size > self.dataset_size:
            raise ValidationError(
                f"batch_size {self.batch_size} > dataset_size {self.dataset_size} with "
                "drop_last=True leaves no batch"
            )

    @property
    def batch_sizes(self) -> NDArray[np.int64]:
        """The size of each batch of an epoch, in order (the partial one last)."""
        full, rest = divmod(self.dataset_size, self.batch_size)
        sizes = [self.batch_size] * full
        if rest and not self.drop_last:
            sizes.append(rest)
        return np.asarray(sizes, dtype=np.int64)


@dataclass(frozen=True)
class Minibatches:
    """Every seed's dataset and the counts of every minibatch of every epoch.

    Category axes (X, n, n, 2) index (x, y, y', label), label 1 meaning y ≻ y'.

    Attributes:
      dataset: (S, X, n, n, 2) counts of each seed's dataset.
      counts: (S, E, J, X, n, n, 2) counts of batch j of epoch e (integers; fractional
        for :func:`expected_minibatches`).
      sizes: (J,) batch sizes (the same in every epoch).
    """

    dataset: NDArray[Any]
    counts: NDArray[Any]
    sizes: NDArray[np.int64]

    @property
    def n_seeds(self) -> int:
        return self.counts.shape[0]

    @property
    def epochs(self) -> int:
        return self.counts.shape[1]

    def concat(self, other: Minibatches) -> Minibatches:
        """Both sets of seeds, ``self``'s first (they must share the batch sizes)."""
        if not np.array_equal(self.sizes, other.sizes):
            raise ValidationError("batches: cannot join minibatches with different batch sizes")
        dt = np.result_type(self.counts, other.counts)
        return Minibatches(
            np.concatenate([self.dataset, other.dataset]).astype(
                np.result_type(self.dataset, other.dataset)
            ),
            np.concatenate([self.counts.astype(dt), other.counts.astype(dt)]),
            self.sizes,
        )


def _pair_probabilities(
    bandit: Bandit, joint: NDArray[np.float64], preferences: ArrayLike | None
) -> NDArray[np.float64]:
    """Probability of each tuple (x, y, y', label): ρ(x) q(y, y'|x) p^label (1 − p)^(1−label)."""
    p = np.asarray(tables(bandit, preferences).pref)
    w = bandit.rho[:, None, None] * joint
    out = np.stack([w * (1.0 - p), w * p], axis=-1)
    return out / out.sum()  # exact up to rounding; multinomial needs sum <= 1


def sample_datasets(
    bandit: Bandit,
    data: Any,
    n_seeds: int,
    size: int,
    rng: np.random.Generator,
    *,
    preferences: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Draw ``n_seeds`` datasets of ``size`` labelled pairs, as counts (S, X, n, n, 2).

    Pairs (x, y, y') ∼ ρ(x) q(y, y'|x) with q = ``data.joint`` (OfflineData), labels
    ∼ Bernoulli(p(y ≻ y'|x)) (Bradley–Terry on R unless ``preferences`` is given).
    """
    joint = _joint(bandit, data)
    probs = _pair_probabilities(bandit, joint, preferences)
    counts = rng.multinomial(size, probs.ravel(), size=n_seeds)
    return counts.reshape((n_seeds, *probs.shape))


def shuffle_counts(
    dataset: NDArray[np.integer],
    batch_sizes: Sequence[int],
    epochs: int,
    rng: np.random.Generator,
) -> NDArray[np.int32]:
    """Counts of each minibatch when each epoch shuffles the dataset uniformly.

    Args:
      dataset: (S, K...) category counts of each seed's dataset (K... any trailing shape).
      batch_sizes: the sizes of the consecutive batches of an epoch; their sum may be less
        than the dataset size (the rest of the permutation is dropped).
      epochs: E, the number of independent permutations per seed.
      rng: the random stream.
    Returns:
      (S, E, J, K...) counts: batch j holds a multivariate hypergeometric draw of
      batch_sizes[j] items, without replacement, from what batches < j left over.
    """
    ds = np.asarray(dataset, dtype=np.int64)
    S, shape = ds.shape[0], ds.shape[1:]
    flat = ds.reshape(S, -1)
    N = flat.sum(axis=1)
    if np.any(N != N[0]):
        raise ValidationError("dataset: every seed's dataset must have the same size")
    sizes = [int(b) for b in batch_sizes]
    if sum(sizes) > N[0]:
        raise ValidationError(f"batch_sizes sum to {sum(sizes)} > dataset size {int(N[0])}")
    K, J = flat.shape[1], len(sizes)
    left = np.broadcast_to(flat[:, None, :], (S, epochs, K)).copy()  # what remains, per epoch
    out = np.zeros((S, epochs, J, K), dtype=np.int32)
    for j, b in enumerate(sizes):
        if j == J - 1 and sum(sizes) == N[0]:
            out[:, :, j] = left  # the last batch takes what remains: nothing to draw
            break
        need = np.full((S, epochs), b, dtype=np.int64)
        rest = left.sum(axis=-1)
        for k in range(K):
            rest -= left[..., k]  # items of categories > k
            # The last category fills the batch; the others are hypergeometric conditionals.
            draw = need if k == K - 1 else rng.hypergeometric(left[..., k], rest, need)
            out[:, :, j, k] = draw
            need = need - draw
        left -= out[:, :, j]
    return out.reshape((S, epochs, J, *shape))


@dataclass(frozen=True)
class SampledMinibatches:
    """The sample form: each seed's dataset as its N labelled pairs, and its epochs' orders.

    Category indices run over the flattened (X, n, n, 2) = (x, y, y', label) of
    :class:`Minibatches`. Epoch orders are drawn per chunk of seeds, when they train
    (:meth:`batch_indices`), from each seed's own stream, so they need no memory beforehand.

    Attributes:
      samples: (S, N) category index of each seed's pairs, in the order drawn.
      sizes: (J,) batch sizes (the same in every epoch).
      epochs: E, the permutations per seed.
      shape: (X, n, n, 2), the category shape.
      seed: the random seed; seed s's orders come from ``default_rng([seed, s, 1])``.
    """

    samples: NDArray[np.int64]
    sizes: NDArray[np.int64]
    epochs: int
    shape: tuple[int, int, int, int]
    seed: int

    @property
    def n_seeds(self) -> int:
        return self.samples.shape[0]

    def batch_indices(self, s0: int, s1: int, e0: int, e1: int) -> NDArray[np.int64]:
        """(s1 − s0, e1 − e0, J, max |B|) category indices of each batch of epochs e0..e1 − 1
        of seeds s0..s1 − 1; entries past a batch's size are 0 (masked by the trainer)."""
        N = self.samples.shape[1]
        J, width = len(self.sizes), int(self.sizes.max())
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        slot = starts[:, None] + np.arange(width)[None]  # position in the epoch's order
        valid = np.arange(width)[None] < self.sizes[:, None]
        slot = np.where(valid, slot, 0)
        out = np.zeros((s1 - s0, e1 - e0, J, width), dtype=self.samples.dtype)
        for i, s in enumerate(range(s0, s1)):
            rng = np.random.default_rng([self.seed, s, 1])
            for e in range(e1):  # epochs before e0 are drawn too: the stream is sequential
                order = rng.permutation(N)
                if e >= e0:
                    out[i, e - e0] = np.where(valid, self.samples[s][order[slot]], 0)
        return out

    def to_minibatches(self) -> Minibatches:
        """The same batches in the count form (for tests and small problems)."""
        K = int(np.prod(self.shape))
        S, E, J = self.n_seeds, self.epochs, len(self.sizes)
        _check_bytes("minibatch counts", 4.0 * S * E * J * K, "use the sample form")
        idx = self.batch_indices(0, S, 0, E)
        valid = np.arange(idx.shape[-1])[None] < self.sizes[:, None]
        counts = np.zeros((S, E, J, K), dtype=np.int32)
        for s, e, j in np.ndindex(S, E, J):
            counts[s, e, j] = np.bincount(idx[s, e, j][valid[j]], minlength=K)
        ds = np.stack([np.bincount(row, minlength=K) for row in self.samples])
        return Minibatches(
            ds.reshape((S, *self.shape)), counts.reshape((S, E, J, *self.shape)), self.sizes
        )


def check_layout(bandit: Bandit, config: TrainConfig, n_seeds: int) -> None:
    """Refuse, before anything is allocated, a layout whose minibatches (count form, or
    the sample form's datasets where :func:`uses_samples`) or trained log-policies would
    take more than :data:`MAX_BYTES`."""
    _check_bandit(bandit)
    config = _config(config)
    X, n = bandit.n_prompts, bandit.n_actions
    if uses_samples(bandit, config):
        _check_bytes(
            "the datasets",
            8.0 * n_seeds * config.dataset_size,
            "use fewer seeds or a smaller dataset_size",
        )
    else:
        K = X * n * n * 2
        _check_bytes(
            "minibatch counts",
            (4.0 * config.epochs * len(config.batch_sizes) + 16.0) * n_seeds * K,
            "use fewer seeds or epochs, or sampled_minibatches (see uses_samples)",
        )
    _check_bytes(
        "the trained log-policies",
        8.0 * n_seeds * (config.epochs + 1) * X * n,
        "use fewer seeds or epochs",
    )


def uses_samples(bandit: Bandit, config: TrainConfig) -> bool:
    """Whether :func:`sampled_minibatches` suits this problem better than the counts:
    when the categories X·n·n·2 outnumber the dataset's pairs (most counts are then 0)."""
    return int(np.prod(_category_shape(bandit))) > config.dataset_size


def sampled_minibatches(
    bandit: Bandit,
    data: Any,
    *,
    n_seeds: int = 10,
    seed: int = 0,
    config: TrainConfig | None = None,
    preferences: ArrayLike | None = None,
) -> SampledMinibatches:
    """Each seed's dataset as N i.i.d. labelled pairs, and its shuffled epochs (sample form).

    Pairs (x, y, y') ∼ ρ(x) q(y, y'|x), labels ∼ Bernoulli(p(y ≻ y'|x)): the law of
    :func:`minibatches`, drawn as samples (O(N) memory per seed instead of O(X·n·n)). Seed s
    draws its dataset from ``default_rng([seed, s, 0])`` and its orders from
    ``default_rng([seed, s, 1])``: the same seed gives the same batches for any number of
    seeds and any chunking.
    """
    _check_bandit(bandit)
    config = _config(config)
    n_seeds = check_int("n_seeds", n_seeds, 1)
    seed = check_int("seed", seed, 0)
    joint = _joint(bandit, data)
    N = config.dataset_size
    _check_bytes("the datasets", 8.0 * n_seeds * N, "use fewer seeds or a smaller dataset_size")
    w = (bandit.rho[:, None, None] * joint).ravel()
    cdf = np.cumsum(w)
    pref = np.asarray(tables(bandit, preferences).pref).ravel()
    dtype = np.int32 if 2 * w.size < 2**31 else np.int64
    samples = np.empty((n_seeds, N), dtype=dtype)
    for s in range(n_seeds):
        rng = np.random.default_rng([seed, s, 0])
        # Inverse-CDF draws; a pair of probability 0 has an empty interval, never drawn.
        pair = np.searchsorted(cdf, rng.random(N) * cdf[-1], side="right")
        pair = np.minimum(pair, w.size - 1)
        label = rng.random(N) < pref[pair]
        samples[s] = 2 * pair + label
    shape = _category_shape(bandit)
    return SampledMinibatches(samples, config.batch_sizes, config.epochs, shape, seed)


def _joint(bandit: Bandit, data: Any) -> NDArray[np.float64]:
    """q(y, y'|x) of ``data``, checked against the bandit's shape."""
    if not isinstance(bandit, Bandit):
        raise ValidationError(f"bandit must be a Bandit, got {type(bandit).__name__}")
    joint = np.asarray(getattr(data, "joint", None), dtype=np.float64)
    if joint.shape != (bandit.n_prompts, bandit.n_actions, bandit.n_actions):
        raise ValidationError(
            f"data must have pair shape {(bandit.n_prompts, bandit.n_actions, bandit.n_actions)},"
            f" got {joint.shape}"
        )
    return joint


def minibatches(
    bandit: Bandit,
    data: Any,
    *,
    n_seeds: int = 10,
    seed: int = 0,
    config: TrainConfig | None = None,
    preferences: ArrayLike | None = None,
) -> Minibatches:
    """Each seed's dataset and its shuffled minibatches, reproducibly from ``seed``.

    The stream does not depend on the method, so every method of a seed sees the same
    dataset in the same order (common random numbers, as one data loader would give).
    """
    config = _config(config)
    n_seeds = check_int("n_seeds", n_seeds, 1)
    seed = check_int("seed", seed, 0)
    check_layout(bandit, config, n_seeds)
    rng = np.random.default_rng(seed)
    ds = sample_datasets(bandit, data, n_seeds, config.dataset_size, rng, preferences=preferences)
    sizes = config.batch_sizes
    return Minibatches(ds, shuffle_counts(ds, sizes, config.epochs, rng), sizes)


def expected_minibatches(
    bandit: Bandit,
    data: Any,
    *,
    config: TrainConfig | None = None,
    preferences: ArrayLike | None = None,
) -> Minibatches:
    """One "seed" whose every batch holds the *expected* fractional counts |B|·ρ q p.

    Its batch loss is the exact expected loss, so training on it runs Adam on the exact
    expected gradient with the same step schedule: the infinite-data, noise-free flow that
    shows how much of a trained policy's distance to its fixed point is optimisation gap.
    """
    config = _config(config)
    joint = _joint(bandit, data)
    probs = _pair_probabilities(bandit, joint, preferences)
    sizes = config.batch_sizes
    counts = sizes[:, None] * probs.reshape(1, -1)  # (J, K)
    counts = np.broadcast_to(counts, (1, config.epochs, *counts.shape))
    return Minibatches(
        config.dataset_size * probs[None],
        counts.reshape((1, config.epochs, len(sizes), *probs.shape)),
        sizes,
    )


def minibatches_from_permutations(
    samples: NDArray[np.integer], shape: tuple[int, ...], perms: NDArray[np.integer], sizes
) -> Minibatches:
    """Minibatch counts of one materialised dataset under given permutations.

    ``samples`` (N, 4) holds rows (x, y, y', label); ``perms`` (E, N) one permutation per
    epoch; ``shape`` = (X, n, n, 2). Used to check the trainer against per-sample SGD.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    flat_idx = np.ravel_multi_index(tuple(np.asarray(samples).T), shape)
    K = int(np.prod(shape))
    E = perms.shape[0]
    counts = np.zeros((1, E, len(sizes), K), dtype=np.int32)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    for e in range(E):
        order = flat_idx[perms[e]]
        for j in range(len(sizes)):
            counts[0, e, j] = np.bincount(order[edges[j] : edges[j + 1]], minlength=K)
    ds = np.bincount(flat_idx, minlength=K).reshape((1, *shape))
    return Minibatches(ds, counts.reshape((1, E, len(sizes), *shape)), sizes)


@dataclass(frozen=True)
class TrainResult:
    """Trajectories of one method over all seeds.

    Attributes:
      method: the method's name.
      log_policies: (S, E + 1, X, n) log π after each epoch, index 0 the initial π_ref.
      regret: (S, E + 1) the ρ-averaged regret J(π*) − J(π) of those policies.
    """

    method: str
    log_policies: NDArray[np.float64]
    regret: NDArray[np.float64]


def _gathered_pair(pair: Any, x: Any, y: Any, y2: Any, label: Any) -> Any:
    """The Pair of :func:`bandit.expected.tabular_pair` at given (x, y, y') only, with hard
    labels as preferences: each broadcastable (X, n|1, n|1) field is read at the samples."""
    import jax.numpy as jnp

    def take(a: Any) -> Any:
        a = jnp.asarray(a)
        return a[x, y if a.shape[1] > 1 else 0, y2 if a.shape[2] > 1 else 0]

    def both(t: Any) -> Any:
        return None if t is None else tuple(take(a) for a in t)

    return replace(
        pair,
        logratio=both(pair.logratio),
        logp=both(pair.logp),
        old_logp=both(pair.old_logp),
        old_logratio=both(pair.old_logratio),
        reward=both(pair.reward),
        preference=label,
        value=None if pair.value is None else take(pair.value),
    )


def _runner(methods: Sequence[Method], tab: Any, sizes: Any, learning_rate: float, sampled: bool):
    """(jitted run over a chunk of epochs for all methods and seeds, optax optimiser).

    All methods advance together through the same minibatches (one compile for the lot).
    A batch is its counts over (x, y, y', label) or, ``sampled``, its category indices.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from .expected import count_loss, tabular_pair

    opt = optax.adam(learning_rate)
    n = np.shape(tab.log_ref)[1]

    def count_batch_loss(method, logits, c, size):
        # c: (X, n, n, 2) counts of (x, y, y', label) in the batch; label 1 is y ≻ y'.
        return count_loss(method, logits, tab, c.sum(axis=-1), c[..., 1], size)

    def sample_batch_loss(method, logits, cats, size):
        # cats: (max |B|,) flat (x, y, y', label) indices; slots past |B| are padding.
        mask = jnp.arange(cats.shape[0]) < size
        pair, label = jnp.divmod(cats, 2)
        x, rest = jnp.divmod(pair, n * n)
        y, y2 = jnp.divmod(rest, n)
        kw = method.check_params({})
        got = _gathered_pair(tabular_pair(logits, tab), x, y, y2, label.astype(jnp.float64))
        return jnp.sum(jnp.where(mask, method.loss(got, **kw), 0.0)) / size

    batch_loss = sample_batch_loss if sampled else count_batch_loss
    grads = [jax.grad(partial(batch_loss, m), argnums=0) for m in methods]

    def step(states, batch):
        c, size = batch
        c = c if sampled else c.astype(jnp.float64)
        new = []
        for grad, (logits, opt_state) in zip(grads, states, strict=True):
            updates, opt_state = opt.update(grad(logits, c, size), opt_state, logits)
            new.append((optax.apply_updates(logits, updates), opt_state))
        return tuple(new), None

    def epoch(states, inputs):
        counts, active = inputs
        new, _ = jax.lax.scan(step, states, (counts, sizes))
        # Padding epochs (active False) leave the state untouched.
        states = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, states)
        return states, tuple(jax.nn.log_softmax(logits, axis=-1) for logits, _ in states)

    def chunk(states, counts, active):
        return jax.lax.scan(epoch, states, (counts, active))

    return jax.jit(jax.vmap(chunk, in_axes=(0, 0, None))), opt


Batches = Minibatches | SampledMinibatches


class CompiledTrainer:
    """Shuffled-minibatch Adam for ``methods``, compiled for one layout of minibatches.

    Compiling needs only the layout (seeds, epochs, batch sizes, form), not the counts, so
    it can run on another thread while the minibatches are drawn
    (:func:`bandit.figure1.compute` does so). :func:`train_all` is
    ``CompiledTrainer(...).run(batches)``.

    Args:
      methods: offline methods (copg, pg, pg_value, ipo, dpo, slic).
      bandit: the (contextual) bandit: rewards, π_ref, ρ and β.
      n_seeds, epochs, sizes: the layout of the batches that :meth:`run` takes (all their
        seeds together when it takes several sets).
      learning_rate: Adam's step size.
      preferences: p(y ≻ y'|x) for the losses' tables (default Bradley–Terry on R); the
        labels themselves are in the minibatches.
      chunk: epochs per compiled call (a progress tick); the result does not depend on it.
      sampled: train on :class:`SampledMinibatches` (the sample form) instead of counts.
      seed_chunk: seeds per compiled call (default: as many as fit in 64 MiB of batches);
        the result does not depend on it.
    """

    @float64
    def __init__(
        self,
        methods: Sequence[str | Method],
        bandit: Bandit,
        n_seeds: int,
        epochs: int,
        sizes: ArrayLike,
        *,
        learning_rate: float = 1e-3,
        preferences: ArrayLike | None = None,
        chunk: int = 25,
        sampled: bool = False,
        seed_chunk: int | None = None,
    ) -> None:
        import jax
        import jax.numpy as jnp

        methods = list(dict.fromkeys(get_method(m) for m in methods))
        if not methods:
            raise ValidationError("methods: give at least one method")
        for m in methods:
            if not m.offline:
                raise ValidationError(
                    f"method: the trainer runs offline methods ({', '.join(OFFLINE_METHODS)}),"
                    f" got the online method {m.name!r}"
                )
        if not isinstance(bandit, Bandit):
            raise ValidationError(f"bandit must be a Bandit, got {type(bandit).__name__}")
        learning_rate = check_positive("learning_rate", learning_rate)
        S = check_int("n_seeds", n_seeds, 1)
        E = check_int("epochs", epochs, 0)
        C = max(1, min(check_int("chunk", chunk, 1), E))
        self.sampled = check_bool("sampled", sampled)
        self.methods, self.bandit, self.chunk = methods, bandit, C
        self.sizes = np.asarray(sizes, dtype=np.int64)
        cat = _category_shape(bandit)
        self.shape = (S, E, len(self.sizes), *cat)
        _check_bytes(
            "the trained log-policies",
            8.0 * len(methods) * S * (E + 1) * cat[0] * cat[1],
            "use fewer seeds or epochs",
        )
        per_seed = C * len(self.sizes) * (int(self.sizes.max()) if sampled else np.prod(cat)) * 8
        if seed_chunk is None:
            seed_chunk = max(1, int(CHUNK_BYTES // max(per_seed, 1)))
        self.seed_chunk = min(S, check_int("seed_chunk", seed_chunk, 1))
        tab = jax.tree_util.tree_map(jnp.asarray, tables(bandit, preferences))
        run, opt = _runner(
            methods, tab, jnp.asarray(self.sizes, jnp.float64), learning_rate, self.sampled
        )
        start = jnp.asarray(bandit.log_ref)
        one = (start, opt.init(start))
        Sc = self.seed_chunk
        self._start = tuple(
            jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (Sc, *a.shape)), one)
            for _ in methods
        )
        if self.sampled:
            width = int(self.sizes.max()) if self.sizes.size else 1
            counts = jax.ShapeDtypeStruct((Sc, C, len(self.sizes), width), jnp.int64)
        else:
            counts = jax.ShapeDtypeStruct((Sc, C, *self.shape[2:]), jnp.float64)
        active = jax.ShapeDtypeStruct((C,), jnp.bool_)
        self._run = run.lower(self._start, counts, active).compile()

    def _check(self, sources: Sequence[Batches]) -> None:
        kind = SampledMinibatches if self.sampled else Minibatches
        for b in sources:
            if not isinstance(b, kind):
                raise ValidationError(
                    f"batches must be {kind.__name__} for this trainer (sampled="
                    f"{self.sampled}), got {type(b).__name__}"
                )
            if not np.array_equal(b.sizes, self.sizes):
                raise ValidationError(
                    f"batches: batch sizes {b.sizes.tolist()}, expected {self.sizes.tolist()}"
                )
        S = sum(b.n_seeds for b in sources)
        if self.sampled:
            got = (S, sources[0].epochs if sources else 0, len(self.sizes), *sources[0].shape)
            bad = any(b.epochs != self.shape[1] or b.shape != self.shape[3:] for b in sources)
        else:
            got = (S, *sources[0].counts.shape[1:])
            bad = any(b.counts.shape[1:] != self.shape[1:] for b in sources)
        if bad or S != self.shape[0]:
            raise ValidationError(
                f"batches: layout {got} (seeds, epochs, batches, categories), expected {self.shape}"
            )

    def _inputs(self, sources: Sequence[Batches], s0: int, s1: int, e0: int, e1: int):
        """The chunk's batches, seeds s0..s1 − 1 across ``sources``, epochs e0..e1 − 1."""
        parts, base = [], 0
        for b in sources:
            lo, hi = max(s0, base), min(s1, base + b.n_seeds)
            if lo < hi:
                if self.sampled:
                    parts.append(b.batch_indices(lo - base, hi - base, e0, e1).astype(np.int64))
                else:
                    parts.append(np.asarray(b.counts[lo - base : hi - base, e0:e1], np.float64))
            base += b.n_seeds
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @float64
    def run(
        self,
        batches: Batches | Sequence[Batches],
        *,
        progress: Callable[[int], Any] | None = None,
    ) -> dict[str, TrainResult]:
        """Train every method from π_ref on ``batches`` (all seeds, ``seed_chunk`` at a time).

        Args:
          batches: minibatches of the layout given at construction (:func:`minibatches` or
            :func:`sampled_minibatches`), or several sets whose seeds follow each other.
          progress: called with the number of epochs done after each chunk (``tqdm.update``),
            scaled to the share of seeds in the chunk.
        Returns:
          ``{method: TrainResult}`` with one policy and regret per epoch, index 0 the start.
        """
        import jax.numpy as jnp

        sources = (
            [batches] if isinstance(batches, (Minibatches, SampledMinibatches)) else list(batches)
        )
        if not sources:
            raise ValidationError("batches: give at least one set of minibatches")
        self._check(sources)
        S, E = self.shape[:2]
        C, Sc, bandit = self.chunk, self.seed_chunk, self.bandit
        X, n = bandit.log_ref.shape
        lps = [np.empty((S, E + 1, X, n)) for _ in self.methods]
        for lp in lps:
            lp[:, 0] = log_softmax(bandit.log_ref)
        done = 0.0
        for s0 in range(0, S, Sc):
            s1 = min(S, s0 + Sc)
            states = self._start
            for e0 in range(0, E, C):
                k = min(C, E - e0)
                got = self._inputs(sources, s0, s1, e0, e0 + k)
                # Pad to the compiled layout: extra seeds and epochs are computed and dropped.
                inputs = np.zeros((Sc, C, *got.shape[2:]), dtype=got.dtype)
                inputs[: s1 - s0, :k] = got
                states, logs = self._run(states, inputs, jnp.arange(C) < k)
                for i, lp in enumerate(logs):
                    lps[i][s0:s1, 1 + e0 : 1 + e0 + k] = np.asarray(lp)[: s1 - s0, :k]
                if progress is not None:
                    # Whole epochs of all seeds, reported as they complete.
                    new = (s0 * E + (s1 - s0) * (e0 + k)) / S
                    progress(int(new) - int(done))
                    done = new
        out = {}
        for i, m in enumerate(self.methods):
            out[m.name] = TrainResult(m.name, lps[i], regret(bandit, lps[i]))
        return out


def _category_shape(bandit: Bandit) -> tuple[int, int, int, int]:
    """(X, n, n, 2): the categories (x, y, y', label) of a minibatch's counts."""
    return (bandit.n_prompts, bandit.n_actions, bandit.n_actions, 2)


def train_all(
    methods: Sequence[str | Method],
    bandit: Bandit,
    batches: Batches,
    *,
    learning_rate: float = 1e-3,
    preferences: ArrayLike | None = None,
    progress: Callable[[int], Any] | None = None,
    chunk: int = 25,
    seed_chunk: int | None = None,
) -> dict[str, TrainResult]:
    """Train each of ``methods`` by shuffled-minibatch Adam from π_ref, on every seed at once.

    Every method sees the same minibatches (those of ``batches``: :class:`Minibatches` or
    :class:`SampledMinibatches`). Arguments as in :class:`CompiledTrainer` and its
    :meth:`~CompiledTrainer.run`.

    Returns:
      ``{method: TrainResult}`` with one policy and regret per epoch, index 0 the start.
    """
    if not isinstance(batches, (Minibatches, SampledMinibatches)):
        raise ValidationError(
            f"batches must be Minibatches or SampledMinibatches, got {type(batches).__name__}"
        )
    sampled = isinstance(batches, SampledMinibatches)
    shape = batches.shape if sampled else batches.counts.shape[3:]
    if isinstance(bandit, Bandit) and tuple(shape) != _category_shape(bandit):
        raise ValidationError(
            f"batches: counts have category shape {tuple(shape)}, "
            f"the bandit needs {_category_shape(bandit)}"
        )
    trainer = CompiledTrainer(
        methods,
        bandit,
        batches.n_seeds,
        batches.epochs,
        batches.sizes,
        learning_rate=learning_rate,
        preferences=preferences,
        chunk=chunk,
        sampled=sampled,
        seed_chunk=seed_chunk,
    )
    return trainer.run(batches, progress=progress)


def train(method: str | Method, bandit: Bandit, batches: Batches, **kw: Any) -> TrainResult:
    """Train one method; see :func:`train_all` for the arguments."""
    return train_all([method], bandit, batches, **kw)[get_method(method).name]
