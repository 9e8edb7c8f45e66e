"""End-to-end demo: offline CoPG, DPO and IPO on a tiny causal LM that learns to sort digits.

    python -m llm.demo                      # a few minutes at most on a CPU, no download
    python -m llm.demo --steps 50 --out /tmp/demo
    python -m llm.demo --model PATH_OR_NAME --device cuda   # a local checkpoint instead

1. Task and reward. A prompt is a string of digits and "=", e.g. ``3142=``; the answer
   should be the digits sorted, ``1234``. The reward is the fraction of three unit tests
   the answer passes: right length, a permutation of the input, in non-decreasing order.
2. Supervised warm-up on noisy demonstrations (40% correct, 30% shuffled, 30% random
   digits) gives π_ref, a mediocre sorter.
3. An offline dataset of pairs: two completions per prompt sampled from π_ref, scored by
   the reward. CoPG learns from the rewards (CoPG Alg. 1); DPO and IPO from the preference
   p = 1[R(y1) > R(y2)] (½ for ties).
4. Each method trains a copy of π_ref on the same pairs in the same order. Every
   ``--eval-every`` steps we sample fresh completions for held-out prompts and record their
   mean reward and the Monte-Carlo KL(π‖π_ref) = E_{y∼π}[log π(y) − log π_ref(y)].
5. Writes ``<out>/llm_demo.png`` and ``.pdf`` with ``llm_demo.json`` (the curves) beside.

The tiny model is a GPT-2 built from a ``transformers`` config with random weights and a
character vocabulary. ``--model`` loads a local checkpoint and its tokenizer instead
(``local_files_only``: nothing is downloaded).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bandit.cli import ArgumentParser, cli, nonneg_int, positive_int
from bandit.outputs import new_figure, save_outputs
from bandit.validation import ValidationError, check_positive

from . import losses
from .logps import sequence_logps
from .sampling import mixture_generate

METHODS = ("copg", "dpo", "ipo")
_LABELS = {"copg": "CoPG", "dpo": "DPO", "ipo": "IPO"}
_DIGITS = "0123456789"


# --- the task ----------------------------------------------------------------------------


def sort_reward(prompt_digits: str, answer: str) -> float:
    """Fraction of three unit tests of ``answer == sorted(prompt_digits)`` that pass."""
    tests = (
        len(answer) == len(prompt_digits),
        sorted(answer) == sorted(prompt_digits),
        list(answer) == sorted(answer),
    )
    return sum(tests) / len(tests)


def make_prompts(rng: np.random.Generator, n: int, n_digits: int) -> list[str]:
    return ["".join(rng.choice(list(_DIGITS), n_digits)) for _ in range(n)]


def noisy_demo(rng: np.random.Generator, digits: str) -> str:
    """A demonstration: correct 40%, a shuffle 30%, random digits of random length 30%."""
    u = rng.uniform()
    if u < 0.4:
        return "".join(sorted(digits))
    if u < 0.7:
        return "".join(rng.permutation(list(digits)))
    return "".join(rng.choice(list(_DIGITS), int(rng.integers(1, len(digits) + 2))))


# --- tokenizers ----------------------------------------------------------------------------


class CharTokenizer:
    """Digits, '=', and the special tokens <pad> and <eos>: one character, one token."""

    def __init__(self) -> None:
        self.vocab = ["<pad>", "<eos>", "=", *_DIGITS]
        self.pad_id, self.eos_id = 0, 1
        self._ids = {c: i for i, c in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.vocab[i] for i in ids if i > 1)


class HFTokenizer:
    """A Hugging Face tokenizer behind the same three methods."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        if tok.eos_token_id is None:
            raise ValidationError("--model: the tokenizer has no EOS token")
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.eos_id], skip_special_tokens=True)


def build_model(args: argparse.Namespace) -> tuple[torch.nn.Module, Any]:
    """The tiny random GPT-2 (default) or a local checkpoint (``--model``)."""
    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True)
        except OSError as e:
            raise ValidationError(f"--model {args.model!r}: no local checkpoint ({e})") from None
        return model, HFTokenizer(tok)
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = CharTokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok.vocab),
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.eos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
    )
    return GPT2LMHeadModel(cfg), tok


# --- batches --------------------------------------------------------------------------------


@dataclass
class Batch:
    """Left-padded prompt + right-padded completion, with masks, on one device."""

    ids: torch.Tensor  # (N, L)
    attn: torch.Tensor  # (N, L) 1 for real tokens
    completion: torch.Tensor  # (N, L) 1 for completion tokens (EOS included)

    def to(self, device: str) -> Batch:
        return Batch(self.ids.to(device), self.attn.to(device), self.completion.to(device))


def encode_prompts(tok: Any, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = [tok.encode(p + "=") for p in prompts]
    P = max(map(len, enc))
    ids = torch.full((len(enc), P), tok.pad_id, dtype=torch.long)
    attn = torch.zeros((len(enc), P), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, P - len(e) :] = torch.tensor(e)
        attn[i, P - len(e) :] = 1
    return ids, attn


def demo_batch(tok: Any, prompts: list[str], answers: list[str]) -> Batch:
    ids, attn = encode_prompts(tok, prompts)
    comp = [[*tok.encode(a), tok.eos_id] for a in answers]
    C = max(map(len, comp))
    cids = torch.full((len(comp), C), tok.pad_id, dtype=torch.long)
    cm = torch.zeros((len(comp), C), dtype=torch.long)
    for i, c in enumerate(comp):
        cids[i, : len(c)] = torch.tensor(c)
        cm[i, : len(c)] = 1
    return Batch(torch.cat([ids, cids], 1), torch.cat([attn, cm], 1), torch.cat([0 * attn, cm], 1))


def seq_logps(model: torch.nn.Module, b: Batch) -> torch.Tensor:
    """log π(completion | prompt) for every row (summed, as in the papers)."""
    pos = (b.attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=b.ids, attention_mask=b.attn, position_ids=pos).logits
    return sequence_logps(logits, b.ids, b.completion)


def sample(model, tok, prompts: list[str], args, gen: torch.Generator) -> tuple[Batch, list[str]]:
    """One completion per prompt from the model; returns the batch and decoded answers."""
    ids, attn = encode_prompts(tok, prompts)
    s = mixture_generate(
        model,
        model,
        ids.to(args.device),
        attn.to(args.device),
        mixture=0.0,
        max_new_tokens=args.max_new_tokens,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        generator=gen,
    )
    b = Batch(s.sequences, s.attention_mask, s.completion_mask)
    P = ids.shape[1]
    answers = [
        tok.decode(row[P:][m[P:] > 0].tolist()) for row, m in zip(s.sequences, b.attn, strict=True)
    ]
    return b, answers


def pad_to(b: Batch, L: int, pad_id: int) -> Batch:
    extra = L - b.ids.shape[1]
    if extra <= 0:
        return b
    f = torch.nn.functional.pad
    return Batch(
        f(b.ids, (0, extra), value=pad_id), f(b.attn, (0, extra)), f(b.completion, (0, extra))
    )


# --- the pipeline -------------------------------------------------------------------------


def warm_up(model, tok, args, rng: np.random.Generator, bar) -> None:
    """Supervised fine-tuning on noisy demonstrations: this model becomes π_ref."""
    opt = torch.optim.Adam(model.parameters(), lr=args.warmup_lr)
    model.train()
    for _ in range(args.warmup_steps):
        prompts = make_prompts(rng, args.batch, args.digits)
        b = demo_batch(tok, prompts, [noisy_demo(rng, p) for p in prompts]).to(args.device)
        loss = -seq_logps(model, b).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update()


@torch.no_grad()
def evaluate(model, ref, tok, prompts: list[str], args) -> tuple[float, float]:
    """Mean reward of fresh samples and the Monte-Carlo KL(π‖π_ref) on them."""
    model.eval()
    gen = torch.Generator(device=args.device).manual_seed(args.seed + 1)
    b, answers = sample(model, tok, prompts, args, gen)
    reward = float(np.mean([sort_reward(p, a) for p, a in zip(prompts, answers, strict=True)]))
    kl = float((seq_logps(model, b) - seq_logps(ref, b)).mean())
    model.train()
    return reward, kl


@torch.no_grad()
def offline_pairs(ref, tok, args, rng: np.random.Generator) -> dict[str, Any]:
    """Two samples from π_ref per prompt, scored by the reward; plus π_ref's log-probs."""
    prompts = make_prompts(rng, args.pairs, args.digits)
    gen = torch.Generator(device=args.device).manual_seed(args.seed + 2)
    batches, rewards = [], []
    for _ in range(2):
        b, answers = sample(ref, tok, prompts, args, gen)
        batches.append(b)
        rewards.append([sort_reward(p, a) for p, a in zip(prompts, answers, strict=True)])
    L = max(b.ids.shape[1] for b in batches)
    b1, b2 = (pad_to(b, L, tok.pad_id) for b in batches)
    R = torch.tensor(rewards, dtype=torch.float32, device=args.device).T  # (N, 2)
    pref = (R[:, 0] > R[:, 1]).float() + 0.5 * (R[:, 0] == R[:, 1]).float()
    ref_lp = torch.stack([seq_logps(ref, b1), seq_logps(ref, b2)], -1)
    return {"b1": b1, "b2": b2, "rewards": R, "preference": pref, "ref_logps": ref_lp}


def pair_loss(method: str, model, data: dict, idx: torch.Tensor, beta: float) -> torch.Tensor:
    b1, b2 = data["b1"], data["b2"]
    both = Batch(
        *(torch.cat([getattr(b1, f)[idx], getattr(b2, f)[idx]]) for f in Batch.__annotations__)
    )
    lp = seq_logps(model, both).reshape(2, -1).T  # (G, 2)
    ref = data["ref_logps"][idx]
    return losses.method_loss(
        method,
        lp,
        ref,
        rewards=data["rewards"][idx],
        preference=data["preference"][idx],
        beta=beta,
    )


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m llm.demo",
        description="Offline CoPG, DPO and IPO on a tiny causal LM that learns to sort digits.",
    )
    p.add_argument(
        "--steps", type=positive_int, default=300, help="training steps per method (300)"
    )
    p.add_argument(
        "--warmup-steps", type=positive_int, default=300, help="SFT steps for π_ref (300)"
    )
    p.add_argument(
        "--pairs", type=positive_int, default=1024, help="offline pairs in the dataset (1024)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=64, help="pairs (SFT: demos) per step (64)"
    )
    p.add_argument("--beta", type=float, default=0.1, help="KL strength β for all methods")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (3e-4)")
    p.add_argument("--warmup-lr", type=float, default=3e-3, help="SFT learning rate (3e-3)")
    p.add_argument("--digits", type=positive_int, default=4, help="digits per prompt (4)")
    p.add_argument(
        "--eval-every", type=positive_int, default=25, help="steps between evaluations (25)"
    )
    p.add_argument("--eval-prompts", type=positive_int, default=256, help="held-out prompts (256)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (0)")
    p.add_argument("--model", default=None, help="a local causal-LM checkpoint (no download)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="CPU threads (1: the model is tiny, and one thread is fastest on a shared machine)",
    )
    p.add_argument("--out", default="figures", help="output folder (figures)")
    return p


def _check(args: argparse.Namespace) -> None:
    if args.batch > args.pairs:
        raise ValidationError(f"--batch {args.batch} exceeds --pairs {args.pairs}")
    check_positive("--beta", args.beta)
    check_positive("--lr", args.lr)
    check_positive("--warmup-lr", args.warmup_lr)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(f"--device {args.device}: CUDA is not available on this machine")
    if not args.device.startswith(("cpu", "cuda")):
        raise ValidationError(f"--device must be cpu or cuda, got {args.device!r}")
    args.max_new_tokens = args.digits + 2


@dataclass(frozen=True)
class DemoResult:
    """The demo's outcome, for a notebook as much as for the CLI.

    Attributes:
      config: the options it ran with.
      ref_reward: mean reward of π_ref's fresh samples.
      dataset: mean reward and tie fraction of the offline pairs.
      curves: per method, the evaluation steps and their reward and KL(π‖π_ref), and the
        loss of every step.
      final: per method, the last reward and KL.
    """

    config: dict[str, Any]
    ref_reward: float
    dataset: dict[str, float]
    curves: dict[str, dict[str, list[float]]]
    final: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        """llm_demo.json's content."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def plot(result: DemoResult | dict[str, Any]):
    """Reward and KL against training steps, per method."""
    result = result.to_json() if isinstance(result, DemoResult) else result
    fig = new_figure(figsize=(9, 3.4))
    ax_r, ax_kl = fig.subplots(1, 2)
    for m in METHODS:
        c = result["curves"][m]
        ax_r.plot(c["step"], c["reward"], marker="o", ms=3, label=_LABELS[m])
        ax_kl.plot(c["step"], c["kl"], marker="o", ms=3, label=_LABELS[m])
    ax_r.axhline(result["ref_reward"], color="grey", ls="--", lw=1, label="π_ref")
    ax_r.set(xlabel="training step", ylabel="mean reward of fresh samples", ylim=(0, 1.02))
    ax_kl.set(xlabel="training step", ylabel="KL(π ‖ π_ref) (Monte Carlo)")
    ax_r.legend(frameon=False)
    fig.suptitle(
        f"Sorting {result['config']['digits']} digits: offline pairs from π_ref, "
        f"β = {result['config']['beta']:g}"
    )
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; see the module docstring."""
    args = _parser().parse_args(argv)
    _check(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = compute(args)
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out)
    save_outputs(out, "llm_demo", plot(result), result.to_json())
    for m in METHODS:
        f = result.final[m]
        print(f"  {m:5s} reward {result.ref_reward:.3f} -> {f['reward']:.3f}   KL {f['kl']:.3f}")
    return 0


def compute(args: argparse.Namespace | None = None, **options: Any) -> DemoResult:
    """Run the demo: the CLI's options as ``args`` (parsed) or as keywords, e.g.
    ``compute(steps=50, digits=3)``; the others take the CLI's defaults."""
    if args is None:
        args = _parser().parse_args([])
        for k, v in options.items():
            if not hasattr(args, k):
                raise ValidationError(f"{k}: not an option of the demo")
            setattr(args, k, v)
        _check(args)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model, tok = build_model(args)
    model.to(args.device)
    eval_prompts = make_prompts(
        np.random.default_rng(args.seed + 10**6), args.eval_prompts, args.digits
    )
    n_evals = args.steps // args.eval_every + 1
    total = args.warmup_steps + 2 + len(METHODS) * (args.steps + n_evals)
    with tqdm(total=total, desc="llm demo", unit="step") as bar:
        warm_up(model, tok, args, rng, bar)
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        data = offline_pairs(ref, tok, args, rng)
        bar.update(2)
        ref_reward, _ = evaluate(ref, ref, tok, eval_prompts, args)
        curves = {}
        order = np.random.default_rng(args.seed + 3)
        batches = [order.choice(args.pairs, args.batch, replace=False) for _ in range(args.steps)]
        for method in METHODS:
            policy = copy.deepcopy(ref).train()
            for p in policy.parameters():
                p.requires_grad_(True)
            opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
            c = {"step": [], "reward": [], "kl": [], "loss": []}
            for step in range(args.steps + 1):
                if step % args.eval_every == 0:
                    r, kl = evaluate(policy, ref, tok, eval_prompts, args)
                    c["step"].append(step)
                    c["reward"].append(r)
                    c["kl"].append(kl)
                    bar.update()
                if step == args.steps:
                    break
                idx = torch.as_tensor(batches[step], device=args.device)
                loss = pair_loss(method, policy, data, idx, args.beta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                c["loss"].append(float(loss.detach()))
                bar.update()
                bar.set_postfix(method=method)
            curves[method] = c
    return DemoResult(
        config={k: v for k, v in vars(args).items() if k not in ("out", "threads")},
        ref_reward=ref_reward,
        dataset={
            "mean_reward": float(data["rewards"].mean()),
            "tie_fraction": float((data["rewards"][:, 0] == data["rewards"][:, 1]).float().mean()),
        },
        curves=curves,
        final={m: {"reward": curves[m]["reward"][-1], "kl": curves[m]["kl"][-1]} for m in METHODS},
    )


run = cli(main)

if __name__ == "__main__":
    raise SystemExit(run())
