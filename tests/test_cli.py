"""What every CLI shares (bandit.cli): Ctrl-C exits 130 with one line and writes nothing;
a missing optional extra is named with the pip command that installs it.

The Ctrl-C tests run the real programs in a subprocess and interrupt them while they work
(1 s after their progress bar appears), as a user would (issue #21, item 9)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bandit.cli import cli, require_extra
from bandit.outputs import write_json

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")


def _start(args: list[str]) -> tuple[subprocess.Popen, bytearray, threading.Thread]:
    # SIGINT is restored to its default in the child (a job started from a
    # non-interactive shell inherits it ignored, and Python keeps it so).
    p = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = bytearray()

    def read() -> None:
        while chunk := p.stderr.read1(4096):
            err.extend(chunk)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return p, err, t


def _interrupt(args: list[str], ready: bytes | None, delay: float) -> tuple[int, list[str]]:
    """Start ``python args``, wait for ``ready`` on its stderr (None: don't), sleep
    ``delay``, send SIGINT; returns the exit status and the stderr lines that are not a
    progress bar (tqdm draws its bar with carriage returns, then clears it)."""
    p, err, reader = _start(args)
    try:
        t0 = time.monotonic()
        while ready is not None and ready not in err and p.poll() is None:
            assert time.monotonic() - t0 < 300, "the program never got going"
            time.sleep(0.05)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
    finally:
        p.kill()
        p.wait()
    reader.join(timeout=10)
    segments = re.split(r"[\r\n]", err.decode(errors="replace"))
    return rc, [s for s in segments if s.strip() and "%|" not in s]


@pytest.mark.parametrize(
    ("args", "prog"),
    [
        (["-m", "bandit.figure1", "--epochs", "1000"], "figure1"),  # longer: still at work
        (["-m", "llm.demo"], "demo"),
    ],
)
def test_sigint_exits_130_with_one_line_and_no_output(tmp_path, args, prog):
    out = tmp_path / "out"
    rc, lines = _interrupt([*args, "--out", str(out)], ready=b"%|", delay=1.0)
    assert rc == 130
    assert lines == [f"{prog}: interrupted"]  # no traceback, no "Exception ignored"
    # Nothing of the interrupted run: no figure, no JSON, no temporary file.
    assert not out.exists() or sorted(os.listdir(out)) == []


# A program whose main thread spends its time in a garbage-collector callback, as JAX's
# programs do (jax registers one that runs on every collection): a KeyboardInterrupt
# raised there is printed as "Exception ignored" and dropped by Python.
_GC_PROGRAM = textwrap.dedent(
    """
    import gc, sys, time
    from bandit.cli import cli

    gc.callbacks.append(lambda phase, info: time.sleep(0.1))

    def main(argv):
        print("ready", file=sys.stderr, flush=True)
        t = time.monotonic()
        while time.monotonic() - t < 4:
            gc.collect()
        return 0

    sys.exit(cli(main)() if sys.argv[1] == "cli" else main(None))
    """
)


@pytest.mark.parametrize("wrapped", [True, False])
def test_sigint_in_a_gc_callback_is_not_lost(wrapped):
    """The cli wrapper exits 130 with one line; the same program unwrapped (negative
    control) loses the interrupt: exit 0 and an "Exception ignored" traceback."""
    rc, lines = _interrupt(
        ["-c", _GC_PROGRAM, "cli" if wrapped else "plain"], ready=b"ready", delay=0.5
    )
    lines = [s for s in lines if s != "ready"]
    if wrapped:
        assert rc == 130 and len(lines) == 1 and lines[0].endswith(": interrupted")
    else:
        assert rc == 0 and any("Exception ignored" in s for s in lines)


def test_sigint_while_the_package_imports():
    """Under ``python -m pkg.cli`` the package's ``__init__`` runs with ``sys.argv[0] ==
    "-m"``; exit_on_interrupt_while_importing makes Ctrl-C there one line and exit 130
    (negative control below: without it, a traceback)."""
    prog = textwrap.dedent(
        """
        import signal, sys, time
        sys.argv[0] = "-m"  # as while python -m imports the package
        from bandit.cli import exit_on_interrupt_while_importing
        # Importing bandit.cli ran the package's own guard: undo it, then test the hook alone.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if sys.argv[1] == "hook":
            exit_on_interrupt_while_importing()
        print("ready", file=sys.stderr, flush=True)
        time.sleep(60)  # an import that takes a while
        """
    )
    rc, lines = _interrupt(["-c", prog, "hook"], ready=b"ready", delay=0.2)
    lines = [s for s in lines if s != "ready"]
    assert rc == 130 and len(lines) == 1 and lines[0].endswith(": interrupted")
    rc, lines = _interrupt(["-c", prog, "none"], ready=b"ready", delay=0.2)
    assert rc != 0 and any("Traceback" in s for s in lines)


@pytest.mark.skipif(
    "exit_on_interrupt_while_importing" not in (ROOT / "bandit" / "__init__.py").read_text(),
    reason="bandit/__init__.py does not call exit_on_interrupt_while_importing yet",
)
def test_sigint_during_imports_of_a_real_cli(tmp_path):
    rc, lines = _interrupt(["-m", "bandit.figure1", "--out", str(tmp_path)], None, 0.3)
    assert rc == 130 and lines == ["figure1: interrupted"]


@pytest.mark.parametrize("delay", [0.1, 0.5, 0.9])
@pytest.mark.parametrize(
    ("args", "prog"),
    [(["-m", "theory", "--report", "{tmp}/r.md"], "theory"), (["-m", "bench", "--quick"], "bench")],
)
def test_sigint_during_imports_of_theory_and_bench(tmp_path, args, prog, delay):
    """#21 rerun: theory's paper modules import JAX before bandit, and bench had no guard:
    Ctrl-C in their first second gave a traceback (exit -2), or landed in JAX's gc callback
    and was swallowed (the run went on). Their packages now install the guard first."""
    argv = [a.format(tmp=tmp_path) for a in args]
    rc, lines = _interrupt(argv, None, delay)
    assert rc == 130 and lines == [f"{prog}: interrupted"]


def test_no_output_is_put_in_place_after_an_interrupt(tmp_path, capsys):
    """A Ctrl-C that the computation swallowed (as a library may) still stops the output
    set: atomic_path commits nothing once the CLI got SIGINT. Negative control: the same
    main outside the cli wrapper writes its file."""

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass  # swallowed by the computation
        write_json(tmp_path / "x.json", {"a": 1})
        return 0

    assert cli(main)([]) == 130
    assert sorted(os.listdir(tmp_path)) == []
    assert capsys.readouterr().err.strip().endswith(": interrupted")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert main(None) == 0  # negative control
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_missing_extra_is_one_line_naming_the_extra(capsys):
    def needs(module: str):
        def main(argv):
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)

        return cli(main)

    assert needs("torch")([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[llm]"' in err[0] and "torch" in err[0]
    assert needs("trl.kernels")([]) == 2
    assert '".[bench]"' in capsys.readouterr().err
    # Negative control: a module no extra provides is a bug and keeps its traceback.
    with pytest.raises(ModuleNotFoundError):
        needs("no_such_module_xyz")([])


def test_require_extra(monkeypatch, capsys):
    e = ModuleNotFoundError("No module named 'transformers'", name="transformers")
    with pytest.raises(ModuleNotFoundError, match=r'pip install -e "\.\[llm\]"'):
        require_extra(e)
    monkeypatch.setattr(sys, "argv", ["-m"])  # python -m llm.demo, importing llm
    with pytest.raises(SystemExit) as exit_:
        require_extra(e)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '".[llm]"' in err[0]
    other = ModuleNotFoundError("No module named 'xyz'", name="xyz")
    with pytest.raises(ModuleNotFoundError) as raised:
        require_extra(other)
    assert raised.value is other
