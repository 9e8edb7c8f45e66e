"""The claims of P3O (Wu et al. 2023, arXiv 2310.00212) as executable checks.

The P3O, DPO and CoPG updates are autodiff of the shared losses (:mod:`bandit.losses`),
per pair on a fixed batch and in exact expectation through :mod:`bandit.expected`; the
other sides are the paper's formulas written out here: the pairwise policy gradient with
importance sampling of Eq. (5), the vanilla policy gradient ∇Σ_y π(y)r(y), the
Bradley–Terry and Plackett–Luce losses, and a tiny tabular PPO step whose value function
V(x) starts from the same initialisation for both rewards (Thm 2). Instances are contextual.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from bandit import losses as L
from bandit.methods import Pair, get_method
from bandit.policy import log_softmax
from bandit.problems import Bandit, OfflineData

from .checks import E_GRAD, engine, exact, jtables, rel_err
from .instances import BanditInstance
from .registry import Claim, register

__all__ = ["plackett_luce_nll", "ppg_is_gradient", "ppo_policy_gradient"]

TOL = 1e-10
TOL_REASON = "float64: ≤75 summed terms × few ulps ≈ 1e-13 relative, ×1000 margin"
NO_CLIP = 1e6  # a clipping range no ratio on these instances reaches: plain PPG


# ----------------------------------------------------------------------------- Thm 1


@partial(jax.jit, static_argnums=4)
def ppg_is_gradient(theta, old_theta, rewards, rho, importance: bool = True):
    """P3O Eq. (5) / Thm 1, written out, with π_old ≠ π:

    E_x E_{y1,y2∼π_old}[(r(y1) − r(y2))(π(y2)/π_old(y2)·∇π(y1)/π_old(y1)
                                         − π(y1)/π_old(y1)·∇π(y2)/π_old(y2))/2].

    ``importance=False`` drops the importance sampling: both ratios become 1 and
    ∇π(y)/π_old(y) becomes ∇log π(y) (naive off-policy PG, the negative control).
    """
    pi = jnp.exp(log_softmax(theta))
    old = jnp.exp(log_softmax(old_theta))
    if importance:
        dpi = jax.jacobian(lambda t: jnp.exp(log_softmax(t)))(theta)  # (X, n, X, n)
        ratio, gr = pi / old, dpi / old[:, :, None, None]  # π/π_old, ∇π(y)/π_old(y)
    else:
        ratio, gr = jnp.ones_like(pi), jax.jacobian(log_softmax)(theta)
    w = rho[:, None, None] * old[:, :, None] * old[:, None, :]
    d = rewards[:, :, None] - rewards[:, None, :]
    t1 = ratio[:, None, :, None, None] * gr[:, :, None]  # π2/πo2 · ∇π1/πo1
    t2 = ratio[:, :, None, None, None] * gr[:, None, :]  # π1/πo1 · ∇π2/πo2
    return jnp.einsum("xij,xijab->ab", w * d, t1 - t2) / 2


@partial(jax.jit, static_argnums=4)
def _p3o_expected_grad(theta, old_theta, rewards, rho, variant, clip_eps):
    """−∇ of E_{x, y1,y2∼π_old}[p3o_loss]: the shared P3O loss, importance-sampled."""
    old_lp = log_softmax(old_theta)
    old = jnp.exp(old_lp)
    w = rho[:, None, None] * old[:, :, None] * old[:, None, :]

    def expected(t):
        lp = log_softmax(t)
        ell = L.p3o_loss(
            lp[:, :, None],
            lp[:, None, :],
            old_lp[:, :, None],
            old_lp[:, None, :],
            rewards[:, :, None],
            rewards[:, None, :],
            clip_eps,
            variant,
        )
        return jnp.sum(w * ell)

    return -jax.grad(expected)(theta)


@jax.jit
def _vpg(theta, r, rho):
    """∇L_VPG = ∇ E_x Σ_y π(y|x) r(y|x) (P3O §4.1), by autodiff."""
    return jax.grad(lambda t: jnp.sum(rho[:, None] * jnp.exp(log_softmax(t)) * r))(theta)


@exact
def _thm1(inst: BanditInstance, importance: bool = True) -> float:
    b = inst.bandit
    th, old = jnp.asarray(inst.logits), jnp.asarray(inst.old_logits)
    r, rho = jnp.asarray(b.rewards), jnp.asarray(b.rho)
    vpg = _vpg(th, r, rho)
    res = [rel_err(ppg_is_gradient(th, old, r, rho, importance), vpg)]
    if importance:
        for v in (1, 2):  # the shared P3O loss without clipping has the same gradient
            res.append(rel_err(_p3o_expected_grad(th, old, r, rho, v, NO_CLIP), vpg))
    return max(res)


register(
    Claim(
        "p3o.thm1",
        "P3O",
        "Thm 1, Eq. (5)–(6)",
        "for any π_old, E_{y1,y2∼π_old}[pairwise PG with importance sampling] = ∇E_π[r] "
        "(vanilla PG); so is −∇E[p3o_loss] (V1, V2) without clipping",
        "bandit",
        _thm1,
        TOL,
        TOL_REASON,
        lambda i: _thm1(i, importance=False),
        "without importance sampling: pairs from π_old weighted as if from π",
    )
)


# ----------------------------------------------------------------------------- Lemma 1


def plackett_luce_nll(scores, order):
    """Plackett–Luce negative log-likelihood of the ranking ``order`` (best first):
    −Σ_k [r(order_k) − log Σ_{l≥k} exp r(order_l)]."""
    s = np.asarray(scores)[..., order]
    tails = np.stack([logsumexp(s[..., k:], axis=-1) for k in range(s.shape[-1])], -1)
    return -(s - tails).sum(-1)


def _lemma1(inst: BanditInstance, action_dependent: bool = False) -> float:
    b = inst.bandit
    r = b.rewards
    n = r.shape[1]
    shift = inst.delta[:, None] * (1.0 + np.arange(n) if action_dependent else np.ones(n))
    r2 = r + shift
    # The Bradley–Terry NLL −log σ(r(y_w) − r(y_l)) is dpo_loss on (r_w, r_l) with β = 1.
    bt = L.dpo_loss(r[:, :, None], r[:, None, :], 1.0, 1.0)
    bt2 = L.dpo_loss(r2[:, :, None], r2[:, None, :], 1.0, 1.0)
    order = np.argsort(-inst.logits[0])  # any ranking of the n responses
    pl, pl2 = plackett_luce_nll(r, order), plackett_luce_nll(r2, order)
    return max(rel_err(bt, bt2), rel_err(pl, pl2))


register(
    Claim(
        "p3o.lemma1",
        "P3O",
        "Lemma 1",
        "Bradley–Terry and Plackett–Luce losses are unchanged under r(y|x) → r(y|x) + δ(x)",
        "bandit",
        _lemma1,
        TOL,
        TOL_REASON,
        lambda i: _lemma1(i, action_dependent=True),
        "a shift δ(x)·(1 + y) that depends on the response",
    )
)


# ----------------------------------------------------------------------------- Thm 2


def _batch_grads(inst: BanditInstance, rewards, method: str):
    """Gradient of the method's loss summed over the fixed batch of (x, y1, y2)."""
    b = inst.bandit
    return _batch_grads_core(
        jnp.asarray(inst.logits),
        jnp.asarray(inst.old_logits),
        jnp.asarray(b.log_ref),
        jnp.asarray(inst.batch),
        jnp.asarray(rewards),
        b.beta,
        method,
    )


@partial(jax.jit, static_argnums=6)
def _batch_grads_core(theta, old_theta, log_ref, batch, R, beta, method):
    xb, y1, y2 = batch[:, 0], batch[:, 1], batch[:, 2]
    old = log_softmax(old_theta)
    r1, r2 = R[xb, y1], R[xb, y2]

    def total(t):
        lp = log_softmax(t)
        h = lp - log_ref
        # The method's own per-pair loss on the sampled pairs. The rewards enter raw (no KL
        # folded in: old_logratio = 0); DPO's labels are Bradley–Terry on r; pg has b = 0.
        zero = jnp.zeros_like(r1)
        pair = Pair(
            logratio=(h[xb, y1], h[xb, y2]),
            logp=(lp[xb, y1], lp[xb, y2]),
            old_logp=(old[xb, y1], old[xb, y2]),
            old_logratio=(zero, zero),
            reward=(r1, r2),
            preference=jax.nn.sigmoid(r1 - r2),
            value=None,
            beta=beta,
        )
        ell = get_method(method).loss(pair)
        return jnp.sum(ell)

    return jax.grad(total)(theta)


def _expected_grads(bandit: Bandit, inst: BanditInstance, method: str):
    data = OfflineData(inst.mu1, inst.mu2) if method in ("copg", "dpo") else None
    return engine(E_GRAD, method, inst.logits, jtables(bandit), data)


@exact
def _thm2(inst: BanditInstance, methods=("p3o_v1", "p3o_v2", "dpo", "copg")) -> float:
    b = inst.bandit
    R2 = b.rewards + inst.delta[:, None]
    shifted = Bandit(R2, b.ref, b.rho, b.beta)
    res = [rel_err(_batch_grads(inst, b.rewards, m), _batch_grads(inst, R2, m)) for m in methods]
    for m in methods:
        if m != "pg":
            m_exp = "online_dpo" if m == "dpo" else m
            for mm in {m, m_exp}:
                res.append(
                    rel_err(_expected_grads(b, inst, mm), _expected_grads(shifted, inst, mm))
                )
    return max(res)


register(
    Claim(
        "p3o.thm2",
        "P3O",
        "Thm 2, Def. 2",
        "P3O (V1, V2, clipped, π ≠ π_old), DPO and CoPG updates are identical under "
        "r → r + δ(x), on a fixed batch and in expectation",
        "bandit",
        _thm2,
        TOL,
        TOL_REASON,
        lambda i: _thm2(i, methods=("pg",)),
        "vanilla policy gradient (no baseline) on the same batch",
    )
)


@jax.jit
def ppo_policy_gradient(theta, old_theta, batch, rewards, V, clip_eps: float = 0.2):
    """∇_θ of the PPO-clip loss on a fixed batch of (x, y), one-step advantage r − V(x):

    −(1/B) Σ_b min(ρ_b A_b, clip(ρ_b, 1−ε, 1+ε) A_b),  ρ_b = π(y_b|x_b)/π_old(y_b|x_b).
    """
    xb, yb = batch[:, 0], batch[:, 1]
    A = rewards[xb, yb] - V[xb]
    old = log_softmax(old_theta)[xb, yb]

    def loss(t):
        ratio = jnp.exp(log_softmax(t)[xb, yb] - old)
        return -jnp.mean(jnp.minimum(ratio * A, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * A))

    return jax.grad(loss)(theta)


@exact
def _ppo(inst: BanditInstance, track_shift: bool = False) -> float:
    """PPO's first update on a fixed batch (θ = θ_old, V(x) initialised the same) changes
    by exactly −(1/B) Σ_b δ(x_b) ∇log π(y_b|x_b) under r → r + δ(x), which is not zero."""
    b = inst.bandit
    th = jnp.asarray(inst.old_logits)
    batch = jnp.asarray(inst.batch)
    V0 = jnp.zeros(b.n_prompts)  # the same initialisation for both rewards
    R, R2 = jnp.asarray(b.rewards), jnp.asarray(b.rewards + inst.delta[:, None])
    V2 = V0 + inst.delta if track_shift else V0  # (negative control: V0 + δ, not the same)
    change = ppo_policy_gradient(th, th, batch, R2, V2) - ppo_policy_gradient(th, th, batch, R, V0)
    xb, yb = batch[:, 0], batch[:, 1]
    score = jax.jacobian(log_softmax)(th)[xb, yb]  # (B, X, n)
    predicted = -jnp.einsum("b,bxy->xy", jnp.asarray(inst.delta)[xb], score) / len(xb)
    if float(jnp.max(jnp.abs(change))) < 1e-8:
        return math.inf  # PPO was invariant here: the claim would be false
    return rel_err(change, predicted)


register(
    Claim(
        "p3o.thm2.ppo",
        "P3O",
        "Thm 2 (PPO)",
        "PPO with a learned V(x) from the same initialisation is not invariant: its update "
        "on a fixed batch changes by −(1/B)Σ_b δ(x_b)∇log π(y_b|x_b) ≠ 0",
        "bandit",
        _ppo,
        TOL,
        TOL_REASON,
        lambda i: _ppo(i, track_shift=True),
        "V initialised to V0 + δ(x) (not the same initialisation): invariant, so rejected",
    )
)


@exact
def _ppo_expected(inst: BanditInstance, batch: bool = False) -> float:
    """In exact expectation over y ∼ π_old (θ = θ_old) the PPO update is invariant:
    δ(x)·E_π[∇log π] = 0. The non-invariance of Thm 2 is a finite-batch effect."""
    b = inst.bandit
    X, n = b.rewards.shape
    th = jnp.asarray(inst.old_logits)
    if batch:
        pairs = jnp.asarray(inst.batch[:, :2])
        w = None
    else:
        grid = np.meshgrid(np.arange(X), np.arange(n), indexing="ij")
        pairs = jnp.asarray(np.stack(grid, -1).reshape(-1, 2))
        w = (b.rho[:, None] * np.exp(np.asarray(log_softmax(inst.old_logits)))).reshape(-1)
    V0 = jnp.zeros(X)

    def grad(R):
        if w is None:
            return ppo_policy_gradient(th, th, pairs, R, V0)
        # Every (x, y) once, weighted by ρ(x)π_old(y|x): the exact expectation (B = X·n).
        per = jax.vmap(lambda p: ppo_policy_gradient(th, th, p[None], R, V0))(pairs)
        return jnp.einsum("b,bxy->xy", jnp.asarray(w), per)

    return rel_err(grad(jnp.asarray(b.rewards)), grad(jnp.asarray(b.rewards + inst.delta[:, None])))


register(
    Claim(
        "p3o.thm2.ppo_expectation",
        "P3O",
        "Thm 2 (PPO, in expectation)",
        "in exact expectation at π = π_old PPO's update is invariant too (E_π[∇log π] = 0): "
        "PPO's non-invariance is a finite-batch effect",
        "bandit",
        _ppo_expected,
        TOL,
        TOL_REASON,
        lambda i: _ppo_expected(i, batch=True),
        "the same update on the fixed finite batch",
    )
)
