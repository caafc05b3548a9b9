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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..positions import position_list_params

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

_T = TypeVar("_T")


def stopped_by(signum: int) -> tuple[str, int]:
    """How a run stopped by *signum* is described, and its exit status."""
    if signum == signal.SIGTERM:
        return "terminated (SIGTERM)", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


class Interrupter:
    """The first SIGINT or SIGTERM a run got, and the step it cancels.

    `interrupt` is the signal handler (see `on_signals`); `run` awaits a step
    that a signal cancels.
    """

    def __init__(self) -> None:
        #: The first signal `interrupt` was called with, or None.
        self.by: int | None = None
        self._step: asyncio.Future[Any] | None = None

    def interrupt(self, signum: int) -> None:
        """Note *signum* (the first one only) and cancel the step under way."""
        if self.by is None:
            self.by = signum
        if self._step is not None:
            self._step.cancel()

    async def run(self, step: Awaitable[_T]) -> _T | None:
        """Await *step*; None if a signal cancelled it."""
        future = asyncio.ensure_future(step)
        self._step = future
        try:
            return await future
        except asyncio.CancelledError:
            if self.by is None:
                raise
            return None


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


def settle_coin(text: str) -> str:
    """A settle coin, such as USDT, as the position list takes it."""
    try:
        position_list_params(settle_coin=text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_symbols_argument(cmd: argparse.ArgumentParser, text: str) -> None:
    """The SYMBOL arguments, any number of them, described by *text*."""
    cmd.add_argument("symbols", nargs="*", metavar="SYMBOL", help=text)


def add_symbols_file_option(
    cmd: argparse.ArgumentParser,
    text: str = "read symbols from FILE ('-' for stdin), as set-auto-add-margin does",
) -> None:
    """--symbols-file, which may be repeated (see `credentials.read_symbols_file`)."""
    cmd.add_argument("--symbols-file", action="append", metavar="FILE", help=text)


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
