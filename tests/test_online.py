"""``python -m bandit.online``: outputs, determinism, the fixed points it reports, the CLI's
help and one-line errors (each claim with a negative control)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bandit.online import main

TINY = ["--steps", "100", "--seeds", "2", "--replay", "2", "--mixtures", "0,1"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two runs with the same seed (the second reuses the compiled programs)."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    assert main([*TINY, "--out", str(a)]) == 0
    assert main([*TINY, "--out", str(b)]) == 0
    return a, b


def test_writes_the_figure_and_the_json(outputs):
    a, _ = outputs
    for ext in ("png", "pdf", "json"):
        assert (a / f"online.{ext}").stat().st_size > 0
    d = json.loads((a / "online.json").read_text())
    assert d["config"]["steps"] == 100 and d["config"]["mixtures"] == [0.0, 1.0]
    want = {f"{m}.{s}" for m in ("copg", "ipo") for s in ("offline", "online", "replay")}
    want |= {"copg.demo_replay", "ipo.demo_replay"}
    want |= {"ipo_md.mu_mixture=0", "ipo_md.mu_mixture=1"}
    assert set(d["runs"]) == want
    for r in d["runs"].values():
        assert {"source", "regret_curve", "fixed_point_policy", "residual"} <= set(r)
        assert len(r["regret_curve"]) == 101 and r["residual"] <= 1e-10
        assert np.isclose(sum(r["fixed_point_policy"]), 1.0)


def test_same_seed_same_json(outputs):
    a, b = outputs
    assert (a / "online.json").read_bytes() == (b / "online.json").read_bytes()


def test_reported_fixed_points(outputs):
    """CoPG's fixed point is π* (regret 0) under every source; IPO's moves with it
    (negative control: offline and online IPO end at different regrets); the μ-mixture at
    β = 0 is online IPO's fixed point and at β = 1 offline IPO's on μ1 ⊗ μ1."""
    d = json.loads((outputs[0] / "online.json").read_text())["runs"]
    for s in ("offline", "online", "replay", "demo_replay"):
        assert d[f"copg.{s}"]["fixed_point_regret"] <= 1e-12
    ipo = {s: d[f"ipo.{s}"]["fixed_point_policy"] for s in ("offline", "online", "demo_replay")}
    assert np.max(np.abs(np.subtract(ipo["offline"], ipo["online"]))) > 1e-3
    assert np.max(np.abs(np.subtract(ipo["online"], ipo["demo_replay"]))) > 1e-3
    mix0 = d["ipo_md.mu_mixture=0"]["fixed_point_policy"]
    assert np.max(np.abs(np.subtract(mix0, ipo["online"]))) <= 1e-9
    assert np.max(np.abs(np.subtract(d["ipo.replay"]["fixed_point_policy"], mix0))) <= 1e-9
    # The curves start at π_ref's regret and their generated-sample axes are as documented.
    first = {r["regret_curve"][0] for r in d.values()}
    assert max(first) - min(first) <= 1e-15
    assert d["copg.offline"]["generated_samples"][-1] == 0
    assert d["copg.online"]["generated_samples"][-1] == 2 * 512 * 100
    assert d["copg.replay"]["generated_samples"][-1] == 512 * (2 + 100)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "bandit.online", *args], capture_output=True, text=True
    )


def test_help_shows_the_defaults():
    out = _run("--help")
    assert out.returncode == 0
    for text in ("default 2000", "default 10", "0,0.25,0.5,0.75,1", "--config", "--out"):
        assert text in out.stdout


@pytest.mark.parametrize(
    "args, what",
    [(["--seeds", "1"], "--seeds"), (["--mixtures", "2"], "--mixtures"),
     (["--steps", "0"], "--steps"), (["--config", "/nonexistent.toml"], "config")],
)  # fmt: skip
def test_bad_input_is_one_line(args, what):
    out = _run(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and what in out.stderr


def test_stacked_runs_equal_the_one_source_dynamics(outputs):
    """The CLI runs every source of a method in one vmapped program
    (bandit.dynamics.stacked_source_dynamics); its curves are those of the one-source
    dynamics, to rounding (the same float64 operations, selected per run: ≤ 1e-12).
    Negative control: another source's curve differs."""
    from bandit.dynamics import sampled_source_dynamics, source_dynamics
    from bandit.exact import regret
    from bandit.figure1 import Figure1Config
    from bandit.online import _adam
    from bandit.sources import Replay

    d = json.loads((outputs[0] / "online.json").read_text())["runs"]
    cfg = Figure1Config()
    b, _ = cfg.problem()
    kw = dict(steps=100, optimizer=_adam(float(cfg.learning_rate)), record_every=1)
    ex = source_dynamics("copg", b, Replay(last=2), b.log_ref, **kw)
    sm = sampled_source_dynamics(
        "copg", b, Replay(last=2), b.log_ref, batch_size=cfg.batch_size, seeds=2, seed=0, **kw
    )
    curve, mean = regret(b, ex.log_policies[0]), regret(b, sm.log_policies).mean(axis=0)
    assert np.max(np.abs(np.subtract(d["copg.replay"]["regret_curve"], curve))) <= 1e-12
    assert np.max(np.abs(np.subtract(d["copg.replay"]["sampled_regret_mean"], mean))) <= 1e-12
    other = d["copg.demo_replay"]
    assert np.max(np.abs(np.subtract(other["regret_curve"], curve))) > 1e-6
    assert np.max(np.abs(np.subtract(other["sampled_regret_mean"], mean))) > 1e-6
