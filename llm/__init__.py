"""copg-lab's PyTorch side: the verified pairwise losses for causal language models.

- :func:`sequence_logps`: per-sequence log π(y|x) from logits, memory-light, float32 accumulation.
- :func:`fused_sequence_logps`: the same from the final hidden states and the LM head,
  never building the logits; :func:`model_sequence_logps` and :func:`pair_logps` run a
  Hugging Face causal LM's backbone once and this fused head.
- The losses (:mod:`llm.losses`): thin wrappers around the one definition in
  :mod:`bandit.losses`, on (..., 2) pairs of sequence log-probabilities;
  :func:`method_loss` is the loss of any :class:`bandit.Method`, your own included.
- :func:`mixture_generate`: sampling from the token-level geometric mixture
  π^(1−β)·π_ref^β of IPO-MD §6, with a KV cache for each model.

``import llm`` imports torch (and never JAX); transformers is only needed for sampling
and the demo.
"""

from __future__ import annotations

from bandit import __version__

try:
    import torch  # noqa: F401
except ModuleNotFoundError as _e:  # the llm extra is missing
    from bandit.cli import require_extra

    require_extra(_e)

from .fused import (
    fused_sequence_logps,
    fused_token_logps,
    head_transform,
    model_sequence_logps,
    pair_logps,
)
from .logps import IGNORE_INDEX, sequence_logps, token_logps
from .losses import (
    copg_loss,
    dpo_loss,
    ipo_loss,
    ipo_md_loss,
    method_loss,
    nash_md_pg_loss,
    online_ipo_loss,
    p3o_loss,
    pg_loss,
    rloo_loss,
    slic_loss,
)
from .sampling import MixtureSample, mixture_generate

__all__ = [
    "IGNORE_INDEX",
    "MixtureSample",
    "__version__",
    "copg_loss",
    "dpo_loss",
    "fused_sequence_logps",
    "fused_token_logps",
    "head_transform",
    "ipo_loss",
    "ipo_md_loss",
    "method_loss",
    "mixture_generate",
    "model_sequence_logps",
    "nash_md_pg_loss",
    "online_ipo_loss",
    "p3o_loss",
    "pair_logps",
    "pg_loss",
    "rloo_loss",
    "sequence_logps",
    "slic_loss",
    "token_logps",
]
