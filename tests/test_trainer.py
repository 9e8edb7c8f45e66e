"""The count-based trainer is shuffled minibatch SGD, in law and step by step.

Two facts make it exact: (1) for a tabular policy a minibatch gradient is a function of the
batch's counts of (x, y, y', label), so given a permutation the trainer reproduces the
per-sample loop to rounding; (2) the counts it draws have exactly the law of the counts of a
uniformly shuffled dataset cut into consecutive batches.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from exact_adam import adam_on_exact_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.stats import chisquare, norm

from bandit import OFFLINE_METHODS, Bandit, regret
from bandit.expected import pair_losses
from bandit.prepare import tables
from bandit.problems import OfflineData
from bandit.trainer import (
    CompiledTrainer,
    Minibatches,
    TrainConfig,
    expected_minibatches,
    minibatches,
    minibatches_from_permutations,
    sample_datasets,
    sampled_minibatches,
    shuffle_counts,
    train,
    train_all,
    uses_samples,
)
from bandit.validation import ValidationError

PAPER = Bandit.single([2.5, 2.0, 1.0], 0.5)
PAPER_DATA = OfflineData([0.1, 0.2, 0.7], [0.05, 0.05, 0.9])


# ---------------------------------------------------------------- the law of batch counts


def _exact_table_law(cats: list[int], sizes: list[int]) -> Counter:
    """Law of the (batch, category) count table under a uniform permutation, by enumeration.

    All distinct orderings of a multiset are equally likely under a uniform permutation.
    """
    law: Counter = Counter()
    edges = np.cumsum([0, *sizes])
    for order in set(itertools.permutations(cats)):
        table = tuple(
            tuple(np.bincount(order[a:b], minlength=max(cats) + 1))
            for a, b in itertools.pairwise(edges)
        )
        law[table] += 1
    return law


def _chi2_pvalue(samples: np.ndarray, law: Counter) -> float:
    """Goodness of fit of sampled (E, J, K) tables to the exact law."""
    seen = Counter(tuple(map(tuple, t)) for t in samples)
    if not set(seen) <= set(law):
        return 0.0  # a table the exact law cannot produce: rejected outright
    keys = sorted(law)
    total = sum(law.values())
    obs = np.array([seen[k] for k in keys], dtype=float)
    exp = np.array([law[k] / total * len(samples) for k in keys])
    return float(chisquare(obs, exp).pvalue)


def _independent_batches(dataset, sizes, epochs, rng):
    """Wrong on purpose: each batch drawn from the full dataset (no depletion)."""
    out = np.stack(
        [
            np.stack([rng.multivariate_hypergeometric(dataset, b) for b in sizes])
            for _ in range(epochs)
        ]
    )
    return out


@pytest.mark.parametrize("sizes", [[3, 3, 1], [3, 3]])  # keep / drop the partial batch
def test_batch_counts_follow_the_exact_shuffling_law(sizes):
    # Dataset of 7 items in 3 categories; 210 equally likely orderings.
    cats = [0, 0, 0, 1, 1, 2, 2]
    dataset = np.bincount(cats)
    law = _exact_table_law(cats, [*sizes, 7 - sum(sizes)] if sum(sizes) < 7 else sizes)
    if sum(sizes) < 7:  # the dropped tail is not observed: marginalise it out
        marg: Counter = Counter()
        for t, w in law.items():
            marg[t[: len(sizes)]] += w
        law = marg
    rng = np.random.default_rng(1)
    E = 20_000
    drawn = shuffle_counts(dataset[None], sizes, E, rng)[0]  # (E, J, K)
    # A fixed seed and a 1e-4 level: the sampler must pass...
    assert _chi2_pvalue(drawn, law) > 1e-4
    # ...and a sampler that forgets to deplete the dataset (negative control) must fail.
    wrong = _independent_batches(dataset, sizes, E, np.random.default_rng(1))
    assert _chi2_pvalue(wrong, law) < 1e-8


@given(
    counts=st.lists(st.integers(0, 40), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    batch=st.integers(1, 50),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_epoch_is_a_partition_of_the_dataset(counts, batch, drop_last, seed):
    N = sum(counts)
    if drop_last and batch > N:
        return
    cfg = TrainConfig(dataset_size=N, batch_size=batch, epochs=3, drop_last=drop_last)
    sizes = cfg.batch_sizes
    ds = np.asarray(counts)[None]
    out = shuffle_counts(ds, sizes, 3, np.random.default_rng(seed))
    assert (out >= 0).all()
    np.testing.assert_array_equal(out.sum(axis=-1), np.broadcast_to(sizes, (1, 3, len(sizes))))
    used = out.sum(axis=2)  # per epoch
    assert (used <= ds[:, None]).all()
    if not drop_last:
        np.testing.assert_array_equal(used, np.broadcast_to(ds[:, None], used.shape))
    assert len(sizes) == (N // batch if drop_last else -(-N // batch))


def test_dataset_law_is_rho_q_and_bradley_terry_labels():
    # Contextual: 2 prompts, 3 actions.
    R = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    bandit = Bandit(R, rho=[0.3, 0.7], beta=1.0)
    mu1 = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    mu2 = np.array([[0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
    data = OfflineData(mu1, mu2)
    S, N = 400, 2000
    ds = sample_datasets(bandit, data, S, N, np.random.default_rng(3)).astype(float)
    assert ds.shape == (S, 2, 3, 3, 2)
    q = bandit.rho[:, None, None] * mu1[:, :, None] * mu2[:, None, :]
    p = expit(R[:, :, None] - R[:, None, :])
    z = norm.isf(1e-4 / (2 * 36))  # family-wise 1e-4 over 2·18 two-sided checks

    def within(freq, prob):
        # CLT for the mean over S·N multinomial draws of an indicator of probability `prob`.
        se = np.sqrt(prob * (1 - prob) / (S * N))
        return np.all(np.abs(freq - prob) <= z * se)

    freq = ds.sum(axis=0) / (S * N)
    expected = np.stack([q * (1 - p), q * p], axis=-1)
    assert within(freq, expected)
    # Negative control: labels with the preference reversed are rejected.
    assert not within(freq, np.stack([q * p, q * (1 - p)], axis=-1))


# ------------------------------------------------------- step-by-step equality with SGD


def _per_sample_sgd(method, bandit, samples, perms, sizes, lr, *, wrong_last=False):
    """The plain loop: materialised samples, per-sample shared losses, mean over the batch."""
    tab = jax.tree_util.tree_map(jnp.asarray, tables(bandit))
    x, y, y2, lab = (jnp.asarray(c) for c in np.asarray(samples).T)

    def loss(theta, idx, size):
        # Hard label l: the pair's loss with p = l (every preference loss is linear in p).
        per = jax.vmap(
            lambda i: pair_losses(method, theta, tab, pref=jnp.full((1, 3, 3), lab[i] * 1.0))[
                x[i], y[i], y2[i]
            ]
        )(idx)
        return jnp.sum(per) / size

    opt = optax.adam(lr)
    theta = jnp.asarray(bandit.log_ref)
    state = opt.init(theta)
    traj = [np.asarray(jax.nn.log_softmax(theta))]
    edges = np.cumsum([0, *sizes])
    grad = jax.jit(jax.grad(loss))
    for perm in perms:
        for a, b in itertools.pairwise(edges):
            size = sizes[0] if wrong_last else b - a
            g = grad(theta, jnp.asarray(perm[a:b]), float(size))
            upd, state = opt.update(g, state, theta)
            theta = optax.apply_updates(theta, upd)
        traj.append(np.asarray(jax.nn.log_softmax(theta)))
    return np.stack(traj)


@pytest.mark.parametrize("method", OFFLINE_METHODS)
def test_trainer_reproduces_per_sample_shuffled_sgd(method):
    rng = np.random.default_rng(7)
    N, B, E, lr = 37, 8, 3, 0.05  # 4 full batches and a partial one of 5
    bandit = Bandit.single([1.0, 0.2, -0.5], 0.7)
    samples = np.stack(
        [
            np.zeros(N, int),
            rng.integers(0, 3, N),
            rng.integers(0, 3, N),
            rng.integers(0, 2, N),
        ],
        axis=1,
    )
    perms = np.stack([rng.permutation(N) for _ in range(E)])
    sizes = TrainConfig(dataset_size=N, batch_size=B, epochs=E).batch_sizes
    mb = minibatches_from_permutations(samples, (1, 3, 3, 2), perms, sizes)
    ours = train(method, bandit, mb, learning_rate=lr).log_policies[0]
    with jax.enable_x64(True):
        loop = _per_sample_sgd(method, bandit, samples, perms, sizes, lr)
        # Negative control: a loop that averages the partial batch over B, not its size.
        wrong = _per_sample_sgd(method, bandit, samples, perms, sizes, lr, wrong_last=True)
    # Same float64 arithmetic up to summation order: agreement to ~1e-12.
    np.testing.assert_allclose(ours, loop, rtol=0, atol=1e-10)
    assert np.max(np.abs(ours - wrong)) > 1e-6


def test_expected_minibatches_run_adam_on_the_exact_expected_gradient():
    cfg = TrainConfig(dataset_size=50, batch_size=16, epochs=3, learning_rate=0.05)
    for method in ("copg", "ipo", "pg_value"):
        ours = train(
            method, PAPER, expected_minibatches(PAPER, PAPER_DATA, config=cfg), learning_rate=0.05
        )
        steps = cfg.epochs * len(cfg.batch_sizes)
        want = adam_on_exact_gradient(method, PAPER, PAPER_DATA, learning_rate=0.05, steps=steps)
        # Both are float64 Adam on the same gradient up to summation order.
        np.testing.assert_allclose(ours.log_policies[0, -1], want, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ API and behaviour


def test_same_seed_same_result_and_chunking_does_not_matter():
    cfg = TrainConfig(dataset_size=300, batch_size=64, epochs=6)
    a = minibatches(PAPER, PAPER_DATA, n_seeds=3, seed=5, config=cfg)
    b = minibatches(PAPER, PAPER_DATA, n_seeds=3, seed=5, config=cfg)
    c = minibatches(PAPER, PAPER_DATA, n_seeds=3, seed=6, config=cfg)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    r1 = train_all(["copg", "dpo"], PAPER, a, chunk=1)
    r4 = train_all(["copg", "dpo"], PAPER, b, chunk=4)
    for m in r1:
        np.testing.assert_array_equal(r1[m].log_policies, r4[m].log_policies)
        assert r1[m].regret.shape == (3, 7)


def test_one_compiled_trainer_serves_any_batches_of_its_layout():
    cfg = TrainConfig(dataset_size=300, batch_size=64, epochs=5)
    a = minibatches(PAPER, PAPER_DATA, n_seeds=2, seed=1, config=cfg)
    b = minibatches(PAPER, PAPER_DATA, n_seeds=2, seed=2, config=cfg)
    trainer = CompiledTrainer(["ipo", "pg"], PAPER, 2, 5, cfg.batch_sizes, chunk=2)
    for mb in (a, b):
        got, want = trainer.run(mb), train_all(["ipo", "pg"], PAPER, mb, chunk=2)
        for m in want:
            np.testing.assert_array_equal(got[m].log_policies, want[m].log_policies)
    assert not np.array_equal(trainer.run(a)["ipo"].regret, trainer.run(b)["ipo"].regret)
    three = minibatches(PAPER, PAPER_DATA, n_seeds=3, seed=1, config=cfg)
    with pytest.raises(ValidationError, match=r"\(3, 5, 5, 1, 3, 3, 2\).*\(2, 5, 5"):
        trainer.run(three)


def test_contextual_copg_reaches_pi_star_and_pg_does_not():
    # CoPG's per-pair loss is minimised by π* on every pair (CoPG Thm 1 pointwise), so even
    # minibatch noise vanishes there: the trained policy reaches π* to optimiser precision.
    R = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    bandit = Bandit(R, rho=[0.4, 0.6], beta=0.8)
    data = OfflineData([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], [[0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
    cfg = TrainConfig(dataset_size=1000, batch_size=100, epochs=60, learning_rate=0.05)
    mb = minibatches(bandit, data, n_seeds=2, seed=0, config=cfg)
    res = train_all(["copg", "pg"], bandit, mb, learning_rate=cfg.learning_rate)
    assert res["copg"].regret[:, -1].max() < 1e-8
    assert res["pg"].regret[:, -1].min() > 1e-3  # negative control: a biased method
    np.testing.assert_allclose(res["copg"].regret[:, 0], regret(bandit, bandit.log_ref))


def test_bad_input_is_rejected():
    mb = minibatches(PAPER, PAPER_DATA, n_seeds=1, config=TrainConfig(100, 50, 1))
    with pytest.raises(ValidationError, match="online"):
        train("online_ipo", PAPER, mb)
    with pytest.raises(ValidationError, match="unknown method"):
        train("nope", PAPER, mb)
    with pytest.raises(ValidationError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(learning_rate=-1.0)
    with pytest.raises(ValidationError, match="category shape"):
        train("copg", Bandit.single([1.0, 0.0], 1.0), mb)
    with pytest.raises(ValidationError, match="n_seeds"):
        minibatches(PAPER, PAPER_DATA, n_seeds=0)
    other = Minibatches(mb.dataset, mb.counts, np.array([60, 40]))
    with pytest.raises(ValidationError, match="batch sizes"):
        mb.concat(other)


# ------------------------------------------------- the sample form and chunked seeds (#21)


# Each example compiles two trainers for six methods: a few examples (more when thorough).
@settings(max_examples=40 if os.environ.get("COPG_HYPOTHESIS") == "thorough" else 3)
@given(
    st.integers(0, 2**16),
    st.sampled_from([(1, 3), (2, 4)]),
    st.booleans(),
)
def test_sample_form_trains_exactly_like_the_count_form(seed, shape, drop_last):
    """The sample form's batch loss (mean of per-pair hard-label losses on the gathered
    pairs) equals the count form's on the same batches, by the linearity of every loss in
    p: both runs are float64 Adam on the same gradients up to summation order (relative
    differences ~1e-16 of gradients of size ≲ 10). Adam's update lr·m̂/(√v̂ + ε) has a
    derivative in g of at most lr/ε = 0.05/1e-8 = 5e6 (reached where g ≈ 0), so a step moves
    by ≲ 5e6·1e-15 = 5e-9 and 7·8 = 56 steps by ≲ 3e-7: atol 5e-7."""
    X, n = shape
    rng = np.random.default_rng(seed)
    bandit = Bandit(rng.normal(size=(X, n)), None, None, float(rng.uniform(0.3, 2)))
    data = OfflineData(rng.dirichlet(np.ones(n), X), rng.dirichlet(np.ones(n), X))
    cfg = TrainConfig(dataset_size=150, batch_size=20, epochs=7, drop_last=drop_last)
    sampled = sampled_minibatches(bandit, data, n_seeds=2, seed=seed, config=cfg)
    counts = sampled.to_minibatches()
    # Every epoch is a partition of the dataset (or of all but the dropped tail).
    assert (counts.counts.sum(axis=2) <= counts.dataset[:, None]).all()
    assert counts.counts.sum(axis=(2, 3, 4, 5, 6)).tolist() == [[cfg.batch_sizes.sum()] * 7] * 2
    a = train_all(OFFLINE_METHODS, bandit, sampled, learning_rate=0.05)
    b = train_all(OFFLINE_METHODS, bandit, counts, learning_rate=0.05)
    for m in OFFLINE_METHODS:
        np.testing.assert_allclose(a[m].log_policies, b[m].log_policies, rtol=0, atol=5e-7)
    # Negative control: the same comparison sees other batches (another seed) at once.
    other = train_all(["copg"], bandit, sampled_minibatches(bandit, data, n_seeds=2,
                      seed=seed + 1, config=cfg), learning_rate=0.05)  # fmt: skip
    assert np.max(np.abs(other["copg"].log_policies - a["copg"].log_policies)) > 1e-3


def test_sample_form_datasets_follow_rho_q_and_bradley_terry():
    """Each seed's N pairs are i.i.d. from ρ q p^label (1 − p)^(1 − label): pooled category
    frequencies pass a chi-square test (fixed seed; the count form is checked the same way
    in test_dataset_law_is_rho_q_and_bradley_terry_labels)."""
    cfg = TrainConfig(dataset_size=20_000, batch_size=512, epochs=1)
    sm = sampled_minibatches(PAPER, PAPER_DATA, n_seeds=3, seed=2, config=cfg)
    got = np.bincount(sm.samples.ravel(), minlength=18)
    p = PAPER_DATA.joint[0][..., None] * np.stack(
        [1 - expit(PAPER.rewards[0][:, None] - PAPER.rewards[0][None]),
         expit(PAPER.rewards[0][:, None] - PAPER.rewards[0][None])], axis=-1
    )  # fmt: skip
    assert chisquare(got, p.ravel() * got.sum()).pvalue > 1e-3
    # Negative control: the labels flipped are rejected by the same test.
    flipped = p[..., ::-1].ravel()
    assert chisquare(got, flipped * got.sum()).pvalue < 1e-12


def test_seeds_in_chunks_give_the_numbers_of_one_chunk():
    """Seed chunking changes only how many seeds one compiled call holds, never a seed's
    trajectory; in the sample form each seed's batches are its own streams', so a seed's
    batches do not depend on how many seeds are drawn either."""
    cfg = TrainConfig(dataset_size=300, batch_size=64, epochs=6)
    mb = minibatches(PAPER, PAPER_DATA, n_seeds=5, seed=3, config=cfg)
    whole = train_all(["copg", "pg"], PAPER, mb)
    parts = train_all(["copg", "pg"], PAPER, mb, seed_chunk=2)
    for m in whole:
        np.testing.assert_array_equal(whole[m].log_policies, parts[m].log_policies)
    sm5 = sampled_minibatches(PAPER, PAPER_DATA, n_seeds=5, seed=3, config=cfg)
    sm2 = sampled_minibatches(PAPER, PAPER_DATA, n_seeds=2, seed=3, config=cfg)
    np.testing.assert_array_equal(sm5.batch_indices(0, 2, 0, 6), sm2.batch_indices(0, 2, 0, 6))
    a = train_all(["ipo"], PAPER, sm5, seed_chunk=3)["ipo"].log_policies
    np.testing.assert_array_equal(a[:2], train_all(["ipo"], PAPER, sm2)["ipo"].log_policies)
    # Negative control: another seed's trajectory differs.
    assert not np.array_equal(a[2], a[0])
    # Several sets of minibatches train as one (figure1's seeds + noise-free flow).
    flow = expected_minibatches(PAPER, PAPER_DATA, config=cfg)
    trainer = CompiledTrainer(["copg"], PAPER, 6, 6, cfg.batch_sizes, seed_chunk=4)
    both = trainer.run([mb, flow])["copg"].log_policies
    np.testing.assert_array_equal(both[:5], whole["copg"].log_policies)
    np.testing.assert_allclose(both[5], train("copg", PAPER, flow).log_policies[0], atol=1e-13)


def test_sizes_are_checked_before_allocating():
    """Huge layouts end with a ValidationError naming the size, not a MemoryError."""
    with pytest.raises(ValidationError, match="dataset_size must be at most"):
        TrainConfig(dataset_size=10**20)
    with pytest.raises(ValidationError, match="GiB"):
        minibatches(PAPER, PAPER_DATA, n_seeds=10, config=TrainConfig(epochs=999_999_999_999))
    with pytest.raises(ValidationError, match=r"log-policies.*GiB"):
        CompiledTrainer(["copg"], PAPER, 10, 999_999_999_999, [512])
    # Negative control: the default layout passes the same checks.
    minibatches(PAPER, PAPER_DATA, n_seeds=2, config=TrainConfig(epochs=2))


@pytest.mark.parametrize("bad", ["no", 1, 0, None, 1.0])
def test_drop_last_must_be_a_bool(bad):
    with pytest.raises(ValidationError, match=r"drop_last must be a boolean.*" + repr(bad)[:2]):
        TrainConfig(drop_last=bad)
    assert TrainConfig(drop_last=np.bool_(True)).drop_last  # control: NumPy booleans pass


def test_large_problems_use_the_sample_form():
    """uses_samples: categories X·n·n·2 above the dataset size (3000 actions: 1.8e7)."""
    big = Bandit.single(np.linspace(0, 1, 3000), 0.5)
    assert uses_samples(big, TrainConfig())
    assert not uses_samples(PAPER, TrainConfig())
