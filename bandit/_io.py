"""Atomic outputs and the shared command-line behaviour of every CLI.

Every file is written to a temporary file in the target folder and renamed into place,
so an interrupted run never leaves a truncated figure or JSON. Bad input ends a CLI with
a one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArgumentParser",
    "atomic_path",
    "cli",
    "jsonable",
    "load_config",
    "pyplot",
    "save_figure",
    "write_json",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise a ValueError, so :func:`cli` prints one line.

    (Plain argparse prints the usage and the error on two lines and exits itself.)
    """

    def error(self, message: str):
        from .validation import ValidationError

        raise ValidationError(message)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (CLIs run without a screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def atomic_path(path: str | Path):
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


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically, with sorted keys (same input, same bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n")


def save_figure(fig: Any, path_without_suffix: str | Path) -> list[Path]:
    """Save a matplotlib figure as PNG and PDF, atomically, then close it; returns the paths."""
    out = []
    for ext in ("png", "pdf"):
        target = Path(f"{path_without_suffix}.{ext}")
        with atomic_path(target) as tmp:
            # Fixed metadata so the same data gives the same bytes.
            meta = {"Software": None} if ext == "png" else {"CreationDate": None}
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        out.append(target)
    pyplot().close(fig)
    return out


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


def _prog() -> str:
    """The program's name for messages: ``theory`` for ``python -m theory``."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("copg-lab")
    return path.parent.name if path.stem == "__main__" else path.stem


def cli(main: Callable[[Sequence[str] | None], int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main(argv)`` so bad input exits 2 with a one-line message.

    ``ValueError`` (incl. :class:`~bandit.validation.ValidationError`), ``FileNotFoundError``
    and other ``OSError`` are user errors; anything else is a bug and keeps its traceback.
    """

    def run(argv: Sequence[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except (ValueError, OSError) as e:
            prog = _prog()
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    run.__doc__ = main.__doc__
    return run
