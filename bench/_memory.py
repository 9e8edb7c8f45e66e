"""Peak memory of one call, the one measurement every benchmark and memory test shares.

CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the call. CPU:
the running sum of the allocation (> 0) and free (< 0) events that ``torch.profiler``
records, so the figure does not depend on what the C allocator keeps or returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["peak_bytes"]


def peak_bytes(fn: Callable[[], Any], device: str = "cpu") -> int:
    """Peak bytes of the tensors allocated while ``fn()`` runs, beyond those alive before."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak
