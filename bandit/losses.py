"""The one definition of every per-pair loss.

Each function maps per-pair quantities to a per-pair loss *to be minimised*, with no
reduction. The code uses only arithmetic and array-API functions, so the same definition
runs unchanged on NumPy, JAX and PyTorch arrays (the tabular engine, ``theory/`` and
``llm/`` all call these). Stop-gradient is explicit and supplied by the backend through
:func:`stop_gradient`.

Notation (shared by all three papers):
  h(y) = log π(y) − log π_ref(y)        per-completion log-ratio ("logratio")
  R_β^π(y) = R(y) − β h(y)              regularised reward, CoPG Eq. (1)
  ``beta``                              KL-regularisation strength: CoPG's β, IPO-MD's τ
  ``preference``                        p = P(completion 1 ≻ completion 2); 0/1 for hard labels

Preference losses use the symmetric form of IPO-MD §6,
  ℓ(p) = p·f(h1 − h2) + (1 − p)·f(h2 − h1),
which for a hard label is the loss on (winner, loser) and is linear in p, so the expected
loss over Bradley–Terry labels is the loss at p = σ(R(y1) − R(y2)).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_jax_array, is_torch_array

__all__ = [
    "copg_loss",
    "dpo_loss",
    "ipo_loss",
    "nash_md_pg_loss",
    "p3o_loss",
    "pg_loss",
    "regularised_reward",
    "rloo_loss",
    "slic_loss",
    "stop_gradient",
]

Array = Any  # a NumPy, JAX or PyTorch array


def stop_gradient(x: Array) -> Array:
    """Block gradients through ``x``: ``Tensor.detach`` in PyTorch, ``lax.stop_gradient`` in JAX."""
    if is_torch_array(x):
        return x.detach()
    if is_jax_array(x):
        import jax

        return jax.lax.stop_gradient(x)
    return x


def _xp(*xs: Array):
    return array_namespace(*(x for x in xs if not isinstance(x, (int, float))))


def _relu(xp, z: Array) -> Array:
    return xp.where(z > 0, z, 0 * z)


def _softplus(xp, z: Array) -> Array:
    # log(1 + e^z) without overflow.
    return xp.logaddexp(0 * z, z)


def regularised_reward(reward: Array, logratio: Array, beta: float) -> Array:
    """R_β^π(y) = R(y) − β·log(π(y)/π_ref(y)) (CoPG Eq. 1)."""
    return reward - beta * logratio


def copg_loss(
    logratio1: Array, logratio2: Array, reward1: Array, reward2: Array, beta: float
) -> Array:
    """CoPG: ℓ = (R_β^π(y1) − R_β^π(y2))² / (2β)  (CoPG Alg. 1, scaled).

    Its gradient is exactly −∇ℓ_CoPG of Eq. (9), i.e. the negated CoPG sample gradient
    (R_β(y1) − R_β(y2))(∇log π(y1) − ∇log π(y2)); Alg. 1's unscaled square is 2β times this.
    Its value is −ℓ_CoPG(Eq. 5) + (R(y1) − R(y2))²/(2β) (Eq. 15c), so minimising it
    maximises L of Eq. (6), whose unique maximiser is π* (Thm 1).

    Args:
      logratio1, logratio2: h(y1), h(y2), any broadcastable shapes.
      reward1, reward2: R(y1), R(y2).
      beta: β > 0.
    Returns:
      The per-pair loss, broadcast shape.
    """
    d = regularised_reward(reward1, logratio1, beta) - regularised_reward(reward2, logratio2, beta)
    return d * d / (2 * beta)


def pg_loss(
    logratio1: Array,
    logratio2: Array,
    reward1: Array,
    reward2: Array,
    beta: float,
    baseline: Array | float = 0.0,
) -> Array:
    """Naive off-policy policy gradient on a pair (CoPG §5):

    ℓ = −[sg(R_β^π(y1) − b)·log π(y1) + sg(R_β^π(y2) − b)·log π(y2)],

    so ∇ℓ = −(R_β(y1) − b)∇log π(y1) − (R_β(y2) − b)∇log π(y2). The log-ratio stands in
    for log π (same gradient, π_ref is fixed). ``pg`` uses b = 0; ``pg_value`` uses the
    value baseline b = E_{y∼π}[R(y)], which the caller supplies (it is stop-gradient too).
    """
    w1 = stop_gradient(regularised_reward(reward1, logratio1, beta) - baseline)
    w2 = stop_gradient(regularised_reward(reward2, logratio2, beta) - baseline)
    return -(w1 * logratio1 + w2 * logratio2)


def rloo_loss(logratios: Array, rewards: Array, beta: float) -> Array:
    """REINFORCE leave-one-out with k samples on the last axis (CoPG Prop. 2, App. A):

    ℓ = −Σ_j sg(R_β(y_j) − (1/(k−1)) Σ_{l≠j} R_β(y_l))·log π(y_j).

    Args:
      logratios: h(y_1..y_k), shape (..., k) with k >= 2.
      rewards: R(y_1..y_k), shape (..., k).
    Returns:
      Shape (...,). For k = 2 its gradient is the CoPG gradient of Eq. (9).
    """
    xp = _xp(logratios, rewards)
    k = logratios.shape[-1]
    if k < 2:
        raise ValueError(f"rloo_loss needs k >= 2 samples on the last axis, got k={k}")
    rb = stop_gradient(regularised_reward(rewards, logratios, beta))
    loo = (xp.sum(rb, axis=-1, keepdims=True) - rb) / (k - 1)
    return -xp.sum((rb - loo) * logratios, axis=-1)


def ipo_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """IPO: ℓ = p·(ρ − 1/(2β))² + (1 − p)·(−ρ − 1/(2β))²,  ρ = h(y1) − h(y2).

    IPO-MD Eq. (8) with τ = β (Azar et al. 2023). The same loss serves offline IPO (pairs
    from a dataset), online IPO (pairs from sg[π]) and IPO-MD (pairs from the geometric
    mixture sg[π^(1−β)π_ref^β]); only the sampler differs (IPO-MD §4–5).
    """
    rho = logratio1 - logratio2
    c = 1.0 / (2.0 * beta)
    return preference * (rho - c) ** 2 + (1 - preference) * (rho + c) ** 2


def dpo_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """DPO: ℓ = −p·log σ(β ρ) − (1 − p)·log σ(−β ρ),  ρ = h(y1) − h(y2).

    IPO-MD Eq. (4) (Rafailov et al. 2023). IPO-MD §6 prints σ without the log; the loss
    that Eq. (4) maximises, and that we use, is −log σ. −log σ(z) = softplus(−z).
    """
    xp = _xp(logratio1, logratio2)
    z = beta * (logratio1 - logratio2)
    return preference * _softplus(xp, -z) + (1 - preference) * _softplus(xp, z)


def slic_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """SLiC hinge: ℓ = p·max(0, 1 − βρ) + (1 − p)·max(0, 1 + βρ),  ρ = h(y1) − h(y2).

    IPO-MD Eq. (5) (Zhao et al. 2023; Liu et al. 2023).
    """
    xp = _xp(logratio1, logratio2)
    z = beta * (logratio1 - logratio2)
    return preference * _relu(xp, 1 - z) + (1 - preference) * _relu(xp, 1 + z)


def nash_md_pg_loss(logratio: Array, preference: Array | float, beta: float) -> Array:
    """Nash-MD-PG(β): ℓ = −sg(p(y ≻ y') − 1/2 − β h(y))·log π(y)  (IPO-MD §2.6).

    y ∼ π and y' ∼ π^(1−β_mix)·π_ref^β_mix (the sampler's job); only y gets a gradient,
    −∇log π(y)·(p(y ≻ y') − 1/2 − β log(π(y)/π_ref(y))). ``beta`` is the KL strength τ.
    """
    return -stop_gradient(preference - 0.5 - beta * logratio) * logratio


def p3o_loss(
    logp1: Array,
    logp2: Array,
    old_logp1: Array,
    old_logp2: Array,
    reward1: Array,
    reward2: Array,
    clip_eps: float = 0.2,
    variant: int = 2,
) -> Array:
    """P3O with separate (variant 1) or joint (variant 2) clipping (P3O §4.2).

    With r_i = π(y_i)/π_old(y_i) and Δ = R(y1) − R(y2):

    V1: ℓ = −½ Σ_{i≠j} min(sg(Δ_ij r_j)·r_i, sg(Δ_ij r_j)·clip(r_i, 1−ε, 1+ε)),  Δ_12 = Δ = −Δ_21.
    V2: ℓ = −½ min(sg(Δ r1 r2)·log(π1/π2), sg(Δ r1 r2)·clip(log(π1/π2), log(π_old1/π_old2) ± ε)).

    At π = π_old both have the pairwise policy gradient of P3O Eq. (6),
    ½Δ·∇log(π(y1)/π(y2)), as gradient. The printed V2 omits the ½ of Eq. (6); we keep it
    so that the variants agree. Rewards are the caller's: pass R − β log(π_old/π_ref) to
    include the KL penalty as the P3O paper does.
    """
    if variant not in (1, 2):
        raise ValueError(f"variant must be 1 or 2, got {variant!r}")
    xp = _xp(logp1, logp2)
    delta = reward1 - reward2
    lr1, lr2 = logp1 - old_logp1, logp2 - old_logp2
    if variant == 1:
        r1, r2 = xp.exp(lr1), xp.exp(lr2)
        w1, w2 = stop_gradient(delta * r2), stop_gradient(-delta * r1)

        def clip(r):
            return xp.minimum(xp.maximum(r, 0 * r + (1 - clip_eps)), 0 * r + (1 + clip_eps))

        t1 = xp.minimum(w1 * r1, w1 * clip(r1))
        t2 = xp.minimum(w2 * r2, w2 * clip(r2))
        return -(t1 + t2) / 2
    w = stop_gradient(delta * xp.exp(lr1 + lr2))
    s, s_old = logp1 - logp2, old_logp1 - old_logp2
    s_clip = xp.minimum(xp.maximum(s, s_old - clip_eps), s_old + clip_eps)
    return -xp.minimum(w * s, w * s_clip) / 2
