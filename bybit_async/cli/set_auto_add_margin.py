"""``bybit-async set-auto-add-margin``: set the flag on many symbols at once, concurrently."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..clock import ServerClock
from ..errors import BybitAPIError, BybitError, TransportError
from ..models import ApiResponse
from ..session import BybitSession
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    KEY_ENV,
    PROG,
    PROGRESS_MIN_SYMBOLS,
    SECRET_ENV,
    Command,
    add_flag_options,
    add_show_options,
    add_symbols_argument,
    add_symbols_file_option,
    on_signals,
)
from .credentials import CREDENTIALS_HELP, redactor
from .output import JsonReporter, Outcome, Traffic, exit_for, reporter_for, run_command
from .session_setup import (
    add_session_options,
    flag_title,
    limiter_for,
    session_for,
    target_host,
    tls_refused,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["COMMAND"]

NAME = "set-auto-add-margin"

_HELP = f"""\
{CREDENTIALS_HELP}
output:
  A table of symbol, outcome (set, already on/off, failed, cancelled), retCode,
  message and attempts, after a progress bar while the requests run if stdout
  is a terminal and there are more than {PROGRESS_MIN_SYMBOLS - 1} symbols.
  The table needs rich: pip install 'bybit-async[cli]'.

  --json prints one JSON object per symbol on its own line as each finishes:
  symbol, outcome, ok, modified, ret_code, message, attempts and error (the
  exception's class name, or null).  It does not need rich.

  The last line sums up what was sent: requests, retries by reason, retCode
  10006 answers seen, the wait for the rate limiter and the elapsed time
  (with --json, a final object {{"summary": {{...}}}}).

  --failures-only lists only the symbols that failed (the cancelled ones are
  counted, not listed); --summary-only prints
  only the counts (with --json, one object: symbols, elapsed_s, and a count per
  outcome).  A message shared by several failed symbols is printed once, under
  the table.

  Ctrl-C (SIGINT) or SIGTERM cancels the requests in flight, closes the
  session and reports the symbols already done; the rest are reported as
  cancelled.  A cancelled request may or may not have reached Bybit.

exit status:
  {EXIT_OK} every symbol was set or already had the value, {EXIT_FAILED} some symbol failed,
  {EXIT_USAGE} usage error (nothing was sent), {EXIT_INTERRUPTED} interrupted (SIGINT),
  {EXIT_TERMINATED} terminated (SIGTERM).

examples:
  export {KEY_ENV}=... {SECRET_ENV}=...
  {PROG} set-auto-add-margin BTCUSDT ETHUSDT --on --testnet
  {PROG} set-auto-add-margin --off --symbols-file symbols.txt --json | jq .
"""


def _succeeded(symbol: str, resp: ApiResponse, flag: bool) -> Outcome:
    if resp.modified:
        return Outcome(symbol, "set", "set", resp.ret_code, resp.ret_msg, resp.attempts, None)
    label = "already on" if flag else "already off"
    return Outcome(symbol, "unchanged", label, resp.ret_code, resp.ret_msg, resp.attempts, None)


def _failed(symbol: str, exc: Exception, redact: Callable[[str], str]) -> Outcome:
    ret_code: int | None = None
    if isinstance(exc, BybitAPIError):
        ret_code = exc.ret_code
        # The retCode has a column of its own; keep Bybit's text and our hint.
        message = exc.message.removeprefix(f"retCode {exc.ret_code}: ")
    elif isinstance(exc, BybitError):
        message = exc.message
    else:
        message = f"{type(exc).__name__}: {exc}"
    attempts = getattr(exc, "attempts", None)
    return Outcome(
        symbol,
        "failed",
        "failed",
        ret_code,
        redact(message),
        attempts if isinstance(attempts, int) else None,
        type(exc).__name__,
    )


def _cancelled(symbol: str) -> Outcome:
    return Outcome(symbol, "cancelled", "cancelled", None, "cancelled", None, "CancelledError")


class _Batch:
    """Set one value on many symbols concurrently, one task per symbol.

    Each symbol is its own task, so one failure cancels nothing else, and
    *on_done* sees each outcome as soon as its task finishes.  `cancel`
    (the SIGINT and SIGTERM handler) cancels the tasks still running.
    """

    def __init__(
        self,
        session: BybitSession,
        symbols: list[str],
        flag: bool,
        position_idx: int | None,
        on_done: Callable[[Outcome], None],
        redact: Callable[[str], str],
    ) -> None:
        self._session = session
        self._symbols = symbols
        self._flag = flag
        self._position_idx = position_idx
        self._on_done = on_done
        self._redact = redact
        self._tasks: list[asyncio.Task[Any]] = []
        self._results: dict[str, Outcome] = {}
        #: The signal that called `cancel`, or None.
        self.interrupted_by: int | None = None

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Cancel every request still in flight or waiting for the limiter."""
        if self.interrupted_by is None:
            self.interrupted_by = signum
        for task in self._tasks:
            task.cancel()

    async def probe(self, probe: BybitSession, host: str) -> str | None:
        """Sync the clock through *probe*, once; return why the host is unusable, or None.

        Only a TLS failure, such as https:// to a plain-HTTP server, stops the
        run here: it cannot heal, and every symbol would otherwise retry it.
        Other failures are left to the run, whose requests retry them.
        """
        task = asyncio.create_task(probe.warm_up(), name="clock sync")
        self._tasks.append(task)
        try:
            await task
        except TransportError as exc:
            if isinstance(exc.__cause__, ssl.SSLError | aiohttp.ClientSSLError):
                return self._redact(tls_refused(host, exc))
        except asyncio.CancelledError:
            if self.interrupted_by is None:
                raise
        except BybitError:
            pass
        finally:
            self._tasks.remove(task)
        return None

    def not_sent(self, why: str) -> list[Outcome]:
        """Every symbol as failed for the same reason, with no attempt made."""
        return [Outcome(s, "failed", "failed", None, why, 0, "ConnectError") for s in self._symbols]

    async def _one(self, symbol: str) -> Outcome:
        try:
            resp = await self._session.set_auto_add_margin(
                symbol, self._flag, position_idx=self._position_idx
            )
        except Exception as exc:
            return _failed(symbol, exc, self._redact)
        return _succeeded(symbol, resp, self._flag)

    async def run(self) -> list[Outcome]:
        """Run every symbol; return the outcomes in input order, cancelled ones included."""
        if self.interrupted_by is not None:
            return [_cancelled(s) for s in self._symbols]
        all_done = asyncio.get_running_loop().create_future()
        remaining = len(self._symbols)

        def finished(task: asyncio.Task[Outcome]) -> None:
            nonlocal remaining
            # Counted first, so that a failing reporter cannot leave run() waiting forever.
            remaining -= 1
            if remaining == 0 and not all_done.done():
                all_done.set_result(None)
            if not task.cancelled():
                outcome = task.result()
                self._results[outcome.symbol] = outcome
                self._on_done(outcome)

        for symbol in self._symbols:
            task = asyncio.create_task(self._one(symbol), name=f"{NAME} {symbol}")
            task.add_done_callback(finished)
            self._tasks.append(task)
        try:
            await all_done
        finally:
            # Only reached with tasks pending if run() itself was cancelled: take
            # them down with it rather than leave them running unowned.
            pending = [task for task in self._tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        return [self._results.get(s) or _cancelled(s) for s in self._symbols]


async def _run_set(
    args: argparse.Namespace,
    symbols: list[str],
    api_key: str,
    api_secret: str,
    json_reporter: JsonReporter | None,
    console: Console | None,
) -> int:
    reporter = reporter_for(
        json_reporter, console, title=flag_title(args), items=len(symbols), show=args.show
    )
    redact = redactor(api_secret)
    clock = ServerClock()
    limiter = limiter_for(args, redact)
    session = session_for(args, api_key, api_secret, redact, clock=clock, limiter=limiter)
    # One attempt, no retries: it only finds out whether the host answers at all.
    probe = session_for(args, api_key, api_secret, redact, clock=clock, max_retries=0)
    batch = _Batch(session, symbols, args.flag, args.position_idx, reporter.done, redact)
    started = time.perf_counter()
    reporter.started(len(symbols))
    try:
        # The signals are ours until the session is closed, so that a Ctrl-C
        # or SIGTERM during the close cannot skip the report.
        with on_signals(asyncio.get_running_loop(), batch.cancel):
            async with probe, session:
                try:
                    unreachable = await batch.probe(probe, target_host(args))
                    if unreachable is None:
                        outcomes = await batch.run()
                    else:
                        outcomes = batch.not_sent(unreachable)
                        for outcome in outcomes:
                            reporter.done(outcome)
                finally:
                    if limiter is not None:
                        await limiter.aclose()
    finally:
        reporter.stop()
    elapsed = time.perf_counter() - started
    reporter.finished(outcomes, elapsed, Traffic.of(probe.stats(), session.stats()))
    if unreachable is not None:
        print(f"{PROG}: {unreachable}; nothing was sent", file=sys.stderr, flush=True)
    return exit_for(outcomes, batch.interrupted_by)


def run(args: argparse.Namespace) -> int:
    """Run ``set-auto-add-margin``; return its exit status."""
    return run_command(args, _run_set)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``set-auto-add-margin`` to *commands*."""
    cmd = commands.add_parser(
        NAME,
        help="turn auto-add-margin on or off for many symbols at once",
        description=(
            "Turn auto-add-margin on or off for isolated-margin linear (USDT/USDC perpetual)\n"
            "positions.  Every symbol is sent concurrently through one session, whose\n"
            "limiter keeps the batch under Bybit's rate limits."
        ),
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_symbols_argument(
        cmd,
        "symbols such as BTCUSDT (uppercase), combined with --symbols-file",
    )
    add_flag_options(cmd)
    cmd.add_argument(
        "--position-idx",
        type=int,
        choices=(0, 1, 2),
        help="0 one-way mode, 1 hedge-mode buy side, 2 hedge-mode sell side (default: not sent)",
    )
    add_symbols_file_option(
        cmd,
        "read symbols from FILE ('-' for stdin): one per line, blank lines and # comments "
        "ignored; may be repeated; duplicates are dropped, keeping the first",
    )
    add_session_options(cmd)
    cmd.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the account's rate limits with other processes through the Redis at URL "
        "(redis://[:password@]host:port/db; needs bybit-async[redis])",
    )
    cmd.add_argument(
        "--redis-password-file",
        metavar="FILE",
        help="with --redis-url: read the Redis password from FILE's first line, so that it is "
        "not on the command line (default: BYBIT_REDIS_PASSWORD, when the URL has none)",
    )
    cmd.add_argument(
        "--account",
        metavar="NAME",
        help="with --redis-url: the name of the shared budget, the same for every key of one "
        "Bybit account (default: a hash of the API key)",
    )
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per symbol, one per line, as each finishes",
    )
    add_show_options(cmd, "symbols")


#: The ``set-auto-add-margin`` command.
COMMAND = Command(NAME, add_parser, run, takes_symbols=True)
