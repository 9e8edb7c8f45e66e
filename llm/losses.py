"""The pairwise losses as PyTorch functions on sequence log-probabilities.

Thin wrappers around the one definition of each loss in :mod:`bandit.losses`: they check
shapes, dtypes and devices, split the pair on the last axis, upcast to float32 (float64
stays float64), call the shared definition and reduce as ``torch.nn.functional`` does.

Conventions (TRL's argument names where they fit):
  policy_logps, ref_logps   (..., 2): log π(y|x) and log π_ref(y|x) of the two completions
                            of one prompt, e.g. from :func:`llm.sequence_logps`.
  rewards                   (..., 2): R(x, y) of each completion (reward-based methods).
  preference                (...,):   p = P(completion 0 ≻ completion 1), 0/1 for hard labels.
  beta                      KL strength (CoPG's β, IPO-MD's τ).
  reduction                 "mean" (default) | "sum" | "none" over the batch axes (...).

Summed vs length-averaged log-probs: every paper here (CoPG Eq. 5, IPO-MD Eq. 8 and §6,
P3O Eq. 6) writes log π(y|x), the *summed* token log-probability, and the tabular theory
this package checks is about that quantity, so the default of :func:`llm.sequence_logps`
is the sum. Some IPO implementations (e.g. TRL's ``loss_type="ipo"``) length-average
instead; pass ``sequence_logps(..., average=True)`` for both the policy and the reference
to get that variant. The losses themselves are agnostic: they consume whatever you pass.

Non-finite values: NaN anywhere, +inf log-probs and infinite rewards or baselines are
refused (a :class:`~bandit.validation.ValidationError` naming the argument and the index).
log π = −inf is a completion of probability 0 (what :func:`llm.sequence_logps` returns for
a −inf label logit) and is accepted in ``policy_logps`` and ``ref_logps``: each loss returns
its mathematical limit (see :mod:`bandit.losses`), e.g. DPO gives +inf when the preferred
completion has log π = −inf and 0 when the other one has. Where no limit exists (log π =
log π_ref = −inf, so the log-ratio is undefined, or both completions of a pair at −inf) the
sample is refused. ``old_logps`` must be finite: the sampler gave its samples probability > 0.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Literal

import torch

from bandit.methods import Method, Pair, get_method
from bandit.validation import ValidationError, check_nonnegative, check_positive

from .logps import _acc_dtype

__all__ = [
    "copg_loss",
    "dpo_loss",
    "ipo_loss",
    "ipo_md_loss",
    "method_loss",
    "nash_md_pg_loss",
    "online_ipo_loss",
    "p3o_loss",
    "pg_loss",
    "rloo_loss",
    "slic_loss",
]

Reduction = Literal["mean", "sum", "none"]


def _logps(name: str, x: object, k: int | None = 2) -> torch.Tensor:
    """A floating (..., k) tensor of log-probabilities (k >= 2 when k is None)."""
    if not isinstance(x, torch.Tensor):
        raise ValidationError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValidationError(f"{name} must be floating point, got {x.dtype}")
    if x.ndim == 0 or (x.shape[-1] != k if k else x.shape[-1] < 2):
        want = f"(..., {k})" if k else "(..., k) with k >= 2"
        raise ValidationError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


def _like(
    name: str, x: object, ref: torch.Tensor, shape: tuple[int, ...], scalar: bool = False
) -> torch.Tensor:
    """``x`` as a tensor of ``shape`` on ``ref``'s device in ``ref``'s dtype.

    Python numbers broadcast; so do 0-d tensors when ``scalar`` (baselines, preferences).
    """
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.full(shape, float(x), dtype=ref.dtype, device=ref.device)
    if not isinstance(x, torch.Tensor):
        raise ValidationError(f"{name} must be a torch.Tensor or a number, got {type(x).__name__}")
    if x.is_complex():
        raise ValidationError(f"{name} must be real, got {x.dtype}")
    if tuple(x.shape) != shape and not (scalar and x.ndim == 0):
        raise ValidationError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if x.device != ref.device:
        raise ValidationError(
            f"{name} is on {x.device} but policy_logps is on {ref.device}; expected one device"
        )
    return x.to(ref.dtype).expand(shape)


def _pair(policy_logps: object, ref_logps: object, k: int | None = 2) -> torch.Tensor:
    """Validate the pair and return the log-ratios h = log π − log π_ref, upcast."""
    pol = _logps("policy_logps", policy_logps, k)
    ref = _logps("ref_logps", ref_logps, k)
    if ref.shape != pol.shape:
        raise ValidationError(
            f"ref_logps must have the shape of policy_logps {tuple(pol.shape)}, "
            f"got {tuple(ref.shape)}"
        )
    if ref.device != pol.device:
        raise ValidationError(
            f"ref_logps is on {ref.device} but policy_logps is on {pol.device}; expected one device"
        )
    dt = _acc_dtype(pol.dtype)
    return pol.to(dt) - ref.to(dt)


def _preference(preference: object, h: torch.Tensor) -> torch.Tensor:
    p = _like("preference", preference, h, tuple(h.shape[:-1]), scalar=True)
    bad = (p < 0) | (p > 1) | torch.isnan(p)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValidationError(
            f"preference must lie in [0, 1] (P(completion 0 ≻ completion 1)), got "
            f"{p[idx].item()} at index {idx}"
        )
    return p


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


def _check_values(checks: list[tuple[str, torch.Tensor, str]]) -> bool:
    """Refuse NaN, +inf and (for ``"finite"``) −inf entries, naming the argument and the
    index; return whether a ``"logp"`` tensor holds a −inf (a completion of probability 0).

    One host sync for all the tensors together; the culprit is looked up only on failure.
    """
    inf = float("inf")
    bads = [
        torch.isnan(x) | (x == inf) if kind == "logp" else ~torch.isfinite(x)
        for _, x, kind in checks
    ]
    neg = [(x == -inf).any() for _, x, kind in checks if kind == "logp"]
    flags = torch.stack([b.any() for b in bads] + neg).tolist()
    for (name, x, kind), bad, flag in zip(checks, bads, flags, strict=False):
        if flag:
            idx = _first(bad)
            what = (
                "NaN and +inf are refused (log π = −inf, probability 0, is accepted)"
                if kind == "logp"
                else "expected finite values"
            )
            raise ValidationError(f"{name} must not be {x[idx].item()} at index {idx}: {what}")
    return any(flags[len(bads) :])


def _check_limit(loss: torch.Tensor, policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> None:
    """Refuse a NaN loss from −inf log-probs: there the loss has no limit."""
    nan = torch.isnan(loss)
    if bool(nan.any()):
        idx = _first(nan)
        raise ValidationError(
            f"policy_logps, ref_logps: the loss has no limit at index {idx}, where the "
            f"log-probs are {policy_logps[idx].tolist()} (policy) and "
            f"{ref_logps[idx].tolist()} (ref): log π = log π_ref = −inf leaves log(π/π_ref) "
            "undefined, and so do both completions of a pair at −inf; drop that sample"
        )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValidationError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _run(
    method: str | Method,
    policy_logps: object,
    ref_logps: object,
    beta: float,
    *,
    rewards: object = None,
    preference: object = None,
    baseline: object = 0.0,
    old_logps: object = None,
    reduction: str = "mean",
    **params: Any,
) -> torch.Tensor:
    """Validate the tensors, build the :class:`bandit.methods.Pair` and call the method's
    one per-pair loss."""
    m = get_method(method)
    kw = m.check_params(params)
    h = _pair(policy_logps, ref_logps, k=m.n_completions(kw))
    lp = policy_logps.to(h.dtype)
    ref = ref_logps.to(h.dtype)
    if old_logps is None:
        old = lp.detach()
    else:
        old = _logps("old_logps", old_logps, h.shape[-1])
        if old.shape != h.shape or old.device != h.device:
            raise ValidationError(
                f"old_logps must match policy_logps (shape {tuple(h.shape)}, device "
                f"{h.device}), got shape {tuple(old.shape)} on {old.device}"
            )
        old = old.detach().to(h.dtype)
    r = value = p = None
    if m.signal == "reward":
        if rewards is None:
            raise ValidationError(f"rewards: method {m.name!r} learns from rewards; pass them")
        r = _like("rewards", rewards, h, tuple(h.shape))
        value = _like("baseline", baseline, h, tuple(h.shape[:-1]), scalar=True)
    else:
        if preference is None:
            raise ValidationError(f"preference: method {m.name!r} learns from preferences")
        p = _preference(preference, h)
    checks = [("policy_logps", policy_logps, "logp"), ("ref_logps", ref_logps, "logp")]
    if old_logps is not None:
        checks.append(("old_logps", old_logps, "finite"))
    if r is not None:
        checks += [("rewards", r, "finite"), ("baseline", value, "finite")]
    any_neg_inf = _check_values(checks)
    pair = Pair(
        logratio=tuple(h.unbind(-1)),
        logp=tuple(lp.unbind(-1)),
        old_logp=tuple(old.unbind(-1)),
        old_logratio=tuple((old - ref.detach()).unbind(-1)),
        reward=None if r is None else tuple(r.unbind(-1)),
        preference=p,
        value=value,
        beta=beta,
    )
    loss = m.loss(pair, **kw)
    if any_neg_inf:
        _check_limit(loss, policy_logps, ref_logps)
    return _reduce(loss, reduction)


def method_loss(
    method: str | Method,
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    *,
    beta: float,
    rewards: torch.Tensor | None = None,
    preference: torch.Tensor | float | None = None,
    baseline: torch.Tensor | float = 0.0,
    old_logps: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    **params: Any,
) -> torch.Tensor:
    """The loss of any method of the registry, built-in or registered by you.

    The torch wrapper of :attr:`bandit.methods.Method.loss`: the same per-pair function the
    exact engine takes expectations of, on the (..., k) sequence log-probs of k
    completions per prompt (k = 2, or ``k`` for rloo).

    Args:
      method: a :class:`bandit.Method` or a name from :data:`bandit.METHODS`.
      policy_logps, ref_logps: (..., k) log π and log π_ref of the completions.
      beta: KL strength β > 0 (CoPG's β, IPO-MD's τ).
      rewards: (..., k), for reward methods.
      preference: (...) or a number, p(completion 0 ≻ completion 1), preference methods.
      baseline: b, the value baseline E_π[R] (a number, 0-d or (...) tensor), stop-gradient.
      old_logps: (..., k) log π_old of the sampler (P3O); default sg[policy_logps].
      reduction: "mean" | "sum" | "none" over (...).
      **params: the method's parameters, e.g. ``clip_eps``.
    """
    beta = check_positive("beta", beta)
    return _run(
        method,
        policy_logps,
        ref_logps,
        beta,
        rewards=rewards,
        preference=preference,
        baseline=baseline,
        old_logps=old_logps,
        reduction=reduction,
        **params,
    )


def copg_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CoPG: ℓ = (R_β(y1) − R_β(y2))² / (2β),  R_β(y) = R(y) − β log(π(y)/π_ref(y)).

    CoPG Eq. (5) and Alg. 1 (scaled by 1/(2β)): its gradient is the negated CoPG gradient
    of Eq. (9), −(R_β(y1) − R_β(y2))(∇log π(y1) − ∇log π(y2)). Works on offline pairs from
    any two distributions; its unique optimum is π* ∝ π_ref·exp(R/β) (CoPG Thm 1).

    Args:
      policy_logps, ref_logps: (..., 2) log π and log π_ref of the two completions.
      rewards: (..., 2) their rewards.
      beta: KL strength β > 0.
      reduction: "mean" | "sum" | "none" over (...).
    Returns:
      A scalar, or (...) for reduction="none"; float32 (float64 for float64 input).
    """
    return method_loss(
        "copg", policy_logps, ref_logps, rewards=rewards, beta=beta, reduction=reduction
    )


def pg_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    beta: float,
    baseline: torch.Tensor | float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Off-policy policy gradient on a pair (CoPG §5, the biased baseline CoPG fixes):

    ℓ = −[sg(R_β(y1) − b)·log π(y1) + sg(R_β(y2) − b)·log π(y2)].

    Args:
      policy_logps, ref_logps, rewards: (..., 2).
      beta: KL strength β > 0.
      baseline: b, a number, a 0-d or a (...) tensor (stop-gradient); 0 for plain ``pg``.
      reduction: "mean" | "sum" | "none".
    """
    # pg_value with the caller's baseline; b = 0 is plain pg.
    kw = {"rewards": rewards, "baseline": baseline, "beta": beta, "reduction": reduction}
    return method_loss("pg_value", policy_logps, ref_logps, **kw)


def rloo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """REINFORCE leave-one-out over k completions of one prompt (CoPG Prop. 2):

    ℓ = −Σ_j sg(R_β(y_j) − (1/(k−1)) Σ_{l≠j} R_β(y_l))·log π(y_j).

    Args:
      policy_logps, ref_logps, rewards: (..., k), k >= 2 samples from the current policy.
      beta: KL strength β > 0.
      reduction: "mean" | "sum" | "none" over (...).
    """
    _logps("policy_logps", policy_logps, None)  # k is read off the shape
    kw = {"rewards": rewards, "beta": beta, "reduction": reduction}
    return method_loss("rloo", policy_logps, ref_logps, k=policy_logps.shape[-1], **kw)


def _preference_loss(method, policy_logps, ref_logps, preference, beta, reduction):
    kw = {"preference": preference, "beta": beta, "reduction": reduction}
    return method_loss(method, policy_logps, ref_logps, **kw)


def ipo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor | float,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """IPO: ℓ = p·(ρ − 1/(2β))² + (1 − p)·(ρ + 1/(2β))²,  ρ = h(y1) − h(y2).

    IPO-MD Eq. (8) with τ = β, h = log π − log π_ref. The paper uses summed sequence
    log-probs (IPO-MD §6); so does our default (see the module docstring for averaging).
    The same loss is offline IPO (dataset pairs), online IPO (pairs from sg[π]) and IPO-MD
    (pairs from the token-level geometric mixture, :func:`llm.mixture_generate`).

    Args:
      policy_logps, ref_logps: (..., 2).
      preference: (...) p = P(completion 0 ≻ completion 1), or a number / 0-d tensor.
      beta: KL strength β = τ > 0.
      reduction: "mean" | "sum" | "none".
    """
    return _preference_loss("ipo", policy_logps, ref_logps, preference, beta, reduction)


def ipo_md_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor | float,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """IPO-MD(β_mix) and online IPO: the IPO loss of IPO-MD Eq. (8) on sampled pairs.

    IPO-MD §5.1 and Alg. 3: identical to :func:`ipo_loss`; only the sampler differs. Sample
    both completions with :func:`llm.mixture_generate` (``mixture`` = β_mix; 0 gives online
    IPO, IPO-MD Eq. 11). ``beta`` here is the KL strength τ.
    """
    return _preference_loss("online_ipo", policy_logps, ref_logps, preference, beta, reduction)


online_ipo_loss = ipo_md_loss


def dpo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor | float,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DPO: ℓ = −p·log σ(βρ) − (1 − p)·log σ(−βρ),  ρ = h(y1) − h(y2)  (IPO-MD Eq. 4).

    Args as :func:`ipo_loss`. With pairs sampled from π it is online DPO (IPO-MD App. G).
    """
    return _preference_loss("dpo", policy_logps, ref_logps, preference, beta, reduction)


def slic_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor | float,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SLiC: ℓ = p·max(0, 1 − βρ) + (1 − p)·max(0, 1 + βρ)  (IPO-MD Eq. 5). Args as IPO."""
    return _preference_loss("slic", policy_logps, ref_logps, preference, beta, reduction)


def nash_md_pg_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor | float,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Nash-MD-PG: ℓ = −sg(p(y ≻ y') − 1/2 − β h(y))·log π(y)  (IPO-MD §2.6).

    Completion 0 is y ∼ π, completion 1 is y' from the geometric mixture
    (:func:`llm.mixture_generate`); only y gets a gradient, so entry [..., 1] of the
    log-probs is checked but not used.

    Args:
      policy_logps, ref_logps: (..., 2).
      preference: (...) p(y ≻ y').
      beta: KL strength τ > 0.
      reduction: "mean" | "sum" | "none".
    """
    return _preference_loss("nash_md_pg", policy_logps, ref_logps, preference, beta, reduction)


def p3o_loss(
    policy_logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    beta: float,
    clip_eps: float = 0.2,
    variant: int = 2,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """P3O with separate (variant 1) or joint (variant 2) clipping (P3O §4.2).

    The reward is KL-regularised at the behaviour policy, R − β·log(π_old/π_ref), as in the
    P3O paper; then with r_i = π(y_i)/π_old(y_i) and Δ the reward difference,
    V1: ℓ = −½ Σ_{i≠j} min(sg(Δ_ij r_j)·r_i, sg(Δ_ij r_j)·clip(r_i, 1 ± ε)),
    V2: ℓ = −½ min(sg(Δ r1 r2)·log(π1/π2), sg(Δ r1 r2)·clip(log(π1/π2), log(π_old1/π_old2) ± ε)).

    Args:
      policy_logps: (..., 2) log π of two completions sampled from π_old.
      old_logps: (..., 2) log π_old (the sampler; treated as constants).
      ref_logps: (..., 2) log π_ref.
      rewards: (..., 2).
      beta: KL strength β >= 0 (0 disables the penalty).
      clip_eps: ε > 0.
      variant: 1 or 2.
      reduction: "mean" | "sum" | "none".
    """
    beta = check_nonnegative("beta", beta)
    clip_eps = check_positive("clip_eps", clip_eps)
    if isinstance(variant, bool) or not isinstance(variant, Integral) or variant not in (1, 2):
        raise ValidationError(f"variant must be 1 or 2, got {variant!r}")
    if old_logps is None:
        raise ValidationError("old_logps: P3O needs the log-probs of the sampler π_old")
    return _run(
        f"p3o_v{variant}",
        policy_logps,
        ref_logps,
        beta,
        rewards=rewards,
        old_logps=old_logps,
        reduction=reduction,
        clip_eps=clip_eps,
    )
