"""IPO-MD App. F: IPO-MD(β) dynamics on a rock-paper-scissors preference game.

In the package's names (README, Notation) IPO-MD's τ is ``beta`` and its β is ``mixture``.
τ = 0.1, π_ref uniform; IPO-MD(β) trajectories (exact expected gradients, discrete steps)
for several β ∈ [0, 1] from several starting points, drawn on the 2-simplex, with each
IPO-MD(β) fixed point (Eq. 13) and the regularised Nash equilibrium (Eq. 12) marked.
β = 0 is online IPO (self-play), β = 1 samples from π_ref (offline IPO with μ = π_ref).

The matrix printed in App. F, ``PAPER_MATRIX``, is not a preference matrix: P + Pᵀ must
be 1 (IPO-MD §2.1), but P[0,1] + P[1,0] = P[1,2] + P[2,1] = 0.9. We use its nearest valid
matrix, the Frobenius projection onto {P + Pᵀ = 1, diag P = 1/2}, which is
(M + 1 − Mᵀ)/2 (:func:`nearest_preference_matrix`): ``RPS_MATRIX`` =
[[.5, .85, .1], [.15, .5, .85], [.9, .15, .5]]. It is also the matrix that the contrastive
IPO losses would effectively see if fed M: with symmetric pair sampling, the pair {y, y'}
enters the expected loss through (M[y,y'] + 1 − M[y',y])/2 (the loss is linear in p).

    python -m bandit.rps [--mixture 0 0.25 0.5 0.75 1] [--beta 0.1] [--matrix M] [--steps 4000]
                         [--lr 0.01] [--out figures/]

``--matrix`` is inline ("0.5,0.85,0.1; 0.15,0.5,0.85; 0.9,0.15,0.5") or a file (JSON list
of rows, or whitespace/comma-separated text). Writes rps.png, rps.pdf and rps.json.

Three layers, each usable alone (a notebook needs only the first two): :func:`compute` →
:class:`RPSResult` (one :class:`MixtureRun` per mixture; ``result.to_dict()`` is rps.json's
content), :func:`plot` (result) → a ``matplotlib.figure.Figure`` built outside pyplot, and
the command line, :func:`main`. The figure's text keeps IPO-MD's notation (τ, β).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .cli import ArgumentParser, cli, comma_list, float_in, positive_float, positive_int
from .games import exploitability, ipo_md_fixed_point, nash_equilibrium
from .outputs import json_text, jsonable, new_figure, save_outputs
from .problems import PreferenceGame
from .validation import ValidationError, check_finite, check_int, check_unit_interval, real_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_MIXTURES",
    "PAPER_MATRIX",
    "RPS_MATRIX",
    "MixtureRun",
    "RPSResult",
    "compute",
    "main",
    "nearest_preference_matrix",
    "plot",
]

#: The most gradient steps per run (the exact dynamics take ~1e5 steps per second).
MAX_STEPS = 10**7
#: The matrix as printed in IPO-MD App. F (not a valid preference matrix).
PAPER_MATRIX = np.array([[0.5, 0.8, 0.1], [0.1, 0.5, 0.8], [0.9, 0.1, 0.5]])
#: IPO-MD's β of the runs, as ``mixture`` values (0 is online IPO, 1 offline IPO at π_ref).
DEFAULT_MIXTURES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Probability each start puts on "its" action (the rest spread evenly).
_START_MASS = 0.8
#: Trajectory points kept per run in the JSON and the figure.
_KEEP = 201


def nearest_preference_matrix(M: ArrayLike) -> NDArray[np.float64]:
    """The Frobenius-nearest matrix with P + Pᵀ = 1 and diag P = 1/2: (M + 1 − Mᵀ)/2.

    The constraint set is affine; writing M = 1/2 + S + K (S symmetric, K antisymmetric,
    S with diagonal included), the projection keeps K and drops S, i.e. 1/2 + (M − Mᵀ)/2.
    Entries stay in [0, 1] when M's do.
    """
    M = check_finite("M", M)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValidationError(f"M must be a square matrix, got shape {M.shape}")
    return (M + 1.0 - M.T) / 2.0


RPS_MATRIX = nearest_preference_matrix(PAPER_MATRIX)


# ---------------------------------------------------------------------------- experiment


def _starts(n: int) -> NDArray[np.float64]:
    """Log-policies of the starting points: mass 0.8 on action i, i < min(n, 3)."""
    k = min(n, 3)
    pi = np.full((k, n), (1.0 - _START_MASS) / (n - 1))
    pi[np.arange(k), np.arange(k)] = _START_MASS
    return np.log(pi)


@dataclass(frozen=True, eq=False)
class MixtureRun:
    """IPO-MD(β) at one mixture value (IPO-MD's β), from every start.

    Attributes:
      mixture: IPO-MD's β ∈ [0, 1]: 0 is online IPO (self-play), 1 samples from π_ref.
      fixed_point: (n,) the IPO-MD(β) fixed point (Eq. 13).
      fixed_point_residual: its Eq. (13) residual, the certificate.
      trajectory_end: (starts, n) the policy after the last step, one row per start.
      distance_to_fixed_point: (starts,) max-abs probability gap of each end to the
        fixed point.
      trajectory_steps: (k,) the recorded steps (at most 201, first and last included).
      trajectories: (starts, k, n) the policies at those steps.
      mixture_nash_gap: Prop. 5.2: the duality gap of the fixed point's geometric mixture
        with π_ref in the game at KL strength τ/(1 − β); None for β = 1 (absent from
        rps.json).
    """

    mixture: float
    fixed_point: NDArray[np.float64]
    fixed_point_residual: float
    trajectory_end: NDArray[np.float64]
    distance_to_fixed_point: NDArray[np.float64]
    trajectory_steps: NDArray[np.int64]
    trajectories: NDArray[np.float64]
    mixture_nash_gap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """This run's entry of rps.json (plain lists and floats)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if d["mixture_nash_gap"] is None:
            del d["mixture_nash_gap"]
        return jsonable(d)


@dataclass(frozen=True, eq=False)
class RPSResult:
    """What :func:`compute` returns: the game, its Nash equilibrium and a run per mixture.

    Attributes:
      matrix: (n, n) the preference matrix P, P[i, j] = p(y_i ≻ y_j).
      beta: the KL strength (IPO-MD's τ).
      ref: (n,) the reference policy π_ref (uniform).
      nash_equilibrium: (n,) the regularised Nash equilibrium (Eq. 12).
      nash_duality_gap: its duality gap, the certificate.
      steps: gradient steps per run.
      lr: the step size.
      starts: (starts, n) the starting policies.
      runs: a :class:`MixtureRun` per mixture, keyed by the mixture as text (``f"{m:g}"``).
    """

    matrix: NDArray[np.float64]
    beta: float
    ref: NDArray[np.float64]
    nash_equilibrium: NDArray[np.float64]
    nash_duality_gap: float
    steps: int
    lr: float
    starts: NDArray[np.float64]
    runs: Mapping[str, MixtureRun]

    def to_dict(self) -> dict[str, Any]:
        """rps.json's content (plain lists and floats; non-finite floats are None)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["runs"] = {key: run.to_dict() for key, run in self.runs.items()}
        return jsonable(d)

    def to_json(self) -> str:
        """rps.json's text, byte for byte."""
        return json_text(self.to_dict())


def compute(
    P: ArrayLike = RPS_MATRIX,
    *,
    mixtures: Sequence[float] = DEFAULT_MIXTURES,
    beta: float = 0.1,
    steps: int = 4000,
    lr: float = 0.01,
    progress: bool = False,
) -> RPSResult:
    """Run IPO-MD(β) for each mixture β from each start, on exact expected gradients.

    Args:
      P: the preference matrix (validated: P + Pᵀ = 1, entries in [0, 1]).
      mixtures: IPO-MD's β values, each in [0, 1].
      beta: the KL strength > 0 (IPO-MD's τ).
      steps: gradient steps per run.
      lr: the step size.
      progress: show a progress bar (one tick per mixture).

    Returns:
      the :class:`RPSResult`.
    """
    from .dynamics import exact_dynamics  # JAX: imported only when running
    from .policy import geometric_mixture

    game = PreferenceGame(P, None, beta)
    steps = check_int("steps", steps, 1)
    if steps > MAX_STEPS:
        raise ValidationError(f"steps must be at most {MAX_STEPS:.0e}, got {steps}")
    if isinstance(mixtures, (str, bytes)) or not hasattr(mixtures, "__iter__"):
        raise ValidationError(f"mixtures must be a sequence of numbers in [0, 1], got {mixtures!r}")
    mixtures = [check_unit_interval("mixture", m) for m in mixtures]
    if not mixtures:
        raise ValidationError("mixtures: give at least one value in [0, 1]")
    nash = nash_equilibrium(game)
    starts = _starts(game.n_actions)
    # Record every step when steps is not a multiple of the thinning stride.
    stride = max(1, steps // (_KEEP - 1))
    every = stride if steps % stride == 0 else 1
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mixtures), desc="rps", unit="mixture", leave=False)
    runs: dict[str, MixtureRun] = {}
    for mixture in mixtures:
        fp = ipo_md_fixed_point(game, mixture)
        traj = exact_dynamics(
            "ipo_md", game, starts, steps=steps, lr=lr, mixture=mixture, record_every=every
        )
        pis = np.exp(traj.log_policies)
        idx = np.unique(np.linspace(0, pis.shape[1] - 1, _KEEP).round().astype(int))
        nash_gap = None
        if mixture < 1.0:
            g2 = PreferenceGame(game.P, game.ref, beta / (1.0 - mixture))
            mixed = geometric_mixture(fp.log_policy, game.log_ref, mixture)
            nash_gap = exploitability(g2, mixed)
        runs[f"{mixture:g}"] = MixtureRun(
            mixture=mixture,
            fixed_point=fp.policy,
            fixed_point_residual=fp.residual,
            trajectory_end=pis[:, -1],
            distance_to_fixed_point=np.max(np.abs(pis[:, -1] - fp.policy), axis=-1),
            trajectory_steps=traj.steps[idx],
            trajectories=pis[:, idx],
            mixture_nash_gap=nash_gap,
        )
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return RPSResult(
        matrix=game.P,
        beta=game.beta,
        ref=game.ref,
        nash_equilibrium=nash.policy,
        nash_duality_gap=nash.residual,
        steps=steps,
        lr=lr,
        starts=np.exp(starts),
        runs=runs,
    )


# -------------------------------------------------------------------------------- figure


def _to_xy(pi: NDArray) -> NDArray:
    """Affine projection of the 2-simplex onto an equilateral triangle."""
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    return pi @ corners


def plot(result: RPSResult) -> Figure:
    """The figure: trajectories on the simplex (n = 3) and distance to each fixed point.

    A ``matplotlib.figure.Figure`` made without pyplot: the user's backend is untouched.
    Its text keeps IPO-MD's notation: τ for ``beta``, β for ``mixture``.
    """
    from matplotlib import colormaps

    P = np.asarray(result.matrix)
    n = P.shape[0]
    runs = result.runs
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(runs)))
    fig = new_figure(figsize=(11, 4.8))
    ax, ax2 = fig.subplots(1, 2)
    if n == 3:
        tri = _to_xy(np.vstack([np.eye(3), np.eye(3)[:1]]))
        ax.plot(tri[:, 0], tri[:, 1], color="0.3", lw=1)
        names = ["rock", "scissors", "paper"] if np.allclose(P, RPS_MATRIX) else ["", "", ""]
        for i, (x, y) in enumerate(_to_xy(np.eye(3))):
            label = f"$y_{i + 1}$" + (f" ({names[i]})" if names[i] else "")
            ax.annotate(
                label,
                (x, y),
                ha="center",
                va="top" if y == 0 else "bottom",
                xytext=(0, -4 if y == 0 else 4),
                textcoords="offset points",
            )
        for c, (key, run) in zip(colours, runs.items(), strict=True):
            for s, tr in enumerate(np.asarray(run.trajectories)):
                xy = _to_xy(tr)
                ax.plot(
                    xy[:, 0],
                    xy[:, 1],
                    color=c,
                    lw=1,
                    alpha=0.85,
                    label=f"β = {key}" if s == 0 else None,
                )
            fx, fy = _to_xy(np.asarray(run.fixed_point))
            ax.plot(fx, fy, "o", color=c, mec="k", ms=6, zorder=5)
        nx, ny = _to_xy(np.asarray(result.nash_equilibrium))
        ax.plot(nx, ny, "*", color="crimson", mec="k", ms=14, zorder=6, label="regularised Nash")
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        ax.set_title(f"IPO-MD(β) trajectories, τ = {result.beta:g} (dots: fixed points)")
    else:
        # No 2-simplex: the probabilities over time from the first start, one line per
        # action and mixture (the mixture's colour), each fixed point dotted.
        styles = ["-", "--", "-.", ":"]
        for c, (key, run) in zip(colours, runs.items(), strict=True):
            steps = np.asarray(run.trajectory_steps)
            tr = np.asarray(run.trajectories)[0]
            for y in range(n):
                ax.plot(
                    steps,
                    tr[:, y],
                    color=c,
                    lw=1,
                    ls=styles[y % len(styles)],
                    label=(f"β = {key}" if y == 0 else None),
                )
                if n <= 10:
                    ax.annotate(
                        f"$y_{{{y + 1}}}$", (steps[-1], tr[-1, y]), fontsize=7, color=c,
                        xytext=(2, 0), textcoords="offset points", va="center",
                    )  # fmt: skip
        ax.set_xlabel("step")
        ax.set_ylabel(r"$\pi_t(y)$")
        ax.set_title(f"IPO-MD(β) probabilities over time, τ = {result.beta:g} ({n} actions)")
        ax.legend(frameon=False, fontsize=8)
    for c, (key, run) in zip(colours, runs.items(), strict=True):
        fp = np.asarray(run.fixed_point)
        steps = np.asarray(run.trajectory_steps)
        for s, tr in enumerate(np.asarray(run.trajectories)):
            dist = np.max(np.abs(tr - fp), axis=-1)
            ax2.semilogy(
                steps,
                np.maximum(dist, 1e-17),
                color=c,
                lw=1,
                label=f"β = {key}" if s == 0 else None,
            )
    ax2.set_xlabel("step")
    ax2.set_ylabel(r"$\max_y |\pi_t(y) - \pi^*_\beta(y)|$")
    ax2.set_title("distance to the IPO-MD(β) fixed point")
    ax2.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------- command line


def _matrix(text: str) -> NDArray[np.float64]:
    """``--matrix``: inline ("a,b;c,d" or JSON) or a file holding one (JSON or plain text),
    a valid preference matrix."""
    path = Path(text)
    if path.is_file():
        text = path.read_text()
    elif not any(ch.isdigit() for ch in text):
        raise ValidationError(f"--matrix: no such file and not a matrix: {text!r}")
    text = text.strip()
    try:
        if text.startswith("["):
            M = real_array("--matrix", json.loads(text))
        else:
            rows = [r for r in text.replace("\n", ";").split(";") if r.strip()]
            M = real_array(
                "--matrix", [[float(v) for v in r.replace(",", " ").split()] for r in rows]
            )
    except ValidationError as e:  # ragged, strings, complex: name what was read
        raise ValidationError(f"--matrix: cannot read a matrix of numbers ({e})") from None
    except RecursionError:  # JSON nested thousands deep
        raise ValidationError("--matrix: cannot read a matrix: nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise ValidationError(f"--matrix: cannot read a matrix of numbers ({e})") from None
    try:
        PreferenceGame(M)
    except ValidationError as e:
        hint = ""
        if "P + P.T" in str(e):
            near = np.round(nearest_preference_matrix(M), 12).tolist()
            hint = f"; the nearest valid matrix is the projection (M + 1 − Mᵀ)/2 = {near}"
        raise ValidationError(f"--matrix: {e}{hint}") from None
    return M


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m bandit.rps",
        description="IPO-MD App. F: IPO-MD(β) dynamics on a rock-paper-scissors preference "
        "game, with the fixed points and the regularised Nash equilibrium.",
    )
    p.add_argument(
        "--mixture",
        nargs="+",
        type=comma_list(float_in(0.0, 1.0)),
        default=[DEFAULT_MIXTURES],
        help="mixture values (IPO-MD's β) in [0, 1], space- or comma-separated "
        "(default 0 0.25 0.5 0.75 1)",
    )
    p.add_argument(
        "--beta",
        type=positive_float,
        default=0.1,
        help="KL strength (IPO-MD's τ) > 0 (default 0.1)",
    )
    p.add_argument(
        "--matrix",
        help="preference matrix P (P[i,j] = p(y_i ≻ y_j), P + Pᵀ = 1), inline "
        "'0.5,0.85,0.1;0.15,0.5,0.85;0.9,0.15,0.5' or a JSON/text file "
        "(default: the nearest valid matrix to IPO-MD App. F's)",
    )
    p.add_argument("--steps", type=positive_int, default=4000, help="gradient steps (default 4000)")
    p.add_argument("--lr", type=positive_float, default=0.01, help="step size (default 0.01)")
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default figures/)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write rps.png, rps.pdf and rps.json."""
    args = _parser().parse_args(argv)
    result = compute(
        RPS_MATRIX if args.matrix is None else _matrix(args.matrix),
        mixtures=[m for values in args.mixture for m in values],
        beta=args.beta,
        steps=args.steps,
        lr=args.lr,
        progress=True,
    )
    save_outputs(args.out, "rps", plot(result), result.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main)())
