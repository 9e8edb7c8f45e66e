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

Infinite log-ratios. A completion with probability 0 (log π(y) = −inf, which
``llm.sequence_logps`` returns for a −inf label logit) gives h = −inf. Every loss then
returns its limit, never the NaN of a ``0·inf`` in the formula:

* a term of weight 0 (p = 0 or p = 1 in the symmetric form) contributes 0, whatever its
  argument: it is 0·f(z) for every finite z, so its limit is 0;
* DPO and SLiC: the loser at −inf (ρ → +inf, p = 1) gives 0; the winner at −inf
  (ρ → −inf, p = 1), or any soft label 0 < p < 1, gives +inf, since −log σ(βρ) and
  max(0, 1 − βρ) grow without bound;
* IPO: +inf for any infinite ρ (both squares diverge and one has weight > 0);
* CoPG, PG, Nash-MD-PG: +inf (the square, resp. −(R − βh)·h, diverges);
* RLOO: +inf when some h_j is infinite and the h_j are not all infinite of one sign
  (ℓ = k/(k−1)·[β Σ_j (h_j − h̄)² − Σ_j (R_j − R̄)(h_j − h̄)], whose square dominates);
* P3O-V2: a weight sg(Δ r1 r2) = 0 (a log π = −inf gives r = 0) times an infinite or
  undefined log(π1/π2) gives 0, the limit of Δ e^{−t}·t; P3O-V1 needs no guard there;
* P3O with an infinite Δ (a KL-regularised reward R − β log(π_old/π_ref) = −inf where
  π_ref = 0): ℓ is positively homogeneous in Δ, so the limit is inf·ℓ(sign Δ), or 0;
* R − β h with β = 0 is R, whatever h.

Where the limit depends on how the inputs go to infinity (h1 = h2 = −inf, or
log π = log π_ref = −inf, so that h is undefined) the result is NaN; ``llm`` refuses it.
For finite inputs the values and gradients are bit-for-bit those of the plain formulas,
on NumPy, torch and JAX under jit alike (tests/test_llm_reliability.py compares them with
a copy of the formulas): the guards only select, with ``where``, on an infinite input
(which then runs the formula on a finite stand-in, so the gradient is finite where the
loss is) or on the output. Where the loss is infinite its gradient may be inf or NaN.

TRL, for comparison, returns 0 for DPO and SLiC when the chosen completion has
log π = −inf, and inf for IPO. 0 is the limit when the *rejected* completion goes to
−inf; with the chosen one at −inf, −log σ(βρ) → +inf and max(0, 1 − βρ) → +inf as
ρ → −inf, so +inf is the limit, and the loss of a policy that gives the preferred answer
probability 0 should not be the best possible one.
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


def _finite_part(xp, d: Array) -> tuple[Array, Array]:
    """(d with its infinite entries replaced by 0, the mask of those entries).

    The formula then runs unchanged on a finite stand-in (so its gradient there is 0, not
    0·inf = NaN) and the caller selects the limit at the masked entries. One select on the
    input and one on the output: for finite inputs the arithmetic in between is the plain
    formula's, op for op, so values and gradients are bit-for-bit those of the formula.
    """
    inf = xp.isinf(d)
    return xp.where(inf, xp.zeros_like(d), d), inf


def _hinge_limit(xp, loss: Array, d: Array, preference: Array | float) -> Array:
    """The limit of p·f(d) + (1 − p)·f(−d) at d = ±inf for f → +inf at −inf and → 0 at +inf
    (DPO's −log σ, SLiC's hinge): 0 when the term that diverges has weight 0, else +inf."""
    zero = ((d > 0) & (1 - preference == 0)) | ((d < 0) & (preference == 0))
    # 0·p keeps a NaN preference NaN.
    return xp.where(zero, xp.zeros_like(loss), xp.full_like(loss, float("inf"))) + 0 * preference


def regularised_reward(reward: Array, logratio: Array, beta: float) -> Array:
    """R_β^π(y) = R(y) − β·log(π(y)/π_ref(y)) (CoPG Eq. 1); R itself when β = 0."""
    if (isinstance(beta, (int, float)) and beta != 0) or isinstance(logratio, (int, float)):
        return reward - beta * logratio
    xp = _xp(reward, logratio)
    # β = 0 (P3O without a KL penalty): 0·h is 0 for an infinite h too.
    h = xp.where(xp.isinf(logratio) & (beta == 0), xp.zeros_like(logratio), logratio)
    return reward - beta * h


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
    loss = -xp.sum((rb - loo) * logratios, axis=-1)
    # An infinite h_j: ℓ = k/(k−1)·[β Σ(h − h̄)² − Σ(R − R̄)(h − h̄)] → +inf, unless all
    # h_j are infinite of one sign (then the limit depends on the rates: NaN). Selected on
    # the output only: a select on the input changes how XLA fuses the plain formula, and
    # so its last bits under jit. (Where the loss is infinite its gradient may be NaN.)
    inf = float("inf")
    undefined = (
        xp.all(logratios == inf, axis=-1)
        | xp.all(logratios == -inf, axis=-1)
        | xp.any(xp.isnan(logratios), axis=-1)
    )
    loss = xp.where(xp.any(xp.isinf(logratios), axis=-1), xp.full_like(loss, inf), loss)
    return xp.where(undefined, xp.full_like(loss, float("nan")), loss)


def ipo_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """IPO: ℓ = p·(ρ − 1/(2β))² + (1 − p)·(−ρ − 1/(2β))²,  ρ = h(y1) − h(y2).

    IPO-MD Eq. (8) with τ = β (Azar et al. 2023). The same loss serves offline IPO (pairs
    from a dataset), online IPO (pairs from sg[π]) and IPO-MD (pairs from the geometric
    mixture sg[π^(1−β)π_ref^β]); only the sampler differs (IPO-MD §4–5).
    """
    xp = _xp(logratio1, logratio2)
    rho, inf = _finite_part(xp, logratio1 - logratio2)
    c = 1.0 / (2.0 * beta)
    loss = preference * (rho - c) ** 2 + (1 - preference) * (rho + c) ** 2
    # An infinite ρ: both squares diverge and one has weight > 0.
    return xp.where(inf, xp.full_like(loss, float("inf")) + 0 * preference, loss)


def dpo_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """DPO: ℓ = −p·log σ(β ρ) − (1 − p)·log σ(−β ρ),  ρ = h(y1) − h(y2).

    IPO-MD Eq. (4) (Rafailov et al. 2023). IPO-MD §6 prints σ without the log; the loss
    that Eq. (4) maximises, and that we use, is −log σ. −log σ(z) = softplus(−z).
    """
    xp = _xp(logratio1, logratio2)
    rho, inf = _finite_part(xp, logratio1 - logratio2)
    z = beta * rho
    loss = preference * _softplus(xp, -z) + (1 - preference) * _softplus(xp, z)
    return xp.where(inf, _hinge_limit(xp, loss, logratio1 - logratio2, preference), loss)


def slic_loss(logratio1: Array, logratio2: Array, preference: Array | float, beta: float) -> Array:
    """SLiC hinge: ℓ = p·max(0, 1 − βρ) + (1 − p)·max(0, 1 + βρ),  ρ = h(y1) − h(y2).

    IPO-MD Eq. (5) (Zhao et al. 2023; Liu et al. 2023).
    """
    xp = _xp(logratio1, logratio2)
    rho, inf = _finite_part(xp, logratio1 - logratio2)
    z = beta * rho
    loss = preference * _relu(xp, 1 - z) + (1 - preference) * _relu(xp, 1 + z)
    return xp.where(inf, _hinge_limit(xp, loss, logratio1 - logratio2, preference), loss)


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
    # ℓ is positively homogeneous in Δ (the weights are sg(Δ·…)): ℓ(Δ) = |Δ|·ℓ(sign Δ). An
    # infinite Δ (π_ref(y) = 0 under the KL penalty) is computed at Δ = ±1 and scaled by
    # inf, 0 staying 0; a finite Δ is untouched (scaled by 1).
    big = xp.isinf(delta)
    delta = xp.where(big, xp.sign(delta), delta)
    lr1, lr2 = logp1 - old_logp1, logp2 - old_logp2
    if variant == 1:
        r1, r2 = xp.exp(lr1), xp.exp(lr2)
        w1, w2 = stop_gradient(delta * r2), stop_gradient(-delta * r1)

        def clip(r):
            lo, hi = xp.zeros_like(r) + (1 - clip_eps), xp.zeros_like(r) + (1 + clip_eps)
            return xp.minimum(xp.maximum(r, lo), hi)

        t1 = xp.minimum(w1 * r1, w1 * clip(r1))
        t2 = xp.minimum(w2 * r2, w2 * clip(r2))
        loss = -(t1 + t2) / 2
    else:
        w = stop_gradient(delta * xp.exp(lr1 + lr2))
        s, s_old = logp1 - logp2, old_logp1 - old_logp2
        # w = 0 (a log π = −inf makes r1·r2 = 0) times an infinite or undefined s: the
        # limit of Δ e^{−t}·t is 0, so s gets a finite stand-in there (gradient 0, not NaN).
        s = xp.where((w == 0) & ~xp.isfinite(s), xp.zeros_like(s), s)
        s_clip = xp.minimum(xp.maximum(s, s_old - clip_eps), s_old + clip_eps)
        loss = -xp.minimum(w * s, w * s_clip) / 2
    scale = xp.where(big & (loss != 0), xp.full_like(loss, float("inf")), xp.ones_like(loss))
    return loss * scale
