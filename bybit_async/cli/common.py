"""What every command of the command line shares: its name, exit statuses, signals, option types.

A command is one module of this package that defines a `Command`; the
package's ``__init__`` lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "KEY_ENV",
    "PROG",
    "RICH_MISSING",
    "SECRET_ENV",
    "Command",
    "UsageError",
]

PROG = "bybit-async"

#: Every symbol succeeded (already having the requested value counts as success).
EXIT_OK = 0
#: At least one symbol failed.
EXIT_FAILED = 1
#: The command line, the key, a file or the environment was wrong; nothing was sent.
EXIT_USAGE = 2
#: Interrupted by SIGINT (Ctrl-C): 128 + the signal number, as shells report it.
EXIT_INTERRUPTED = 130
#: Stopped by SIGTERM (what a supervisor or ``kill`` sends): 128 + 15.
EXIT_TERMINATED = 143

KEY_ENV = "BYBIT_API_KEY"
SECRET_ENV = "BYBIT_API_SECRET"

RICH_MISSING = (
    f"{PROG}: the table output needs rich: pip install 'bybit-async[cli]' (or use --json)"
)

# Above this many symbols a terminal gets a progress bar while the requests run.
PROGRESS_MIN_SYMBOLS = 6


class UsageError(Exception):
    """A problem with the command line, a file or the environment; reported in one line."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command of the command line.

    :ivar name: what follows ``bybit-async``, such as ``set-auto-add-margin``.
    :ivar add_parser: adds the command's subparser to the subparsers it is given.
    :ivar run: runs the command on the parsed arguments; returns the exit status.
    :ivar takes_symbols: positional arguments after options are more symbols,
        as in ``BTCUSDT --on ETHUSDT``.
    """

    name: str
    add_parser: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]
    run: Callable[[argparse.Namespace], int]
    takes_symbols: bool = False


def plural(n: int, noun: str) -> str:
    """*n* and *noun*, with an s unless *n* is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- running ----------------------------------------------------------------------


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(signum)`` in *loop* on SIGINT or SIGTERM instead of dying."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with contextlib.ExitStack() as stack:
        for signum in _SIGNALS:
            stack.enter_context(_on_signal(loop, signum, callback))
        yield


@contextlib.contextmanager
def _on_signal(
    loop: asyncio.AbstractEventLoop, signum: int, callback: Callable[[int], None]
) -> Iterator[None]:
    previous = signal.getsignal(signum)
    if previous is signal.SIG_IGN:
        # Started with the signal ignored (SIGINT in a background job): keep it so, as Python does.
        yield
        return
    try:
        loop.add_signal_handler(signum, callback, signum)
    except NotImplementedError:
        # Windows event loops have no add_signal_handler.
        signal.signal(signum, lambda n, frame: loop.call_soon_threadsafe(callback, n))
        try:
            yield
        finally:
            if previous is None:
                previous = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, previous)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signum)
        if previous is not None:
            signal.signal(signum, previous)


def silence_stdout() -> None:
    # Python flushes stdout at exit; with the reader gone that raises again,
    # so point the descriptor at /dev/null (what the Python docs advise for SIGPIPE).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- the parser ---------------------------------------------------------------------


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least {minimum}, got {text!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least {minimum}, got {value}"
        )
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def add_show_options(cmd: argparse.ArgumentParser, noun: str) -> None:
    """--failures-only and --summary-only: which of the *noun* the output lists."""
    show = cmd.add_mutually_exclusive_group()
    show.add_argument(
        "--failures-only",
        dest="show",
        action="store_const",
        const="failures",
        default="all",
        help=f"list only the {noun} that failed (the cancelled are counted, not listed), "
        "then the counts",
    )
    show.add_argument(
        "--summary-only",
        dest="show",
        action="store_const",
        const="summary",
        help="print only the counts (with --json, one object of counts)",
    )


def add_flag_options(cmd: argparse.ArgumentParser) -> None:
    """--on and --off, one of them required."""
    flag = cmd.add_mutually_exclusive_group(required=True)
    flag.add_argument(
        "--on", dest="flag", action="store_const", const=True, help="turn auto-add-margin on"
    )
    flag.add_argument(
        "--off", dest="flag", action="store_const", const=False, help="turn auto-add-margin off"
    )
