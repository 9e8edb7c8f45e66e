"""End-to-end demo: offline and online pairwise methods on a tiny causal LM that learns to
sort digits.

    python -m llm.demo                      # a minute or two on 2 CPU cores, no download
    python -m llm.demo --methods copg,online_ipo --seeds 5 --steps 100 --out /tmp/demo
    python -m llm.demo --model PATH --device cuda   # a local (safetensors) checkpoint instead

1. Task and reward. A prompt is a string of digits and "=", e.g. ``3142=``; the answer
   should be the digits sorted, ``1234``. The reward is the fraction of three unit tests
   the answer passes: right length, a permutation of the input, in non-decreasing order.
2. Supervised warm-up on noisy demonstrations (40% correct, 30% shuffled, 30% random
   digits) gives π_ref, a mediocre sorter.
3. Offline methods (CoPG, DPO, IPO) learn from one dataset of pairs: two completions per
   prompt sampled from π_ref, scored by the reward. CoPG learns from the rewards (CoPG
   Alg. 1); DPO and IPO from the preference p = 1[R(y1) > R(y2)] (½ for ties).
4. Online methods generate each step's completions with :func:`llm.mixture_generate`, as
   their :attr:`bandit.Method.sampling` says: online IPO (IPO-MD Alg. 2) and RLOO (CoPG
   Prop. 2) from π; IPO-MD (Alg. 3) both from the geometric mixture π^(1−β)·π_ref^β
   (β = ``--mixture``); Nash-MD-PG (§2.6) one from π and one from the mixture. They are
   scored by the same reward (the preference methods by the preference above).
5. Every method trains a copy of π_ref with its loss, :func:`llm.method_loss`. Every
   ``--eval-every`` steps we sample fresh completions for held-out prompts and record their
   mean reward and the Monte-Carlo KL(π‖π_ref) = E_{y∼π}[log π(y) − log π_ref(y)].
6. ``--seeds`` replicates (seeds ``--seed``, ``--seed`` + 1, …) redraw the offline pairs,
   the batch order and the online samples from the same π_ref; the figure shows their mean
   ± 1 sd.
7. Writes ``<out>/llm_demo.png`` and ``.pdf`` with ``llm_demo.json`` (the curves) beside.

The tiny model is a GPT-2 built from a ``transformers`` config with random weights and a
character vocabulary. ``--model`` loads a local checkpoint and its tokenizer instead
(``local_files_only``: nothing is downloaded), its weights from safetensors only (a pickle
checkpoint is refused: unpickling can run code).
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bandit.cli import (
    ArgumentParser,
    cli,
    float_in,
    int_in,
    method_list,
    nonneg_int,
    positive_float,
    positive_int,
    torch_device,
)
from bandit.methods import get_method
from bandit.outputs import new_figure, save_outputs
from bandit.validation import ValidationError

from . import losses
from .logps import sequence_logps
from .sampling import mixture_generate

OFFLINE = ("copg", "dpo", "ipo")
ONLINE = ("online_ipo", "ipo_md", "nash_md_pg", "rloo")
#: The methods the demo trains by default.
METHODS = OFFLINE + ONLINE
_LABELS = {
    "copg": "CoPG",
    "dpo": "DPO",
    "ipo": "IPO",
    "online_ipo": "online IPO",
    "ipo_md": "IPO-MD",
    "nash_md_pg": "Nash-MD-PG",
    "rloo": "RLOO",
}
_DIGITS = "0123456789"
#: The tiny model's context holds a prompt of d digits and "=", then an answer of up to
#: d + 1 tokens and EOS: 2d + 3 <= 64.
MAX_DIGITS = 20


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
        if any(not self.encode(c) for c in _DIGITS + "="):
            raise ValidationError("--model: its tokenizer does not encode the digits and '='")

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.eos_id], skip_special_tokens=True)


def _load_checkpoint(path: str) -> tuple[torch.nn.Module, Any]:
    """A local checkpoint and its tokenizer, the weights from safetensors only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(
            p.name for p in folder.glob("*.pt")
        )
        found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        raise ValidationError(
            f"--model {path}: the checkpoint has {found}; the demo loads safetensors only "
            "(re-save it with model.save_pretrained(DIR))"
        )
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError, KeyError, TypeError) as e:  # what transformers raises
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValidationError(f"--model {path}: cannot load a local checkpoint ({first})") from None
    return model, HFTokenizer(tok)


def build_model(args: argparse.Namespace) -> tuple[torch.nn.Module, Any]:
    """The tiny random GPT-2 (default) or a local checkpoint (``--model``)."""
    if args.model:
        return _load_checkpoint(args.model)
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


def sample(
    policy, ref, tok, prompts: list[str], args, gen: torch.Generator, mixture: float = 0.0
) -> tuple[Batch, list[str]]:
    """One completion per prompt from π^(1−m)·π_ref^m (m = ``mixture``; 0: the policy);
    returns the batch and the decoded answers."""
    ids, attn = encode_prompts(tok, prompts)
    s = mixture_generate(
        policy,
        ref,
        ids.to(args.device),
        attn.to(args.device),
        mixture=mixture,
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


def cat_batches(batches: Sequence[Batch], pad_id: int) -> Batch:
    """Rows of several batches in one, right-padded to one length."""
    L = max(b.ids.shape[1] for b in batches)
    padded = [pad_to(b, L, pad_id) for b in batches]
    return Batch(*(torch.cat([getattr(b, f) for b in padded]) for f in Batch.__annotations__))


def preference_of(rewards: torch.Tensor) -> torch.Tensor:
    """p(y1 ≻ y2) = 1[R(y1) > R(y2)], ½ for ties, from (G, 2) rewards."""
    return (rewards[:, 0] > rewards[:, 1]).float() + 0.5 * (rewards[:, 0] == rewards[:, 1]).float()


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
    b, answers = sample(model, model, tok, prompts, args, gen)
    reward = float(np.mean([sort_reward(p, a) for p, a in zip(prompts, answers, strict=True)]))
    kl = float((seq_logps(model, b) - seq_logps(ref, b)).mean())
    model.train()
    return reward, kl


@torch.no_grad()
def scored_completions(
    policy, ref, tok, prompts: list[str], args, gen: torch.Generator, mixtures: Sequence[float]
) -> dict[str, Any]:
    """k = len(mixtures) completions per prompt, the j-th from π^(1−m_j)·π_ref^(m_j), scored
    by the reward: the rows of all k batches (completion j of prompt i at row j·G + i),
    (G, k) rewards and preference (k = 2), and π_ref's (G, k) log-probs."""
    batches, rewards = [], []
    for m in mixtures:
        b, answers = sample(policy, ref, tok, prompts, args, gen, mixture=m)
        batches.append(b)
        rewards.append([sort_reward(p, a) for p, a in zip(prompts, answers, strict=True)])
    both = cat_batches(batches, tok.pad_id)
    R = torch.tensor(rewards, dtype=torch.float32, device=args.device).T  # (G, k)
    k = len(mixtures)
    return {
        "rows": both,
        "rewards": R,
        "preference": preference_of(R) if k == 2 else None,
        "ref_logps": seq_logps(ref, both).reshape(k, -1).T,
    }


def offline_pairs(ref, tok, args, rng: np.random.Generator, seed: int) -> dict[str, Any]:
    """Two samples from π_ref per prompt, scored by the reward; plus π_ref's log-probs."""
    prompts = make_prompts(rng, args.pairs, args.digits)
    gen = torch.Generator(device=args.device).manual_seed(seed + 2)
    return scored_completions(ref, ref, tok, prompts, args, gen, (0.0, 0.0))


def _rows(data: dict[str, Any], idx: torch.Tensor) -> Batch:
    """The rows of the pairs ``idx`` of :func:`scored_completions`' data, completion-major."""
    G = data["rewards"].shape[0]
    k = data["rewards"].shape[1]
    rows = torch.cat([idx + j * G for j in range(k)])
    return Batch(*(getattr(data["rows"], f)[rows] for f in Batch.__annotations__))


def method_step_loss(method: str, model, data: dict[str, Any], idx: torch.Tensor, args):
    """The method's loss (:func:`llm.method_loss`) on the pairs ``idx`` of ``data``."""
    k = data["rewards"].shape[1]
    lp = seq_logps(model, _rows(data, idx)).reshape(k, -1).T  # (G, k)
    params = {"mixture": args.mixture} if _has_param(method, "mixture") else {}
    if _has_param(method, "k"):
        params["k"] = k
    pref = data["preference"]
    return losses.method_loss(
        method,
        lp,
        data["ref_logps"][idx],
        rewards=data["rewards"][idx],
        preference=None if pref is None else pref[idx],
        beta=args.beta,
        **params,
    )


def _has_param(method: str, name: str) -> bool:
    return any(p.name == name for p in get_method(method).params)


def sampler_mixtures(method: str, mixture: float) -> tuple[float, float]:
    """Where an online method's two completions come from (:attr:`bandit.Method.sampling`):
    the mixture coefficient of each, 0 being the policy itself."""
    sampling = get_method(method).sampling
    if sampling == "policy":
        return (0.0, 0.0)
    if sampling == "mixture":
        return (mixture, mixture)
    if sampling == "policy_vs_mixture":
        return (0.0, mixture)
    raise ValidationError(f"method {method!r}: sampling {sampling!r} is not an online sampler")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m llm.demo",
        description=(
            "Offline (CoPG, DPO, IPO) and online (online IPO, IPO-MD, Nash-MD-PG, RLOO) "
            "methods on a tiny causal LM that learns to sort digits."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--methods",
        type=method_list(),
        default=METHODS,
        help="comma-separated methods, offline or online",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="replicates (mean ± sd)")
    p.add_argument("--steps", type=positive_int, default=30, help="training steps per method")
    p.add_argument("--warmup-steps", type=positive_int, default=200, help="SFT steps for π_ref")
    p.add_argument("--pairs", type=positive_int, default=256, help="offline pairs per seed")
    p.add_argument("--batch", type=positive_int, default=32, help="pairs (SFT: demos) per step")
    p.add_argument("--beta", type=positive_float, default=0.1, help="KL strength β")
    p.add_argument(
        "--mixture",
        type=float_in(0.0, 1.0),
        default=0.5,
        help="IPO-MD's and Nash-MD-PG's β of the mixture π^(1−β)·π_ref^β",
    )
    p.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate")
    p.add_argument("--warmup-lr", type=positive_float, default=3e-3, help="SFT learning rate")
    p.add_argument("--digits", type=int_in(1, MAX_DIGITS), default=4, help="digits per prompt")
    p.add_argument("--eval-every", type=positive_int, default=10, help="steps between evaluations")
    p.add_argument("--eval-prompts", type=positive_int, default=64, help="held-out prompts")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed of the first replicate")
    p.add_argument("--model", default=None, help="a local causal-LM checkpoint (no download)")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--threads",
        type=int_in(1, os.cpu_count() or 1),
        default=1,
        help="CPU threads, at most this machine's cores (1: the model is tiny, and one "
        "thread is fastest on a shared machine)",
    )
    p.add_argument("--out", default="figures", help="output folder")
    return p


def _check(args: argparse.Namespace) -> None:
    """What the argument types cannot check alone."""
    args.methods = tuple(args.methods)
    if args.batch > args.pairs and any(get_method(m).offline for m in args.methods):
        raise ValidationError(f"--batch {args.batch} exceeds --pairs {args.pairs}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(f"--device {args.device}: CUDA is not available on this machine")
    for m in args.methods:
        if get_method(m).n_completions(get_method(m).check_params({})) != 2:
            raise ValidationError(f"--methods: {m!r} needs other than 2 completions per prompt")
    args.max_new_tokens = args.digits + 2


@dataclass(frozen=True)
class DemoResult:
    """The demo's outcome, for a notebook as much as for the CLI.

    Attributes:
      config: the options it ran with.
      ref_reward: mean reward of π_ref's fresh samples.
      dataset: over the seeds' offline pairs, the mean reward and tie fraction.
      curves: per method, the evaluation steps, the mean and sd over seeds of the reward and
        KL(π‖π_ref) at each, and the mean loss of every step.
      runs: per method, each seed's reward and KL curves.
      final: per method, the last reward and KL (mean and sd over seeds).
    """

    config: dict[str, Any]
    ref_reward: float
    dataset: dict[str, float]
    curves: dict[str, dict[str, list[float]]]
    runs: dict[str, list[dict[str, list[float]]]]
    final: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        """llm_demo.json's content."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def plot(result: DemoResult | dict[str, Any]):
    """Reward and KL against training steps, per method: mean ± 1 sd over seeds."""
    result = result.to_json() if isinstance(result, DemoResult) else result
    fig = new_figure(figsize=(10, 3.8))
    ax_r, ax_kl = fig.subplots(1, 2)
    for i, (m, c) in enumerate(result["curves"].items()):
        style = {"color": f"C{i}", "ls": "-" if get_method(m).offline else "--"}
        x = np.asarray(c["step"])
        for ax, key in ((ax_r, "reward"), (ax_kl, "kl")):
            mean, sd = np.asarray(c[key]), np.asarray(c[f"{key}_sd"])
            ax.plot(x, mean, marker="o", ms=2.5, label=_LABELS.get(m, m), **style)
            ax.fill_between(x, mean - sd, mean + sd, color=style["color"], alpha=0.15, lw=0)
    ax_r.axhline(result["ref_reward"], color="grey", ls=":", lw=1, label="π_ref")
    ax_r.set(xlabel="training step", ylabel="mean reward of fresh samples")
    ax_kl.set(xlabel="training step", ylabel="KL(π ‖ π_ref) (Monte Carlo)")
    ax_r.legend(frameon=False, fontsize=7, ncol=2)
    cfg = result["config"]
    fig.suptitle(
        f"Sorting {cfg['digits']} digits, β = {cfg['beta']:g}: offline (solid) from π_ref's "
        f"pairs, online (dashed, mixture β = {cfg['mixture']:g}); "
        f"mean ± sd over {cfg['seeds']} seeds",
        fontsize=9,
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
    save_outputs(Path(args.out), "llm_demo", plot(result), result.to_json())
    for m, f in result.final.items():
        print(
            f"  {m:10s} reward {result.ref_reward:.3f} -> {f['reward']:.3f} ± {f['reward_sd']:.3f}"
            f"   KL {f['kl']:.3f}"
        )
    return 0


def _train(
    method: str, ref, tok, args, data, eval_prompts, seed: int, ref_reward: float, bar
) -> dict[str, list]:
    """One method, one seed: its evaluations and per-step losses.

    Step 0 is π_ref itself (the policy is its copy, and every evaluation draws the same
    random numbers): its reward is π_ref's and its KL exactly 0, so it is not sampled again.
    """
    policy = copy.deepcopy(ref).train()
    for p in policy.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    c: dict[str, list] = {"step": [0], "reward": [ref_reward], "kl": [0.0], "loss": []}
    m = get_method(method)
    if m.offline:
        order = np.random.default_rng(seed + 3)
        batches = [order.choice(args.pairs, args.batch, replace=False) for _ in range(args.steps)]
    else:
        prompt_rng = np.random.default_rng(seed + 4)
        gen = torch.Generator(device=args.device).manual_seed(seed + 5)
        mixtures = sampler_mixtures(method, args.mixture)
    for step in range(args.steps + 1):
        if step > 0 and (step % args.eval_every == 0 or step == args.steps):
            r, kl = evaluate(policy, ref, tok, eval_prompts, args)
            c["step"].append(step)
            c["reward"].append(r)
            c["kl"].append(kl)
            bar.update()
        if step == args.steps:
            break
        if m.offline:
            step_data, idx = data, torch.as_tensor(batches[step], device=args.device)
        else:  # this step's completions, from sg[π] or the mixture
            policy.eval()
            prompts = make_prompts(prompt_rng, args.batch, args.digits)
            step_data = scored_completions(policy, ref, tok, prompts, args, gen, mixtures)
            idx = torch.arange(args.batch, device=args.device)
            policy.train()
        loss = method_step_loss(method, policy, step_data, idx, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        c["loss"].append(float(loss.detach()))
        bar.update()
        bar.set_postfix(method=method, seed=seed)
    return c


def _n_evals(args: argparse.Namespace) -> int:
    """Evaluations of one run after step 0: every ``eval_every``-th step and the last one.
    Counted in closed form (the loop over steps took hours for ``--steps 10**20``, before
    any progress bar)."""
    return args.steps // args.eval_every + (args.steps % args.eval_every != 0)


def compute(args: argparse.Namespace | None = None, **options: Any) -> DemoResult:
    """Run the demo: the CLI's options as ``args`` (parsed) or as keywords, e.g.
    ``compute(steps=50, digits=3, methods=("copg", "online_ipo"))``; the others take the
    CLI's defaults."""
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
    seeds = [args.seed + r for r in range(args.seeds)]
    offline = any(get_method(m).offline for m in args.methods)
    per_run = args.steps + _n_evals(args)
    total = args.warmup_steps + 1 + len(seeds) * (offline + len(args.methods) * per_run)
    runs: dict[str, list[dict[str, list]]] = {m: [] for m in args.methods}
    rewards, ties = [], []
    with tqdm(total=total, desc="llm demo", unit="step") as bar:
        warm_up(model, tok, args, rng, bar)
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        ref_reward, _ = evaluate(ref, ref, tok, eval_prompts, args)
        bar.update()
        for seed in seeds:
            data = None
            if offline:
                data = offline_pairs(ref, tok, args, np.random.default_rng(seed + 6), seed)
                rewards.append(float(data["rewards"].mean()))
                ties.append(float((data["rewards"][:, 0] == data["rewards"][:, 1]).float().mean()))
                bar.update()
            for method in args.methods:
                torch.manual_seed(seed)
                runs[method].append(
                    _train(method, ref, tok, args, data, eval_prompts, seed, ref_reward, bar)
                )
    ddof = 1 if len(seeds) > 1 else 0
    curves, final = {}, {}
    for m, rs in runs.items():
        c: dict[str, list[float]] = {"step": rs[0]["step"]}
        for key in ("reward", "kl"):
            a = np.array([r[key] for r in rs])
            c[key], c[f"{key}_sd"] = a.mean(0).tolist(), a.std(0, ddof=ddof).tolist()
        c["loss"] = np.mean([r["loss"] for r in rs], axis=0).tolist()
        curves[m] = c
        final[m] = {k: c[k][-1] for k in ("reward", "reward_sd", "kl", "kl_sd")}
    config = {k: v for k, v in vars(args).items() if k not in ("out", "threads")}
    config["methods"] = list(args.methods)
    return DemoResult(
        config=config,
        ref_reward=ref_reward,
        dataset={
            "mean_reward": float(np.mean(rewards)) if rewards else float("nan"),
            "tie_fraction": float(np.mean(ties)) if ties else float("nan"),
        },
        curves=curves,
        runs={m: [{k: r[k] for k in ("reward", "kl")} for r in rs] for m, rs in runs.items()},
        final=final,
    )


run = cli(main)

if __name__ == "__main__":
    raise SystemExit(run())
