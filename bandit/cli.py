"""The shared command-line behaviour of every CLI, and its argument types.

Bad input ends a CLI with a one-line message on stderr and exit status 2, never a
traceback: :class:`ArgumentParser` turns usage errors into ``ValueError`` and :func:`cli`
prints them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ArgumentParser", "cli", "int_at_least"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise a ValueError, so :func:`cli` prints one line.

    (Plain argparse prints the usage and the error on two lines and exits itself.)
    """

    def error(self, message: str):
        from .validation import ValidationError

        raise ValidationError(message)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``, with a one-line error otherwise."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


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
