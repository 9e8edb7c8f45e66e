"""PairwiseTrainer: every method trains, the offline loss is llm.method_loss on independently
computed log-probs, weights and gradient accumulation, the PEFT reference, resuming from a
checkpoint, logging and errors."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

import llm
from bandit import METHODS, get_method
from bandit.validation import ValidationError
from llm import _trainer_ddp as T
from llm.trainer import PairwiseConfig, PairwiseTrainer, _through_wrapper

OFFLINE = [m for m in METHODS if get_method(m).offline]


def _config(tmp_path, method: str, **kw) -> PairwiseConfig:
    base = {
        "output_dir": str(tmp_path),
        "method": method,
        "beta": T.BETA,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "learning_rate": T.LR,
        "logging_steps": 1,
        "save_strategy": "no",
        "max_new_tokens": 3,
        "disable_tqdm": True,
        "use_cpu": True,
        **T.PARAMS.get(method, {}),
    }
    return PairwiseConfig(**{**base, **kw})


def _trainer(tmp_path, method: str, columns=None, model=None, **kw) -> PairwiseTrainer:
    cols = T.columns(method) if columns is None else columns
    fns = {"reward_fn": T.reward_fn, "preference_fn": T.preference_fn}
    for name in ("reward_fn", "preference_fn", "ref_model", "peft_config", "processing_class"):
        if name in kw:
            fns[name] = kw.pop(name)
    return PairwiseTrainer(
        T.build_model() if model is None else model,
        _config(tmp_path, method, **kw),
        train_dataset=Dataset.from_dict(cols),
        **fns,
    )


def _params(trainer: PairwiseTrainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def _gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def _first_batch(trainer: PairwiseTrainer, n: int | None = None) -> dict:
    ds = trainer.train_dataset
    return trainer.data_collator([ds[i] for i in range(len(ds) if n is None else n)])


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_logs(tmp_path, method):
    trainer = _trainer(tmp_path, method)
    before = _params(trainer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert _gap(_params(trainer), before) > 1e-4
    m = get_method(method)
    keys = {"logratio/0", "logratio/1", "logratio/margin", "kl"}
    keys |= {"reward/mean", "reward/margin"} if m.signal == "reward" else {"preference/margin"}
    assert keys <= set(logs[0])
    # Step 0: π = π_ref, so every log-ratio and the KL estimate are exactly 0.
    assert all(logs[0][k] == 0.0 for k in ("logratio/0", "logratio/1", "kl"))
    assert all(math.isfinite(logs[1][k]) for k in keys)


@settings(max_examples=5)
@given(seed=st.integers(0, 10**6), method=st.sampled_from(OFFLINE))
def test_offline_loss_is_method_loss_of_independent_logps(tmp_path_factory, seed, method):
    tmp = tmp_path_factory.mktemp("loss")
    cols = T.columns(method, seed=seed)
    g = torch.Generator().manual_seed(seed)
    cols["weight"] = (2 * torch.rand(T.ROWS, generator=g, dtype=torch.float64)).tolist()
    trainer = _trainer(tmp, method, columns=cols)
    # Move the policy off π_ref so the log-ratios are not all 0.
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    batch = _first_batch(trainer)
    got = trainer.compute_loss(trainer.model, batch).detach()
    # Independently: llm.pair_logps on the flattened rows (positions 0..T-1, right padding).
    flat = {k: batch[k].flatten(0, 1) for k in ("input_ids", "attention_mask", "completion_mask")}
    logps, ref = llm.pair_logps(
        trainer.model,
        trainer.ref_model,
        flat["input_ids"],
        flat["completion_mask"],
        attention_mask=flat["attention_mask"],
    )
    m = get_method(method)
    kw = (
        {"rewards": batch["rewards"], "baseline": batch.get("baseline", 0.0)}
        if m.signal == "reward"
        else {"preference": batch["preference"]}
    )
    losses = llm.method_loss(method, logps, ref, beta=T.BETA, reduction="none", **kw)
    want = (batch["weight"] * losses).mean()
    # float64 model, the same fused head on both sides; only the position ids of padding
    # differ (masked out), so the two agree to rounding of a sum of O(10) terms.
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # Negative control: the reference log-probs of the neighbouring pair (a misalignment
    # of the two models' rows) give another loss, which the same comparison rejects.
    wrong = llm.method_loss(method, logps, ref.roll(1, 0), beta=T.BETA, reduction="none", **kw)
    assert abs(float((batch["weight"] * wrong).mean() - want.detach())) > 1e-6


def test_weights_select_pairs(tmp_path):
    """mean(w·ℓ) with w = (2, 2, 0, 0) over 4 pairs is the plain mean over the first two."""
    cols = T.columns("copg")
    trainer = _trainer(tmp_path, "copg", columns=cols)
    batch = _first_batch(trainer, 4)
    batch["weight"] = torch.tensor([2.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    two = _first_batch(trainer, 2)
    torch.testing.assert_close(
        trainer.compute_loss(trainer.model, batch),
        trainer.compute_loss(trainer.model, two),
        rtol=1e-12,
        atol=0,
    )


def test_wrapper_path_equals_model_sequence_logps(tmp_path):
    """The DDP path (the wrapper's forward, head input taken by a hook) gives the same
    log-probs as llm.model_sequence_logps, with left-padded prompts too."""
    model = T.build_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ids = torch.randint(2, T.VOCAB, (4, 7))
    attn = torch.ones_like(ids)
    attn[1, :2] = 0  # left padding
    cmask = torch.zeros_like(ids, dtype=torch.bool)
    cmask[:, 4:] = True
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    want = llm.model_sequence_logps(model, ids, cmask, attention_mask=attn, position_ids=pos)
    got = _through_wrapper(model, model, ids, cmask, attn, False)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    # Negative control: without the position ids the left-padded row differs.
    plain = llm.model_sequence_logps(model, ids, cmask, attention_mask=attn)
    assert float((plain[1] - want[1]).abs()) > 1e-6


def test_gradient_accumulation_matches_the_large_batch(tmp_path):
    """2 accumulated micro-batches of 4 = 1 batch of 8 (full batch, float64): the Trainer
    divides our per-batch mean by the accumulation steps."""
    one = _trainer(tmp_path / "a", "dpo", per_device_train_batch_size=8)
    acc = _trainer(tmp_path / "b", "dpo", gradient_accumulation_steps=2)
    one.train()
    acc.train()
    assert _gap(_params(one), _params(acc)) < 1e-10
    half = _trainer(tmp_path / "c", "dpo")  # negative control: 2 steps of 4 pairs
    half.train()
    assert _gap(_params(one), _params(half)) > 1e-4


def _lora() -> object:
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)


@pytest.mark.parametrize("method", ["copg", "ipo_md"])
def test_peft_reference_is_the_base_model_and_only_adapters_move(tmp_path, method):
    trainer = _trainer(tmp_path, method, peft_config=_lora())
    assert trainer.ref_model is None
    model = trainer.model
    # A fresh LoRA adapter adds B·A·x with B = 0: the policy is the base model exactly.
    if get_method(method).offline:
        batch = _first_batch(trainer)
        flat = [batch[k].flatten(0, 1) for k in ("input_ids", "attention_mask", "completion_mask")]
    else:
        s = trainer._sample(model, _first_batch(trainer), 0.5)
        flat = [s.sequences, s.attention_mask, s.completion_mask]
    with torch.no_grad():
        h = trainer.sequence_logps(model, *flat) - trainer.ref_logps(model, *flat)
    assert torch.equal(h, torch.zeros_like(h))
    before = _params(trainer)
    trainer.train()
    after = _params(trainer)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all("lora_" in n for n in moved)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    # Now the adapter is trained, the reference (adapter off) differs from the policy.
    with torch.no_grad():
        h = trainer.sequence_logps(model, *flat) - trainer.ref_logps(model, *flat)
    assert float(h.abs().max()) > 1e-6


@pytest.mark.parametrize("method", ["copg", "online_ipo"])
def test_resume_from_checkpoint_gives_the_uninterrupted_run(tmp_path, method):
    kw = {"max_steps": 4, "per_device_train_batch_size": 2, "save_strategy": "steps"}
    kw |= {"save_steps": 2, "seed": 3}
    full = _trainer(tmp_path / "full", method, **kw)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-2"
    assert (ckpt / "model.safetensors").is_file()  # Trainer's default save_safetensors
    resumed = _trainer(tmp_path / "resumed", method, **kw)
    resumed.train(resume_from_checkpoint=str(ckpt))
    # The same data order, RNG state (generation included) and optimiser state: identical.
    assert _gap(_params(full), _params(resumed)) < 1e-12
    # Negative control: two more steps from the checkpoint's weights but a fresh optimiser
    # and data order land elsewhere.
    fresh = _trainer(tmp_path / "fresh", method, **{**kw, "max_steps": 2, "seed": 4})
    from safetensors.torch import load_file

    fresh.model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
    fresh.train()
    assert _gap(_params(full), _params(fresh)) > 1e-6


def test_text_dataset_and_text_scores(tmp_path):
    tok = T.char_tokenizer()
    seen: list[tuple] = []

    def reward_fn(prompts, completions):
        seen.append((prompts, completions))
        return [float(c.count("a")) for c in completions]

    trainer = _trainer(
        tmp_path,
        "rloo",
        columns={"prompt": ["abc", "de", "f", "ghij"]},
        processing_class=tok,
        reward_fn=reward_fn,
    )
    trainer.train()
    prompts, completions = seen[0]
    k = T.PARAMS["rloo"]["k"]
    assert len(prompts) == len(completions) == 4 * k
    assert all(isinstance(c, str) and set(c) <= set(T.CHARS) for c in completions)
    assert prompts[:k] == [prompts[0]] * k  # row k·i + j is completion j of prompt i


@pytest.mark.parametrize(
    ("method", "kw", "match"),
    [
        ("copg", {"mixture": 0.5}, "mixture: not a parameter of method 'copg'"),
        ("ipo_md", {"mixture": 2.0}, "mixture must lie in"),
        ("copg", {"beta": 0.0}, "beta must be finite and > 0"),
        ("nope", {}, "unknown method 'nope'"),
    ],
)
def test_config_errors(tmp_path, method, kw, match):
    with pytest.raises(ValidationError, match=match):
        _config(tmp_path, method, **kw)


def test_trainer_errors(tmp_path):
    with pytest.raises(ValidationError, match="reward_fn: online method 'rloo'"):
        _trainer(tmp_path, "rloo", reward_fn=None)
    with pytest.raises(ValidationError, match="preference_fn: online method 'online_ipo'"):
        _trainer(tmp_path, "online_ipo", preference_fn=None)
    cols = T.columns("pg_value")
    del cols["baseline"]
    with pytest.raises(ValidationError, match="baseline: pg_value needs"):
        _trainer(tmp_path, "pg_value", columns=cols)
    with pytest.raises(
        ValidationError, match=r"train_dataset must be a datasets\.Dataset, got dict"
    ):
        PairwiseTrainer(T.build_model(), _config(tmp_path, "copg"), train_dataset={"prompt": []})
    bad = _trainer(tmp_path, "rloo", reward_fn=lambda p, c: [0.0])
    with pytest.raises(ValidationError, match="reward_fn must return 12 numbers"):
        bad.train()
    bad = _trainer(tmp_path, "online_dpo", preference_fn=lambda p, a, b: [2.0] * len(a))
    with pytest.raises(ValidationError, match=r"preference_fn must return values in \[0, 1\]"):
        bad.train()


def test_evaluate_reports_the_loss_of_the_eval_set(tmp_path):
    cols = T.columns("ipo")
    trainer = PairwiseTrainer(
        T.build_model(),
        _config(tmp_path, "ipo", per_device_eval_batch_size=T.ROWS),
        train_dataset=Dataset.from_dict(cols),
        eval_dataset=Dataset.from_dict(T.columns("ipo", seed=2)),
    )
    # Off π_ref (where every IPO pair with a hard label has the same loss, 1/(2β)²).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    got = trainer.evaluate()["eval_loss"]
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(T.ROWS)])
    with torch.no_grad():
        want = float(trainer.compute_loss(trainer.model, batch))
    assert got == pytest.approx(want, rel=1e-6)  # logged as a float32 mean
    # Negative control: the training set's loss is another number.
    with torch.no_grad():
        other = float(trainer.compute_loss(trainer.model, _first_batch(trainer)))
    assert abs(other - got) > 1e-6


def test_pair_weights_of_the_wrong_shape_are_refused(tmp_path):
    class Wrong(PairwiseTrainer):
        def pair_weights(self, model, inputs):
            return torch.ones(3)

    trainer = Wrong(
        T.build_model(),
        _config(tmp_path, "copg"),
        train_dataset=Dataset.from_dict(T.columns("copg")),
    )
    with pytest.raises(ValidationError, match=r"pair_weights must return a \(4,\) tensor"):
        trainer.compute_loss(trainer.model, _first_batch(trainer, 4))
