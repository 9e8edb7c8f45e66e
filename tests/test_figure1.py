"""CoPG Fig. 1, regenerated and checked: the CLI, its outputs, and the paper's claims.

The claims are tested on the paper's full setting (10 seeds, 100 epochs: seconds), and the
agreement with the exact fixed points also after 400 epochs, where every flow has converged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from bandit import outputs
from bandit.cli import cli
from bandit.figure1 import (
    DEFAULT_METHODS,
    Figure1Config,
    Figure1Result,
    MethodResult,
    compute,
    main,
)

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "final_regret_mean",
    "final_regret_std",
    "final_policy_mean",
    "fixed_point_policy",
    "fixed_point_regret",
    "fixed_point_residual",
    "regret_curve_mean",
    "regret_curve_std",
}


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bandit.figure1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_cli_writes_complete_outputs_and_is_deterministic(tmp_path):
    args = ["--seeds", "3", "--epochs", "4", "--methods", "copg,dpo,slic", "--seed", "11"]
    a, b = tmp_path / "a", tmp_path / "b"
    ra, rb = _cli(*args, "--out", str(a)), _cli(*args, "--out", str(b))
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    for ext in ("png", "pdf", "json"):
        assert (a / f"figure1.{ext}").stat().st_size > 0
    # Same seed, same bytes.
    assert (a / "figure1.json").read_bytes() == (b / "figure1.json").read_bytes()
    d = json.loads((a / "figure1.json").read_text())
    assert {"config", "optimal_policy", "optimal_value", "methods"} <= set(d)
    assert list(d["methods"]) == ["copg", "dpo", "slic"]
    for s in d["methods"].values():
        assert KEYS <= set(s)
        assert len(s["regret_curve_mean"]) == len(s["regret_curve_std"]) == 5  # epochs + 1
        assert s["regret_curve_mean"][0] == pytest.approx(d["initial_regret"], abs=1e-15)
    # A different seed gives different numbers (the seed is used).
    other = compute(methods=["copg"], seeds=3, epochs=4, seed=12).to_dict()
    assert (
        other["methods"]["copg"]["final_regret_mean"] != d["methods"]["copg"]["final_regret_mean"]
    )


def test_cli_reads_a_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "rewards = [1.0, 0.0]\nmu1 = [0.5, 0.5]\nmu2 = [0.3, 0.7]\nbeta = 1.0\n"
        "dataset_size = 200\nbatch_size = 50\nlearning_rate = 0.01\n"
    )
    argv = ["--config", str(cfg), "--seeds", "2", "--epochs", "2", "--out", str(tmp_path)]
    assert cli(main)(argv) == 0  # in-process: the subprocess path is tested below
    d = json.loads((tmp_path / "figure1.json").read_text())
    assert d["config"]["beta"] == 1.0 and d["config"]["dataset_size"] == 200
    assert len(d["optimal_policy"]) == 2


_IN_PROCESS = {"beta", "shape", "online", "--seeds", "unknown key"}


@pytest.mark.parametrize(
    ("config", "args", "needle"),
    [
        ('{"mu1": [0.5, 0.6, 0.1]}', [], "mu1 must sum to 1"),
        ('{"beta": 0}', [], "beta"),
        ('{"beta": -1.0}', [], "beta"),
        ('{"mu_1": [0.5, 0.5, 0.0]}', [], "unknown key"),
        ('{"rewards": [1, 2]}', [], "shape"),
        (None, ["--methods", "copg,bogus"], "unknown method 'bogus'"),
        (None, ["--methods", "online_ipo"], "online"),
        (None, ["--config", "/nonexistent/cfg.toml"], "not found"),
        (None, ["--seeds", "0"], "--seeds"),
        (None, ["--frobnicate"], "unrecognized"),
    ],
)
def test_bad_input_exits_with_one_line(tmp_path, capsys, config, args, needle):
    if config is not None:
        f = tmp_path / "cfg.json"
        f.write_text(config)
        args = ["--config", str(f), *args]
    argv = [*args, "--out", str(tmp_path / "out")]
    if needle in _IN_PROCESS:  # same code path, without a fresh interpreter's start-up
        rc, stderr = cli(main)(argv), capsys.readouterr().err
    else:
        r = _cli(*argv)
        rc, stderr = r.returncode, r.stderr
    assert rc != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and needle in lines[0]
    assert not (tmp_path / "out" / "figure1.json").exists()


def test_help():
    r = _cli("--help")
    assert r.returncode == 0 and "--seeds" in r.stdout


# ------------------------------------------------------------- the claims of CoPG Fig. 1


@pytest.fixture(scope="module")
def paper():
    """The paper's setting: 10 seeds, 100 epochs, R = (2.5, 2, 1), β = 0.5 (seconds)."""
    r = compute(Figure1Config(), methods=DEFAULT_METHODS, seeds=10, epochs=100)
    return r.to_dict(), {m: x.training for m, x in r.methods.items()}


def test_fig1_qualitative_claims(paper):
    s, res = paper
    m = s["methods"]
    r0 = s["initial_regret"]
    copg = np.asarray(m["copg"]["regret_curve_mean"])
    # CoPG: regret falls at every epoch toward its fixed point, π* (regret 0, CoPG Thm 1)...
    assert m["copg"]["fixed_point_regret"] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(copg) < 0)
    assert copg[-1] < 0.1 * r0
    # ...and ends below every other method, on every seed (all share the same data).
    for other in ("ipo", "pg", "pg_value"):
        assert np.all(res["copg"].regret[:, -1] < res[other].regret[:, -1])
    # IPO settles at its non-zero fixed-point regret: the last 20 epochs sit within
    # sampling error of it (4 standard errors of the mean over seeds).
    ipo = m["ipo"]
    assert ipo["fixed_point_regret"] > 0.1
    se = np.asarray(ipo["regret_curve_std"][-20:]) / np.sqrt(10)
    assert np.all(
        np.abs(np.asarray(ipo["regret_curve_mean"][-20:]) - ipo["fixed_point_regret"]) < 4 * se
    )
    # PG without a baseline ends with more regret than the initial policy.
    assert np.all(res["pg"].regret[:, -1] > r0)
    # PG with the value baseline heads to a non-zero fixed point: its distance to that
    # policy shrinks along training, and the fixed point's regret is clearly positive.
    fp = np.asarray(m["pg_value"]["fixed_point_policy"])
    dist = np.abs(np.exp(res["pg_value"].log_policies[:, :, 0]).mean(0) - fp).max(axis=-1)
    assert np.all(np.diff(dist) < 0) and m["pg_value"]["fixed_point_regret"] > 1e-2
    # Negative control: the same monotonicity check catches PG moving away from π*.
    pi_star = np.asarray(s["optimal_policy"])
    away = np.abs(np.exp(res["pg"].log_policies[:, :, 0]).mean(0) - pi_star).max(axis=-1)
    assert not np.all(np.diff(away) < 0)


def _z_bound(n_checks: int, alpha: float = 1e-3) -> float:
    """Two-sided normal quantile for a family-wise false-alarm rate ``alpha``."""
    return float(norm.isf(alpha / (2 * n_checks)))


def _agrees(s: dict, seeds: int, z: float) -> bool:
    """Trained mean policy = fixed point within z standard errors + the flow's own gap.

    The dataset (N = 10⁴ pairs) is the main source of spread over seeds; the mean over
    seeds of the trained policy differs from the fixed point of the population by its
    sampling error (estimated by the standard error over seeds), plus the O(1/N) bias of
    a smooth function of the empirical distribution (allowed 10/N), plus what the
    noise-free flow has not yet covered (``optimisation_gap``).
    """
    mean, fp = np.asarray(s["final_policy_mean"]), np.asarray(s["fixed_point_policy"])
    se = np.asarray(s["final_policy_se"])
    bias = 10 / Figure1Config().dataset_size
    return bool(np.all(np.abs(mean - fp) <= z * se + s["optimisation_gap"] + bias))


def test_fig1_policies_agree_with_fixed_points_at_100_epochs(paper):
    s, _ = paper
    m = s["methods"]
    z = _z_bound(3 * len(m))
    # IPO and PG have converged by epoch 100: agreement within sampling error...
    for name in ("ipo", "pg"):
        assert m[name]["agreement"] == "sampling error"
        assert _agrees(m[name] | {"optimisation_gap": 0.0}, 10, z)
    # ...CoPG and PG-value have not: the noise-free Adam flow is itself still far away,
    # so their gap to the fixed point is the remaining optimisation gap.
    for name in ("copg", "pg_value"):
        assert m[name]["agreement"] == "optimisation gap"
        assert m[name]["optimisation_gap"] > 100 * max(m[name]["final_policy_se"])


def test_fig1_policies_agree_with_fixed_points_after_400_epochs():
    r = compute(Figure1Config(), methods=DEFAULT_METHODS, seeds=10, epochs=400)
    s, res = r.to_dict(), {m: x.training for m, x in r.methods.items()}
    assert r.batches.n_seeds == 10
    z = _z_bound(3 * len(DEFAULT_METHODS))
    for name, m in s["methods"].items():
        assert m["agreement"] == "sampling error", name
        assert _agrees(m, 10, z), name
    # CoPG's per-pair loss is minimised by π* on every pair, so every seed reaches π*.
    assert res["copg"].regret[:, -1].max() < 1e-12
    # Negative control: the wrong method's fixed point (IPO's for PG-value) is rejected.
    wrong = s["methods"]["pg_value"] | {
        "fixed_point_policy": s["methods"]["ipo"]["fixed_point_policy"]
    }
    assert not _agrees(wrong, 10, z)


def test_result_is_typed_and_its_json_is_the_cli_file(tmp_path):
    """compute returns frozen, typed results; to_json is figure1.json byte for byte."""
    import dataclasses

    argv = ["--seeds", "2", "--epochs", "2", "--methods", "ipo,copg", "--out", str(tmp_path)]
    assert cli(main)(argv) == 0
    r = compute(methods=["ipo", "copg"], seeds=2, epochs=2)
    assert isinstance(r, Figure1Result) and list(r.methods) == ["ipo", "copg"]
    written = json.loads((tmp_path / "figure1.json").read_text())
    assert written.pop("provenance")["figures"]  # save_outputs adds the figures' sha256
    assert r.to_json() == outputs.json_text(written)
    assert json.loads(r.to_json()) == r.to_dict()
    ipo = r.methods["ipo"]
    assert isinstance(ipo, MethodResult) and ipo.fixed_point.method == "ipo"
    assert ipo.training.regret.shape == (2, 3) and r.batches.n_seeds == 2
    assert ipo.regret_curve_mean.shape == (3,) and ipo.final_policy_mean.shape == (3,)
    # The objects stay out of the JSON; the fixed point's certificate goes in.
    d = r.to_dict()["methods"]["ipo"]
    assert "training" not in d and "fixed_point" not in d and "batches" not in r.to_dict()
    assert d["fixed_point_residual"] == ipo.fixed_point.residual
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seeds = 3  # type: ignore[misc]


def test_plotting_never_switches_the_users_backend(tmp_path):
    """A notebook's backend survives compute(), plot() and save_figure(). Negative control:
    the pyplot route that the CLIs used to take (``matplotlib.use("Agg")``) does switch it."""
    code = f"""
import matplotlib
matplotlib.use("svg")
from bandit.figure1 import Figure1Config, compute, plot
from bandit.outputs import save_figure
r = compute(Figure1Config(dataset_size=20, batch_size=10), methods=["copg"], seeds=1, epochs=1)
save_figure(plot(r), {str(tmp_path / "f")!r})
print(matplotlib.get_backend())
if {{control}}:
    matplotlib.use("Agg")
    print(matplotlib.get_backend())
"""
    for control, want in ((False, ["svg"]), (True, ["svg", "agg"])):
        out = subprocess.run(
            [sys.executable, "-c", code.replace("{control}", str(control))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert [b.lower() for b in out] == want
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
