"""Benchmark: regularised Nash equilibrium (IPO-MD Eq. 12) of random preference games.

For each n and KL strength β (IPO-MD's τ): our solver (Newton + continuation,
bandit.games.nash_equilibrium) and two baselines run in the same process to the *same*
duality gap (the solver's gap, floored at 1e-10): damped fixed-point iteration
π ← (1−α)π + α BR(π) and magnetic mirror descent (Sokota et al. 2022). Each baseline gets
the step size that is optimal for its linearisation at the equilibrium
(α = 1/(1 + λ²/β²), with λ the spectral radius of S^½ A S^½), and a time budget; "-"
marks a baseline that did not reach the gap within it.

    python -m bench.bench_nash            # n = 3 … 10⁴, β = 1 … 1e-3
    python -m bench.bench_nash --quick    # n ≤ 1000, shorter budget

Target (issue 5): n = 1000 at β = 1e-3 to a gap < 1e-10 in under 1 s.
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
from bandit.games import damped_fixed_point_nash, mirror_descent_nash, nash_equilibrium
from bandit.problems import PreferenceGame
from bench import _options


def random_game(n: int, beta: float, seed: int = 0) -> PreferenceGame:
    """P[i, j] ∼ U(0, 1) above the diagonal, 1 − P[j, i] below, 1/2 on it; π_ref uniform."""
    rng = np.random.default_rng(seed)
    P = np.triu(rng.uniform(size=(n, n)), 1)
    P = P + np.tril(1.0 - P.T, -1)
    np.fill_diagonal(P, 0.5)
    return PreferenceGame(P, None, beta)


def _lambda(game: PreferenceGame, pi: np.ndarray) -> float:
    """Spectral radius of S^½ A S^½ (S = diag π − ππᵀ, A = P − 1/2), the rotation speed."""
    if game.n_actions > 2000:  # estimate by power iteration on the antisymmetric operator
        A = game.P - 0.5
        rng = np.random.default_rng(0)
        v = rng.normal(size=game.n_actions)
        s = np.sqrt(pi)
        lam = 0.0
        for _ in range(30):
            w = s * (A @ (s * v))
            w = s * (A.T @ (s * w))  # (KᵀK) v, K = S^½AS^½ approximated with diag(π)^½
            lam = float(np.sqrt(np.linalg.norm(w) / np.linalg.norm(v)))
            v = w / np.linalg.norm(w)
        return lam
    S = np.diag(pi) - np.outer(pi, pi)
    w, V = np.linalg.eigh(S)
    R = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    return float(np.max(np.abs(np.linalg.eigvals(R @ (game.P - 0.5) @ R))))


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.nash().parse_args(argv)
    ns = [3, 10, 100, 1000] if args.quick else [3, 10, 100, 1000, 10_000]
    betas = [1.0, 1e-1, 1e-2, 1e-3]
    budget = 5.0 if args.quick else 20.0
    print(
        f"{'n':>6} {'beta':>6} | {'newton s':>9} {'gap':>8} | {'damped s':>9} {'gap':>8} | "
        f"{'mmd s':>9} {'gap':>8} | {'speed-up':>8}"
    )
    sizes = [(n, beta) for n in ns for beta in betas]
    for n, beta in tqdm(sizes, desc="bench_nash", unit="game", file=sys.stderr):
        game = random_game(n, beta)
        t0 = time.perf_counter()
        sol = nash_equilibrium(game)
        t_newton = time.perf_counter() - t0
        target = max(sol.residual, 1e-10)
        lam = _lambda(game, sol.policy)
        alpha = 1.0 / (1.0 + (lam / beta) ** 2)
        eta = alpha / (beta * (1.0 - alpha)) if alpha < 1 else 1e6
        rows = []
        for fn, step in ((damped_fixed_point_nash, alpha), (mirror_descent_nash, eta)):
            t0 = time.perf_counter()
            b = fn(game, step, tol=target, max_iter=10**9, max_seconds=budget)
            rows.append((time.perf_counter() - t0, b))
        cells = []
        best = np.inf
        for t, b in rows:
            if b.residual <= target:
                cells.append(f"{t:9.3f} {b.residual:8.1e}")
                best = min(best, t)
            else:
                cells.append(f"{'-':>9} {b.residual:8.1e}")
        ratio = f"{best / t_newton:8.1f}x" if np.isfinite(best) else f">{budget / t_newton:7.0f}x"
        tqdm.write(  # above the progress bar
            f"{n:>6} {beta:>6g} | {t_newton:9.3f} {sol.residual:8.1e} | {cells[0]} | "
            f"{cells[1]} | {ratio}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())
