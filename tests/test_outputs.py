"""Output sets (bandit.outputs, issue #21 item 10): the JSON, written last, records the
sha256 of its figures, the package version and the git commit; a killed run's temporary
files are removed on the next write; config files must be TOML or JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import bandit
from bandit import outputs
from bandit.outputs import (
    STALE_SECONDS,
    atomic_path,
    check_outputs,
    clean_stale_temporaries,
    load_config,
    new_figure,
    save_outputs,
)
from bandit.validation import ValidationError

ROOT = Path(__file__).resolve().parents[1]


def _figure(y: float):
    fig = new_figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, y])
    return fig


def test_json_records_its_figures_version_and_commit(tmp_path):
    save_outputs(tmp_path, "f", _figure(1.0), {"x": 1})
    d = json.loads((tmp_path / "f.json").read_text())
    assert d["x"] == 1
    prov = d["provenance"]
    assert prov["version"] == bandit.__version__
    assert sorted(prov["figures"]) == ["f.pdf", "f.png"]
    assert check_outputs(tmp_path, "f") == []
    if shutil.which("git") and (ROOT / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert prov["commit"]["sha"] == head and isinstance(prov["commit"]["dirty"], bool)
    # Same data, same bytes (the figures' metadata is fixed).
    save_outputs(tmp_path / "b", "f", _figure(1.0), {"x": 1})
    assert (tmp_path / "b" / "f.json").read_bytes() == (tmp_path / "f.json").read_bytes()


def test_a_json_beside_figures_of_another_run_is_detected(tmp_path):
    """An interrupted run that renamed its PNG but not its JSON: check_outputs names the
    PNG (the negative control is the whole set above, for which it reports nothing)."""
    save_outputs(tmp_path, "f", _figure(1.0), {"x": 1})
    other = tmp_path / "other"
    save_outputs(other, "f", _figure(2.0), {"x": 2})
    os.replace(other / "f.png", tmp_path / "f.png")
    problems = check_outputs(tmp_path, "f")
    assert len(problems) == 1 and "f.png" in problems[0]
    (tmp_path / "f.pdf").unlink()
    assert any("missing" in p for p in check_outputs(tmp_path, "f"))
    (tmp_path / "f.json").write_text("{}")
    assert "no provenance" in check_outputs(tmp_path, "f")[0]


def test_provenance_key_is_reserved(tmp_path):
    with pytest.raises(ValidationError, match="provenance"):
        save_outputs(tmp_path, "f", _figure(1.0), {"provenance": 1})


def test_commit_outside_a_git_checkout_is_none(monkeypatch):
    """No git on PATH (or not our checkout): commit None, no error."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert outputs.provenance()["commit"] is None


def test_dirty_tree_is_marked(tmp_path, monkeypatch):
    """A checkout whose tracked file differs from its commit is dirty; clean after commit."""
    if not shutil.which("git"):
        pytest.skip("no git")
    repo = tmp_path / "repo"
    pkg = repo / "bandit"
    pkg.mkdir(parents=True)
    fake = pkg / "outputs.py"
    fake.write_text("x = 1\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }

    def git(*a):
        subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, env=env)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    monkeypatch.setattr(outputs, "__file__", str(fake))
    assert outputs._commit()["dirty"] is False
    fake.write_text("x = 2\n")
    assert outputs._commit()["dirty"] is True
    # Negative control: a folder outside any checkout has no commit.
    monkeypatch.setattr(outputs, "__file__", str(tmp_path / "no" / "bandit" / "outputs.py"))
    assert outputs._commit() is None


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid  # reaped: no process has it (until the kernel reuses it)


def test_stale_temporaries_are_removed_on_the_next_write(tmp_path):
    """What a SIGKILL leaves: 0-byte hidden temporaries of a dead process. The next write
    to the folder removes them; a live process's fresh temporary and files of other names
    (negative controls) stay."""
    dead = tmp_path / f".f.png.tmp{_dead_pid()}-abc.png"
    old = tmp_path / f".f.pdf.tmp{os.getpid()}-old.pdf"  # live pid, but an hour old
    live = tmp_path / f".f.json.tmp{os.getpid()}-new.json"
    user = tmp_path / ".f.png.mine"
    for p in (dead, old, live, user):
        p.write_bytes(b"")
    t = time.time() - 2 * STALE_SECONDS
    os.utime(old, (t, t))
    outputs.write_json(tmp_path / "f.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, user.name, "f.json"])
    assert clean_stale_temporaries(tmp_path / "nonexistent") == []


def test_killed_run_leaves_temporaries_that_the_next_run_removes(tmp_path):
    """SIGKILL in the middle of writing (here: while the temporary is open)."""
    import signal
    import sys

    prog = (
        "import os, sys, time\n"
        "from bandit.outputs import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(60)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", prog, str(tmp_path / "f.json")], stdout=subprocess.PIPE, text=True
    )
    tmp = Path(p.stdout.readline().strip())
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert tmp.exists() and tmp.stat().st_size == 0  # what the issue saw
    with atomic_path(tmp_path / "g.json") as t:
        t.write_text("{}")
    assert not tmp.exists() and (tmp_path / "g.json").exists()


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".ini", ""])
def test_config_must_be_toml_or_json(tmp_path, suffix):
    p = tmp_path / f"c{suffix}"
    p.write_text("beta: 0.5\n")
    with pytest.raises(ValidationError, match="use TOML or JSON"):
        load_config(p)


def test_config_toml_and_json_load(tmp_path):
    (tmp_path / "c.toml").write_text("beta = 0.5\n")
    (tmp_path / "c.json").write_text('{"beta": 0.5}')
    assert load_config(tmp_path / "c.toml") == load_config(tmp_path / "c.json") == {"beta": 0.5}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="cannot parse"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
