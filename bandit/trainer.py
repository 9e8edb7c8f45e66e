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
from dataclasses import dataclass
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
from .validation import ValidationError, check_int, check_positive

__all__ = [
    "CompiledTrainer",
    "Minibatches",
    "TrainConfig",
    "TrainResult",
    "expected_minibatches",
    "minibatches",
    "minibatches_from_permutations",
    "sample_datasets",
    "shuffle_counts",
    "train",
    "train_all",
]


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
    joint = np.asarray(data.joint, dtype=np.float64)
    if joint.shape != (bandit.n_prompts, bandit.n_actions, bandit.n_actions):
        raise ValidationError(
            f"data must have pair shape {(bandit.n_prompts, bandit.n_actions, bandit.n_actions)},"
            f" got {joint.shape}"
        )
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
    config = config or TrainConfig()
    n_seeds = check_int("n_seeds", n_seeds, 1)
    seed = check_int("seed", seed, 0)
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
    config = config or TrainConfig()
    joint = np.asarray(data.joint, dtype=np.float64)
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


def _runner(methods: Sequence[Method], tab: Any, sizes: Any, learning_rate: float):
    """(jitted run over a chunk of epochs for all methods and seeds, optax optimiser).

    All methods advance together through the same minibatches (one compile for the lot).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from .expected import count_loss

    opt = optax.adam(learning_rate)

    def batch_loss(method, logits, c, size):
        # c: (X, n, n, 2) counts of (x, y, y', label) in the batch; label 1 is y ≻ y'.
        return count_loss(method, logits, tab, c.sum(axis=-1), c[..., 1], size)

    grads = [jax.grad(partial(batch_loss, m), argnums=0) for m in methods]

    def step(states, batch):
        c, size = batch
        c = c.astype(jnp.float64)
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


class CompiledTrainer:
    """Shuffled-minibatch Adam for ``methods``, compiled for one layout of minibatches.

    Compiling needs only the layout (seeds, epochs, batch sizes), not the counts, so it can
    run on another thread while the minibatches are drawn (:func:`bandit.figure1.compute`
    does so). :func:`train_all` is ``CompiledTrainer(...).run(batches)``.

    Args:
      methods: offline methods (copg, pg, pg_value, ipo, dpo, slic).
      bandit: the (contextual) bandit: rewards, π_ref, ρ and β.
      n_seeds, epochs, sizes: the layout of the :class:`Minibatches` that :meth:`run` takes.
      learning_rate: Adam's step size.
      preferences: p(y ≻ y'|x) for the losses' tables (default Bradley–Terry on R); the
        labels themselves are in the minibatches.
      chunk: epochs per compiled call (a progress tick); the result does not depend on it.
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
        self.methods, self.bandit, self.chunk = methods, bandit, C
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.shape = (S, E, len(self.sizes), *_category_shape(bandit))
        tab = jax.tree_util.tree_map(jnp.asarray, tables(bandit, preferences))
        run, opt = _runner(methods, tab, jnp.asarray(self.sizes, jnp.float64), learning_rate)
        start = jnp.asarray(bandit.log_ref)
        one = (start, opt.init(start))
        self._start = tuple(
            jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (S, *a.shape)), one)
            for _ in methods
        )
        counts = jax.ShapeDtypeStruct((S, C, *self.shape[2:]), jnp.float64)
        active = jax.ShapeDtypeStruct((C,), jnp.bool_)
        self._run = run.lower(self._start, counts, active).compile()

    @float64
    def run(
        self, batches: Minibatches, *, progress: Callable[[int], Any] | None = None
    ) -> dict[str, TrainResult]:
        """Train every method from π_ref on ``batches`` (all seeds at once).

        Args:
          batches: minibatches of the layout given at construction (:func:`minibatches`).
          progress: called with the number of epochs done after each chunk (``tqdm.update``).
        Returns:
          ``{method: TrainResult}`` with one policy and regret per epoch, index 0 the start.
        """
        import jax.numpy as jnp

        if batches.counts.shape != self.shape or not np.array_equal(batches.sizes, self.sizes):
            raise ValidationError(
                f"batches: counts of shape {batches.counts.shape} and batch sizes "
                f"{batches.sizes.tolist()}, expected {self.shape} and {self.sizes.tolist()}"
            )
        S, E = self.shape[:2]
        C, bandit = self.chunk, self.bandit
        states = self._start
        traj: list[list[NDArray[np.float64]]] = [[] for _ in self.methods]
        for e0 in range(0, E, C):
            n = min(C, E - e0)
            counts = np.zeros((S, C, *self.shape[2:]))
            counts[:, :n] = batches.counts[:, e0 : e0 + n]
            states, logs = self._run(states, counts, jnp.arange(C) < n)
            for i, lp in enumerate(logs):
                traj[i].append(np.asarray(lp)[:, :n])
            if progress is not None:
                progress(n)
        init = np.broadcast_to(log_softmax(bandit.log_ref), (S, 1, *bandit.log_ref.shape))
        out = {}
        for i, m in enumerate(self.methods):
            lp = np.concatenate([init, *traj[i]], axis=1)
            out[m.name] = TrainResult(m.name, lp, regret(bandit, lp))
        return out


def _category_shape(bandit: Bandit) -> tuple[int, int, int, int]:
    """(X, n, n, 2): the categories (x, y, y', label) of a minibatch's counts."""
    return (bandit.n_prompts, bandit.n_actions, bandit.n_actions, 2)


def train_all(
    methods: Sequence[str | Method],
    bandit: Bandit,
    batches: Minibatches,
    *,
    learning_rate: float = 1e-3,
    preferences: ArrayLike | None = None,
    progress: Callable[[int], Any] | None = None,
    chunk: int = 25,
) -> dict[str, TrainResult]:
    """Train each of ``methods`` by shuffled-minibatch Adam from π_ref, on every seed at once.

    Every method sees the same minibatches (those of ``batches``). Arguments as in
    :class:`CompiledTrainer` and its :meth:`~CompiledTrainer.run`.

    Returns:
      ``{method: TrainResult}`` with one policy and regret per epoch, index 0 the start.
    """
    if not isinstance(batches, Minibatches):
        raise ValidationError(f"batches must be Minibatches, got {type(batches).__name__}")
    if isinstance(bandit, Bandit) and batches.counts.shape[3:] != _category_shape(bandit):
        raise ValidationError(
            f"batches: counts have category shape {batches.counts.shape[3:]}, "
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
    )
    return trainer.run(batches, progress=progress)


def train(method: str | Method, bandit: Bandit, batches: Minibatches, **kw: Any) -> TrainResult:
    """Train one method; see :func:`train_all` for the arguments."""
    return train_all([method], bandit, batches, **kw)[get_method(method).name]
