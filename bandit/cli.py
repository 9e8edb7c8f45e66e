"""The shared command-line behaviour of every CLI, and its argument types.

Bad input ends a CLI with a one-line message on stderr and exit status 2, never a
traceback: :class:`ArgumentParser` turns usage errors into ``ValueError`` and :func:`cli`
prints them. The argument types (``type=`` of ``add_argument``) check their values while
the command line is parsed, so no CLI writes its own checks:

=========================  ==========================================================
:data:`positive_int`       an integer >= 1 (steps, seeds, epochs, repeats, ...)
:data:`nonneg_int`         an integer >= 0 (random seeds)
:func:`int_at_least`       an integer >= ``low``
:data:`positive_float`     a finite number > 0 (β, learning rates)
:func:`float_in`           a number in [``low``, ``high``] (IPO-MD's mixture β in [0, 1])
:func:`comma_list`         "a,b,c" parsed item by item with another type, at least one item
:func:`method_list`        "copg,ipo": registered method names (:mod:`bandit.methods`)
=========================  ==========================================================

Import-light: no NumPy, JAX or torch.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "ArgumentParser",
    "cli",
    "comma_list",
    "float_in",
    "int_at_least",
    "method_list",
    "nonneg_int",
    "positive_float",
    "positive_int",
]

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise a ValueError, so :func:`cli` prints one line.

    (Plain argparse prints the usage and the error on two lines and exits itself.)
    """

    def error(self, message: str):
        from .validation import ValidationError

        raise ValidationError(message)


def _named(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    parse.__name__ = name  # argparse names the type in some of its messages
    return parse


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

    return _named(parse, f"integer >= {low}")


#: An argparse ``type``: an integer >= 1.
positive_int = int_at_least(1)
#: An argparse ``type``: an integer >= 0.
nonneg_int = int_at_least(0)


def _number(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def _positive_float(s: str) -> float:
    v = _number(s)
    if not (math.isfinite(v) and v > 0.0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {s.strip()}")
    return v


#: An argparse ``type``: a finite number > 0.
positive_float = _named(_positive_float, "number > 0")


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type``: a number in [``low``, ``high``]."""

    def parse(s: str) -> float:
        v = _number(s)
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number in [{low:g}, {high:g}], got {s.strip()}"
            )
        return v

    return _named(parse, f"number in [{low:g}, {high:g}]")


def comma_list(item: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """An argparse ``type``: comma-separated values, each parsed by ``item``; at least one.

    With ``nargs="+"`` the option takes space- and comma-separated values alike, as a
    list of tuples (flatten it).
    """

    def parse(s: str) -> tuple[T, ...]:
        values = tuple(item(v.strip()) for v in s.split(",") if v.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {s!r}")
        return values

    return _named(parse, f"list of {getattr(item, '__name__', 'values')}")


def method_list(*, offline_only: bool = False) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type``: comma-separated registered method names, without repeats.

    ``offline_only`` refuses the online methods (those that sample from the policy).
    """

    def method(name: str) -> str:
        from .methods import OFFLINE_METHODS, get_method
        from .validation import ValidationError

        try:
            m = get_method(name)
        except ValidationError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("method: ")) from None
        if offline_only and not m.offline:
            raise argparse.ArgumentTypeError(
                f"{name!r} is an online method; expected offline methods among "
                f"{', '.join(OFFLINE_METHODS)}"
            )
        return name

    many = comma_list(method)

    def parse(s: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(many(s)))

    return _named(parse, "method list")


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
