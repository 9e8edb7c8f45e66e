"""One CoPG training step under DistributedDataParallel, for the distributed test.

    torchrun --standalone --nproc_per_node=2 -m llm._ddp_step OUT.pt

Every rank builds the same tiny float64 causal LM and the same global batch of pairs, takes
its contiguous shard, runs ``copg_loss(reduction="mean")`` through DDP (gloo, CPU) and
back-propagates; rank 0 saves the all-reduced gradients to OUT.pt. DDP averages gradients
over ranks, so with equal shards they are the gradient of the mean over the global batch,
which :func:`single_process_grads` computes in one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

from llm.logps import sequence_logps
from llm.losses import copg_loss

GLOBAL_PAIRS = 8  # pairs in the global batch (divisible by the world size)
SEQ_LEN = 10
VOCAB = 17
BETA = 0.3


def build_model() -> torch.nn.Module:
    """A tiny GPT-2, randomly initialised from a fixed seed, float64, without dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=SEQ_LEN,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).double()


def global_batch() -> dict[str, torch.Tensor]:
    """Pairs of sequences (G, 2, T), their completion masks, rewards and reference log-probs."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (GLOBAL_PAIRS, 2, SEQ_LEN), generator=g)
    mask = torch.zeros(GLOBAL_PAIRS, 2, SEQ_LEN, dtype=torch.bool)
    lengths = torch.randint(2, SEQ_LEN - 3, (GLOBAL_PAIRS, 2), generator=g)
    for i in range(GLOBAL_PAIRS):
        for j in range(2):
            mask[i, j, 3 : 3 + int(lengths[i, j])] = True  # a 3-token prompt, then completion
    rewards = torch.rand(GLOBAL_PAIRS, 2, generator=g, dtype=torch.float64)
    ref = -5.0 * torch.rand(GLOBAL_PAIRS, 2, generator=g, dtype=torch.float64)
    return {"ids": ids, "mask": mask, "rewards": rewards, "ref": ref}


def loss_on(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean CoPG loss of the batch's pairs."""
    ids, mask = batch["ids"], batch["mask"]
    G = ids.shape[0]
    logits = model(input_ids=ids.reshape(2 * G, SEQ_LEN)).logits
    logps = sequence_logps(logits, ids.reshape(2 * G, SEQ_LEN), mask.reshape(2 * G, SEQ_LEN))
    return copg_loss(logps.reshape(G, 2), batch["ref"], batch["rewards"], beta=BETA)


def single_process_grads() -> dict[str, torch.Tensor]:
    """Gradients of the loss on the whole global batch, in this process."""
    model = build_model()
    loss_on(model, global_batch()).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def main(out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if GLOBAL_PAIRS % world:
        raise ValueError(f"world size {world} must divide GLOBAL_PAIRS={GLOBAL_PAIRS}")
    model = build_model()
    ddp = DistributedDataParallel(model)
    per = GLOBAL_PAIRS // world
    shard = {k: v[rank * per : (rank + 1) * per] for k, v in global_batch().items()}
    loss_on(ddp, shard).backward()
    if rank == 0:
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        torch.save({"grads": grads, "world_size": world}, out)
    dist.barrier()
    dist.destroy_process_group()


def run_and_exit(main: Callable[[str], None], module: str) -> None:
    """``main(OUT)`` from the command line of a torchrun worker, then exit at once.

    All work is done when ``main`` returns. Skip interpreter finalisation: under load,
    torch's C++ teardown at exit sometimes destroys a still-joinable thread ("terminate
    called without an active exception", SIGABRT) after a successful run.
    """
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: torchrun --nproc_per_node=N -m {module} OUT.pt")
    main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    run_and_exit(main, "llm._ddp_step")
