"""Sampling from the token-level geometric mixture of a policy and its reference.

IPO-MD §6 (and Munos et al. 2023 for Nash-MD): the sequence-level mixture
π^(1−β)·π_ref^β cannot be sampled exactly, so at each step n one samples from

    log π̂_β(·|y_<n, x) = (1 − β)·log π(·|y_<n, x) + β·log π_ref(·|y_<n, x) + C(y_<n, x),

the normalised mixture of the two next-token distributions. The mixture itself is
:func:`bandit.policy.geometric_mixture` (its one definition). Both models keep their own KV
cache, so each step costs one new-token forward pass per model.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from bandit.policy import geometric_mixture
from bandit.validation import ValidationError, check_unit_interval

__all__ = ["MixtureSample", "mixture_generate"]


class MixtureSample(NamedTuple):
    """What :func:`mixture_generate` returns.

    Attributes:
      sequences: (B, P + N) prompt then completion token ids (pad after EOS).
      attention_mask: (B, P + N) 1 for real tokens (prompt and completion up to EOS).
      completion_mask: (B, P + N) 1 for completion tokens (the sampled ones, EOS included);
        pass it as ``mask`` to :func:`llm.sequence_logps` with ``labels=sequences``.
      mixture_logps: (B,) Σ_n log π̂_β(y_n|·) of the sampled completion (float32).
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    mixture_logps: torch.Tensor


def _cache_kw(model: Any) -> str:
    """The KV-cache keyword: ``cache`` (transformers >= 5.x) or ``past_key_values`` (older)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _eos_ids(eos_token_id: int | Sequence[int], device: torch.device) -> torch.Tensor:
    """The end-of-sequence id(s) as a 1-d tensor of non-negative integers."""
    items = list(eos_token_id) if isinstance(eos_token_id, Sequence) else [eos_token_id]
    try:
        ids = [operator.index(i) for i in items if not isinstance(i, bool)]
    except TypeError:
        ids = []
    if not ids or len(ids) != len(items) or min(ids) < 0:
        raise ValidationError(
            "eos_token_id must be a token id >= 0 or a non-empty list of them, "
            f"got {eos_token_id!r}"
        )
    return torch.tensor(ids, device=device)


def _vocab_size(model: Any) -> int | None:
    """The input vocabulary of a Hugging Face model (its embedding rows); None if unknown."""
    try:
        return int(model.get_input_embeddings().num_embeddings)
    except (AttributeError, TypeError, NotImplementedError):
        return None


def _max_positions(model: Any) -> int | None:
    """The rows of a Hugging Face model's learned position table (GPT-2's ``n_positions``):
    past them its embedding lookup fails. None if unknown or rotary (RoPE models state a
    length too, but past it their quality, not their indexing, fails)."""
    config = getattr(model, "config", None)
    if any(getattr(config, k, None) for k in ("rope_parameters", "rope_scaling", "rope_theta")):
        return None
    n = getattr(config, "max_position_embeddings", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _is_int_tensor(x: object) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and not x.is_floating_point()
        and not x.is_complex()
        and x.dtype != torch.bool
    )


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def _step(model: Any, kw: str, ids, attn, pos, cache) -> tuple[torch.Tensor, Any]:
    """One forward pass on the new tokens; next-token log-probs (float32) and the cache."""
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **{kw: cache})
    return out.logits[:, -1].float().log_softmax(-1), getattr(out, kw)


@torch.no_grad()
def mixture_generate(
    policy: Any,
    ref: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    mixture: float,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    generator: torch.Generator | None = None,
) -> MixtureSample:
    """Sample completions from the token-level mixture π̂_β (IPO-MD §6), with two KV caches.

    ``mixture`` = β_mix ∈ [0, 1]: 0 samples from π (online IPO / the y of Nash-MD-PG),
    1 from π_ref, in between the IPO-MD(β) / Nash-MD sampler. Prompts may be left-padded
    (``attention_mask`` 0 on the left); positions are counted from the first real token.

    Args:
      policy, ref: causal LMs called as ``model(input_ids=, attention_mask=, position_ids=,
        cache=, use_cache=True)`` returning ``.logits`` and ``.cache`` (any Hugging Face
        ``*ForCausalLM``; older versions' ``past_key_values`` keyword is detected). ``ref``
        is not run at ``mixture=0``, nor ``policy`` at ``mixture=1``.
      input_ids: (B, P) prompt ids; attention_mask: (B, P), default all ones.
      mixture: β_mix in [0, 1].
      max_new_tokens: N >= 1 tokens to sample at most.
      eos_token_id: stop a row after this token, or after any of several (a list, as in
        Hugging Face configs); later positions get ``pad_token_id``.
      generator: a ``torch.Generator`` for reproducible samples.
    Returns:
      A :class:`MixtureSample`.
    """
    b = check_unit_interval("mixture", mixture)
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValidationError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not _is_int_tensor(input_ids):
        raise ValidationError(
            f"input_ids must be an integer torch.Tensor of shape (B, P), got {_describe(input_ids)}"
        )
    if input_ids.ndim != 2 or input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValidationError(
            f"input_ids must have shape (B, P) with B, P >= 1, got {tuple(input_ids.shape)}"
        )
    for name, model, used in (("policy", policy, b < 1.0), ("ref", ref, b > 0.0)):
        if used and not callable(getattr(model, "forward", None)):
            raise ValidationError(
                f"{name} must be a causal LM (a torch.nn.Module such as a Hugging Face "
                f"*ForCausalLM), got {type(model).__name__}"
            )
    longest = _max_positions(policy if b < 1.0 else ref)
    if longest is not None and input_ids.shape[1] + max_new_tokens > longest:
        raise ValidationError(
            f"max_new_tokens: prompts of {input_ids.shape[1]} tokens plus {max_new_tokens} new "
            f"ones exceed the model's {longest} positions"
        )
    vocab = _vocab_size(policy if b < 1.0 else ref)
    if input_ids.numel() and (
        int(input_ids.min()) < 0 or (vocab and int(input_ids.max()) >= vocab)
    ):
        bad = int(input_ids.min()) if int(input_ids.min()) < 0 else int(input_ids.max())
        raise ValidationError(
            f"input_ids must hold token ids in [0, {vocab or 'vocabulary size'}), got {bad}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValidationError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    try:
        pad = -1 if isinstance(pad_token_id, bool) else operator.index(pad_token_id)
    except TypeError:
        pad = -1
    if pad < 0:
        raise ValidationError(f"pad_token_id must be a token id >= 0, got {pad_token_id!r}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    else:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.is_complex():
            raise ValidationError(
                "attention_mask must be a torch.Tensor of 0/1 (or bool) values, got "
                f"{_describe(attention_mask)}"
            )
        if attention_mask.shape != input_ids.shape:
            raise ValidationError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        if attention_mask.device != input_ids.device:
            raise ValidationError(
                f"attention_mask is on {attention_mask.device} but input_ids is on "
                f"{input_ids.device}; expected one device"
            )
        if attention_mask.dtype != torch.bool:
            bad = (attention_mask != 0) & (attention_mask != 1)
            if bool(bad.any()):
                idx = tuple(int(i) for i in bad.nonzero()[0])
                raise ValidationError(
                    f"attention_mask must hold 0/1 values, got {attention_mask[idx].item()} "
                    f"at index {idx}"
                )
    attn = attention_mask.long()
    if bool((attn.sum(-1) == 0).any()):
        raise ValidationError("attention_mask: every prompt needs at least one real token")
    B = input_ids.shape[0]
    dev = input_ids.device
    eos = None if eos_token_id is None else _eos_ids(eos_token_id, dev)
    if eos is not None and vocab and int(eos.max()) >= vocab:
        raise ValidationError(
            f"eos_token_id must be a token id < the vocabulary size {vocab}, got {eos_token_id!r}"
        )
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    # At β_mix = 0 (or 1) the other model does not enter the mixture: skip its passes.
    use_pi, use_ref = b < 1.0, b > 0.0
    kw_pi = _cache_kw(policy) if use_pi else ""
    kw_ref = _cache_kw(ref) if use_ref else ""
    lp_pi = cache_pi = lp_ref = cache_ref = None
    if use_pi:
        lp_pi, cache_pi = _step(policy, kw_pi, input_ids, attn, pos, None)
    if use_ref:
        lp_ref, cache_ref = _step(ref, kw_ref, input_ids, attn, pos, None)
    seqs, new_attn = [input_ids], [attn]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    total = torch.zeros(B, dtype=torch.float32, device=dev)
    next_pos = pos[:, -1:] + 1
    for n in range(max_new_tokens):
        log_mix = geometric_mixture(lp_pi if use_pi else lp_ref, lp_ref if use_ref else lp_pi, b)
        tok = torch.multinomial(log_mix.exp(), 1, generator=generator)  # (B, 1)
        live = ~done
        total += torch.where(live, log_mix.gather(-1, tok)[:, 0], torch.zeros_like(total))
        tok = torch.where(live[:, None], tok, torch.full_like(tok, pad))
        seqs.append(tok)
        new_attn.append(live[:, None].long())
        if eos is not None:
            done |= torch.isin(tok[:, 0], eos)
        if bool(done.all()) or n == max_new_tokens - 1:
            break
        attn = torch.cat([attn, live[:, None].long()], dim=1)
        if use_pi:
            lp_pi, cache_pi = _step(policy, kw_pi, tok, attn, next_pos, cache_pi)
        if use_ref:
            lp_ref, cache_ref = _step(ref, kw_ref, tok, attn, next_pos, cache_ref)
        next_pos = next_pos + 1
    sequences = torch.cat(seqs, dim=1)
    full_attn = torch.cat(new_attn, dim=1)
    completion = torch.zeros_like(full_attn)
    completion[:, input_ids.shape[1] :] = full_attn[:, input_ids.shape[1] :]
    return MixtureSample(sequences, full_attn, completion, total)
