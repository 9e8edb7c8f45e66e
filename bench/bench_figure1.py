"""Benchmark: the whole default CoPG Fig. 1 at 100 seeds vs a plain per-step PyTorch loop.

    python bench/bench_figure1.py [--quick] [--seeds 100] [--torch-seeds 3]

The fast path is ``bandit.figure1.compute`` (count-based minibatches, one jit for all
methods, vmap over seeds), timed cold in this process: JAX compilation and the exact fixed
points are included. The baseline is what a researcher would write: materialise the 10⁴
pairs, and for each method and seed one Python loop over epochs and batches of
``torch.randperm``, the shared per-pair loss on the batch, ``backward`` and
``torch.optim.Adam`` (float64, like the fast path). Prints seconds per (method, seed) for
both, their ratio, and both mean final regrets as a sanity check.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.cli import cli
from bandit.figure1 import DEFAULT_METHODS, Figure1Config, compute
from bench import _options


def torch_run(method: str, cfg: Figure1Config, epochs: int, seed: int) -> float:
    """One (method, seed) of the plain loop; returns the final regret J(π*) − J(π̂)."""
    import torch

    from bandit import regret
    from llm import method_loss

    bandit, _ = cfg.problem()
    rng = np.random.default_rng(seed)
    N = cfg.dataset_size
    R = torch.tensor(cfg.rewards, dtype=torch.float64)
    y1 = torch.from_numpy(rng.choice(3, N, p=cfg.mu1))
    y2 = torch.from_numpy(rng.choice(3, N, p=cfg.mu2))
    label = torch.from_numpy(rng.random(N) < 1 / (1 + np.exp(-(R[y1] - R[y2]).numpy()))).double()
    log_ref = torch.from_numpy(bandit.log_ref[0])
    theta = log_ref.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(seed)
    beta = cfg.beta
    for _ in range(epochs):
        perm = torch.randperm(N, generator=gen)
        for start in range(0, N, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            a, b = y1[idx], y2[idx]
            log_pi = torch.log_softmax(theta, dim=-1)
            baseline = (log_pi.exp() * R).sum().detach()  # the exact value E_π[R]
            loss = method_loss(
                method,
                torch.stack([log_pi[a], log_pi[b]], -1),
                torch.stack([log_ref[a], log_ref[b]], -1),
                rewards=torch.stack([R[a], R[b]], -1),
                preference=label[idx],
                baseline=baseline,
                beta=beta,
                reduction="none",
            )
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
    return float(regret(bandit, torch.log_softmax(theta, -1).detach().numpy()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.figure1().parse_args(argv)
    torch_seeds = args.torch_seeds or (1 if args.quick else 3)
    cfg = Figure1Config()
    methods = DEFAULT_METHODS

    t = time.perf_counter()
    summary = compute(cfg, methods=methods, seeds=args.seeds, epochs=args.epochs).to_dict()
    fast_total = time.perf_counter() - t
    fast = fast_total / (len(methods) * args.seeds)

    # The trainer alone (datasets, minibatch counts, compile and training; no fixed points).
    from bandit.trainer import minibatches, train_all

    bandit, data = cfg.problem()
    t = time.perf_counter()
    mb = minibatches(bandit, data, n_seeds=args.seeds, config=cfg.train_config(args.epochs))
    train_all(methods, bandit, mb, learning_rate=cfg.learning_rate)
    trainer = (time.perf_counter() - t) / (len(methods) * args.seeds)

    torch_run("copg", cfg, 1, seed=0)  # warm-up: torch import and first-call overheads
    torch_times: dict[str, list[float]] = {m: [] for m in methods}
    torch_regrets: dict[str, list[float]] = {m: [] for m in methods}
    runs = [(m, s) for m in methods for s in range(torch_seeds)]
    for m, s in tqdm(runs, desc="bench_figure1 (PyTorch loop)", unit="run", file=sys.stderr):
        t = time.perf_counter()
        torch_regrets[m].append(torch_run(m, cfg, args.epochs, seed=s))
        torch_times[m].append(time.perf_counter() - t)
    torch_times = {m: float(np.mean(ts)) for m, ts in torch_times.items()}
    torch_regret = {m: float(np.mean(rs)) for m, rs in torch_regrets.items()}

    print(
        f"CoPG Fig. 1, {args.epochs} epochs: fast path {args.seeds} seeds × {len(methods)} "
        f"methods in {fast_total:.2f} s (cold: compile and fixed points included); "
        f"PyTorch loop {torch_seeds} seed(s) per method"
    )
    head = f"{'method':<10} {'fast s/run':>11} {'torch s/run':>12} {'ratio':>8}"
    print(head + f" {'regret fast':>12} {'regret torch':>13}")
    for m in methods:
        fr = summary["methods"][m]["final_regret_mean"]
        print(
            f"{m:<10} {fast:>11.5f} {torch_times[m]:>12.4f} {torch_times[m] / fast:>7.0f}x"
            f" {fr:>12.4f} {torch_regret[m]:>13.4f}"
        )
    t_mean = float(np.mean(list(torch_times.values())))
    print(f"{'all':<10} {fast:>11.5f} {t_mean:>12.4f} {t_mean / fast:>7.0f}x  (target >= 100x)")
    print(
        f"{'trainer':<10} {trainer:>11.5f} {t_mean:>12.4f} {t_mean / trainer:>7.0f}x  "
        "(trainer alone: no fixed points, JAX already imported)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())
