"""Every method of the registry through :class:`llm.trainer.PairwiseTrainer` under torchrun,
for the distributed test (and tiny fixtures its tests share).

    torchrun --standalone --nproc_per_node=2 -m llm._trainer_ddp OUT.pt

Each rank builds the same tiny float64 GPT-2 (:func:`llm._ddp_step.build_model`) and the
same dataset of ``ROWS`` rows per method, and trains ``STEPS`` steps with a per-device batch
of ``ROWS / world``, so each step's global batch is the whole dataset. Rank 0 saves, per
method, the final parameters, the largest parameter difference between the ranks (DDP keeps
replicas identical only if every gradient was all-reduced) and the logged losses; and the
same for ``"control"``, copg with a trainer whose policy pass bypasses DDP (never synced).
:func:`train` with ``batch_size=ROWS`` is the one-process run on the combined batch.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from llm._ddp_step import VOCAB, build_model  # the tiny float64 GPT-2 both DDP tests use

ROWS = 8  # dataset rows = the global batch (divisible by the world size)
STEPS = 2
EOS = 1  # the character tokenizer's end of sequence (the model's is 0, see llm._ddp_step)
BETA = 0.5
LR = 1e-2

#: Method parameters for the runs (the others at their defaults).
PARAMS: dict[str, dict[str, Any]] = {
    "ipo_md": {"mixture": 0.5},
    "nash_md_pg": {"mixture": 0.5},
    "rloo": {"k": 3},
}


CHARS = "abcdefghij"  # token ids 2..11; 0 is padding, 1 end-of-sequence


def char_tokenizer() -> Any:
    """A character-level tokenizer over :data:`CHARS` (ids 2–11), in memory, no download."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": EOS, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def _tokens(g: torch.Generator, low: int, high: int) -> list[int]:
    n = int(torch.randint(low, high, (1,), generator=g))
    return torch.randint(2, VOCAB, (n,), generator=g).tolist()


def columns(method: str, rows: int = ROWS, seed: int = 1) -> dict[str, list[Any]]:
    """The dataset's columns (token ids) for ``method``: reward pairs, TRL preference pairs
    or prompts only, with prompts of 1–3 tokens and completions of 1–4."""
    from bandit import get_method

    m = get_method(method)
    g = torch.Generator().manual_seed(seed)
    cols: dict[str, list[Any]] = {"prompt": [_tokens(g, 1, 4) for _ in range(rows)]}
    if not m.offline:
        return cols
    a = [_tokens(g, 1, 5) for _ in range(rows)]
    b = [_tokens(g, 1, 5) for _ in range(rows)]
    if m.signal == "preference":
        return {**cols, "chosen": a, "rejected": b}
    cols |= {"completion_a": a, "completion_b": b}
    cols["reward_a"] = torch.rand(rows, generator=g, dtype=torch.float64).tolist()
    cols["reward_b"] = torch.rand(rows, generator=g, dtype=torch.float64).tolist()
    if method == "pg_value":
        cols["baseline"] = [0.5] * rows
    return cols


def reward_fn(prompts: list[Any], completions: list[list[int]]) -> list[float]:
    """A deterministic reward: the mean token id of the completion, over the vocabulary."""
    return [sum(c) / (len(c) * VOCAB) for c in completions]


def preference_fn(prompts: list[Any], a: list[list[int]], b: list[list[int]]) -> list[float]:
    """p(a ≻ b) = 1 if a's reward is higher, 0 if lower, ½ on ties."""
    ra, rb = reward_fn(prompts, a), reward_fn(prompts, b)
    return [0.5 if x == y else float(x > y) for x, y in zip(ra, rb, strict=True)]


def _unsynced_trainer() -> type:
    """A deliberately wrong trainer for the negative control: the policy's log-probs bypass
    the DDP wrapper's forward, so its gradient hooks never run and nothing is all-reduced."""
    from llm.fused import model_sequence_logps
    from llm.trainer import PairwiseTrainer

    class Unsynced(PairwiseTrainer):
        def sequence_logps(self, model, input_ids, attention_mask, completion_mask):
            inner = self.accelerator.unwrap_model(model)
            return model_sequence_logps(
                inner, input_ids, completion_mask, attention_mask=attention_mask
            )

    return Unsynced


def train(
    method: str,
    batch_size: int,
    out_dir: str,
    steps: int = STEPS,
    trainer_cls: type | None = None,
    **overrides: Any,
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Train ``method`` ``steps`` steps; return the trainer and the final parameters."""
    from datasets import Dataset

    from llm.trainer import PairwiseConfig, PairwiseTrainer

    trainer_cls = PairwiseTrainer if trainer_cls is None else trainer_cls

    kw: dict[str, Any] = {
        "output_dir": out_dir,
        "method": method,
        "beta": BETA,
        "max_steps": steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": LR,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "max_new_tokens": 3,
        "disable_tqdm": True,
        "seed": 0,
        # accelerate runs a multi-process CPU job (gloo) only when told it is on CPU.
        "use_cpu": not torch.cuda.is_available(),
        **PARAMS.get(method, {}),
        **overrides,
    }
    trainer = trainer_cls(
        build_model(),
        PairwiseConfig(**kw),
        train_dataset=Dataset.from_dict(columns(method)),
        reward_fn=reward_fn,
        preference_fn=preference_fn,
    )
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    return trainer, {n: p.detach().clone() for n, p in model.named_parameters()}


def main(out: str) -> None:
    import torch.distributed as dist

    from bandit import METHODS

    results: dict[str, Any] = {}
    runs = [(m, m, None) for m in METHODS] + [("control", "copg", _unsynced_trainer())]
    with tempfile.TemporaryDirectory() as tmp:
        for key, method, cls in runs:
            per_device = ROWS // int(os.environ["WORLD_SIZE"])
            trainer, params = train(method, per_device, tmp, trainer_cls=cls)
            flat = torch.cat([p.flatten() for p in params.values()])
            every = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
            dist.all_gather(every, flat)
            spread = max(float((x - flat).abs().max()) for x in every)
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            results[key] = {"params": params, "spread": spread, "losses": losses}
        world = dist.get_world_size()
        if dist.get_rank() == 0:
            torch.save({"world_size": world, "results": results}, out)
        dist.barrier()


if __name__ == "__main__":
    from llm._ddp_step import run_and_exit

    run_and_exit(main, "llm._trainer_ddp")
