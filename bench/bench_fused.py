"""Benchmark: ``llm.fused_sequence_logps`` against the full logits and TRL 1.16's fused head.

    python bench/bench_fused.py [--quick] [--device cpu|cuda] [--repeats 3]
        [--hidden 1024,4096] [--vocab 32768,131072,262144] [--tokens 1024,4096]

Each method maps the same final hidden states h (N, H) and LM-head weight W (V, H) to
per-sequence summed log-probs of the counted tokens (``--completion`` of the positions,
default 0.75: the rest is prompt):
  fused   ``llm.fused_sequence_logps``: tiles, recompute in the backward, counted tokens only.
  logits  the model's full logits h·Wᵀ, then ``llm.sequence_logps``.
  trl     TRL 1.16's ``ChunkedLogProbFunction`` (the torch fallback on CPU, its Triton kernel
          on CUDA) on the counted rows of h, as its ``add_fused_lm_head`` calls it.

For each size and dtype (fp32, bf16) the table gives the best forward time and the best
forward + backward time (gradients for h and W) over ``--repeats`` calls, the methods taking
turns; the peak extra memory of the forward beyond the inputs (CPU: torch.profiler's
allocation events, CUDA: ``max_memory_allocated``), as MiB and as a share of the logits'
size; and the largest error of the per-sequence sums against float64. Ratios are ours over
each alternative, measured in the same run. Targets (issue 16): extra memory ≤ TRL's and
≤ 5% of the logits; time ≤ TRL's (forward, forward + backward); time ≤ 1.05× the logits
path for the forward and ≤ 1.35× for forward + backward; error ≤ TRL's.

TRL is an optional extra (``pip install -e ".[bench]"``); without it the trl rows are
skipped. On 2 CPU cores the largest sizes take hours (one h·Wᵀ at H = 4096, V = 256k,
N = 4096 is 8.8 TFLOP): pass smaller lists, or run on a GPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.cli import cli
from bandit.validation import ValidationError
from bench import _options
from bench._memory import peak_bytes
from llm import fused_sequence_logps, sequence_logps

B = 8
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

try:
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
except ImportError:  # the bench extra is not installed
    ChunkedLogProbFunction = None

METHODS = ("fused", "logits") + (("trl",) if ChunkedLogProbFunction is not None else ())


def run(name: str, h: torch.Tensor, W: torch.Tensor, labels, mask) -> torch.Tensor:
    """Per-sequence Σ_t m_t log π(y_t) with ``shift=False`` (position t scores labels[t])."""
    if name == "fused":
        return fused_sequence_logps(h, W, labels, mask, shift=False)
    if name == "logits":
        return sequence_logps(h @ W.T, labels, mask, shift=False)
    # TRL: the counted rows only, then the per-token log-probs summed back per sequence.
    flat = mask.reshape(-1)
    lp = ChunkedLogProbFunction.apply(
        h.reshape(-1, h.shape[-1])[flat], W, None, labels.reshape(-1)[flat], 1.0, 4096
    )[0]
    rows = torch.arange(h.shape[0], device=h.device).repeat_interleave(h.shape[1])[flat]
    return torch.zeros(h.shape[0], dtype=lp.dtype, device=h.device).index_add(0, rows, lp)


def make_inputs(H: int, V: int, N: int, dtype, device: str, completion: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, N // B, H, generator=g, dtype=dtype).to(device)
    W = (torch.randn(V, H, generator=g, dtype=dtype) * (2 / H**0.5)).to(device)
    labels = torch.randint(0, V, (B, N // B), generator=g).to(device)
    mask = (torch.rand(B, N // B, generator=g) < completion).to(device)
    mask[:, 0] = True
    return h, W, labels, mask


def step(name: str, inputs, backward: bool) -> None:
    h, W, labels, mask = inputs
    if not backward:
        with torch.no_grad():
            run(name, h, W, labels, mask)
        return
    hg, Wg = h.detach().requires_grad_(), W.detach().requires_grad_()
    run(name, hg, Wg, labels, mask).sum().backward()


def best_times(inputs, device: str, repeats: int) -> dict[str, tuple[float, float]]:
    """{method: (forward, forward + backward) best seconds}, the methods taking turns."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = {(m, bw): float("inf") for m in METHODS for bw in (False, True)}
    for m in METHODS:  # warm-up
        step(m, inputs, True)
    for _ in range(repeats):
        for m in METHODS:
            for bw in (False, True):
                sync()
                t = time.perf_counter()
                step(m, inputs, bw)
                sync()
                best[m, bw] = min(best[m, bw], time.perf_counter() - t)
    return {m: (best[m, False], best[m, True]) for m in METHODS}


def peak_extra(name: str, inputs, device: str) -> int:
    """Peak bytes alive during one no-grad forward beyond the inputs."""
    return peak_bytes(lambda: step(name, inputs, False), device)


def fp64_reference(h, W, labels, mask, rows: int = 256) -> torch.Tensor:
    """Per-sequence sums in float64 of the same (rounded) inputs, a few rows at a time."""
    out = torch.zeros(h.shape[0], dtype=torch.float64, device=h.device)
    Wd = W.double()
    for b in range(h.shape[0]):
        for s in range(0, h.shape[1], rows):
            z = h[b, s : s + rows].double() @ Wd.T
            lp = z.log_softmax(-1).gather(-1, labels[b, s : s + rows, None])[:, 0]
            out[b] += (lp * mask[b, s : s + rows]).sum()
    return out


def main(argv: list[str] | None = None) -> int:
    a = _options.fused().parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(f"--device {a.device}: CUDA is not available on this machine")
    dtypes = list(a.dtypes)
    if a.quick:
        a.hidden, a.vocab, a.tokens = [256], [8192], [512]
    sizes = [(H, V, N, d) for H in a.hidden for V in a.vocab for N in a.tokens for d in dtypes]
    print(
        f"device {a.device}, threads {torch.get_num_threads()}, best of {a.repeats}, B = {B}, "
        f"completion share {a.completion}" + ("" if "trl" in METHODS else "; TRL not installed")
    )
    head = (
        f"{'H':>5} {'V':>7} {'N':>5} {'dtype':>5} {'method':>7} {'fwd ms':>9} {'x logits':>8} "
        f"{'x trl':>6} {'+bwd ms':>9} {'x logits':>8} {'x trl':>6} {'extra MiB':>9} "
        f"{'% logits':>8} {'err':>8}"
    )
    lines = [head, "-" * len(head)]
    fails: dict[str, list[str]] = {}
    for H, V, N, d in tqdm(sizes, desc="bench_fused", file=sys.stderr):
        inputs = make_inputs(H, V, N, DTYPES[d], a.device, a.completion)
        logits_bytes = N * V * inputs[0].element_size()
        t = best_times(inputs, a.device, a.repeats)
        mem = {m: peak_extra(m, inputs, a.device) for m in METHODS}
        ref = fp64_reference(*inputs)
        with torch.no_grad():
            err = {m: (run(m, *inputs).double() - ref).abs().max().item() for m in METHODS}
        for m in METHODS:
            r = [
                t[m][k] / t[alt][k] if alt in t else float("nan")
                for k in (0, 1)
                for alt in ("logits", "trl")
            ]
            lines.append(
                f"{H:>5} {V:>7} {N:>5} {d:>5} {m:>7} {1e3 * t[m][0]:9.1f} {r[0]:8.2f} "
                f"{r[1]:6.2f} {1e3 * t[m][1]:9.1f} {r[2]:8.2f} {r[3]:6.2f} "
                f"{mem[m] / 2**20:9.1f} {100 * mem[m] / logits_bytes:7.1f}% {err[m]:8.1e}"
            )
        where = f"H={H} V={V} N={N} {d}"
        checks = {
            "extra memory <= 5% of logits": mem["fused"] <= 0.05 * logits_bytes,
            "forward <= 1.05x logits path": t["fused"][0] <= 1.05 * t["logits"][0],
            "forward + backward <= 1.35x logits path": t["fused"][1] <= 1.35 * t["logits"][1],
        }
        if "trl" in METHODS:
            checks |= {
                "extra memory <= TRL's": mem["fused"] <= mem["trl"],
                "forward <= TRL's": t["fused"][0] <= t["trl"][0],
                "forward + backward <= TRL's": t["fused"][1] <= t["trl"][1],
                "error <= TRL's": err["fused"] <= err["trl"] * (1 + 1e-6),
            }
        for target, ok in checks.items():
            fails.setdefault(target, [])
            if not ok:
                fails[target].append(where)
        del inputs
    print("\n".join(lines))
    print()
    for target, where in fails.items():
        verdict = "met at every size" if not where else "NOT met at " + ", ".join(where)
        print(f"target: {target}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())
