"""CoPG Fig. 1: regret of offline CoPG, IPO and naive policy gradient on a 3-armed bandit.

CoPG §5: rewards R = (2.5, 2, 1), data y ∼ μ1 = (0.1, 0.2, 0.7), y' ∼ μ2 = (0.05, 0.05, 0.9),
β = 0.5, π_ref uniform; 10⁴ pairs with Bradley–Terry labels; a softmax policy trained from
π_ref with Adam (lr 1e-3, batches of 512, 100 epochs, reshuffled each epoch); the regret
J(π*) − J(π̂) along training. Each method's curve is the mean over seeds with a ±1 standard
deviation band, and its exact fixed point (:mod:`bandit.fixed_points`) is a dashed line.

    python -m bandit.figure1 [--seeds 10] [--epochs 100] [--methods copg,ipo,pg,pg_value]
                             [--seed 0] [--out figures/] [--config FILE]

Writes figure1.png, figure1.pdf and figure1.json into --out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cli import ArgumentParser, cli, int_at_least
from .exact import optimal_policy, optimal_value, regret
from .methods import OFFLINE_METHODS, get_method
from .outputs import load_config, new_figure, save_figure, write_json
from .problems import Bandit
from .validation import ValidationError, check_positive

__all__ = ["DEFAULT_METHODS", "Figure1Config", "Figure1Result", "compute", "main", "plot"]

DEFAULT_METHODS = ("copg", "ipo", "pg", "pg_value")
#: Max-abs probability gap below which the noise-free flow counts as converged.
_CONVERGED_ATOL = 1e-8


@dataclass(frozen=True)
class Figure1Config:
    """The experiment; the defaults are CoPG §5's.

    ``rewards``, ``mu1``, ``mu2`` and ``ref`` are (n,) for one prompt, or (X, n) with an
    optional ``rho`` (X,) for a contextual bandit; ``ref`` None means uniform.
    """

    rewards: Any = (2.5, 2.0, 1.0)
    mu1: Any = (0.1, 0.2, 0.7)
    mu2: Any = (0.05, 0.05, 0.9)
    ref: Any = None
    rho: Any = None
    beta: float = 0.5
    dataset_size: int = 10_000
    batch_size: int = 512
    learning_rate: float = 1e-3
    drop_last: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure1Config:
        """Build from a config file's dict, rejecting unknown keys."""
        if not isinstance(d, dict):
            raise ValidationError(f"config must be a table/object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise ValidationError(
                f"config: unknown key {extra[0]!r} (allowed: {', '.join(sorted(known))})"
            )
        return cls(**d)

    def problem(self) -> tuple[Bandit, Any]:
        """The bandit and its OfflineData, validated (ValidationError on bad input)."""
        from .expected import OfflineData

        R = np.asarray(self.rewards, dtype=np.float64)
        beta = check_positive("beta", self.beta)
        if R.ndim == 1:
            if self.rho is not None:
                raise ValidationError("rho: only for contextual rewards of shape (X, n)")
            bandit = Bandit.single(R, beta, ref=self.ref)
        else:
            bandit = Bandit(R, self.ref, self.rho, beta)
        data = OfflineData(self.mu1, self.mu2)
        if data.mu1.shape != bandit.rewards.shape:
            raise ValidationError(
                f"mu1, mu2 must have the shape of rewards {np.shape(self.rewards)}, "
                f"got {np.shape(self.mu1)}"
            )
        return bandit, data

    def train_config(self, epochs: int):
        from .trainer import TrainConfig

        return TrainConfig(
            self.dataset_size, self.batch_size, epochs, self.learning_rate, self.drop_last
        )


def _squeeze(bandit: Bandit, config: Figure1Config, a: np.ndarray) -> np.ndarray:
    """Policies as (n,) for a one-prompt problem given as (n,), else (X, n)."""
    return a[..., 0, :] if np.ndim(config.rewards) == 1 else a


@dataclass(frozen=True)
class Figure1Result:
    """What figure 1 computes, for a notebook as much as for the CLI.

    Attributes:
      config: the experiment.
      summary: the content of figure1.json (per-method regret curves, final policies,
        exact fixed points and how the two agree); :func:`plot` draws it.
      runs: each method's :class:`~bandit.trainer.TrainResult` over the seeds.
      fixed_points: each method's exact :class:`~bandit.fixed_points.FixedPoint`.
      batches: the seeds' datasets and minibatches (:class:`~bandit.trainer.Minibatches`).
    """

    config: Figure1Config
    summary: dict[str, Any]
    runs: dict[str, Any]
    fixed_points: dict[str, Any]
    batches: Any

    def to_json(self) -> dict[str, Any]:
        """figure1.json's content (NumPy arrays become lists when written)."""
        return self.summary


def compute(
    config: Figure1Config | None = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int = 10,
    epochs: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> Figure1Result:
    """Train every method on every seed and compare with the exact fixed points."""
    config = config or Figure1Config()
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if get_method(m).sampling != "offline":
            raise ValidationError(
                f"methods: {m!r} is an online method; figure 1 trains offline methods "
                f"({', '.join(OFFLINE_METHODS)})"
            )
    bandit, data = config.problem()
    tc = config.train_config(epochs)
    from .fixed_points import fixed_point  # JAX loads here
    from .trainer import CompiledTrainer, TrainResult, expected_minibatches, minibatches

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(methods) * epochs, desc="figure1", unit="epoch", leave=False)
    # Neither the trainer's compilation nor the exact fixed points need the minibatches:
    # both run on other threads while the counts are drawn (XLA compiles and the
    # hypergeometric draws run without the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        # seeds + 1: one more "seed" trained on the exact expected gradient, the
        # noise-free Adam flow.
        trainer = pool.submit(
            CompiledTrainer,
            methods,
            bandit,
            seeds + 1,
            tc.epochs,
            tc.batch_sizes,
            learning_rate=tc.learning_rate,
        )
        fixed = {m: pool.submit(fixed_point, m, bandit, data) for m in methods}
        try:
            batches = minibatches(bandit, data, n_seeds=seeds, seed=seed, config=tc)
            flow = expected_minibatches(bandit, data, config=tc)
            results = trainer.result().run(
                batches.concat(flow), progress=bar.update if bar else None
            )
        finally:
            if bar is not None:
                bar.close()
        fixed = {m: f.result() for m, f in fixed.items()}

    sq = lambda a: _squeeze(bandit, config, np.asarray(a))  # noqa: E731
    ddof = 1 if seeds > 1 else 0
    per_method = {}
    for m in methods:
        full = results[m]
        flow_lp = full.log_policies[seeds]
        r = results[m] = TrainResult(m, full.log_policies[:seeds], full.regret[:seeds])
        fp = fixed[m]
        final = r.regret[:, -1]
        pi = np.exp(r.log_policies[:, -1])
        pi_mean, pi_se = pi.mean(axis=0), pi.std(axis=0, ddof=ddof) / np.sqrt(seeds)
        pi_fp, pi_flow = np.exp(fp.log_policy), np.exp(flow_lp[-1])
        # The trained mean misses the fixed point by sampling error (its standard error)
        # plus whatever the noise-free flow has not yet covered at the same step count.
        gap = float(np.max(np.abs(pi_flow - pi_fp)))
        # Converged: the flow's gap is below the standard error, or at float64 optimisation
        # precision (CoPG's fixed point is π* for every dataset, so its se can be ~0).
        converged = gap <= max(float(np.max(pi_se)), _CONVERGED_ATOL)
        per_method[m] = {
            "final_regret_mean": float(final.mean()),
            "final_regret_std": float(final.std(ddof=ddof)),
            "final_policy_mean": sq(pi_mean),
            "final_policy_se": sq(pi_se),
            "expected_flow_regret_curve": full.regret[seeds],
            "expected_flow_final_policy": sq(pi_flow),
            "optimisation_gap": gap,
            "agreement": "sampling error" if converged else "optimisation gap",
            "fixed_point_policy": sq(pi_fp),
            "fixed_point_regret": float(regret(bandit, fp.log_policy)),
            "fixed_point_residual": float(fp.residual),
            "fixed_point_unique": bool(fp.unique),
            "fixed_point_interior": bool(fp.interior),
            "fixed_point_message": fp.message,
            "regret_curve_mean": r.regret.mean(axis=0),
            "regret_curve_std": r.regret.std(axis=0, ddof=ddof),
        }
    summary = {
        "config": {
            **asdict(config),
            "ref": bandit.ref if config.ref is None else config.ref,
            "methods": methods,
            "seeds": seeds,
            "epochs": epochs,
            "seed": seed,
        },
        "optimal_policy": sq(np.exp(optimal_policy(bandit))),
        "optimal_value": float(optimal_value(bandit)),
        "initial_regret": float(regret(bandit, bandit.log_ref)),
        "methods": per_method,
    }
    if np.ndim(config.rewards) == 1:
        summary["config"]["ref"] = np.asarray(summary["config"]["ref"]).reshape(-1)
    return Figure1Result(config, summary, results, fixed, batches)


_LABELS = {
    "copg": "CoPG",
    "ipo": "IPO",
    "pg": "PG (no baseline)",
    "pg_value": "PG (value baseline)",
    "dpo": "DPO",
    "slic": "SLiC",
}


def plot(result: Figure1Result | dict[str, Any]):
    """The figure: mean regret per epoch with a ±1 sd band over seeds, fixed points dashed.

    Takes a :class:`Figure1Result` or its summary (figure1.json's content)."""
    summary = result.summary if isinstance(result, Figure1Result) else result
    fig = new_figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for i, (m, s) in enumerate(summary["methods"].items()):
        color = f"C{i}"
        mean = np.asarray(s["regret_curve_mean"])
        sd = np.asarray(s["regret_curve_std"])
        x = np.arange(mean.size)
        ax.plot(x, mean, color=color, label=_LABELS.get(m, m))
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.25, linewidth=0)
        if np.isfinite(s["fixed_point_regret"]):
            ax.axhline(s["fixed_point_regret"], color=color, linestyle="--", linewidth=1)
    cfg = summary["config"]
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"regret $J(\pi_*) - J(\hat\pi)$")
    ax.set_title(
        f"CoPG §5 bandit, β = {cfg['beta']:g}: mean ± sd over {cfg['seeds']} seeds; "
        "dashed: exact fixed point",
        fontsize=9,
    )
    ax.set_xlim(0, max(1, len(mean) - 1))
    ax.set_ylim(bottom=-0.02 * ax.get_ylim()[1])  # keep a fixed point at 0 visible
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m bandit.figure1",
        description="Regenerate CoPG Fig. 1 (regret of offline methods on the §5 bandit).",
    )
    p.add_argument("--seeds", type=int_at_least(1), default=10, help="seeds (default 10)")
    p.add_argument("--epochs", type=int_at_least(1), default=100, help="epochs (default 100)")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated offline methods among {', '.join(OFFLINE_METHODS)} "
        f"(default {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file with any of: rewards, mu1, mu2, ref, rho, beta, "
        "dataset_size, batch_size, learning_rate, drop_last",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate figure1.png, figure1.pdf and figure1.json."""
    args = _parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValidationError("--methods: give at least one method")
    for m in methods:
        get_method(m)  # unknown names fail here, before any work
    config = Figure1Config.from_dict(load_config(args.config)) if args.config else Figure1Config()
    config.problem()  # validate before training
    config.train_config(args.epochs)
    result = compute(
        config,
        methods=methods,
        seeds=args.seeds,
        epochs=args.epochs,
        seed=args.seed,
        progress=True,
    )
    write_json(args.out / "figure1.json", result.to_json())
    save_figure(plot(result), args.out / "figure1")
    print(f"wrote {args.out / 'figure1.png'}, .pdf and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main)())
