"""Atomic outputs: JSON, figures and config files.

Every file is written to a temporary file in the target folder and renamed into place,
so an interrupted run never leaves a truncated figure or JSON. Figures are built with
matplotlib's object-oriented API (:func:`new_figure`), never through pyplot, so making or
saving one never switches the user's backend (a notebook keeps its inline figures).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "json_text",
    "jsonable",
    "load_config",
    "new_figure",
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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
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


def save_outputs(out: str | Path, stem: str, fig: Any, data: Any) -> None:
    """A CLI's output set: ``stem``.png and .pdf, then ``stem``.json last, so a JSON
    newer than its figures never sits beside them after an interrupted run."""
    out = Path(out)
    save_figure(fig, out / stem)
    write_json(out / f"{stem}.json", data)
    print(f"wrote {out / stem}.png, .pdf and .json")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict, with one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:  # parse errors from either format
        raise ValueError(f"config {p}: cannot parse ({e})") from None
