"""What the README's LLM example assumes exists: a tiny policy, its reference, a loader of
completion pairs and an optimizer (tests/test_readme.py runs the example after this)."""

import copy

import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
policy = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2))
ref_model = copy.deepcopy(policy).eval()
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)


def _batch(n_prompts: int = 4, T: int = 10) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 32, (2 * n_prompts, T))
    completion = torch.zeros_like(ids, dtype=torch.bool)
    completion[:, 4:] = True  # 4 prompt tokens, then the completion
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": completion,
        "rewards": torch.rand(n_prompts, 2),
    }


loader = [_batch() for _ in range(3)]
