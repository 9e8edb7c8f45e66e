"""Atomic outputs: JSON, figures and config files.

Every file is written to a temporary file in the target folder and renamed into place,
so an interrupted run never leaves a truncated figure or JSON. A CLI's output set
(:func:`save_outputs`) is its figures, then its JSON last, holding the sha256 of each figure
it belongs to, the package version and the git commit: :func:`check_outputs` tells a JSON
from one run beside figures from another. Temporary files are named
``.<name>.tmp<pid>-<random><suffix>``; those a killed run left (its process gone, or older
than :data:`STALE_SECONDS`) are removed on the next write to their folder. After Ctrl-C in
a CLI nothing more is renamed into place (:func:`bandit.cli.interrupted`).

Figures are built with matplotlib's object-oriented API (:func:`new_figure`), never
through pyplot, so making or saving one never switches the user's backend (a notebook
keeps its inline figures).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "STALE_SECONDS",
    "atomic_path",
    "check_outputs",
    "clean_stale_temporaries",
    "json_text",
    "jsonable",
    "load_config",
    "new_figure",
    "provenance",
    "save_figure",
    "save_outputs",
    "write_json",
]


def new_figure(**kwargs: Any):
    """A ``matplotlib.figure.Figure`` outside pyplot: no backend switch, no global state.

    Show one in a notebook by evaluating it; save it with :func:`save_figure`.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


#: A temporary file of a live process older than this is stale too (its pid was reused):
#: writing one output file takes seconds.
STALE_SECONDS = 600.0
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)-[^/]*$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OSError, OverflowError):
        return False
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` that a killed run left
    (its process is gone, or the file is older than :data:`STALE_SECONDS`); returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = _TMP.match(e.name)
        if m is None or not e.is_file(follow_symlinks=False):
            continue
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
            if old or not _pid_alive(int(m["pid"])):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:  # raced with its owner or another cleaner
            continue
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Stale temporaries of killed runs in the folder are removed first. Nothing is renamed
    once the running CLI got Ctrl-C (:func:`bandit.cli.interrupted`).
    """
    from .cli import interrupted

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.tmp{os.getpid()}-", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        if interrupted():  # Ctrl-C that landed where Python could not raise it
            raise KeyboardInterrupt
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonable(obj: Any) -> Any:
    """NumPy/JAX arrays and scalars to plain lists and floats; non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        a = np.asarray(obj)
        return jsonable(a.tolist()) if a.ndim else jsonable(a.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def json_text(obj: Any) -> str:
    """``obj`` as the CLIs write it: :func:`jsonable`, indented, sorted keys, final newline."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as :func:`json_text`, atomically (same input, same bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))


def save_figure(fig: Any, path_without_suffix: str | Path) -> list[Path]:
    """Save a matplotlib figure as PNG and PDF, atomically; returns the paths."""
    out = []
    for ext in ("png", "pdf"):
        target = Path(f"{path_without_suffix}.{ext}")
        with atomic_path(target) as tmp:
            # Fixed metadata so the same data gives the same bytes.
            meta = {"Software": None} if ext == "png" else {"CreationDate": None}
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        out.append(target)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _commit() -> dict[str, Any] | None:
    """The git commit of the checkout this package runs from, and whether its tracked files
    other than the generated ``figures/`` differ from it (regenerating one figure must not
    mark the next one dirty); None outside a git checkout (an installed wheel, no git)."""
    root = Path(__file__).resolve().parents[1]
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:  # not our checkout (or none)
        return None
    sha = _git(root, "rev-parse", "HEAD")
    if sha is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!figures")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def provenance(figures: list[Path] | tuple[Path, ...] = ()) -> dict[str, Any]:
    """What made an output set: ``version`` (``bandit.__version__``), ``commit``
    (:func:`_commit`: ``{"sha", "dirty"}``, or None outside a git checkout) and the sha256
    of each figure file by name."""
    from . import __version__

    return {
        "version": __version__,
        "commit": _commit(),
        "figures": {p.name: _sha256(p) for p in figures},
    }


def save_outputs(out: str | Path, stem: str, fig: Any, data: dict[str, Any]) -> None:
    """A CLI's output set: ``stem``.png and .pdf, then ``stem``.json last, holding ``data``
    and, under ``"provenance"``, the figures' sha256 (:func:`provenance`): a JSON newer than
    its figures never sits beside them unnoticed after an interrupted run
    (:func:`check_outputs`)."""
    from .validation import ValidationError

    if "provenance" in data:
        raise ValidationError("data: the key 'provenance' is save_outputs' own")
    out = Path(out)
    figures = save_figure(fig, out / stem)
    write_json(out / f"{stem}.json", {**data, "provenance": provenance(figures)})
    print(f"wrote {out / stem}.png, .pdf and .json")


def check_outputs(out: str | Path, stem: str) -> list[str]:
    """The problems of an output set written by :func:`save_outputs`: a missing file, or a
    figure whose sha256 is not the one its JSON records. Empty when the set is whole."""
    out = Path(out)
    try:
        recorded = json.loads((out / f"{stem}.json").read_text())["provenance"]["figures"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{out / stem}.json: no provenance ({type(e).__name__})"]
    problems = []
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif recorded.get(p.name) != _sha256(p):
            problems.append(f"{p}: not the figure {stem}.json belongs to")
    return problems


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (``.json``) config file into a dict, with one-line
    errors."""
    from .validation import ValidationError

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValidationError(
            f"config {p}: expected a TOML (.toml) or JSON (.json) file, got "
            f"{suffix or 'no suffix'}; use TOML or JSON"
        )
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # the same parser, before it joined the standard library
                import tomli as tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:  # parse errors from either format
        raise ValueError(f"config {p}: cannot parse ({e})") from None
