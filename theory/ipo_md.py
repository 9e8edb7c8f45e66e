"""The claims of IPO-MD (Calandriello et al. 2024, arXiv 2403.08635) as executable checks.

Expected gradients of the online and offline losses come from the shared engine
(:mod:`bandit.expected`, autodiff); the other side is the paper's formula written out here
(Eq. (7), the self-play direction of §4.2, g(y) of Prop. 5.1, Eq. (15) of Lemma G.3, the
closed form in the proof of Thm G.6). Equilibria come from the certified solvers of
:mod:`bandit.games`. The paper states its results without prompts, so instances are
single-prompt preference games with random valid preference matrices (P + Pᵀ = 1; the
matrix printed in App. F is not one).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit

from bandit.policy import geometric_mixture, log_softmax
from bandit.problems import OfflineData, PreferenceGame

from .checks import (
    E_GRAD,
    engine,
    exact,
    jtables,
    offline_ipo_optimum,
    rel_err,
    scores,
    stationary_residual,
)
from .instances import GameInstance, GaussianInstance
from .registry import Claim, register

__all__ = ["self_play_direction"]

TOL = 1e-10
TOL_REASON = "float64: ≤25 summed terms × few ulps ≈ 1e-13 relative, ×1000 margin"
# Solutions of Eq. (12)/(13) carry the solver's certified residual (≤ 1e-12 in log π,
# checked); the map's Jacobian τI − (1−β)PS has eigenvalues of real part ≥ τ ≥ 0.05, so
# log π is off by ≤ 20× that, and gradients by a further factor ≤ (1 + 1/τ): ≤ 1e-9.
FP_TOL = 1e-8
FP_REASON = "solver certificate ≤ 1e-12, × ‖J⁻¹‖ ≤ 1/τ ≤ 20, × Lipschitz ≤ 21: ≤ 1e-9"
CERT_MAX = 1e-11


def _scale(game: PreferenceGame, log_pi) -> float:
    """Size of the IPO targets: |h| and 1/(2τ) enter every pair's residual."""
    h = np.asarray(log_pi).reshape(-1) - game.log_ref
    return 1.0 + float(np.max(np.abs(h))) + 1.0 / game.beta


def _engine_grad(method, game, theta, data=None, *, mixture=0.0, tab=None):
    """Exact expected gradient of the shared engine w.r.t. the logits, shape (n,)."""
    tab = jtables(game) if tab is None else tab
    return engine(E_GRAD, method, theta, tab, data, mixture=mixture)[0]


def _certified(sol) -> None:
    if not sol.residual <= CERT_MAX:
        raise RuntimeError(f"solver certificate {sol.residual:.3g} above {CERT_MAX:g}")


# ----------------------------------------------------------------------------- Eq. (7)


@exact
def _eq7(inst: GameInstance, temp: float = 1.0) -> float:
    g = inst.game
    lp = offline_ipo_optimum(g.log_ref, g.P, inst.mu, temp * g.beta)
    return stationary_residual("ipo", g, OfflineData(inst.mu, inst.mu), lp, _scale(g, lp))


register(
    Claim(
        "ipo_md.eq7",
        "IPO-MD",
        "Eq. (7)",
        "offline IPO with pairs from μ ⊗ μ has the unique optimum π ∝ π_ref exp(p(y ≻ μ)/τ)",
        "game",
        _eq7,
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = shifts only",
        lambda i: _eq7(i, temp=2.0),
        "the optimum at temperature 2τ (for n = 2 the optimum does not depend on μ at all)",
    )
)


# ----------------------------------------------------------------------------- Prop. 4.1


@exact
def _prop41(inst: GameInstance, beta_factor: float = 1.0) -> float:
    from bandit.games import nash_equilibrium

    g = inst.game
    ne = nash_equilibrium(PreferenceGame(g.P, g.ref, beta_factor * g.beta))
    _certified(ne)
    lp = ne.log_policy
    return stationary_residual("online_ipo", g, None, lp, _scale(g, lp), unique=False)


register(
    Claim(
        "ipo_md.prop4.1",
        "IPO-MD",
        "Prop. 4.1",
        "the regularised Nash equilibrium of the game Eq. (9) is the stationary point of "
        "online IPO (Eq. 11)",
        "game",
        _prop41,
        FP_TOL,
        FP_REASON,
        lambda i: _prop41(i, beta_factor=2.0),
        "the Nash equilibrium of the game at temperature 2τ",
    )
)


# ----------------------------------------------------------------------------- Prop. 4.2


@partial(jax.jit, static_argnums=4)
def self_play_direction(theta, P, log_ref, beta, stop_opponent: bool = True):
    """∇_θ [E_{y∼π, y'∼SG[π]} p(y ≻ y') − τ KL(π‖π_ref)], IPO-MD §4.2, written out.

    ``beta`` is the KL strength τ.
    """

    def payoff(t):
        lp = log_softmax(t)
        pi = jnp.exp(lp)
        opp = jax.lax.stop_gradient(pi) if stop_opponent else pi
        return pi @ P @ opp - beta * jnp.sum(pi * (lp - log_ref))

    return jax.grad(payoff)(theta)


@exact
def _prop42(inst: GameInstance, stop_opponent: bool = True) -> float:
    g = inst.game
    lhs = _engine_grad("online_ipo", g, inst.logits)
    d = self_play_direction(
        jnp.asarray(inst.logits), jnp.asarray(g.P), jnp.asarray(g.log_ref), g.beta, stop_opponent
    )
    return rel_err(lhs, -(4.0 / g.beta) * d)


register(
    Claim(
        "ipo_md.prop4.2",
        "IPO-MD",
        "Prop. 4.2",
        "∇(online IPO loss, Eq. 11) = −(4/τ) × the self-play ascent direction: the same direction",
        "game",
        _prop42,
        TOL,
        TOL_REASON,
        lambda i: _prop42(i, stop_opponent=False),
        "self-play without the stop-gradient on the opponent",
    )
)


# ----------------------------------------------------------------------------- Prop. 5.1


def _pieces(inst: GameInstance):
    """π, π' = π^(1−β)π_ref^β, h, p(y ≻ π') and the scores ∇log π(y), shape (n, n)."""
    g = inst.game
    return _pieces_core(
        jnp.asarray(inst.logits), jnp.asarray(g.log_ref), jnp.asarray(g.P), inst.mixture
    )


@jax.jit
def _pieces_core(th, log_ref, P, mixture):
    lp = log_softmax(th)
    lmix = geometric_mixture(lp, log_ref, mixture)
    return jnp.exp(lp), jnp.exp(lmix), lp - log_ref, P @ jnp.exp(lmix), scores(th)


@exact
def _prop51_nash(inst: GameInstance, under_mixture: bool = False) -> float:
    g = inst.game
    pi, mix, h, p_mix, s = _pieces(inst)
    gy = (p_mix - g.beta * h)[:, None] * s  # g(y) as printed (without −½: E_π∇log π = 0)
    w = mix if under_mixture else pi
    rhs = -jnp.einsum("y,ya->a", w, gy)
    lhs = _engine_grad("nash_md_pg", g, inst.logits, mixture=inst.mixture)
    return rel_err(lhs, rhs)


register(
    Claim(
        "ipo_md.prop5.1.nash",
        "IPO-MD",
        "Prop. 5.1 (Nash-MD-PG)",
        "∇ Nash-MD-PG(β) = −E_{y∼π}[∇log π(y)(p(y ≻ π') − τ h(y))],  π' = π^(1−β)π_ref^β",
        "game",
        _prop51_nash,
        TOL,
        TOL_REASON,
        lambda i: _prop51_nash(i, under_mixture=True),
        "the expectation under π' instead of π",
    )
)


@exact
def _prop51_ipo_md(inst: GameInstance, variant: str = "corrected") -> float:
    g = inst.game
    _, mix, h, p_mix, s = _pieces(inst)
    A = p_mix - g.beta * h
    if variant == "corrected":  # centred under π'
        rhs = -(4.0 / g.beta) * jnp.einsum("y,ya->a", mix * (A - mix @ A), s)
    elif variant == "uncentred":  # the proof's g(y) with −½, assuming E_π'[∇log π] = 0
        rhs = -(4.0 / g.beta) * jnp.einsum("y,ya->a", mix * (A - 0.5), s)
    else:  # as printed: −(2/τ) E_π'[g(y)], g(y) = ∇log π(y)(p(y ≻ π') − τ h(y))
        rhs = -(2.0 / g.beta) * jnp.einsum("y,ya->a", mix * A, s)
    lhs = _engine_grad("ipo_md", g, inst.logits, mixture=inst.mixture)
    return rel_err(lhs, rhs)


register(
    Claim(
        "ipo_md.prop5.1.ipo_md",
        "IPO-MD",
        "Prop. 5.1 (IPO-MD)",
        "∇ IPO-MD(β) loss = −(4/τ) E_{y∼π'}[(A(y) − E_π'A)∇log π(y)],  A(y) = p(y ≻ π') − τ h(y)",
        "game",
        _prop51_ipo_md,
        TOL,
        TOL_REASON,
        lambda i: _prop51_ipo_md(i, "uncentred"),
        "the proof's g(y) (with −½) without centring under π', constant 4/τ",
        printed=lambda i: _prop51_ipo_md(i, "printed"),
        correction="printed: −(2/τ)E_π'[g(y)]. The proof's step E_{y∼π'}[∇log π(y)] = 0 is "
        "false for β > 0 (it is π' − π in the logits), so the advantage must be centred "
        "under π'; and the population loss's gradient is twice the proof's expression",
    )
)


# ----------------------------------------------------------------------------- Prop. 5.2


@exact
def _prop52(inst: GameInstance, beta_map=lambda beta, b: beta / (1 - b)) -> float:
    from bandit.games import ipo_md_fixed_point, nash_equilibrium

    g, b = inst.game, inst.mixture
    fp = ipo_md_fixed_point(g, b)
    _certified(fp)
    lp = fp.log_policy
    scale = _scale(g, lp)
    # Eq. (13): π*_β is stationary for both IPO-MD(β) and Nash-MD-PG(β).
    r1 = stationary_residual("ipo_md", g, None, lp, scale, unique=False, mixture=b)
    r2 = stationary_residual("nash_md_pg", g, None, lp, scale, unique=False, mixture=b)
    ne = nash_equilibrium(PreferenceGame(g.P, g.ref, beta_map(g.beta, b)))
    _certified(ne)
    mixed = geometric_mixture(lp, g.log_ref, b)
    return max(r1, r2, rel_err(mixed, ne.log_policy))


register(
    Claim(
        "ipo_md.prop5.2",
        "IPO-MD",
        "Prop. 5.2, Eq. (13)",
        "the IPO-MD(β) fixed point π*_β is stationary for IPO-MD(β) and Nash-MD-PG(β), and "
        "(π*_β)^(1−β)π_ref^β is the Nash equilibrium at temperature τ/(1−β)",
        "game",
        _prop52,
        FP_TOL,
        FP_REASON,
        lambda i: _prop52(i, beta_map=lambda beta, b: beta * (1 - b)),
        "the Nash equilibrium at temperature τ(1−β)",
    )
)


# ----------------------------------------------------------------------------- Prop. E.1


@partial(jax.jit, static_argnums=5)
def _propE1_core(pi, h, s, P, beta, flip_cov):
    """Exact moments over (y, y') ∼ π ⊗ π of the two estimators of App. E, per logit."""
    f = P - 0.5 - beta * (h[:, None] - h[None, :])  # f(y, y')
    w = pi[:, None] * pi[None, :]
    X1 = -s[:, None, :] * f[..., None]  # −∇log π(y) f(y, y'),   shape (n, n, n)
    X2 = s[None, :, :] * f[..., None]  # ∇log π(y') f(y, y')

    def E(z):
        return jnp.einsum("ij,ija->a", w, z)

    def var(z):
        return E(z**2) - E(z) ** 2

    gc = (X1 + X2) / 2
    cov = E(X1 * X2) - E(X1) * E(X2)
    cond = E(s[:, None, :] * s[None, :, :] * f[..., None] ** 2)  # Eq. (14), per logit
    c = E(s[:, None, :] * f[..., None])
    sign = 1.0 if flip_cov else -1.0
    pairs = (
        (var(gc), (var(X1) + cov) / 2),  # Var((X1+X2)/2) = ½(Var X1 + Cov)
        (cov, sign * cond - c**2),  # Cov(X1, X2) = −E[∇log π(y)∇log π(y') f²] − c²
        (E(X1), E(gc)),  # the same expectation
    )
    # The implication: where Eq. (14) holds the contrastive variance is not larger.
    gap = jnp.max(jnp.where(cond >= 0, var(gc) - var(X1), 0.0)) / jnp.maximum(1.0, jnp.max(var(X1)))
    return pairs, E(gc), gap


@exact
def _propE1(inst: GameInstance, flip_cov: bool = False) -> float:
    g = inst.game
    pi, _, h, _, s = _pieces(inst)
    pairs, mean_c, gap = _propE1_core(pi, h, s, jnp.asarray(g.P), g.beta, flip_cov)
    res = [rel_err(a, b) for a, b in pairs]
    # (4/τ)E[ĝ_contrastive] is the online IPO gradient (the constant of Prop. 4.2).
    res.append(rel_err((4.0 / g.beta) * mean_c, _engine_grad("online_ipo", g, inst.logits)))
    res.append(max(0.0, float(gap)))
    return max(res)


register(
    Claim(
        "ipo_md.propE1",
        "IPO-MD",
        "Prop. E.1",
        "Var(ĝ_c) = ½(Var ĝ_nc + Cov), Cov = −E[∇log π(y)∇log π(y')f²] − c²; so Eq. (14) "
        "⇒ Var(ĝ_contrastive) ≤ Var(ĝ_non-contrastive)",
        "game",
        _propE1,
        TOL,
        TOL_REASON,
        lambda i: _propE1(i, flip_cov=True),
        "Cov(X1, X2) with the sign of E[∇∇' f²] flipped",
    )
)


def _gaussian(inst: GaussianInstance, half: float = 0.5) -> float:
    """IPO-MD App. E.1: π_θ = N(θ, 1), p(y ≻ y') = 1{y ≥ y'}, no regularisation.

    Expectations over (y, y') ∼ N(θ, 1)² in rotated coordinates u = (y − y')/√2,
    v = (y + y' − 2θ)/√2 (independent standard normals): the indicator is 1{u ≥ 0}, the
    integrands are polynomials of degree ≤ 2 in v, so a 3-point Gauss–Hermite rule in v is
    exact and only the two half-lines in u need adaptive quadrature.
    """
    from scipy.integrate import quad
    from scipy.stats import norm

    th = inst.theta
    v, wv = np.polynomial.hermite_e.hermegauss(3)
    wv = wv / math.sqrt(2 * math.pi)

    def expect(fn):
        total = 0.0
        for lo, hi, ind in ((0.0, np.inf, 1.0), (-np.inf, 0.0, 0.0)):

            def integrand(u, ind=ind):
                y = th + (u + v) / math.sqrt(2)
                yp = th + (v - u) / math.sqrt(2)
                return norm.pdf(u) * float(wv @ fn(y, yp, ind - 0.5))

            total += quad(integrand, lo, hi, epsabs=1e-14, epsrel=1e-13)[0]
        return total

    def nc(y, yp, q):
        return -(y - th) * q

    def con(y, yp, q):
        return -half * ((y - th) - (yp - th)) * q

    m2_nc = expect(lambda y, yp, q: nc(y, yp, q) ** 2)
    m2_c = expect(lambda y, yp, q: con(y, yp, q) ** 2)
    mean_nc, mean_c = expect(nc), expect(con)
    mean = -1.0 / (2.0 * math.sqrt(math.pi))  # −E[z Φ(z)] = −E[φ(z)] = −1/(2√π)
    return max(abs(m2_nc - 0.25), abs(m2_c - 0.125), abs(mean_nc - mean), abs(mean_c - mean))


register(
    Claim(
        "ipo_md.propE1.gaussian",
        "IPO-MD",
        "App. E.1",
        "Gaussian toy: E[ĝ_nc²] = 1/4, E[ĝ_c²] = 1/8, equal means −1/(2√π): variances "
        "1/4 − 1/(4π) > 1/8 − 1/(4π)",
        "gaussian",
        _gaussian,
        1e-10,
        "Gauss–Hermite exact in v; adaptive quadrature in u to 1e-13 per half-line",
        lambda i: _gaussian(i, half=1.0),
        "the contrastive estimate without its ½",
    )
)


# ----------------------------------------------------------------------------- App. G


def _dJ_dpi(game, log_pi, data=None, method="dpo"):
    """∂J_DPO/∂π_y = −(∂/∂θ_y E[ℓ_DPO])/π_y: J_DPO(π) depends on π only through ratios
    (Remark G.4), so with θ = log π the chain rule through the softmax is exact."""
    lp = np.asarray(log_pi).reshape(-1)
    return -np.asarray(_engine_grad(method, game, lp, data)) / np.exp(lp)


def eq15_gradient(game: PreferenceGame, log_pi, mu, factor: float = 2.0):
    """IPO-MD Eq. (15), written out, for all y:

    2τ (μ(y)/π(y)) Σ_y' μ(y')(p(y ≻ y') − σ(τ log(π(y)π_ref(y')/(π(y')π_ref(y))))).
    """
    h = np.asarray(log_pi) - game.log_ref
    sig = expit(game.beta * (h[:, None] - h[None, :]))
    return factor * game.beta * mu / np.exp(log_pi) * ((game.P - sig) @ mu)


@exact
def _lemmaG3(inst: GameInstance, factor: float = 2.0) -> float:
    g = inst.game
    lp = np.asarray(log_softmax(inst.logits))
    lhs = _dJ_dpi(g, lp, OfflineData(inst.mu, inst.mu))
    return rel_err(lhs, eq15_gradient(g, lp, inst.mu, factor))


register(
    Claim(
        "ipo_md.lemmaG3",
        "IPO-MD",
        "Lemma G.3, Eq. (15)",
        "∂J_DPO/∂π_y = 2τ(μ(y)/π(y)) Σ_y' μ(y')(p(y ≻ y') − σ(τ log π(y)π_ref(y')/"
        "(π(y')π_ref(y))))",
        "game",
        _lemmaG3,
        TOL,
        TOL_REASON,
        lambda i: _lemmaG3(i, factor=1.0),
        "Eq. (15) without its factor 2",
    )
)


@exact
def _thmG6(inst: GameInstance, wrong_sign: bool = False) -> float:
    """Online DPO's gradient at the 2-action Nash equilibrium vs the proof's closed form."""
    from bandit.games import nash_equilibrium

    g = inst.game
    ne = nash_equilibrium(g)
    _certified(ne)
    lhs = _dJ_dpi(g, ne.log_policy, method="online_dpo")  # μ = π* (Lemma G.5)
    alpha, p = float(np.exp(ne.log_policy[0])), float(g.P[1, 0])  # the proof's α and p
    k = 1.0 - p - float(expit(p - 0.5 if wrong_sign else 0.5 - p))
    rhs = 2.0 * g.beta * np.array([(1.0 - alpha) * k, -alpha * k])
    if abs(p - 0.5) > 1e-6 and np.max(np.abs(lhs)) < 1e-13:
        return math.inf  # Eq. (19) would hold with p ≠ ½: the theorem would be false
    return rel_err(lhs, rhs)


register(
    Claim(
        "ipo_md.thmG6",
        "IPO-MD",
        "Thm G.6, Lemma G.5",
        "2 actions: online DPO's gradient at the Nash equilibrium is 2τ(1−α, −α)(1 − p − "
        "σ(½ − p)) ≠ 0 unless p = ½",
        "game2",
        _thmG6,
        FP_TOL,
        FP_REASON,
        lambda i: _thmG6(i, wrong_sign=True),
        "the closed form with σ(p − ½)",
    )
)


def _bt(inst: GameInstance) -> PreferenceGame:
    g = inst.game
    return PreferenceGame.bradley_terry(inst.rewards, g.ref, g.beta)


def _pi_r(inst: GameInstance, temp: float = 1.0):
    """log π^r of Eq. (21): π^r ∝ π_ref exp(r/τ)."""
    g = inst.game
    return log_softmax(g.log_ref + inst.rewards / (temp * g.beta))


@exact
def _thmG7(inst: GameInstance, temp: float = 1.0, method: str = "dpo") -> float:
    bt, lp = _bt(inst), _pi_r(inst, temp)
    scale = _scale(bt, lp)
    mu_gap = inst.mu.copy()
    mu_gap[0] = 0.0
    mu_gap /= mu_gap.sum()
    res = [
        stationary_residual(method, bt, OfflineData(m, m), lp, scale, unique=False)
        for m in (inst.mu, mu_gap)  # "for any μ", with or without full support
    ]
    if method == "dpo":
        res.append(stationary_residual("online_dpo", bt, None, lp, scale, unique=False))
    return max(res)


register(
    Claim(
        "ipo_md.thmG7",
        "IPO-MD",
        "Thm G.7",
        "under Bradley–Terry, π^r ∝ π_ref exp(r/τ) is a critical point of offline DPO for any "
        "μ and a stationary point of online DPO",
        "game",
        _thmG7,
        TOL,
        TOL_REASON,
        lambda i: _thmG7(i, temp=2.0),
        "π ∝ π_ref exp(r/(2τ))",
        printed=lambda i: _thmG7(i, method="ipo"),
        correction="the statement prints 'a critical point for offline IPO'; offline IPO's "
        "optimum is Eq. (7), not π^r. The proof (and the claim that holds) is about "
        "offline DPO",
    )
)


@exact
def _remarkG9(inst: GameInstance, gap: bool = True) -> float:
    bt = _bt(inst)
    lp_r = np.asarray(_pi_r(inst))
    alpha = inst.mixture  # any α in (0, 1)
    lp = lp_r + np.log(alpha)  # π^α = α π^r off Y' = {0} ...
    lp[0] = np.log1p(-alpha * (1.0 - np.exp(lp_r[0])))  # ... and the rest of the mass on 0
    mu = inst.mu.copy()
    if gap:
        mu[0] = 0.0
        mu /= mu.sum()
    return stationary_residual("dpo", bt, OfflineData(mu, mu), lp, _scale(bt, lp), unique=False)


register(
    Claim(
        "ipo_md.remarkG9",
        "IPO-MD",
        "Remark G.9",
        "if μ(y) = 0 on Y' ≠ ∅, π^α = α π^r off Y' (any mass on Y') is also an offline DPO "
        "solution for every α ∈ (0, 1]: the solution is not unique",
        "game",
        _remarkG9,
        TOL,
        TOL_REASON,
        lambda i: _remarkG9(i, gap=False),
        "the same π^α under a full-support μ",
    )
)
