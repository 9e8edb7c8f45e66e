"""The shared command-line behaviour of every CLI, and its argument types.

Bad input ends a CLI with a one-line message on stderr and exit status 2, never a
traceback: :class:`ArgumentParser` turns usage errors into ``ValueError`` and :func:`cli`
prints them. The argument types (``type=`` of ``add_argument``) check their values while
the command line is parsed, so no CLI writes its own checks:

=========================  ==========================================================
:data:`positive_int`       an integer >= 1 (steps, seeds, epochs, repeats, ...)
:data:`nonneg_int`         an integer >= 0 (random seeds)
:func:`int_at_least`       an integer >= ``low``
:func:`int_in`             an integer in [``low``, ``high``]
:data:`positive_float`     a finite number > 0 (β, learning rates)
:func:`float_in`           a number in [``low``, ``high``] (IPO-MD's mixture β in [0, 1])
:func:`comma_list`         "a,b,c" parsed item by item with another type, at least one item
:func:`method_list`        "copg,ipo": registered method names (:mod:`bandit.methods`)
:func:`torch_device`       ``cpu``, ``cuda`` or ``cuda:N`` (availability is the CLI's check)
=========================  ==========================================================

Ctrl-C ends a CLI with exit status 130 and one line, and no output of the interrupted run
is put in place (:func:`interrupted`, checked by :mod:`bandit.outputs` before each rename).
A module an optional extra provides, missing, is named with the extra to install
(:func:`require_extra`).

Import-light: no NumPy, JAX or torch.
"""

from __future__ import annotations

import _thread
import argparse
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "ArgumentParser",
    "cli",
    "comma_list",
    "exit_on_interrupt_while_importing",
    "float_in",
    "int_at_least",
    "int_in",
    "interrupted",
    "method_list",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "require_extra",
    "torch_device",
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


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [``low``, ``high``]."""
    at_least = int_at_least(low)

    def parse(s: str) -> int:
        v = at_least(s)
        if v > high:
            raise argparse.ArgumentTypeError(f"expected an integer <= {high}, got {v}")
        return v

    return _named(parse, f"integer in [{low}, {high}]")


def _torch_device(s: str) -> str:
    if s == "cpu" or re.fullmatch(r"cuda(:\d+)?", s):
        return s
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {s!r}")


#: An argparse ``type``: a torch device name, ``cpu``, ``cuda`` or ``cuda:N``.
torch_device = _named(_torch_device, "device")

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
    """An argparse ``type``: comma-separated registered method names, each at most once.

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
        names = many(s)
        twice = sorted({v for v in names if names.count(v) > 1})
        if twice:  # as figure1 does: a repeat is a typo more often than a wish
            raise argparse.ArgumentTypeError(f"method {twice[0]!r} given more than once")
        return names

    return _named(parse, "method list")


#: The optional extra (``pip install -e ".[extra]"``) that provides each third-party module
#: a CLI may import (pyproject.toml's ``[project.optional-dependencies]``).
EXTRAS = {
    "torch": "llm",
    "transformers": "llm",
    "tokenizers": "llm",
    "safetensors": "llm",
    "trl": "bench",
    "accelerate": "train",
    "datasets": "train",
    "peft": "train",
}


def _extra_message(e: ModuleNotFoundError) -> str | None:
    top = (e.name or "").partition(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    return f'{top} is not installed: install the {extra} extra (pip install -e ".[{extra}]")'


def require_extra(e: ModuleNotFoundError) -> None:
    """Re-raise a missing optional dependency as a ModuleNotFoundError naming its extra.

    For a package's ``__init__`` (``except ModuleNotFoundError as e: require_extra(e)``).
    Run as ``python -m pkg.cli``, where the package is imported before any CLI code can
    catch the error (``sys.argv[0]`` is then ``"-m"``), it prints that one line and exits 2.
    """
    msg = _extra_message(e)
    if msg is None:
        raise e
    if sys.argv[:1] == ["-m"]:
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2)
    raise ModuleNotFoundError(msg, name=e.name) from e


class _Interrupts:
    """SIGINT while a CLI runs: raise KeyboardInterrupt, and keep raising it.

    Python runs a signal handler in the main thread at the next bytecode it executes; when
    that is a garbage-collector callback (JAX registers one that runs on every collection),
    a ``__del__`` or a weakref callback, Python prints the KeyboardInterrupt as "Exception
    ignored" and carries on: the run would finish and exit 0. So after the first SIGINT a
    daemon thread re-delivers it to the main thread every 0.2 s until the CLI has
    caught it, and the interrupts that land in such callbacks are kept off stderr.
    """

    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()
        self._repeater: threading.Thread | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.done.is_set():  # a re-delivery that arrived after the CLI caught one
            return
        self.count += 1
        if self._repeater is None:
            self._repeater = threading.Thread(target=self._repeat, daemon=True)
            self._repeater.start()
        raise KeyboardInterrupt

    def _repeat(self) -> None:
        main = threading.main_thread().ident
        while not self.done.wait(0.2):
            if hasattr(signal, "pthread_kill") and main is not None:
                # A real signal: it also wakes a main thread blocked in a lock or a join
                # (a worker pool's shutdown), which interrupt_main alone would not.
                signal.pthread_kill(main, signal.SIGINT)
            else:
                _thread.interrupt_main()

    def stop(self) -> None:
        self.done.set()
        if self._repeater is not None:
            self._repeater.join()
        # A re-delivery tripped just before the join is handled (as a no-op) at the next
        # bytecode boundaries, which this loop provides before the handler is swapped back.
        for _ in range(8):
            pass


_ACTIVE: _Interrupts | None = None


def _exit_interrupted(signum: int, frame: object) -> None:
    """SIGINT before the CLI's ``main`` runs: nothing is written yet, so exit at once."""
    print(f"{_prog()}: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


def exit_on_interrupt_while_importing() -> None:
    """For a package's ``__init__``: under ``python -m pkg.cli`` (``sys.argv[0]`` is ``"-m"``
    while the package imports), Ctrl-C during the imports exits 130 with one line instead
    of a traceback of whatever module was loading; :func:`cli` takes over once ``main``
    runs. Does nothing on a plain ``import``."""
    if (
        sys.argv[:1] == ["-m"]
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _exit_interrupted)


def interrupted() -> bool:
    """Whether the running CLI has received SIGINT (writers then commit nothing)."""
    return _ACTIVE is not None and _ACTIVE.count > 0


def _install() -> tuple[_Interrupts, object, object] | None:
    """Our SIGINT handler, only in the main thread and where SIGINT has Python's default
    handler (a job started with SIGINT ignored keeps ignoring it; a nested CLI shares the
    outer one's)."""
    global _ACTIVE
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, _exit_interrupted):
        return None
    state = _Interrupts()
    old_hook = sys.unraisablehook

    def hook(unraisable: object) -> None:
        if isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt):
            return  # an interrupt that landed in a callback: the repeater re-delivers it
        old_hook(unraisable)

    signal.signal(signal.SIGINT, state.handler)
    sys.unraisablehook = hook
    _ACTIVE = state
    return state, old_hook, signal.default_int_handler


def _uninstall(installed: tuple[_Interrupts, object, object] | None) -> bool:
    """Put the previous handler back; returns whether SIGINT arrived. Idempotent."""
    global _ACTIVE
    if installed is None:
        return False
    state, old_hook, old_handler = installed
    state.stop()
    signal.signal(signal.SIGINT, old_handler)
    sys.unraisablehook = old_hook
    _ACTIVE = None
    return state.count > 0


def _uninstall_surely(installed: tuple[_Interrupts, object, object] | None) -> bool:
    """:func:`_uninstall`, retried if a last re-delivered interrupt lands in it."""
    while True:
        try:
            return _uninstall(installed)
        except KeyboardInterrupt:
            continue


def _prog() -> str:
    """The program's name for messages: ``theory`` for ``python -m theory``."""
    orig = getattr(sys, "orig_argv", [])
    if sys.argv[:1] == ["-m"] and "-m" in orig[:-1]:  # still importing the package
        return orig[orig.index("-m") + 1].rpartition(".")[2]
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("copg-lab")
    return path.parent.name if path.stem == "__main__" else path.stem


def cli(main: Callable[[Sequence[str] | None], int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main(argv)``: bad input exits 2 with a one-line message, Ctrl-C exits 130
    with one line.

    ``ValueError`` (incl. :class:`~bandit.validation.ValidationError`), ``FileNotFoundError``
    and other ``OSError`` are user errors, as is a missing optional extra (named with the
    extra to install); anything else is a bug and keeps its traceback.
    """

    def run(argv: Sequence[str] | None = None) -> int:
        prog = _prog()
        installed = _install()
        try:
            try:
                status = int(main(argv) or 0)
            finally:
                stopped = _uninstall_surely(installed)
            if not stopped:
                return status
        except KeyboardInterrupt:
            pass
        except ModuleNotFoundError as e:
            msg = _extra_message(e)
            if msg is None:
                raise
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return 2
        except (ValueError, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return 2
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        if main.__module__ == "__main__" and threading.active_count() > 1:
            # Run as a program (python -m ...): exit now rather than wait at interpreter
            # exit for worker threads (an XLA compilation, a solver) whose results nobody
            # will read. The outputs' temporaries are already removed.
            sys.stdout.flush()
            os._exit(130)
        return 130

    run.__doc__ = main.__doc__
    return run
