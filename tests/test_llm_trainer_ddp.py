"""PairwiseTrainer under ``torchrun --nproc_per_node=2`` (gloo, CPU): every method of the
registry trains with its replicas in sync, and an offline run matches one process on the
combined batch."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_llm_ddp import _torchrun  # how this repo launches torchrun

from bandit import METHODS, get_method
from llm import _trainer_ddp as T

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    out = tmp_path_factory.mktemp("ddp") / "trainer.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node=2", "-m", "llm._trainer_ddp", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(out)
    assert got["world_size"] == 2
    return got["results"]


def _gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[n] - b[n]).abs().max()) for n in a)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_in_sync_under_two_processes(ddp, method):
    res = ddp[method]
    # Gloo's all-reduce hands every rank the same averaged gradient, so the replicas apply
    # the same update bit for bit.
    assert res["spread"] == 0.0
    assert len(res["losses"]) == T.STEPS and all(math.isfinite(x) for x in res["losses"])
    init = dict(T.build_model().named_parameters())
    assert _gap(res["params"], {n: p.detach() for n, p in init.items()}) > 1e-4


def test_unsynced_control_is_caught(ddp):
    """The same check catches a trainer whose policy pass skips DDP's gradient hooks."""
    assert ddp["control"]["spread"] > 1e-4


@pytest.mark.parametrize("method", [m for m in METHODS if get_method(m).offline])
def test_offline_two_processes_match_one_process_on_the_combined_batch(ddp, method, tmp_path):
    _, single = T.train(method, T.ROWS, str(tmp_path), use_cpu=True)
    # float64 throughout; the runs differ only in summation order (the mean of two shard
    # means against one mean), a few ulps of each gradient entry. Adam's update
    # lr·m/(√v + ε) moves by at most lr·δg/ε with δg ~ 1e-16·|g| ≤ 1e-15 here: far below
    # 1e-10 after STEPS steps.
    assert _gap(ddp[method]["params"], single) < 1e-10
    if method == "copg":  # negative control: other batches (2 steps of half the data) differ
        _, half = T.train(method, T.ROWS // 2, str(tmp_path), use_cpu=True)
        assert _gap(ddp[method]["params"], half) > 1e-4
