"""mixture_generate samples the token-level geometric mixture of IPO-MD §6, with KV caches."""

from __future__ import annotations

import pytest
import torch

from bandit.validation import ValidationError
from llm import mixture_generate, token_logps

V, EOS = 12, 1


def _lm(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=V,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        initializer_range=0.5,  # peaked next-token distributions, so π and π_ref differ
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def models():
    return _lm(0), _lm(1)


def _prompts():
    ids = torch.tensor([[0, 0, 5, 7, 3], [4, 9, 2, 8, 6], [0, 3, 3, 10, 11]])
    attn = (torch.arange(5) >= torch.tensor([[2], [0], [1]])).long()  # left padding
    return ids, attn


@torch.no_grad()
def _recompute(policy, ref, s, mixture: float) -> torch.Tensor:
    """Σ log π̂ of the completion from full (cache-free) forward passes of both models."""
    pos = (s.attention_mask.cumsum(-1) - 1).clamp(min=0)
    kw = {"input_ids": s.sequences, "attention_mask": s.attention_mask, "position_ids": pos}
    a = policy(**kw).logits.double().log_softmax(-1)
    b = ref(**kw).logits.double().log_softmax(-1)
    mix = ((1 - mixture) * a + mixture * b).log_softmax(-1)
    lp, _ = token_logps(mix, s.sequences, s.completion_mask)
    return lp.sum(-1)


@pytest.mark.parametrize("mixture", [0.0, 0.3, 1.0])
def test_cached_generation_matches_full_recompute(models, mixture):
    """The log-probs accumulated with two KV caches equal a cache-free recomputation of the
    token-level mixture (float32 forward passes: agreement to ~1e-5 per token, we allow 1e-4
    per sequence of ≤ 6 tokens)."""
    policy, ref = models
    ids, attn = _prompts()
    g = torch.Generator().manual_seed(0)
    s = mixture_generate(
        policy, ref, ids, attn, mixture=mixture, max_new_tokens=6, eos_token_id=EOS, generator=g
    )
    torch.testing.assert_close(
        s.mixture_logps.double(), _recompute(policy, ref, s, mixture), rtol=0, atol=1e-4
    )
    if mixture == 0.3:
        # Negative control: the samples' log-probs under π alone are not the mixture's.
        gap = (s.mixture_logps.double() - _recompute(policy, ref, s, 0.0)).abs().max()
        assert gap > 1e-2


def test_first_token_frequencies_follow_the_mixture(models):
    """N draws of the first token: each frequency within 5 CLT standard errors of the
    mixture probability (fixed seed); the same bound rejects π alone (negative control)."""
    policy, ref = models
    N, mixture = 6000, 0.5
    ids = torch.tensor([[4, 9, 2]]).repeat(N, 1)
    g = torch.Generator().manual_seed(1)
    s = mixture_generate(policy, ref, ids, mixture=mixture, max_new_tokens=1, generator=g)
    freq = torch.bincount(s.sequences[:, -1], minlength=V).double() / N
    with torch.no_grad():
        a = policy(input_ids=ids[:1]).logits[0, -1].double().log_softmax(-1)
        b = ref(input_ids=ids[:1]).logits[0, -1].double().log_softmax(-1)
    q = ((1 - mixture) * a + mixture * b).softmax(-1)
    bound = 5 * (q * (1 - q) / N).sqrt() + 1e-12
    assert bool(((freq - q).abs() <= bound).all()), (freq, q)
    p_pi = a.exp()
    assert bool(((freq - p_pi).abs() > 5 * (p_pi * (1 - p_pi) / N).sqrt()).any())


def test_eos_masks_and_reproducibility(models):
    policy, ref = models
    ids, attn = _prompts()
    kw = {"mixture": 0.5, "max_new_tokens": 8, "eos_token_id": EOS, "pad_token_id": 0}
    s1 = mixture_generate(policy, ref, ids, attn, generator=torch.Generator().manual_seed(3), **kw)
    s2 = mixture_generate(policy, ref, ids, attn, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(s1.sequences, s2.sequences)
    P = ids.shape[1]
    assert torch.equal(s1.completion_mask[:, :P], torch.zeros_like(attn))
    for row, m in zip(s1.sequences, s1.completion_mask, strict=True):
        comp, cm = row[P:], m[P:]
        n = int(cm.sum())
        assert torch.equal(cm[:n], torch.ones(n, dtype=cm.dtype))  # contiguous completion
        if n < comp.numel():  # stopped early: the last counted token is EOS, then padding
            assert int(comp[n - 1]) == EOS and bool((comp[n:] == 0).all())


def test_several_eos_ids(models):
    """A list of EOS ids (as Hugging Face configs allow) stops a row at any of them: with
    [EOS] it is the single-id run; with every token an EOS, each row stops after one token."""
    policy, ref = models
    ids, attn = _prompts()
    kw = {"mixture": 0.5, "max_new_tokens": 8}

    def run(eos):
        g = torch.Generator().manual_seed(4)
        return mixture_generate(policy, ref, ids, attn, eos_token_id=eos, generator=g, **kw)

    assert torch.equal(run([EOS]).sequences, run(EOS).sequences)
    every = run(list(range(policy.config.vocab_size)))
    assert every.sequences.shape[1] == ids.shape[1] + 1
    assert bool((every.completion_mask.sum(-1) == 1).all())


def test_ref_not_needed_at_mixture_zero(models):
    policy, _ = models
    ids, attn = _prompts()
    s = mixture_generate(policy, None, ids, attn, mixture=0.0, max_new_tokens=3)
    assert s.sequences.shape == (3, 8)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mixture": 1.5, "max_new_tokens": 2}, r"mixture must lie in \[0, 1\]"),
        ({"mixture": 0.5, "max_new_tokens": 0}, "max_new_tokens"),
        ({"mixture": 0.5, "max_new_tokens": 2, "eos_token_id": []}, "eos_token_id"),
        ({"mixture": 0.5, "max_new_tokens": 2, "eos_token_id": [1, -5]}, "eos_token_id"),
        ({"mixture": 0.5, "max_new_tokens": 2, "eos_token_id": "</s>"}, "eos_token_id"),
    ],
)
def test_bad_input(models, kw, match):
    policy, ref = models
    ids, attn = _prompts()
    with pytest.raises(ValidationError, match=match):
        mixture_generate(policy, ref, ids, attn, **kw)
    with pytest.raises(ValidationError, match="attention_mask"):
        mixture_generate(policy, ref, ids, attn[:, :2], mixture=0.5, max_new_tokens=1)
