"""CoPG Fig. 1: regret of offline CoPG, IPO and naive policy gradient on a 3-armed bandit.

CoPG §5: rewards R = (2.5, 2, 1), data y ∼ μ1 = (0.1, 0.2, 0.7), y' ∼ μ2 = (0.05, 0.05, 0.9),
β = 0.5, π_ref uniform; 10⁴ pairs with Bradley–Terry labels; a softmax policy trained from
π_ref with Adam (lr 1e-3, batches of 512, 100 epochs, reshuffled each epoch); the regret
J(π*) − J(π̂) along training. Each method's curve is the mean over seeds with a ±1 standard
deviation band, and its exact fixed point (:mod:`bandit.fixed_points`) is a dashed line.

Three layers, each usable alone (a notebook needs only the first two):

- the experiment: :class:`Figure1Config` in, :func:`compute` → :class:`Figure1Result`
  (one :class:`MethodResult` per method; ``result.to_dict()`` is figure1.json's content);
- the figure: :func:`plot` (result) → a ``matplotlib.figure.Figure``, built outside pyplot;
- the command line: :func:`main`, which parses, computes, writes and draws::

    python -m bandit.figure1 [--seeds 10] [--epochs 100] [--methods copg,ipo,pg,pg_value]
                             [--seed 0] [--out figures/] [--config FILE]

  Writes figure1.png, figure1.pdf and figure1.json into --out.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .cli import ArgumentParser, cli, nonneg_int, positive_int
from .exact import optimal_policy, optimal_value, regret
from .methods import OFFLINE_METHODS
from .outputs import json_text, jsonable, load_config, new_figure, save_outputs
from .problems import Bandit, OfflineData
from .validation import ValidationError, check_int, check_positive, real_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .fixed_points import FixedPoint
    from .trainer import Minibatches, SampledMinibatches, TrainConfig, TrainResult

__all__ = [
    "DEFAULT_METHODS",
    "Figure1Config",
    "Figure1Result",
    "MethodResult",
    "compute",
    "main",
    "plot",
]

DEFAULT_METHODS = ("copg", "ipo", "pg", "pg_value")
#: Max-abs probability gap below which the noise-free flow counts as converged.
_CONVERGED_ATOL = 1e-8
#: Largest X·n·n for which figure 1 runs the noise-free flow (n = 512 for one prompt).
FLOW_MAX_PAIRS = 2**18
#: Marks a result field that figure1.json leaves out (objects, not data).
_NOT_IN_JSON = {"json": False}


# ---------------------------------------------------------------------------- experiment


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

    @classmethod
    def load(cls, path: Path | None) -> Figure1Config:
        """The config in the TOML or JSON file ``path`` (:func:`bandit.outputs.load_config`),
        or CoPG §5's defaults when ``path`` is None."""
        return cls() if path is None else cls.from_dict(load_config(path))

    def problem(self) -> tuple[Bandit, OfflineData]:
        """The bandit and its OfflineData, validated (ValidationError on bad input)."""
        R = real_array("rewards", self.rewards)
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

    def train_config(self, epochs: int) -> TrainConfig:
        """The trainer's settings for ``epochs`` epochs (ValidationError on bad input)."""
        from .trainer import TrainConfig

        return TrainConfig(
            self.dataset_size, self.batch_size, epochs, self.learning_rate, self.drop_last
        )


def _json_fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.metadata.get("json", True)}


@dataclass(frozen=True, eq=False)
class MethodResult:
    """One method of figure 1: its training over the seeds against its exact fixed point.

    Policies are (n,) for a one-prompt problem whose rewards were given as (n,), else
    (X, n); curves have epochs + 1 points (point 0 is π_ref); standard deviations use
    ddof = 1 when there are several seeds.

    Attributes:
      regret_curve_mean: (epochs + 1,) regret J(π*) − J(π̂) per epoch, mean over seeds.
      regret_curve_std: (epochs + 1,) its standard deviation over seeds.
      final_regret_mean: the last epoch's regret, mean over seeds.
      final_regret_std: its standard deviation over seeds.
      final_policy_mean: the trained policy after the last epoch, mean over seeds.
      final_policy_se: the standard error of that mean.
      expected_flow_regret_curve: (epochs + 1,) regret of the noise-free Adam flow: the
        same trainer on the exact expected gradient of every minibatch.
      expected_flow_final_policy: the flow's policy after the last epoch.
      optimisation_gap: max |π_flow − π_fixed point| after the last epoch: what the
        optimiser has not yet covered, noise apart.
      agreement: ``"sampling error"`` when the flow has converged (its gap is below the
        standard error, or below 1e-8), so the trained mean misses the fixed point by
        sampling error only; ``"optimisation gap"`` otherwise. The flow costs O(X·n²) per
        step, so above :data:`FLOW_MAX_PAIRS` pairs it is not run: the three flow fields
        are then None and ``agreement`` says so.
      fixed_point_policy: the method's exact fixed point π.
      fixed_point_regret: its regret (dashed in the figure).
      fixed_point: the :class:`~bandit.fixed_points.FixedPoint` with its certificate;
        figure1.json holds its residual, unique, interior and message.
      training: the :class:`~bandit.trainer.TrainResult` over the seeds (log-policies and
        regret per seed and epoch; not in figure1.json).
    """

    regret_curve_mean: NDArray[np.float64]
    regret_curve_std: NDArray[np.float64]
    final_regret_mean: float
    final_regret_std: float
    final_policy_mean: NDArray[np.float64]
    final_policy_se: NDArray[np.float64]
    expected_flow_regret_curve: NDArray[np.float64] | None
    expected_flow_final_policy: NDArray[np.float64] | None
    optimisation_gap: float | None
    agreement: str
    fixed_point_policy: NDArray[np.float64]
    fixed_point_regret: float
    fixed_point: FixedPoint = field(repr=False, metadata=_NOT_IN_JSON)
    training: TrainResult = field(repr=False, metadata=_NOT_IN_JSON)

    def to_dict(self) -> dict[str, Any]:
        """This method's entry of figure1.json (plain lists and floats)."""
        fp = self.fixed_point
        return jsonable(
            _json_fields(self)
            | {
                "fixed_point_residual": float(fp.residual),
                "fixed_point_unique": bool(fp.unique),
                "fixed_point_interior": bool(fp.interior),
                "fixed_point_message": fp.message,
            }
        )


@dataclass(frozen=True, eq=False)
class Figure1Result:
    """What :func:`compute` returns: figure 1's data, for a notebook as for the CLI.

    Attributes:
      config: the experiment.
      methods: a :class:`MethodResult` per method, in the order trained (the figure's).
      seeds: how many seeds (datasets) were trained.
      epochs: epochs per seed.
      seed: the random seed of the datasets and minibatches.
      ref: the reference policy π_ref used (uniform when ``config.ref`` is None).
      optimal_policy: π*, the maximiser of the KL-regularised objective.
      optimal_value: J(π*).
      initial_regret: the regret of π_ref, where every curve starts.
      batches: the seeds' datasets and minibatches (:class:`~bandit.trainer.Minibatches`,
        or :class:`~bandit.trainer.SampledMinibatches` for large problems; not in
        figure1.json).
    """

    config: Figure1Config
    methods: Mapping[str, MethodResult]
    seeds: int
    epochs: int
    seed: int
    ref: NDArray[np.float64]
    optimal_policy: NDArray[np.float64]
    optimal_value: float
    initial_regret: float
    batches: Minibatches | SampledMinibatches = field(repr=False, metadata=_NOT_IN_JSON)

    def to_dict(self) -> dict[str, Any]:
        """figure1.json's content (plain lists and floats; non-finite floats are None)."""
        ref = self.ref if self.config.ref is None else self.config.ref
        if np.ndim(self.config.rewards) == 1:
            ref = np.asarray(ref).reshape(-1)
        return jsonable(
            {
                "config": {
                    **asdict(self.config),
                    "ref": ref,
                    "methods": list(self.methods),
                    "seeds": self.seeds,
                    "epochs": self.epochs,
                    "seed": self.seed,
                },
                "optimal_policy": self.optimal_policy,
                "optimal_value": self.optimal_value,
                "initial_regret": self.initial_regret,
                "methods": {m: r.to_dict() for m, r in self.methods.items()},
            }
        )

    def to_json(self) -> str:
        """figure1.json's text, byte for byte."""
        return json_text(self.to_dict())


def compute(
    config: Figure1Config | None = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int = 10,
    epochs: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> Figure1Result:
    """Train every method on every seed and compare with the exact fixed points.

    Args:
      config: the experiment (default: CoPG §5's).
      methods: offline method names (repeats are dropped).
      seeds: how many datasets to draw and train on, each with its own minibatches.
      epochs: passes over each dataset.
      seed: the random seed of the datasets and minibatches.
      progress: show a progress bar (epochs over all methods).

    Returns:
      the :class:`Figure1Result`.
    """
    if config is not None and not isinstance(config, Figure1Config):
        raise ValidationError(
            f"config must be a Figure1Config or None, got {type(config).__name__}"
        )
    config = config or Figure1Config()
    seeds = check_int("seeds", seeds, 1)
    epochs = check_int("epochs", epochs, 1)
    seed = check_int("seed", seed, 0)
    methods = list(dict.fromkeys(methods))
    from .methods import get_method

    for m in methods:
        if not get_method(m).offline:
            raise ValidationError(
                f"methods: {m!r} is an online method; figure 1 trains offline methods "
                f"({', '.join(OFFLINE_METHODS)})"
            )
    bandit, data = config.problem()
    from .trainer import check_layout

    check_layout(bandit, config.train_config(epochs), seeds + 1)  # before any work starts
    full, fixed, batches = _train(
        bandit, data, config.train_config(epochs), methods, seeds, seed, progress
    )

    def sq(a: Any) -> NDArray[np.float64]:
        """Policies as (n,) for a one-prompt problem given as (n,), else (X, n)."""
        a = np.asarray(a)
        return a[..., 0, :] if np.ndim(config.rewards) == 1 else a

    return Figure1Result(
        config=config,
        methods={m: _method_result(bandit, full[m], fixed[m], seeds, sq) for m in methods},
        seeds=seeds,
        epochs=epochs,
        seed=seed,
        ref=sq(bandit.ref),
        optimal_policy=sq(np.exp(optimal_policy(bandit))),
        optimal_value=float(optimal_value(bandit)),
        initial_regret=float(regret(bandit, bandit.log_ref)),
        batches=batches,
    )


def _train(
    bandit: Bandit,
    data: OfflineData,
    tc: TrainConfig,
    methods: Sequence[str],
    seeds: int,
    seed: int,
    progress: bool,
) -> tuple[dict[str, TrainResult], dict[str, FixedPoint], Minibatches | SampledMinibatches]:
    """Train on ``seeds`` datasets plus the noise-free flow; solve the fixed points.

    Returns each method's :class:`~bandit.trainer.TrainResult` over ``seeds + 1`` "seeds"
    (the last one trained on the exact expected gradient: the noise-free Adam flow), each
    method's fixed point, and the seeds' minibatches.
    """
    from .fixed_points import fixed_point  # JAX loads here
    from .trainer import (
        CompiledTrainer,
        expected_minibatches,
        minibatches,
        sampled_minibatches,
        uses_samples,
    )

    sampled = uses_samples(bandit, tc)
    with_flow = flow_feasible(bandit)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=tc.epochs, desc="figure1", unit="epoch", leave=False)
    # Neither the trainer's compilation nor the exact fixed points need the minibatches:
    # both run on other threads while the counts are drawn (XLA compiles and the
    # hypergeometric draws run without the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        trainer = pool.submit(
            CompiledTrainer,
            methods,
            bandit,
            seeds + (with_flow and not sampled),
            tc.epochs,
            tc.batch_sizes,
            learning_rate=tc.learning_rate,
            sampled=sampled,
        )
        # The noise-free flow is a count-form "seed"; in the sample form it trains apart.
        flow_trainer = None
        if with_flow and sampled:
            flow_trainer = pool.submit(
                CompiledTrainer, methods, bandit, 1, tc.epochs, tc.batch_sizes,
                learning_rate=tc.learning_rate,
            )  # fmt: skip
        fixed = {m: pool.submit(fixed_point, m, bandit, data) for m in methods}
        try:
            draw = sampled_minibatches if sampled else minibatches
            batches = draw(bandit, data, n_seeds=seeds, seed=seed, config=tc)
            sets = [batches]
            if with_flow:
                flow = expected_minibatches(bandit, data, config=tc)
                sets = sets if sampled else [batches, flow]
            results = trainer.result().run(sets, progress=bar.update if bar else None)
            if flow_trainer is not None:
                flow_results = flow_trainer.result().run(flow)
                results = {m: _join(results[m], flow_results[m]) for m in results}
        finally:
            if bar is not None:
                bar.close()
        fixed = {m: f.result() for m, f in fixed.items()}
    return results, fixed, batches


def flow_feasible(bandit: Bandit) -> bool:
    """Whether figure 1 runs the noise-free flow: its exact expected gradient costs
    O(X·n²) per step, so only up to :data:`FLOW_MAX_PAIRS` pairs (x, y, y')."""
    return bandit.n_prompts * bandit.n_actions**2 <= FLOW_MAX_PAIRS


def _join(a: TrainResult, b: TrainResult) -> TrainResult:
    """The seeds of ``a`` followed by those of ``b``."""
    from .trainer import TrainResult

    return TrainResult(
        a.method,
        np.concatenate([a.log_policies, b.log_policies]),
        np.concatenate([a.regret, b.regret]),
    )


def _method_result(
    bandit: Bandit, full: TrainResult, fp: FixedPoint, seeds: int, sq: Any
) -> MethodResult:
    """The statistics of one method: ``full`` holds the seeds, then the noise-free flow
    (absent where :func:`flow_feasible` is False: the flow's fields are then None)."""
    from .trainer import TrainResult

    ddof = 1 if seeds > 1 else 0
    r = TrainResult(full.method, full.log_policies[:seeds], full.regret[:seeds])
    final = r.regret[:, -1]
    pi = np.exp(r.log_policies[:, -1])
    pi_mean, pi_se = pi.mean(axis=0), pi.std(axis=0, ddof=ddof) / np.sqrt(seeds)
    pi_fp = np.exp(fp.log_policy)
    flow_curve = flow_final = gap = None
    agreement = "no flow: the problem is too large for its exact expected gradient"
    if full.log_policies.shape[0] > seeds:
        pi_flow = np.exp(full.log_policies[seeds][-1])
        flow_curve, flow_final = np.asarray(full.regret[seeds]), sq(pi_flow)
        # The trained mean misses the fixed point by sampling error (its standard error)
        # plus whatever the noise-free flow has not yet covered at the same step count.
        gap = float(np.max(np.abs(pi_flow - pi_fp)))
        # Converged: the flow's gap is below the standard error, or at float64 optimisation
        # precision (CoPG's fixed point is π* for every dataset, so its se can be ~0).
        converged = gap <= max(float(np.max(pi_se)), _CONVERGED_ATOL)
        agreement = "sampling error" if converged else "optimisation gap"
    return MethodResult(
        regret_curve_mean=r.regret.mean(axis=0),
        regret_curve_std=r.regret.std(axis=0, ddof=ddof),
        final_regret_mean=float(final.mean()),
        final_regret_std=float(final.std(ddof=ddof)),
        final_policy_mean=sq(pi_mean),
        final_policy_se=sq(pi_se),
        expected_flow_regret_curve=flow_curve,
        expected_flow_final_policy=flow_final,
        optimisation_gap=gap,
        agreement=agreement,
        fixed_point_policy=sq(pi_fp),
        fixed_point_regret=float(regret(bandit, fp.log_policy)),
        fixed_point=fp,
        training=r,
    )


# -------------------------------------------------------------------------------- figure

_LABELS = {
    "copg": "CoPG",
    "ipo": "IPO",
    "pg": "PG (no baseline)",
    "pg_value": "PG (value baseline)",
    "dpo": "DPO",
    "slic": "SLiC",
}


def plot(result: Figure1Result, *, name: str | None = None) -> Figure:
    """The figure: mean regret per epoch with a ±1 sd band over seeds, fixed points dashed.

    A ``matplotlib.figure.Figure`` made without pyplot: the user's backend is untouched.
    ``name`` titles the problem (default "CoPG §5 bandit" for the paper's problem, else
    "custom config").
    """
    if name is None:
        paper = jsonable(asdict(Figure1Config())) == jsonable(asdict(result.config))
        name = "CoPG §5 bandit" if paper else "custom config"
    fig = new_figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for i, (m, s) in enumerate(result.methods.items()):
        color = f"C{i}"
        mean, sd = np.asarray(s.regret_curve_mean), np.asarray(s.regret_curve_std)
        x = np.arange(mean.size)
        ax.plot(x, mean, color=color, label=_LABELS.get(m, m))
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.25, linewidth=0)
        if np.isfinite(s.fixed_point_regret):
            ax.axhline(s.fixed_point_regret, color=color, linestyle="--", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"regret $J(\pi_*) - J(\hat\pi)$")
    ax.set_title(
        f"{name}, β = {result.config.beta:g}: mean ± sd over {result.seeds} seeds; "
        "dashed: exact fixed point",
        fontsize=9,
    )
    ax.set_xlim(0, max(1, len(mean) - 1))
    ax.set_ylim(bottom=-0.02 * ax.get_ylim()[1])  # keep a fixed point at 0 visible
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------- command line


def _methods(text: str) -> tuple[str, ...]:
    """``--methods``: comma-separated offline method names, each once."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated methods, got {text!r}")
    for v in names:
        if v not in OFFLINE_METHODS:
            from .methods import METHODS

            what = "an online method" if v in METHODS else "unknown method"
            raise argparse.ArgumentTypeError(
                f"{what} {v!r}, not an offline method; expected some of "
                f"{', '.join(OFFLINE_METHODS)}"
            )
    twice = sorted({v for v in names if names.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"method {twice[0]!r} given more than once")
    return tuple(names)


_methods.__name__ = "method list"


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m bandit.figure1",
        description="Regenerate CoPG Fig. 1 (regret of offline methods on the §5 bandit).",
    )
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds (default 10)")
    p.add_argument("--epochs", type=positive_int, default=100, help="epochs (default 100)")
    p.add_argument(
        "--methods",
        type=_methods,
        default=DEFAULT_METHODS,
        help=f"comma-separated offline methods among {', '.join(OFFLINE_METHODS)} "
        f"(default {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default figures/)"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file with any of: rewards, mu1, mu2, ref, rho, beta, "
        "dataset_size, batch_size, learning_rate, drop_last (default: CoPG §5's bandit)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate figure1.png, figure1.pdf and figure1.json."""
    args = _parser().parse_args(argv)
    config = Figure1Config.load(args.config)
    config.problem()  # validate before training
    config.train_config(args.epochs)
    result = compute(
        config,
        methods=args.methods,
        seeds=args.seeds,
        epochs=args.epochs,
        seed=args.seed,
        progress=True,
    )
    name = f"config {args.config.name}" if args.config else None
    save_outputs(args.out, "figure1", plot(result, name=name), result.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main)())
