"""The whole LLM pipeline against the exact engine (issue #17): a tiny transformer trained
with :class:`llm.trainer.PairwiseTrainer` on an enumerable sequence bandit lands on
``bandit.fixed_point`` (copg, ipo, dpo) and on the regularised Nash equilibrium
(online_ipo), within a bound derived from its own optimisation tolerance.

The problem (:mod:`llm.sequence_bandit`): symbols {a, b} and EOS, three two-token prompts
(aa, ab, bb) and every completion of at most 2 tokens (EOS, aEOS, bEOS, aa, ab, ba, bb: 7
per prompt). Two symbols rather than three keep the file within its CPU budget: the
trainer's batch holds every pair, 63 rows here (84 with the zero-gradient pairs (y, y))
against 234 at three symbols, and full-batch Adam brings the tabular field to 1e-5–1e-4
in 250 steps here, to only ~4e-4 in 300 there (measured).

The certificate (:func:`llm.sequence_bandit.check_fixed_point`): ‖ẑ − z*‖ ≤ 2‖J⁻¹‖(‖F̂‖ +
‖F(z*)‖) + rounding, with F̂ the trained loss's own field pulled back to the tabular
logits and J the engine's field Jacobian at the fixed point (Taylor plus the Kantorovich
radius, derived in that docstring). The negative control trains DPO with chosen and
rejected swapped: it converges too (‖F̂‖ ~2e-4), but lands ≈ 9 away where the bound is
~0.04.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")
pytest.importorskip("datasets")

import bandit
from bandit import PreferenceGame, nash_equilibrium
from bandit.validation import ValidationError
from llm.sequence_bandit import (
    ExactOnlineTrainer,
    SequenceBandit,
    check_fixed_point,
    pair_dataset,
)
from llm.trainer import PairwiseConfig, PairwiseTrainer

SB = SequenceBandit(n_symbols=2, max_new_tokens=2, prompts=((0, 0), (0, 1), (1, 1)))
BETA = 1.0
STEPS = 250
METHODS = ("copg", "ipo", "dpo", "online_ipo")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny float64 matmuls: a second thread only adds hand-offs on the 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def problem():
    """The random-init model (π_ref), the contextual bandit and the offline data; seed 0."""
    ref = SB.model(seed=0).eval()
    rng = np.random.default_rng(0)
    X, n = SB.n_prompts, SB.n_completions
    bd = SB.bandit(rng.uniform(-1.0, 1.0, (X, n)), ref, beta=BETA)
    data = SB.offline_data(rng.dirichlet(np.full(n, 5.0), X), rng.dirichlet(np.full(n, 5.0), X))
    return ref, bd, data


def _data(method: str, data):
    return None if bandit.get_method(method).sampling != "offline" else data


def _trainer(method, ref, ds, tmp_path, *, steps: int, online_hook: bool = True):
    """A full-batch trainer on a fresh copy of the reference (π starts at π_ref)."""
    args = PairwiseConfig(
        output_dir=str(tmp_path),
        method=method,
        beta=BETA,
        per_device_train_batch_size=len(ds),  # one batch = every pair: the exact E[ℓ]
        max_steps=steps,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1e9,  # no clipping: plain Adam on the exact gradient
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        kl_estimate=False,
    )
    online = bandit.get_method(method).sampling != "offline"
    cls = ExactOnlineTrainer if online and online_hook else PairwiseTrainer
    # Fresh copies: the trainer freezes its reference in place (requires_grad False).
    policy = copy.deepcopy(ref).requires_grad_(True).train()
    return cls(policy, args, train_dataset=ds, ref_model=copy.deepcopy(ref))


def _full_batch_loss(trainer):
    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    return lambda: trainer.compute_loss(trainer.model, batch)


# ----------------------------------------------------------------- the enumeration


@settings(max_examples=10)
@given(
    s=st.integers(1, 3),
    L=st.integers(1, 3),
    seed=st.integers(0, 10**6),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_completion_probabilities_sum_to_one(s, L, seed, dtype):
    """Σ_y π(y|x) = 1 for any model over symbols + EOS: log_policy checks it within 64 ulps
    per token (its default), and the count is Σ_{k<L} s^k + s^L."""
    sb = SequenceBandit(n_symbols=s, max_new_tokens=L)
    assert sb.n_completions == sum(s**k for k in range(L)) + s**L
    assert len(set(sb.completions)) == sb.n_completions
    model = sb.model(seed=seed, n_embd=8, n_layer=1, dtype=dtype)
    with torch.no_grad():
        raw = torch.logsumexp(sb.sequence_logps(model).double(), dim=-1)
    # Each log π(y|x) sums at most T = |x| + L token log-probs, each within a few ulps:
    # 64 ulps per token covers them and the logsumexp (log_policy's default tolerance).
    assert float(raw.abs().max()) <= 64 * float(torch.finfo(dtype).eps) * (1 + L)
    lp = sb.log_policy(model)
    assert lp.shape == (sb.n_prompts, sb.n_completions)
    assert np.abs(np.logaddexp.reduce(lp, axis=-1)).max() <= 1e-15


def test_enumeration_refuses_a_larger_vocabulary():
    """Negative control: one extra token takes mass off the completions; refused."""
    from transformers import GPT2Config, GPT2LMHeadModel

    sb = SequenceBandit()
    m = GPT2LMHeadModel(GPT2Config(vocab_size=len(sb.vocab) + 1, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(ValidationError, match="vocabulary"):
        sb.log_policy(m)

    # ... and the mass check itself catches a missing completion.
    class Dropped(SequenceBandit):
        @property
        def completions(self):
            return super().completions[:-1]

    with pytest.raises(ValidationError, match="must be 0"):
        Dropped().log_policy(Dropped().model(n_embd=8, n_layer=1))


def test_prompts_validated():
    with pytest.raises(ValidationError, match="prefix"):
        SequenceBandit(n_symbols=2, prompts=((0,), (0, 1)))
    with pytest.raises(ValidationError, match="symbol ids"):
        SequenceBandit(n_symbols=2, prompts=((2,),))


def test_batch_rows_are_prompt_then_completion():
    b = SB.batch()
    n = SB.n_completions
    for x, j in itertools.product(range(SB.n_prompts), range(n)):
        row = b["input_ids"][x * n + j]
        p, c = SB.prompts[x], SB.completions[j]
        assert row[b["attention_mask"][x * n + j].bool()].tolist() == [*p, *c]
        assert row[b["completion_mask"][x * n + j]].tolist() == list(c)


# ----------------------------------------------------------------- the datasets


@pytest.mark.parametrize("method", [*METHODS, "pg", "nash_md_pg"])
def test_pair_dataset_weights_are_the_pair_law(problem, method):
    """mean(weight) over the rows is Σ_x ρ(x) Σ_{y,y'} q_x(y, y') = 1 (offline), or
    Σ_x ρ(x)·n² (online, q ≡ 1); an exchange-symmetric loss folds mirror pairs."""
    _, bd, data = problem
    ds = pair_dataset(SB, bd, method, _data(method, data))
    n = SB.n_completions
    online = _data(method, data) is None
    total = float(np.mean(ds["weight"]))
    assert total == pytest.approx(n * n if online else 1.0, rel=1e-12)
    # Nash-MD-PG's loss sees only completion 0 (IPO-MD §2.6): no folding, every ordered pair.
    symmetric = method != "nash_md_pg"
    per_prompt = n * (n + 1) // 2 if symmetric else n * n
    assert len(ds) == SB.n_prompts * per_prompt


def test_diagonal_pairs_dropped_only_where_flat(problem):
    """diagonal=False drops the n pairs (y, y) per prompt, and is refused for a method whose
    gradient there is not zero (pg: −R(y)·∇log π(y) from both completions)."""
    _, bd, data = problem
    full = pair_dataset(SB, bd, "dpo", data)
    off = pair_dataset(SB, bd, "dpo", data, diagonal=False)
    assert len(full) - len(off) == SB.n_prompts * SB.n_completions
    assert all(a != b for a, b in zip(off["completion_a"], off["completion_b"], strict=True))
    with pytest.raises(ValidationError, match="diagonal"):
        pair_dataset(SB, bd, "pg", data, diagonal=False)


# ----------------------------------------------------------------- exact gradients


@pytest.mark.parametrize("method", METHODS)
def test_trainer_gradient_is_the_exact_gradient(problem, method, tmp_path):
    """At π = π_ref, the trainer's full-batch loss pulled back to the tabular logits has
    the engine's exact expected gradient (float64: agreement to ~1e-12 relative)."""
    ref, bd, data = problem
    tr = _trainer(method, ref, pair_dataset(SB, bd, method, _data(method, data)), tmp_path, steps=1)
    fp = bandit.fixed_point(method, bd, _data(method, data))
    loss = _full_batch_loss(tr)
    chk = check_fixed_point(SB, tr.model, loss, method, bd, fp, _data(method, data))
    # Hook 1 (and hook 2 online): the trainer's full-batch loss is E[ℓ] itself, at π_ref.
    exact = bandit.expected_loss(method, bd, SB.log_policy(tr.model), _data(method, data))
    assert float(loss().detach()) == pytest.approx(exact, rel=1e-12)
    assert chk.engine_gradient > 1e-2  # a non-trivial gradient at the start
    assert chk.gradient_gap <= 1e-10 * chk.engine_gradient
    assert chk.pullback["residual"] <= 1e-10  # L depends on the weights only through π


def test_online_without_the_hook_has_the_wrong_gradient(problem, tmp_path):
    """Negative control: online IPO without sg[π(y)π(y')] weighs every pair alike."""
    ref, bd, _ = problem
    ds = pair_dataset(SB, bd, "online_ipo")
    tr = _trainer("online_ipo", ref, ds, tmp_path, steps=1, online_hook=False)
    fp = bandit.fixed_point("online_ipo", bd)
    chk = check_fixed_point(SB, tr.model, _full_batch_loss(tr), "online_ipo", bd, fp)
    assert chk.gradient_gap > 0.1 * chk.engine_gradient


# ----------------------------------------------------------------- training to the fixed point


def _train_and_check(method, problem, tmp_path, *, swap: bool = False):
    ref, bd, data = problem
    d = _data(method, data)
    ds = pair_dataset(SB, bd, method, d, diagonal=False)  # (y, y) rows: zero gradient
    if swap:  # chosen and rejected swapped: p(a ≻ b) read as p(b ≻ a)
        ds = ds.map(lambda r: {"preference": 1.0 - r["preference"]})
    tr = _trainer(method, ref, ds, tmp_path, steps=STEPS)
    tr.train()
    tr.model.eval()
    fp = bandit.fixed_point(method, bd, d)
    assert fp.unique and fp.interior and fp.residual < 1e-10
    return fp, check_fixed_point(SB, tr.model, _full_batch_loss(tr), method, bd, fp, d)


@pytest.mark.parametrize("method", METHODS)
def test_trained_transformer_reaches_the_exact_fixed_point(problem, method, tmp_path):
    """Trained with the trainer to a small gradient, the model's enumerated distribution
    is the engine's fixed point within 2‖J⁻¹‖‖F̂‖ (check_fixed_point)."""
    fp, chk = _train_and_check(method, problem, tmp_path)
    if method == "online_ipo":  # the regularised Nash equilibrium, prompt by prompt
        _, bd, _ = problem
        for x in range(SB.n_prompts):
            game = PreferenceGame.bradley_terry(bd.rewards[x], bd.ref[x], BETA)
            np.testing.assert_allclose(
                fp.log_policy[x], nash_equilibrium(game).log_policy, atol=1e-10
            )
    print(method, chk)
    assert chk.passed, str(chk)
    # The linear regime of the bound (a distance small against the O(1) curvature scale
    # of the logits) and a genuinely trained model: from an initial ‖F‖ of 0.2–0.5.
    assert chk.bound < 1e-2, str(chk)
    assert chk.gradient_gap <= 1e-8, str(chk)  # it trained on the engine's E[ℓ]


def test_swapped_labels_land_elsewhere_and_are_caught(problem, tmp_path):
    """Negative control: DPO with chosen/rejected swapped converges (its own field F̂ is as
    small as the others') but to π ∝ π_ref·exp(−R/β): the same check fails by orders of
    magnitude."""
    _, chk = _train_and_check("dpo", problem, tmp_path, swap=True)
    print("dpo swapped", chk)
    assert chk.gradient < 1e-3, str(chk)  # it did converge, on its own loss
    assert chk.distance > 100 * chk.bound, str(chk)
