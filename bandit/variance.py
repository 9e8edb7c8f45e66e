"""Exact covariance of every method's minibatch gradient (IPO-MD App. E, generalised).

A method's minibatch gradient at logits θ is the mean of per-sample gradients,
g_B = (1/B) Σ_{i≤B} ∇_θ ℓ(θ; ξ_i), ξ_i = (x, y, y', label) drawn i.i.d. (with replacement)
from the method's sampling law: ρ(x)·q(y, y'|x)·p(y ≻ y'|x)^label·(1 − p)^(1 − label), with
q = μ1 ⊗ μ2 offline or the (stop-gradient) policy/mixture laws online
(:func:`bandit.expected.pair_weights`). A tabular problem has finitely many categories ξ,
so every moment is a finite sum:

    ḡ = Σ_ξ P(ξ) ∇ℓ(ξ),   Cov_B = (Σ_ξ P(ξ) ∇ℓ(ξ)∇ℓ(ξ)ᵀ − ḡ ḡᵀ) / B,

with the per-category gradients ∇ℓ(ξ) from JAX (reverse mode over all categories at once)
of the shared per-pair losses (:func:`bandit.expected.pair_losses`, hard labels: every
preference loss is linear in p, so the minibatch mean with p̂ — the trainer's
:func:`bandit.expected.count_loss` — is the mean of the hard-label losses). ḡ equals the
exact expected gradient (:func:`bandit.expected_loss_and_grad`). The trainer draws batches
*without* replacement from a finite dataset; with replacement is the B/N → 0 limit (a
finite-population factor (N − B)/(N − 1) ≈ 0.95 for Fig. 1's N = 10⁴, B = 512).

Also here (``python -m bandit.variance``, writing variance.{png,pdf,json}):

- tr Cov_B along the exact trajectory of Fig. 1 (the trainer's noise-free Adam flow on the
  exact expected gradient of every minibatch, :func:`bandit.trainer.expected_minibatches`);
- tr Cov_B under a reward shift R → R + c: the baseline-free policy gradient's grows like c²
  (its per-sample gradient is affine in c), the contrastive and baselined ones do not move;
- IPO-MD Prop. E.1: its sufficient condition (Eq. 14) per logit along the same trajectory,
  with the exact variances of the contrastive and non-contrastive estimators of App. E.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import losses as L
from .cli import ArgumentParser, cli, int_at_least, method_list, positive_float, positive_int
from .figure1 import Figure1Config
from .methods import OFFLINE_METHODS, Method, Pair, get_method
from .outputs import json_text, jsonable, new_figure, save_outputs
from .precision import float64
from .problems import Bandit, OfflineData, PreferenceGame
from .validation import ValidationError, check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SELF_PLAY",
    "GradientCovariance",
    "VarianceResult",
    "compute",
    "gradient_covariance",
    "main",
    "plot",
    "prop_e1",
]

Array = Any


def _self_play(c: Pair) -> Array:
    # ĝ_non-contrastive of IPO-MD App. E: −∇log π(y)·sg(p − ½ − τh(y) + τh(y')), which is
    # Nash-MD-PG's loss with the preference shifted by the constant τ·sg(h(y')).
    h1, h2 = c.logratio
    return L.nash_md_pg_loss(h1, c.preference + c.beta * L.stop_gradient(h2), c.beta)


#: The non-contrastive estimator of IPO-MD App. E (self-play), y, y' ∼ sg[π]: same
#: expectation as online IPO's contrastive one up to the factor 4/τ (Prop. 4.2).
SELF_PLAY = Method("self_play", _self_play, "preference", "policy", "IPO-MD App. E")


# ----------------------------------------------------------------------- exact moments


@dataclass(frozen=True, eq=False)
class GradientCovariance:
    """Exact moments of one method's minibatch gradient at one policy.

    Attributes:
      method: the method's name.
      batch_size: B.
      mean: ḡ, shape (X, n): the exact expected gradient.
      covariance: Cov_B = Cov_1/B, shape (X·n, X·n) over the flattened logits.
    """

    method: str
    batch_size: int
    mean: NDArray[np.float64]
    covariance: NDArray[np.float64]

    @property
    def trace(self) -> float:
        """tr Cov_B = E‖g_B − ḡ‖²."""
        return float(np.trace(self.covariance))

    @property
    def variance(self) -> NDArray[np.float64]:
        """Var of each logit's component, shape (X, n)."""
        return np.diag(self.covariance).reshape(self.mean.shape)


def _categories(m: Method, kw: dict, logits: Array, tab: Any, joint: Any, labels: str):
    """(P(ξ), ∇ℓ(ξ)) over all categories ξ: shapes (K,), (K, X·n)."""
    import jax
    import jax.numpy as jnp

    from .expected import pair_losses, pair_weights

    w = pair_weights(m, logits, tab, joint, **kw)
    if m.signal == "preference" and labels == "sampled":
        p = jnp.asarray(tab.pref)
        weights = jnp.stack([w * (1.0 - p), w * p], axis=-1)  # label 0, label 1

        def losses(th: Array) -> Array:
            lose = pair_losses(m, th, tab, pref=jnp.zeros_like(p), **kw)
            win = pair_losses(m, th, tab, pref=jnp.ones_like(p), **kw)
            return jnp.stack([lose, win], axis=-1).ravel()
    else:  # reward methods, or preferences entering as p itself (IPO-MD App. E)
        weights = w

        def losses(th: Array) -> Array:
            return pair_losses(m, th, tab, **kw).ravel()

    G = jax.jacrev(losses)(logits).reshape(weights.size, -1)
    wf = weights.ravel()
    # Categories of probability 0 may hold infinite losses (a pair off the support): drop.
    G = jnp.where((wf > 0)[:, None], G, 0.0)
    return wf, G


@cache
def _moments_fn(m: Method, labels: str, items: tuple):
    """Jitted (logits, tab, joint) -> (ḡ, Cov_1), vmapped over leading logits axes."""
    import jax
    import jax.numpy as jnp

    kw = dict(items)

    def one(logits, tab, joint):
        wf, G = _categories(m, kw, logits, tab, joint, labels)
        mean = wf @ G
        second = (G * wf[:, None]).T @ G
        return mean.reshape(logits.shape), second - jnp.outer(mean, mean)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


@float64
def _moments(prep: Any, logits: NDArray, labels: str) -> tuple[NDArray, NDArray]:
    """ḡ (S, X, n) and Cov_1 (S, X·n, X·n) at a batch of logits (S, X, n)."""
    import jax.numpy as jnp

    from .expected import device_tables

    tab, joint = device_tables(prep)
    fn = _moments_fn(prep.method, labels, tuple(sorted(prep.params.items())))
    mean, cov = fn(jnp.asarray(logits, dtype=jnp.float64), tab, joint)
    return np.asarray(mean), np.asarray(cov)


def _labels(labels: str) -> str:
    if labels not in ("sampled", "expected"):
        raise ValidationError(f"labels must be 'sampled' or 'expected', got {labels!r}")
    return labels


def gradient_covariance(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    logits: ArrayLike,
    data: OfflineData | tuple | None = None,
    *,
    batch_size: int = 1,
    labels: str = "sampled",
    preferences: ArrayLike | None = None,
    **params: Any,
) -> GradientCovariance:
    """Exact mean and covariance of ``method``'s minibatch gradient at ``logits``.

    Args:
      method: any method (offline, online, or a :class:`~bandit.methods.Method`).
      problem: a :class:`Bandit` (contextual or not) or :class:`PreferenceGame`.
      logits: θ, shape (X, n) (or (n,) for one prompt).
      data: ``OfflineData`` for offline methods.
      batch_size: B, the number of i.i.d. samples (with replacement) per minibatch.
      labels: ``"sampled"``: each pair carries a Bernoulli(p(y ≻ y')) label (the trainer's
        minibatches); ``"expected"``: the loss sees p itself (IPO-MD App. E).
      preferences: p(y ≻ y'|x) overriding Bradley–Terry on R.
      **params: the method's parameters.
    Returns:
      A :class:`GradientCovariance`; ``mean`` equals the exact expected gradient.
    """
    from .prepare import prepare

    prep = prepare(method, problem, data, preferences=preferences, **params)
    th = prep.logits("logits", logits)
    B = check_int("batch_size", batch_size, 1)
    mean, cov = _moments(prep, th[None], _labels(labels))
    return GradientCovariance(prep.method.name, B, mean[0].reshape(np.shape(logits)), cov[0] / B)


def covariance_traces(
    method: str | Method,
    problem: Bandit,
    log_policies: ArrayLike,
    data: OfflineData | None = None,
    *,
    batch_size: int = 1,
    labels: str = "sampled",
    **params: Any,
) -> NDArray[np.float64]:
    """tr Cov_B at each of a batch of policies (S, X, n) in one compiled call: (S,)."""
    from .prepare import prepare

    prep = prepare(method, problem, data, **params)
    lp = np.asarray(log_policies, dtype=np.float64)
    if lp.ndim != 3 or lp.shape[1:] != prep.shape:
        raise ValidationError(f"log_policies must have shape (S, {prep.shape}), got {lp.shape}")
    B = check_int("batch_size", batch_size, 1)
    _, cov = _moments(prep, lp, _labels(labels))
    return np.trace(cov, axis1=1, axis2=2) / B


# ------------------------------------------------------------------------------ Prop. E.1


@dataclass(frozen=True, eq=False)
class PropE1:
    """IPO-MD Prop. E.1 along policies (T of them), per prompt x and logit y.

    Attributes:
      condition: (T, X, n) E_{x∼ρ, y,y'∼π}[∂log π(y) ∂log π(y') f(y, y')²] per logit (Eq. 14),
        f = p(y ≻ y') − ½ − τ h(y) + τ h(y').
      holds: (T, X, n) Eq. (14) ≥ 0.
      var_contrastive: (T, X, n) Var of ĝ_contrastive = (τ/4)·(online IPO's sample gradient).
      var_non_contrastive: (T, X, n) Var of ĝ_non-contrastive (:data:`SELF_PLAY`).
      violations: how many (t, x, y) have Eq. (14) but Var_c > Var_nc (Prop. E.1: none).
    """

    condition: NDArray[np.float64]
    holds: NDArray[np.bool_]
    var_contrastive: NDArray[np.float64]
    var_non_contrastive: NDArray[np.float64]
    violations: int

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@float64
def _eq14(log_pi: Array, tab: Any) -> Array:
    """Eq. (14) per prompt and logit, at log-policies (T, X, n), by JAX (score: jacobian of
    log-softmax in the logits)."""
    import jax
    import jax.numpy as jnp

    def one(lp):
        s = jax.vmap(jax.jacrev(jax.nn.log_softmax))(lp)  # (X, n_y, n_logit)
        h = lp - tab.log_ref
        f = tab.pref - 0.5 - tab.beta * (h[:, :, None] - h[:, None, :])
        pi = jnp.exp(lp)
        w = pi[:, :, None] * pi[:, None, :]
        # x ∼ ρ too: Eq. (14) as an expectation over the whole sample (x, y, y').
        return tab.rho[:, None] * jnp.einsum("xij,xia,xja->xa", w * f**2, s, s)

    return jax.jit(jax.vmap(one))(jnp.asarray(log_pi))


def prop_e1(bandit: Bandit, log_policies: ArrayLike) -> PropE1:
    """Prop. E.1 at each policy of ``log_policies`` (T, X, n), on the Bradley–Terry game of
    ``bandit`` (τ = β): Eq. (14) and the two estimators' exact variances (labels = p)."""
    from .prepare import prepare

    lp = np.asarray(log_policies, dtype=np.float64)
    prep_c = prepare("online_ipo", bandit)
    prep_nc = prepare(SELF_PLAY, bandit)
    tau = bandit.beta
    _, cov_c = _moments(prep_c, lp, "expected")
    _, cov_nc = _moments(prep_nc, lp, "expected")
    shape = lp.shape
    var_c = (tau / 4.0) ** 2 * np.diagonal(cov_c, axis1=1, axis2=2).reshape(shape)
    var_nc = np.diagonal(cov_nc, axis1=1, axis2=2).reshape(shape)
    cond = np.asarray(_eq14(lp, _device(prep_c)))
    holds = cond >= 0.0
    # Rounding: variances are sums of K = n² terms of size ~max var; 1e-12 relative slack.
    slack = 1e-12 * max(1.0, float(np.max(var_nc)))
    violations = int(np.sum(holds & (var_c > var_nc + slack)))
    return PropE1(cond, holds, var_c, var_nc, violations)


@float64
def _device(prep: Any) -> Any:
    from .expected import device_tables

    return device_tables(prep)[0]


# ---------------------------------------------------------------------------- experiment


@dataclass(frozen=True, eq=False)
class VarianceResult:
    """What :func:`compute` returns; ``to_dict()`` is variance.json.

    Attributes:
      config: the experiment (CoPG §5 by default).
      batch_size: B (the config's).
      epochs: the trajectory's length.
      trajectory_trace: per method, tr Cov_B at π after each epoch of the noise-free Fig. 1
        flow of that method, (epochs + 1,) from π_ref.
      shifts: the reward shifts c.
      shift_trace: per method, tr Cov_B at π_ref on the bandit with R + c, per c.
      prop_e1: Prop. E.1 along CoPG's flow, on the Bradley–Terry game with τ = β.
    """

    config: Figure1Config
    batch_size: int
    epochs: int
    trajectory_trace: Mapping[str, NDArray[np.float64]]
    shifts: NDArray[np.float64]
    shift_trace: Mapping[str, NDArray[np.float64]]
    prop_e1: PropE1

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "config": {**asdict(self.config), "methods": list(self.trajectory_trace)},
                "batch_size": self.batch_size,
                "epochs": self.epochs,
                "sampling": "i.i.d. with replacement; labels ~ Bernoulli(p(y ≻ y'))",
                "trajectory_trace": dict(self.trajectory_trace),
                "shifts": self.shifts,
                "shift_trace": dict(self.shift_trace),
                "prop_e1": self.prop_e1.to_dict(),
            }
        )

    def to_json(self) -> str:
        return json_text(self.to_dict())


def _shifted(bandit: Bandit, c: float) -> Bandit:
    return Bandit(bandit.rewards + c, bandit.ref, bandit.rho, bandit.beta)


def compute(
    config: Figure1Config | None = None,
    *,
    methods: Sequence[str] = OFFLINE_METHODS,
    epochs: int = 100,
    shift_max: float = 100.0,
    shifts: int = 21,
    progress: bool = False,
) -> VarianceResult:
    """Exact tr Cov_B along Fig. 1's noise-free flow and under reward shifts, and Prop. E.1.

    Args:
      config: the bandit, data and trainer setting (B = ``config.batch_size``).
      methods: offline methods.
      epochs: the flow's epochs.
      shift_max, shifts: the reward shifts c, ``shifts`` values evenly in [0, shift_max].
      progress: show a progress bar.
    """
    from .trainer import expected_minibatches, train_all

    config = config or Figure1Config()
    methods = list(dict.fromkeys(get_method(m).name for m in methods))
    for m in methods:
        if m not in OFFLINE_METHODS:
            raise ValidationError(
                f"methods: {m!r} is not offline; expected among {', '.join(OFFLINE_METHODS)}"
            )
    check_int("shifts", shifts, 2)
    bandit, data = config.problem()
    tc = config.train_config(check_int("epochs", epochs, 1))
    B = tc.batch_size
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=2 * len(methods) + 2, desc="variance", unit="step", leave=False)
    try:
        flow = train_all(
            methods,
            bandit,
            expected_minibatches(bandit, data, config=tc),
            learning_rate=tc.learning_rate,
        )
        if bar:
            bar.update(1)
        traj = {}
        for m in methods:
            traj[m] = covariance_traces(m, bandit, flow[m].log_policies[0], data, batch_size=B)
            if bar:
                bar.update(1)
        cs = np.linspace(0.0, float(shift_max), shifts)
        shift = {}
        for m in methods:
            shift[m] = np.array(
                [
                    covariance_traces(m, _shifted(bandit, c), bandit.log_ref[None], data,
                                      batch_size=B)[0]
                    for c in cs
                ]
            )  # fmt: skip
            if bar:
                bar.update(1)
        e1 = prop_e1(bandit, flow[methods[0]].log_policies[0])
        if bar:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return VarianceResult(config, B, epochs, traj, cs, shift, e1)


# -------------------------------------------------------------------------------- figure


def plot(result: VarianceResult) -> Figure:
    """tr Cov_B along the flow, under a reward shift, and Prop. E.1's two variances."""
    from .frontier import _LABELS

    fig = new_figure(figsize=(13.0, 4.0))
    a, b, c = fig.subplots(1, 3)
    for i, (m, tr) in enumerate(result.trajectory_trace.items()):
        a.plot(np.arange(tr.size), tr, color=f"C{i}", label=_LABELS.get(m, m))
        b.plot(result.shifts, result.shift_trace[m], color=f"C{i}", label=_LABELS.get(m, m))
    a.set_yscale("log")
    b.set_yscale("log")
    a.set_xlabel("epoch of the noise-free Fig. 1 flow")
    a.set_ylabel(rf"tr Cov$_B$ (exact, B = {result.batch_size})")
    a.set_title("(a) minibatch gradient variance along training", fontsize=9)
    b.set_xlabel(r"reward shift $c$ ($R \to R + c$), at $\pi_{ref}$")
    b.set_ylabel(r"tr Cov$_B$")
    b.set_title("(b) baseline-free PG grows like c²; contrastive methods do not", fontsize=9)
    b.legend(frameon=False, fontsize=7, loc="center right")
    e = result.prop_e1
    t = np.arange(e.var_contrastive.shape[0])
    c.plot(
        t, e.var_non_contrastive.sum(axis=(1, 2)), color="C3", label="non-contrastive (self-play)"
    )
    c.plot(t, e.var_contrastive.sum(axis=(1, 2)), color="C0", label="contrastive (online IPO)")
    frac = e.holds.mean(axis=(1, 2))
    c2 = c.twinx()
    c2.plot(t, frac, color="0.5", ls=":", label="share of logits with Eq. (14)")
    c2.set_ylim(-0.02, 1.02)
    c2.set_ylabel("share of logits where Eq. (14) holds", fontsize=8)
    c.set_xlabel("epoch (policies of CoPG's flow)")
    c.set_ylabel("Σ per-logit variance (one sample)")
    c.set_title(f"(c) IPO-MD Prop. E.1 ({e.violations} violations)", fontsize=9)
    c.legend(frameon=False, fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m bandit.variance",
        description="Exact covariance of every offline method's minibatch gradient "
        "(IPO-MD App. E generalised) along the Fig. 1 flow and under reward shifts.",
    )
    p.add_argument(
        "--methods",
        type=method_list(offline_only=True),
        default=OFFLINE_METHODS,
        help=f"comma-separated offline methods (default {','.join(OFFLINE_METHODS)})",
    )
    p.add_argument("--epochs", type=positive_int, default=100, help="epochs (default 100)")
    p.add_argument(
        "--shift-max",
        type=positive_float,
        default=100.0,
        help="largest reward shift c (default 100)",
    )
    p.add_argument(
        "--shifts",
        type=int_at_least(2),
        default=21,
        help="number of shifts in [0, max] (default 21)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default figures/)"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file in the figure1 format (batch_size is B)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write variance.png, variance.pdf and variance.json."""
    args = _parser().parse_args(argv)
    config = Figure1Config.load(args.config)
    config.problem()
    config.train_config(args.epochs)
    result = compute(
        config,
        methods=args.methods,
        epochs=args.epochs,
        shift_max=args.shift_max,
        shifts=args.shifts,
        progress=True,
    )
    save_outputs(args.out, "variance", plot(result), result.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main)())
