"""`python -m bandit.rps` (IPO-MD App. F): matrix choice, outputs, determinism, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit import outputs
from bandit.cli import cli
from bandit.problems import PreferenceGame
from bandit.rps import PAPER_MATRIX, RPS_MATRIX, main, nearest_preference_matrix
from bandit.validation import ValidationError

ROOT = Path(__file__).resolve().parents[1]


def test_paper_matrix_is_invalid_and_ours_is_its_projection():
    with pytest.raises(ValidationError, match=r"P \+ P.T = 1"):
        PreferenceGame(PAPER_MATRIX)
    PreferenceGame(RPS_MATRIX)  # valid
    assert np.allclose(RPS_MATRIX, [[0.5, 0.85, 0.1], [0.15, 0.5, 0.85], [0.9, 0.15, 0.5]])


@given(st.integers(0, 2**32 - 1))
def test_projection_is_nearest_valid_matrix(seed):
    """‖M − proj(M)‖_F <= ‖M − Q‖_F for every valid Q (the set is affine, so the
    orthogonal projection is optimal; a random valid Q must never beat it)."""
    rng = np.random.default_rng(seed)
    U = rng.uniform(size=(3, 3))
    Q = np.triu(U, 1) + np.tril(1 - np.triu(U, 1).T, -1) + 0.5 * np.eye(3)
    d_proj = np.linalg.norm(PAPER_MATRIX - RPS_MATRIX)
    assert d_proj <= np.linalg.norm(PAPER_MATRIX - Q) + 1e-15
    # negative control: keeping the printed upper triangle is valid but farther away
    upper = np.triu(PAPER_MATRIX, 1) + np.tril(1 - np.triu(PAPER_MATRIX, 1).T, -1)
    upper += 0.5 * np.eye(3)
    PreferenceGame(upper)
    assert np.linalg.norm(PAPER_MATRIX - upper) > d_proj + 1e-3
    assert np.allclose(nearest_preference_matrix(Q), Q)  # valid matrices are fixed


def test_cli_writes_outputs_deterministically(tmp_path):
    argv = ["--steps", "300", "--mixture", "0", "0.5,1", "--out"]
    assert cli(main)([*argv, str(tmp_path / "a")]) == 0
    assert cli(main)([*argv, str(tmp_path / "b")]) == 0
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / "a" / f"rps.{ext}").stat().st_size > 0
    a = (tmp_path / "a" / "rps.json").read_bytes()
    assert a == (tmp_path / "b" / "rps.json").read_bytes()
    data = json.loads(a)
    for key in ("matrix", "beta", "nash_equilibrium", "nash_duality_gap"):
        assert key in data
    assert set(data["runs"]) == {"0", "0.5", "1"}
    for run in data["runs"].values():
        assert run["fixed_point_residual"] < 1e-10
        assert len(run["trajectory_end"]) == len(run["distance_to_fixed_point"]) == 3


def test_committed_figure_data():
    """figures/rps.json was made by the CLI with its defaults: every β converged."""
    data = json.loads((ROOT / "figures" / "rps.json").read_text())
    assert np.allclose(data["matrix"], RPS_MATRIX) and data["beta"] == 0.1
    assert data["nash_duality_gap"] < 1e-10
    assert {"0", "1"} <= set(data["runs"])
    for run in data["runs"].values():
        assert run["fixed_point_residual"] < 1e-10
        assert max(run["distance_to_fixed_point"]) < 1e-9
        if "mixture_nash_gap" in run:  # Prop. 5.2
            assert run["mixture_nash_gap"] < 1e-10
    assert (ROOT / "figures" / "rps.png").is_file()


BAD = [
    ("0.5,0.8,0.1;0.1,0.5,0.8;0.9,0.1,0.5", "P + P.T = 1"),  # IPO-MD App. F as printed
    ("0.5,0.5,0.5;0.5,0.5,0.5", "square"),
    ("0.5,1.5;-0.5,0.5", "[0, 1]"),
    ("0.4,0.5;0.5,0.6", "diagonal"),
    ("0.5,x;0.5,0.5", "cannot read"),
    ("0.5,0.5;0.5", "cannot read"),
    ("0.5,nan;nan,0.5", "finite"),
    ("no/such/file.json", "no such file"),
]


@pytest.mark.parametrize(("matrix", "words"), BAD)
def test_invalid_matrix_one_line_error(matrix, words, tmp_path, capsys):
    assert cli(main)(["--matrix", matrix, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--matrix" in err and words in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_matrix_from_file(tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps(RPS_MATRIX.tolist()))
    argv = ["--matrix", str(f), "--steps", "10", "--mixture", "0", "--out", str(tmp_path)]
    assert cli(main)(argv) == 0


def test_bad_options(tmp_path, capsys):
    bad = (["--mixture", "1.5"], ["--mixture", "0,x"], ["--mixture", ","], ["--beta", "0"])
    bad += (["--beta", "nan"], ["--lr", "-1"], ["--steps", "0"], ["--steps", "1.5"])
    for argv in bad:
        assert cli(main)([*argv, "--out", str(tmp_path)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_module_entry_point_no_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "bandit.rps", "--matrix", "0.5,0.8;0.1,0.5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    h = subprocess.run(
        [sys.executable, "-m", "bandit.rps", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert h.returncode == 0 and "--matrix" in h.stdout


def test_compute_returns_a_typed_result_for_notebooks(tmp_path):
    import dataclasses

    from bandit.rps import MixtureRun, RPSResult, compute, plot

    r = compute(steps=20, mixtures=[0.0, 1.0])
    assert isinstance(r, RPSResult) and isinstance(r.runs["0"], MixtureRun)
    assert r.runs["0"].mixture == 0.0 and r.runs["0"].mixture_nash_gap is not None
    assert r.runs["0"].trajectories.shape == (3, 21, 3)
    # Prop. 5.2's gap has no game at m = 1: None in the result, absent from the JSON.
    assert r.runs["1"].mixture_nash_gap is None
    d = r.to_dict()
    assert "mixture_nash_gap" not in d["runs"]["1"] and "mixture_nash_gap" in d["runs"]["0"]
    assert d["beta"] == r.beta == 0.1 and d["runs"]["1"]["mixture"] == 1.0
    assert plot(r).axes
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.beta = 0.2  # type: ignore[misc]
    # to_json is the CLI's rps.json, byte for byte.
    argv = ["--steps", "20", "--mixture", "0,1", "--out", str(tmp_path)]
    assert cli(main)(argv) == 0
    written = json.loads((tmp_path / "rps.json").read_text())
    assert written.pop("provenance")["figures"]  # save_outputs adds the figures' sha256
    assert r.to_json() == outputs.json_text(written)
    assert json.loads(r.to_json()) == d


def test_plotting_never_switches_the_users_backend(tmp_path):
    """A notebook's backend survives compute(), plot() and save_figure()."""
    code = f"""
import matplotlib
matplotlib.use("svg")
from bandit.outputs import save_figure
from bandit.rps import compute, plot
save_figure(plot(compute(steps=10, mixtures=[0.5])), {str(tmp_path / "f")!r})
print(matplotlib.get_backend())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["svg"]
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
