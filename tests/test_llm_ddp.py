"""A CoPG step under ``torchrun --nproc_per_node=2`` (gloo, CPU) has the single-process
gradients of the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from llm import _ddp_step

ROOT = Path(__file__).resolve().parents[1]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    if shutil.which("torchrun"):
        return [shutil.which("torchrun")]
    return [sys.executable, "-m", "torch.distributed.run"]  # what torchrun runs


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)
def test_ddp_gradients_match_single_process(tmp_path):
    out = tmp_path / "grads.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    cmd = [
        *_torchrun(),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "llm._ddp_step",
        str(out),
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(out)
    assert got["world_size"] == 2
    want = _ddp_step.single_process_grads()
    assert set(got["grads"]) == set(want)
    for name, g in want.items():
        # float64 throughout: the two runs differ only in summation order (two shard means
        # averaged vs one mean), an error of a few ulps of the largest gradient entry.
        scale = float(g.abs().max())
        torch.testing.assert_close(got["grads"][name], g, rtol=0, atol=1e-12 * max(1.0, scale))
    # Negative control: one rank's shard alone is not the global gradient.
    model = _ddp_step.build_model()
    half = {k: v[: _ddp_step.GLOBAL_PAIRS // 2] for k, v in _ddp_step.global_batch().items()}
    _ddp_step.loss_on(model, half).backward()
    gap = max(float((p.grad - want[n]).abs().max()) for n, p in model.named_parameters())
    assert gap > 1e-6
