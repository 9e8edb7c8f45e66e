"""The claims of CoPG (Flet-Berliac et al. 2024, arXiv 2406.19185) as executable checks.

One side of each check comes from the shared definitions (:mod:`bandit.losses` through the
exact engine :mod:`bandit.expected`, differentiated by JAX); the other side is the paper's
formula written out here as printed (Eq. (5), Eq. (7), Eq. (9), the RLOO gradient of
App. A, J of Eq. (2)). Instances are contextual (prompts x with weights ρ(x)) as in App. A.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from bandit import losses as L
from bandit.exact import optimal_policy
from bandit.expected import pair_losses
from bandit.policy import log_softmax
from bandit.problems import OfflineData

from .checks import (
    E_GRAD,
    E_LOSS,
    engine,
    exact,
    jtables,
    offline_ipo_optimum,
    rel_err,
    scores,
    stationary_residual,
)
from .instances import BanditInstance
from .registry import Claim, register

__all__ = [
    "eq5_loss",
    "eq7_gradient",
    "eq9_pair_gradients",
    "rloo_pair_gradients",
    "value_J",
]

# Float64 rounding: every quantity below is a sum of at most X·n² ≤ 75 terms of size at
# most the instance's scale, each carrying a few ulps (2.2e-16), so two exact formulas
# agree to ~1e-13 relative; 1e-10 leaves a margin of 1000 and is still far below any
# effect the negative controls produce (≥ 1e-4 on these instances).
TOL = 1e-10
TOL_REASON = "float64: ≤75 summed terms × few ulps ≈ 1e-13 relative, ×1000 margin"


# ----------------------------------------------------------------------------- the paper's formulas


def eq5_loss(h1, h2, R1, R2, beta):
    """ℓ_CoPG(y, y'; π) of CoPG Eq. (5) as printed, to be *maximised*:

    (R_{β/2}(y) − R_{β/2}(y'))·h(y) + (R_{β/2}(y') − R_{β/2}(y))·h(y'),  h = log π/π_ref.
    """
    d = L.regularised_reward(R1, h1, beta / 2) - L.regularised_reward(R2, h2, beta / 2)
    return d * h1 - d * h2


def _h(theta, tab):
    return log_softmax(theta) - tab.log_ref


def _eq5_pairs(theta, tab, R1=None, R2=None, beta=None):
    """Eq. (5) on every pair (x, y, y'), shape (X, n, n)."""
    h = _h(theta, tab)
    R1 = tab.rewards[:, :, None] if R1 is None else R1
    R2 = tab.rewards[:, None, :] if R2 is None else R2
    return eq5_loss(h[:, :, None], h[:, None, :], R1, R2, tab.beta if beta is None else beta)


def value_J(theta, tab):
    """J(π) = E_{x∼ρ, y∼π}[R_β^π(x, y)] (CoPG Eq. 2 / Eq. 11), differentiable in θ."""
    lp = log_softmax(theta)
    Rb = L.regularised_reward(tab.rewards, lp - tab.log_ref, tab.beta)
    return jnp.sum(tab.rho[:, None] * jnp.exp(lp) * Rb)


def _Rb(theta, tab):
    return L.regularised_reward(tab.rewards, _h(theta, tab), tab.beta)


def eq7_gradient(theta, tab, mu1, mu2, baseline=None):
    """∇L of CoPG Eq. (7), written out:

    E_{x, y∼μ1}[(R_β(y) − E_{μ2}R_β)∇log π(y)] + E_{x, y'∼μ2}[(R_β(y') − E_{μ1}R_β)∇log π(y')].

    ``baseline`` (X,) replaces both contrastive baselines (the negative control).
    """
    Rb = _Rb(theta, tab)
    b2 = jnp.sum(mu2 * Rb, -1) if baseline is None else baseline
    b1 = jnp.sum(mu1 * Rb, -1) if baseline is None else baseline
    w = tab.rho[:, None] * (mu1 * (Rb - b2[:, None]) + mu2 * (Rb - b1[:, None]))
    return jnp.einsum("xy,xyab->ab", w, scores(theta))


def eq9_pair_gradients(theta, tab):
    """∇ℓ_CoPG(y, y') of CoPG Eq. (9), written out, for every pair: shape (X, n, n, X, n).

    (R_β(y) − R_β(y'))·∇log π(y) + (R_β(y') − R_β(y))·∇log π(y').
    """
    Rb, s = _Rb(theta, tab), scores(theta)
    d = Rb[:, :, None] - Rb[:, None, :]
    return d[..., None, None] * (s[:, :, None] - s[:, None, :])


def rloo_pair_gradients(theta, tab, leave_one_out: bool = True):
    """The k = 2 RLOO sample gradient of CoPG App. A, written out, for every pair (y1, y2):

    Σ_j (R_β(y_j) − (1/(k−1)) Σ_{l≠j} R_β(y_l))·∇log π(y_j).

    ``leave_one_out=False`` uses the mean over all k samples (the negative control).
    """
    Rb, s = _Rb(theta, tab), scores(theta)
    R1, R2 = Rb[:, :, None], Rb[:, None, :]
    b1, b2 = (R2, R1) if leave_one_out else ((R1 + R2) / 2, (R1 + R2) / 2)
    return (R1 - b1)[..., None, None] * s[:, :, None] + (R2 - b2)[..., None, None] * s[:, None, :]


def _engine_pair_grads(method, theta, tab, **params):
    """Per-pair gradients of the shared loss: jacobian of pair_losses, (X, n, n, X, n)."""
    return jax.jacobian(lambda t: pair_losses(method, t, tab, **params))(theta)


def _joint(mu1, mu2):
    return mu1[:, :, None] * mu2[:, None, :]


def _engine_grad(method, theta, tab, joint=None, k=2):
    """Gradient of the exact expected loss of the shared engine (traceable)."""
    return E_GRAD(theta, tab, joint, jnp.float64(0.0), method, k, 0.2)


def _scale(inst: BanditInstance, log_pi) -> float:
    """Size of R_β on the instance: the gradients are sums of R_β-differences × scores."""
    b = inst.bandit
    h = np.asarray(log_pi) - b.log_ref
    return 1.0 + float(np.max(np.abs(b.rewards))) + b.beta * float(np.max(np.abs(h)))


# ----------------------------------------------------------------------------- Eq. (15c)


@partial(jax.jit, static_argnums=2)
def _eq15c_core(th, tab, halve):
    lhs = _eq5_pairs(th, tab, beta=tab.beta if halve else 2 * tab.beta)
    dR = tab.rewards[:, :, None] - tab.rewards[:, None, :]
    return lhs, dR**2 / (2 * tab.beta) - pair_losses("copg", th, tab)


@exact
def _eq15c(inst: BanditInstance, halve: bool = True) -> float:
    return rel_err(*_eq15c_core(jnp.asarray(inst.logits), jtables(inst.bandit), halve))


register(
    Claim(
        "copg.eq15c",
        "CoPG",
        "Eq. (15c)",
        "ℓ_CoPG(y,y') = ΔR²/(2β) − (R_β(y) − R_β(y'))²/(2β): Eq. (5) is a concave square",
        "bandit",
        _eq15c,
        TOL,
        TOL_REASON,
        lambda i: _eq15c(i, halve=False),
        "Eq. (5) with R_β in place of R_{β/2}",
    )
)


# ----------------------------------------------------------------------------- Thm 1


@exact
def _thm1(inst: BanditInstance, method: str = "copg", mu1=None, mu2=None) -> float:
    lp = optimal_policy(inst.bandit)
    data = OfflineData(inst.mu1 if mu1 is None else mu1, inst.mu2 if mu2 is None else mu2)
    return stationary_residual(
        method, inst.bandit, data, lp, _scale(inst, lp), unique=method == "copg"
    )


register(
    Claim(
        "copg.thm1",
        "CoPG",
        "Thm 1",
        "μ1 ≠ μ2, common full support: π* ∝ π_ref exp(R/β) is the unique maximiser of L",
        "bandit",
        _thm1,
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = per-prompt shifts only",
        lambda i: _thm1(i, method="pg_value"),
        "naive off-policy PG with the value baseline (§5) is not stationary at π*",
    )
)


def _point_mass(inst: BanditInstance, a: int = 0) -> np.ndarray:
    e = np.zeros_like(inst.mu1)
    e[:, a] = 1.0
    return e


register(
    Claim(
        "copg.thm1.graph",
        "CoPG",
        "Thm 1 (weaker condition)",
        "π* is still the unique maximiser when μ1 = δ_a (supports differ) and μ2 has full "
        "support: what is needed is a connected pair graph over supp π_ref",
        "bandit",
        lambda i: _thm1(i, mu1=_point_mass(i)),
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = per-prompt shifts only",
        lambda i: _thm1(i, mu1=_point_mass(i), mu2=_point_mass(i)),
        "μ1 = μ2 = δ_a: pair graph disconnected, maximiser not unique (Hessian singular)",
    )
)


def _drop_action(mu: np.ndarray, a: int = 0) -> np.ndarray:
    m = mu.copy()
    m[:, a] = 0.0
    return m / m.sum(-1, keepdims=True)


@exact
def _thm1_support(inst: BanditInstance, broken: bool = True) -> float:
    """Without common support the maximiser is not unique: move mass on an action a that
    neither μ1 nor μ2 covers; L does not change and its gradient stays zero."""
    b = inst.bandit
    mu1, mu2 = (_drop_action(inst.mu1), _drop_action(inst.mu2)) if broken else (inst.mu1, inst.mu2)
    data, tab = OfflineData(mu1, mu2), jtables(b)
    star = optimal_policy(b)
    p0 = np.exp(star[:, 0])
    # Rescale the other actions by (1 − p0/2)/(1 − p0), in log space: with large R/β,
    # 1 − p0 rounds to 0 while log(1 − p0) = logsumexp(log π* of the others) stays finite.
    log_rest = scipy.special.logsumexp(star[:, 1:], axis=-1)
    alt = star + (np.log1p(-p0 / 2) - log_rest)[:, None]
    alt[:, 0] = star[:, 0] - np.log(2.0)  # halve π(a): a different policy, TV = π*(a)/2 > 0
    scale = _scale(inst, alt)
    dL = engine(E_LOSS, "copg", alt, tab, data) - engine(E_LOSS, "copg", star, tab, data)
    g = jnp.max(jnp.abs(engine(E_GRAD, "copg", alt, tab, data)))
    return max(abs(float(dL)), float(g)) / scale


register(
    Claim(
        "copg.thm1.support",
        "CoPG",
        "Thm 1 (without common support)",
        "if μ1(a) = μ2(a) = 0 < π_ref(a), every π equal to π* up to π(a) also maximises L: "
        "the maximiser is not unique",
        "bandit",
        _thm1_support,
        TOL,
        TOL_REASON,
        lambda i: _thm1_support(i, broken=False),
        "the same alternative policy under the common (full) support loses L",
    )
)


# ----------------------------------------------------------------------------- Eq. (7)


@partial(jax.jit, static_argnums=4)
def _eq7_core(th, tab, mu1, mu2, wrong_baseline):
    base = None
    if wrong_baseline:  # the value E_π[R_β], "the baseline most often used" (§5)
        base = jnp.sum(jnp.exp(log_softmax(th)) * _Rb(th, tab), -1)
    lhs = -_engine_grad("copg", th, tab, _joint(mu1, mu2))
    rhs = eq7_gradient(th, tab, mu1, mu2, base)
    # The μ1 = μ2 = μ form: ∇L = 2 E_μ[(R_β(y) − E_μ R_β) ∇log π(y)].
    lhs_same = -_engine_grad("copg", th, tab, _joint(mu1, mu1))
    Rb = _Rb(th, tab)
    b = jnp.sum(mu1 * Rb, -1) if base is None else base
    w = 2 * tab.rho[:, None] * mu1 * (Rb - b[:, None])
    return lhs, rhs, lhs_same, jnp.einsum("xy,xyab->ab", w, scores(th))


@exact
def _eq7(inst: BanditInstance, wrong_baseline: bool = False) -> float:
    a, b, c, d = _eq7_core(
        jnp.asarray(inst.logits),
        jtables(inst.bandit),
        jnp.asarray(inst.mu1),
        jnp.asarray(inst.mu2),
        wrong_baseline,
    )
    return max(rel_err(a, b), rel_err(c, d))


register(
    Claim(
        "copg.eq7",
        "CoPG",
        "Eq. (7)",
        "∇L = E_μ1[(R_β(y) − E_μ2 R_β)∇log π(y)] + E_μ2[(R_β(y') − E_μ1 R_β)∇log π(y')]",
        "bandit",
        _eq7,
        TOL,
        TOL_REASON,
        lambda i: _eq7(i, wrong_baseline=True),
        "the value baseline E_π[R_β] in place of the contrastive baselines",
    )
)


# ----------------------------------------------------------------------------- Eq. (9), Alg. 1


@partial(jax.jit, static_argnums=2)
def _eq9_core(th, tab, stop_weights):
    if stop_weights:  # forget that R_{β/2} depends on π (the paper's warning, App. A)

        def pairs(t):
            h = _h(t, tab)
            h1, h2 = h[:, :, None], h[:, None, :]
            R1, R2 = tab.rewards[:, :, None], tab.rewards[:, None, :]
            d = jax.lax.stop_gradient(
                L.regularised_reward(R1, h1, tab.beta / 2)
                - L.regularised_reward(R2, h2, tab.beta / 2)
            )
            return d * h1 - d * h2

        autodiff = jax.jacobian(pairs)(th)
    else:
        autodiff = jax.jacobian(lambda t: _eq5_pairs(t, tab))(th)
    alg1 = -_engine_pair_grads("copg", th, tab)  # −∇(R_β(y) − R_β(y'))²/(2β)
    return autodiff, eq9_pair_gradients(th, tab), alg1


@exact
def _eq9(inst: BanditInstance, stop_weights: bool = False) -> float:
    a, b, c = _eq9_core(jnp.asarray(inst.logits), jtables(inst.bandit), stop_weights)
    return max(rel_err(a, b), rel_err(a, c))


register(
    Claim(
        "copg.eq9",
        "CoPG",
        "Eq. (9), Alg. 1",
        "∇ℓ_CoPG(y,y') = (R_β(y) − R_β(y'))(∇log π(y) − ∇log π(y')) "
        "= −(1/(2β))∇(R_β(y) − R_β(y'))², per pair",
        "bandit",
        _eq9,
        TOL,
        TOL_REASON,
        lambda i: _eq9(i, stop_weights=True),
        "∇ of Eq. (5) with its weights R_{β/2} held fixed (stop-gradient)",
    )
)


# ----------------------------------------------------------------------------- Prop. 1


@jax.jit
def _prop1_core(th, tab, joint):
    two_grad_J = 2 * jax.grad(value_J)(th, tab)
    # The engine's on-policy RLOO(k = 2) has the same expected gradient (Prop. 2).
    rloo = -_engine_grad("rloo", th, tab, k=2)
    return -_engine_grad("copg", th, tab, joint), two_grad_J, rloo


@exact
def _prop1(inst: BanditInstance, off_policy: bool = False) -> float:
    th = jnp.asarray(inst.logits)
    pi = jnp.exp(log_softmax(th))
    joint = _joint(jnp.asarray(inst.mu1), jnp.asarray(inst.mu2)) if off_policy else _joint(pi, pi)
    copg, two_grad_J, rloo = _prop1_core(th, jtables(inst.bandit), joint)
    return max(rel_err(copg, two_grad_J), 0.0 if off_policy else rel_err(rloo, two_grad_J))


register(
    Claim(
        "copg.prop1",
        "CoPG",
        "Prop. 1",
        "E_{y,y'∼π}[∇ℓ_CoPG(y,y')] = 2∇J(π)",
        "bandit",
        _prop1,
        TOL,
        TOL_REASON,
        lambda i: _prop1(i, off_policy=True),
        "pairs from μ1 ⊗ μ2 ≠ π ⊗ π",
    )
)


# ----------------------------------------------------------------------------- Prop. 2


@partial(jax.jit, static_argnums=2)
def _prop2_core(th, tab, leave_one_out):
    shared = -_engine_pair_grads("rloo", th, tab, k=2)
    return shared, rloo_pair_gradients(th, tab, leave_one_out), eq9_pair_gradients(th, tab)


@exact
def _prop2(inst: BanditInstance, leave_one_out: bool = True) -> float:
    a, b, c = _prop2_core(jnp.asarray(inst.logits), jtables(inst.bandit), leave_one_out)
    return max(rel_err(a, b), rel_err(b, c))


register(
    Claim(
        "copg.prop2",
        "CoPG",
        "Prop. 2",
        "the sample gradient ∇ℓ_CoPG(y,y') is exactly the RLOO (k = 2) gradient, per pair",
        "bandit",
        _prop2,
        TOL,
        TOL_REASON,
        lambda i: _prop2(i, leave_one_out=False),
        "RLOO with the mean over all k samples (not leave-one-out) as baseline",
    )
)


# ----------------------------------------------------------------------------- Prop. 3


@jax.jit
def _prop3_core(th, tab, r, coef):
    beta = tab.beta
    X, n = th.shape
    R1, R2 = jnp.full((X, n, n), r), jnp.full((X, n, n), -r)
    lhs = jax.jacobian(lambda t: _eq5_pairs(t, tab, R1, R2))(th)

    def sq(t):
        h = _h(t, tab)
        return (0.5 - beta * (h[:, :, None] - h[:, None, :])) ** 2

    def ipo(t):
        h = _h(t, tab)
        return L.ipo_loss(h[:, :, None], h[:, None, :], 1.0, beta)

    rhs_sq = -(coef / beta) * jax.jacobian(sq)(th)
    rhs_ipo = -(beta * coef) * jax.jacobian(ipo)(th)
    return lhs, rhs_sq, rhs_ipo


@exact
def _prop3(inst: BanditInstance, r: float = 0.25, coef: float = 0.5) -> float:
    """R(y) = r = −R(y') for the preferred y (first of the pair); compare ∇ℓ_CoPG with
    −(coef/β)∇(½ − βΔh)² and with −(β·coef)∇ℓ_IPO(τ = β), ℓ_IPO = (Δh − 1/(2β))²."""
    args = (jnp.asarray(inst.logits), jtables(inst.bandit), jnp.float64(r), jnp.float64(coef))
    lhs, rhs_sq, rhs_ipo = _prop3_core(*args)
    return max(rel_err(lhs, rhs_sq), rel_err(lhs, rhs_ipo))


register(
    Claim(
        "copg.prop3",
        "CoPG",
        "Prop. 3",
        "with R(y) = −R(y') = +1/4 (y preferred): ∇ℓ_CoPG = −(1/(2β))∇(½ − βΔh)² "
        "= −(β/2)∇ℓ_IPO(τ = β)",
        "bandit",
        _prop3,
        TOL,
        TOL_REASON,
        lambda i: _prop3(i, coef=1.0),
        "the constant −1/β (a dropped ½)",
        printed=lambda i: _prop3(i, r=-0.25),
        correction="the printed statement lacks the ∇ on the right-hand side, and its proof "
        "sets R(y) = −R(y') = −1/4 (sign flipped); with +1/4 and the ∇ it holds, and "
        "(½ − βΔh)² = β²·ℓ_IPO(τ = β)",
    )
)


# ----------------------------------------------------------------------------- §5 and IPO


@exact
def _sec5(inst: BanditInstance, mu_data2=None, mu_formula=None, temp: float = 1.0) -> float:
    """Offline IPO on Bradley–Terry preferences σ(R(y) − R(y')) with pairs y ∼ μ1 and
    y' ∼ μ2 (μ2 = μ1 unless given) is stationary and unique at
    π ∝ π_ref exp(E_{y'∼μ}[σ(R(y) − R(y'))]/β) (μ = μ1 unless ``mu_formula``)."""
    from scipy.special import expit

    b = inst.bandit
    mu2 = inst.mu1 if mu_data2 is None else mu_data2
    mu = inst.mu1 if mu_formula is None else mu_formula
    pref = expit(b.rewards[:, :, None] - b.rewards[:, None, :])
    lp = offline_ipo_optimum(b.log_ref, pref, mu, temp * b.beta)
    scale = 1.0 + float(np.max(np.abs(lp - b.log_ref))) + 1.0 / b.beta
    return stationary_residual("ipo", b, OfflineData(inst.mu1, mu2), lp, scale)


register(
    Claim(
        "copg.sec5.ipo",
        "CoPG",
        "§5",
        "with i.i.d. pairs y, y' ∼ μ (μ1 = μ2 = μ), IPO maximises "
        "E_{y∼π, y'∼μ}[σ(R(y) − R(y'))] − β KL(π‖π_ref)",
        "bandit",
        _sec5,
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = per-prompt shifts only",
        lambda i: _sec5(i, temp=2.0),
        "the optimum at temperature 2β",
        printed=lambda i: _sec5(i, mu_data2=i.mu2, mu_formula=i.mu2),
        correction="§5 states it for the toy's μ1 ≠ μ2 with y' ∼ μ2: then it fails (IPO fits "
        "h(y) − h(y') to (p − ½)/β with weights μ1(y)μ2(y') + μ2(y)μ1(y')); it holds "
        "when μ1 = μ2",
    )
)
