"""The ``bybit-async`` command line.

``bybit-async demo`` runs the no-keys demo against the built-in simulator.
``bybit-async set-auto-add-margin SYMBOL ... --on|--off`` sets the flag on
every symbol concurrently through one `BybitSession`, so
the session's limiter keeps the whole batch under Bybit's rate limits.  It
prints a table (with a progress bar on a terminal), or one JSON object per
symbol with ``--json``.  ``bybit-async ensure-auto-add-margin [SYMBOL ...]
--on|--off`` reads the position list first and writes only the positions
whose flag differs (see `bybit_async.positions`).

The table needs ``rich`` from the ``cli`` extra, imported only here and only
when a table is printed; ``--json`` and ``import bybit_async`` never need it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

import aiohttp

from ._version import __version__
from .clock import ServerClock
from .errors import BybitAPIError, BybitError, TransportError
from .models import ApiResponse
from .positions import (
    EnsureReport,
    EnsureRow,
    apply_plan,
    plan_auto_add_margin,
    position_list_params,
)
from .ratelimit import ENDPOINT_LIMITS, RateLimits
from .redis_limiter import RedisLimiter
from .session import HOSTS, SET_AUTO_ADD_MARGIN, BybitSession, auto_add_margin_params
from .stats import SessionStats

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Outcome",
    "UsageError",
    "build_parser",
    "load_credentials",
    "main",
    "parse_key_file",
    "read_symbols_file",
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
_PROGRESS_MIN_SYMBOLS = 6

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)\Z")

_KEY_FILE_HELP = f"""\
credentials:
  The API key and secret are read from the environment variables {KEY_ENV} and
  {SECRET_ENV}, or from --key-file, which replaces the environment when given.
  They are never taken from the command line, where other users can see them.

  A key file holds either
    * two lines: the API key, then the secret (for a self-made RSA key, the
      secret may instead be the PEM private key block, to the end of the file); or
    * NAME=VALUE lines, {KEY_ENV}=... and {SECRET_ENV}=..., optionally
      preceded by "export" and quoted; other names are ignored, so a .env file
      serves.
  Blank lines and lines starting with # are ignored.  Keep the file private
  (chmod 600).

output:
  A table of symbol, outcome (set, already on/off, failed, cancelled), retCode,
  message and attempts, after a progress bar while the requests run if stdout
  is a terminal and there are more than {_PROGRESS_MIN_SYMBOLS - 1} symbols.
  The table needs rich: pip install 'bybit-async[cli]'.

  --json prints one JSON object per symbol on its own line as each finishes:
  symbol, outcome, ok, modified, ret_code, message, attempts and error (the
  exception's class name, or null).  It does not need rich.

  The last line sums up what was sent: requests, retries by reason, retCode
  10006 answers seen, the wait for the rate limiter and the elapsed time
  (with --json, a final object {{"summary": {{...}}}}).

  --failures-only leaves out the symbols that succeeded; --summary-only prints
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


class UsageError(Exception):
    """A problem with the command line, a file or the environment; reported in one line."""


# -- outcomes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one symbol: one row of the table, one ``--json`` line.

    :ivar symbol: the symbol, such as ``BTCUSDT``.
    :ivar status: ``"set"`` (changed), ``"unchanged"`` (already had the value),
        ``"failed"`` or ``"cancelled"``; for ensure-auto-add-margin also
        ``"skipped"`` (the position cannot have the flag) or ``"planned"`` (a
        dry run would write it).
    :ivar label: how the table shows *status*: ``set``, ``already on``,
        ``already off``, ``to turn on``, ``to turn off``, ``skipped``,
        ``failed`` or ``cancelled``.
    :ivar ret_code: Bybit's retCode, or None when no envelope came back.
    :ivar message: Bybit's retMsg, or the error's message.
    :ivar attempts: attempts made, retries included; 0 when nothing was sent,
        None when unknown (cancelled).
    :ivar error: the exception's class name, such as ``PositionError``, or None.
    """

    symbol: str
    status: Literal["set", "unchanged", "failed", "cancelled", "skipped", "planned"]
    label: str
    ret_code: int | None
    message: str
    attempts: int | None
    error: str | None

    @property
    def key(self) -> str:
        """The table's first cell: the symbol."""
        return self.symbol

    @property
    def ok(self) -> bool:
        """Whether the symbol now has the requested value."""
        return self.status in ("set", "unchanged")

    @property
    def modified(self) -> bool | None:
        """True if changed, False if it already had the value, None if unknown."""
        return {"set": True, "unchanged": False}.get(self.status)

    def as_json(self) -> dict[str, Any]:
        """Return the JSON object ``--json`` prints for this symbol."""
        return {
            "symbol": self.symbol,
            "outcome": self.label,
            "ok": self.ok,
            "modified": self.modified,
            "ret_code": self.ret_code,
            "message": self.message,
            "attempts": self.attempts,
            "error": self.error,
        }


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


# -- reporters ------------------------------------------------------------------


class _Reporter(Protocol):
    def started(self, total: int) -> None: ...

    def done(self, outcome: Outcome) -> None: ...

    def stop(self) -> None: ...

    def finished(
        self, outcomes: list[Outcome], elapsed: float, traffic: _Traffic | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _Traffic:
    """What a run's sessions sent, for the summary at its end.

    *requests* counts the attempts; *retries* the retries by reason (such as
    ``"retCode 10006"``); *rate_limited* the answers with retCode 10006;
    *limiter_wait* and *limiter_wait_max* the seconds spent waiting for the
    rate limiter, in total and at most; *calls* and *calls_failed* the calls
    and, by reason, those that raised.
    """

    requests: int
    retries: Mapping[str, int]
    rate_limited: int
    limiter_wait: float
    limiter_wait_max: float
    calls: int
    calls_failed: Mapping[str, int]

    @classmethod
    def of(cls, *stats: SessionStats) -> _Traffic:
        """Add up the stats of a run's sessions."""
        retries: dict[str, int] = {}
        failed: dict[str, int] = {}
        for one in stats:
            for reason, n in one.retries.items():
                retries[reason] = retries.get(reason, 0) + n
            for reason, n in one.calls_failed.items():
                failed[reason] = failed.get(reason, 0) + n
        return cls(
            requests=sum(one.requests for one in stats),
            retries=dict(sorted(retries.items(), key=lambda item: (-item[1], item[0]))),
            rate_limited=sum(one.rate_limited for one in stats),
            limiter_wait=sum(one.limiter_wait.total for one in stats),
            limiter_wait_max=max((one.limiter_wait.max for one in stats), default=0.0),
            calls=sum(one.calls for one in stats),
            calls_failed=dict(sorted(failed.items())),
        )

    def line(self, elapsed: float) -> str:
        """The one-line summary, ending with *elapsed* seconds."""
        retried = sum(self.retries.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.retries.items())
        return (
            f"requests: {self.requests}, retries: {retried}"
            f"{f' ({reasons})' if reasons else ''}, 10006 seen: {self.rate_limited}, "
            f"limiter wait: {self.limiter_wait:.2f} s (max {self.limiter_wait_max:.2f} s), "
            f"elapsed: {elapsed:.2f} s"
        )

    def as_json(self, elapsed: float) -> dict[str, Any]:
        """The summary as ``--json``'s final record holds it."""
        return {
            "requests": self.requests,
            "retried": sum(self.retries.values()),
            "retries": dict(self.retries),
            "rate_limited": self.rate_limited,
            "limiter_wait_s": round(self.limiter_wait, 3),
            "limiter_wait_max_s": round(self.limiter_wait_max, 3),
            "calls": self.calls,
            "calls_failed": dict(self.calls_failed),
            "elapsed_s": round(elapsed, 3),
        }


# Which symbols the output lists: all, those that did not succeed, or none (counts only).
_Show = Literal["all", "failures", "summary"]


def _listed(outcome: Outcome, show: _Show) -> bool:
    return show == "all" or (show == "failures" and not outcome.ok)


class _JsonReporter:
    """One JSON line per symbol as each finishes; cancelled ones at the end.

    With *show* ``"summary"``, one object of counts at the end instead.  The
    run's traffic, if given, is the last line: ``{"summary": {...}}``.
    """

    def __init__(self, stream: TextIO, show: _Show = "all") -> None:
        self._stream = stream
        self._show = show
        self.broken = False

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.broken:
            return
        try:
            self._stream.write(json.dumps(record) + "\n")
            # Flushed per line: scripts reading the pipe see each symbol as it finishes.
            self._stream.flush()
        except BrokenPipeError:
            # The reader left (| head, say).  The requests are what was asked
            # for, so they run on; only the output stops.
            self.broken = True

    def started(self, total: int) -> None:
        pass

    def done(self, outcome: Outcome) -> None:
        if _listed(outcome, self._show):
            self._write(outcome.as_json())

    def stop(self) -> None:
        pass

    def finished(
        self, outcomes: list[Outcome], elapsed: float, traffic: _Traffic | None = None
    ) -> None:
        for outcome in outcomes:
            if outcome.status == "cancelled" and _listed(outcome, self._show):
                self._write(outcome.as_json())
        if self._show == "summary":
            counts = _counts(outcomes)
            record: dict[str, Any] = {"symbols": len(outcomes), "elapsed_s": round(elapsed, 3)}
            # Every command's own outcomes always, with 0s; the others when they occur.
            record.update(
                (label.replace(" ", "_"), counts.get(label, 0))
                for label in _LABELS
                if label in _ALWAYS_COUNTED or label in counts
            )
            self._write(record)
        if traffic is not None:
            self._write({"summary": traffic.as_json(elapsed)})


_STYLES = {
    "set": "green",
    "unchanged": "cyan",
    "failed": "bold red",
    "cancelled": "yellow",
    "skipped": "magenta",
    "planned": "blue",
}


class _TableReporter:
    """A progress bar while running (on a terminal), then a table in input order."""

    def __init__(
        self,
        console: Console,
        *,
        title: str,
        progress: bool,
        show: _Show = "all",
        noun: str = "symbol",
    ) -> None:
        self._console = console
        self._title = title
        self._show = show
        self._noun = noun
        self._want_progress = progress
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._failed = 0

    def started(self, total: int) -> None:
        from rich.text import Text

        self._console.print(Text(f"{self._title}: {_plural(total, self._noun)}"))
        if not self._want_progress:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._task = self._progress.add_task("", total=total, failed=0)
        self._progress.start()

    def done(self, outcome: Outcome) -> None:
        if self._progress is None or self._task is None:
            return
        if outcome.status == "failed":
            self._failed += 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    def finished(
        self, outcomes: list[Outcome], elapsed: float, traffic: _Traffic | None = None
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        listed = [o for o in outcomes if _listed(o, self._show)]
        # A failure many symbols share (a host that cannot be reached, say) is
        # printed once, under the table, rather than on every row.
        shared = [m for m, n in _failure_messages(listed).items() if n > 1]
        notes = {message: number for number, message in enumerate(shared, 1)}
        if listed:
            table = Table()
            table.add_column("symbol", no_wrap=True)
            table.add_column("outcome", no_wrap=True)
            table.add_column("retCode", justify="right", no_wrap=True)
            table.add_column("message", overflow="fold")
            table.add_column("attempts", justify="right", no_wrap=True)
            for o in listed:
                note = notes.get(o.message) if o.status == "failed" else None
                # Text, not str: Bybit's messages contain [brackets] that rich would read as markup.
                table.add_row(
                    Text(o.key),
                    Text(o.label, style=_STYLES[o.status]),
                    Text("-" if o.ret_code is None else str(o.ret_code)),
                    Text(o.message if note is None else f"see ({note}) below"),
                    Text("-" if o.attempts is None else str(o.attempts)),
                )
            self._console.print(table)
        counts = _failure_messages(listed)
        for message, number in notes.items():
            self._console.print(
                Text(f"({number}) {_plural(counts[message], self._noun)}: {message}")
            )
        self._console.print(Text(_summary(outcomes, elapsed, self._noun)))
        if traffic is not None:
            self._console.print(Text(traffic.line(elapsed)))


def _failure_messages(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.status == "failed":
            counts[o.message] = counts.get(o.message, 0) + 1
    return counts


# The outcomes every summary counts, and the order of all of them.
_ALWAYS_COUNTED = ("set", "already on", "already off", "failed", "cancelled")
_LABELS = (
    "set",
    "to turn on",
    "to turn off",
    "already on",
    "already off",
    "skipped",
    "failed",
    "cancelled",
)


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.label] = counts.get(o.label, 0) + 1
    return counts


def _summary(outcomes: list[Outcome], elapsed: float, noun: str = "symbol") -> str:
    counts = _counts(outcomes)
    parts = [f"{counts[label]} {label}" for label in _LABELS if label in counts]
    return f"{_plural(len(outcomes), noun)} in {elapsed:.2f} s: {', '.join(parts)}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- credentials and files --------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_key_file(text: str, name: str = "key file") -> tuple[str, str]:
    """Return ``(api_key, api_secret)`` from the text of a key file.

    The format is described in ``bybit-async set-auto-add-margin --help``.
    Raises `UsageError` with a message that never quotes the file's
    content, since it may hold the secret.
    """
    lines = text.splitlines()
    content = [
        (number, line.strip())
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not content:
        raise UsageError(f"{name}: empty; expected the API key and secret")
    if _ASSIGNMENT.match(content[0][1]):
        values: dict[str, str] = {}
        for number, line in content:
            match = _ASSIGNMENT.match(line)
            if match is None:
                raise UsageError(f"{name}:{number}: expected NAME=VALUE")
            values[match[1]] = _unquote(match[2].strip())
        for var in (KEY_ENV, SECRET_ENV):
            if not values.get(var):
                raise UsageError(f"{name}: {var} is missing or empty")
        return values[KEY_ENV], values[SECRET_ENV]
    (_, key), rest = content[0], content[1:]
    if rest and rest[0][1].startswith("-----BEGIN "):
        # A PEM private key: the secret is the block as written, to the end of the file.
        return key, "\n".join(lines[rest[0][0] - 1 :]).strip() + "\n"
    if len(rest) != 1:
        raise UsageError(
            f"{name}: expected two lines, the API key then the secret, "
            f"or {KEY_ENV}=... and {SECRET_ENV}=... lines"
        )
    return key, rest[0][1]


def _read_text(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read {what} {path}: {reason}") from None


def load_credentials(key_file: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """Return ``(api_key, api_secret)`` from *key_file* if given, else from *environ*."""
    if key_file is not None:
        return parse_key_file(_read_text(key_file, "key file"), key_file)
    key = environ.get(KEY_ENV, "")
    secret = environ.get(SECRET_ENV, "")
    missing = [var for var, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
            f"export {KEY_ENV} and {SECRET_ENV}, or pass --key-file (see --help)"
        )
    return key, secret


def read_symbols_file(path: str) -> list[tuple[str, str]]:
    """Return ``(symbol, "file:line")`` pairs from a symbols file (``-`` is stdin).

    One symbol per line; blank lines and ``#`` comments, whole-line or
    trailing, are ignored.
    """
    symbols = []
    for number, line in enumerate(_read_text(path, "symbols file").splitlines(), 1):
        symbol = line.split("#", 1)[0].strip()
        if symbol:
            symbols.append((symbol, f"{path}:{number}"))
    return symbols


def _collect_symbols(args: argparse.Namespace, *, required: bool = True) -> list[str]:
    """Symbols from the arguments, then the files; duplicates dropped; all validated."""
    sources = [(symbol, "") for symbol in args.symbols]
    for path in args.symbols_file or ():
        sources += read_symbols_file(path)
    if not sources and required:
        raise UsageError("no symbols: name them as arguments or with --symbols-file")
    position_idx = getattr(args, "position_idx", None)
    problems = []
    for symbol, origin in sources:
        try:
            auto_add_margin_params(symbol, args.flag, position_idx=position_idx)
        except (TypeError, ValueError) as exc:
            problems.append(f"{origin}: {exc}" if origin else str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{problems[0]}{more}")
    return list(dict.fromkeys(symbol for symbol, _ in sources))


def _redactor(secret: str) -> Callable[[str], str]:
    def redact(text: str) -> str:
        # Belt and braces: the session never puts the secret in an error, but
        # nothing this command prints may carry it even if that changes.
        return text.replace(secret, "***") if secret else text

    return redact


# -- running ----------------------------------------------------------------------


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> Iterator[None]:
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
                return self._redact(_tls_refused(host, exc))
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
            task = asyncio.create_task(self._one(symbol), name=f"set-auto-add-margin {symbol}")
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
    reporter: _Reporter,
) -> int:
    redact = _redactor(api_secret)
    clock = ServerClock()
    limiter = _limiter_for(args, redact)
    session = _session_for(args, api_key, api_secret, redact, clock=clock, limiter=limiter)
    # One attempt, no retries: it only finds out whether the host answers at all.
    probe = _session_for(args, api_key, api_secret, redact, clock=clock, max_retries=0)
    batch = _Batch(session, symbols, args.flag, args.position_idx, reporter.done, redact)
    started = time.perf_counter()
    reporter.started(len(symbols))
    try:
        # The signals are ours until the session is closed, so that a Ctrl-C
        # or SIGTERM during the close cannot skip the report.
        with _on_signals(asyncio.get_running_loop(), batch.cancel):
            async with probe, session:
                try:
                    unreachable = await batch.probe(probe, _host(args))
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
    reporter.finished(outcomes, elapsed, _Traffic.of(probe.stats(), session.stats()))
    if unreachable is not None:
        print(f"{PROG}: {unreachable}; nothing was sent", file=sys.stderr, flush=True)
    return _exit_for(outcomes, batch.interrupted_by)


def _limiter_for(args: argparse.Namespace, redact: Callable[[str], str]) -> RedisLimiter | None:
    """The shared limiter of ``--redis-url``, if given; a bad option is a `UsageError`."""
    if args.redis_url is None:
        if args.account is not None:
            raise UsageError("--account names the budget shared through --redis-url: give both")
        return None
    try:
        return RedisLimiter(
            args.redis_url, account=args.account, limits=_limits(args), lease=args.timeout
        )
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(redact(str(exc))) from None


def _limits(args: argparse.Namespace) -> RateLimits:
    return RateLimits(endpoints={SET_AUTO_ADD_MARGIN: args.rate_limit})


def _session_for(
    args: argparse.Namespace,
    api_key: str,
    api_secret: str,
    redact: Callable[[str], str],
    **options: Any,
) -> BybitSession:
    """The session the command's options describe; a bad option is a `UsageError`."""
    try:
        return BybitSession(
            api_key,
            api_secret,
            base_url=args.base_url,
            testnet=args.testnet,
            demo=args.demo,
            recv_window=args.recv_window,
            timeout=args.timeout,
            rate_limits=_limits(args),
            **options,
        )
    except (TypeError, ValueError, ImportError) as exc:
        # These name the problem, not the secret; redact() in case that changes.
        raise UsageError(redact(str(exc))) from None


def _exit_for(outcomes: list[Outcome], interrupted_by: int | None, noun: str = "symbol") -> int:
    """The exit status for *outcomes*; after a signal, says on stderr how far it got."""
    if interrupted_by is not None:
        cancelled = sum(1 for o in outcomes if o.status == "cancelled")
        done = len(outcomes) - cancelled
        how = "terminated (SIGTERM)" if interrupted_by == signal.SIGTERM else "interrupted"
        print(
            f"{PROG}: {how}: {done} of {_plural(len(outcomes), noun)} done, "
            f"{cancelled} cancelled (a cancelled request may still have reached Bybit)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_TERMINATED if interrupted_by == signal.SIGTERM else EXIT_INTERRUPTED
    # Skipped positions cannot have the flag: reported, but not a failure.
    return EXIT_FAILED if any(o.status in ("failed", "cancelled") for o in outcomes) else EXIT_OK


# OpenSSL's reasons when the other side answers a TLS handshake in plain text.
_PLAINTEXT_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


def _tls_refused(host: str, exc: TransportError) -> str:
    match = re.search(r"\[SSL: ([A-Z_]+)\]", exc.message)
    reason = match[1] if match else ""
    if reason in _PLAINTEXT_REASONS and host.startswith("https://"):
        return (
            f"{host} answered TLS in plain text ({reason}): if it is a plain-HTTP server "
            f"(a simulator, say), use {'http://' + host.removeprefix('https://')}"
        )
    # A certificate or protocol failure: retrying would fail the same way.
    return f"TLS with {host} failed: {exc.message}"


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the reader gone that raises again,
    # so point the descriptor at /dev/null (what the Python docs advise for SIGPIPE).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _rich_console() -> Console | None:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(highlight=False)


def _open_output(args: argparse.Namespace) -> tuple[_JsonReporter | None, Console | None]:
    """--json's reporter, or the console for a table; neither when rich is missing."""
    if args.json:
        return _JsonReporter(sys.stdout, getattr(args, "show", "all")), None
    return None, _rich_console()


def _inputs(
    args: argparse.Namespace, *, symbols_required: bool = True
) -> tuple[list[str], str, str]:
    """The symbols, API key and secret the command's options name."""
    if args.key_file == "-" and "-" in (args.symbols_file or ()):
        raise UsageError("--key-file and --symbols-file cannot both read stdin")
    symbols = _collect_symbols(args, required=symbols_required)
    api_key, api_secret = load_credentials(args.key_file, os.environ)
    return symbols, api_key, api_secret


def _set_auto_add_margin(args: argparse.Namespace) -> int:
    # Checked first, so a missing extra costs nothing but this one line.
    json_reporter, console = _open_output(args)
    if json_reporter is None and console is None:
        print(RICH_MISSING, file=sys.stderr)
        return EXIT_USAGE
    symbols, api_key, api_secret = _inputs(args)
    reporter: _Reporter
    if console is not None:
        title = f"auto-add-margin {'on' if args.flag else 'off'} at {_host(args)}"
        show_progress = sys.stdout.isatty() and len(symbols) >= _PROGRESS_MIN_SYMBOLS
        reporter = _TableReporter(console, title=title, progress=show_progress, show=args.show)
    else:
        assert json_reporter is not None
        reporter = json_reporter
    status = asyncio.run(_run_set(args, symbols, api_key, api_secret, reporter))
    if json_reporter is not None and json_reporter.broken:
        _silence_stdout()
    return status


def _host(args: argparse.Namespace) -> str:
    # What the session will use, for the table's title; the session validates it.
    if args.base_url is not None:
        return str(HOSTS.get(args.base_url, args.base_url)).rstrip("/")
    return HOSTS["testnet" if args.testnet else "demo" if args.demo else "mainnet"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    failed = asyncio.run(run_demo(functools.partial(print, flush=True)))
    # The demo's refusals are planted; it succeeds when the rest went through.
    return EXIT_OK if failed <= 2 else EXIT_FAILED


# -- ensure-auto-add-margin ----------------------------------------------------------

ENSURE = "ensure-auto-add-margin"
_SYMBOL_COMMANDS = ("set-auto-add-margin", ENSURE)

# The credentials part of set-auto-add-margin's help, which applies here too.
_CREDENTIALS_HELP = _KEY_FILE_HELP.split("\noutput:", 1)[0]

_ENSURE_HELP = f"""\
{_CREDENTIALS_HELP}

what it does:
  Reads the position list first (pages of 200 by settle coin for the open
  positions, then one read per named symbol with no open position), prints the
  plan, and sends set-auto-add-margin only to the positions whose flag differs.
  Without symbols it covers every open position of the settle coin(s).  In hedge
  mode each side is its own row.  --dry-run stops after the plan.

  A position Bybit refuses the flag (cross or portfolio margin: retCode 110076
  or 110077) is "skipped".  In a unified account the position list does not say
  which positions are cross margin, so such a write is sent and Bybit's refusal
  reported; with --classic (a classic account, where tradeMode says so) they are
  skipped without a write.

output:
  The plan line, then a table of symbol, outcome (set, already on/off, skipped,
  failed, cancelled; with --dry-run "to turn on/off"), retCode, message and
  attempts; hedge-mode sides show as SYMBOL (buy) and SYMBOL (sell).  A progress
  bar runs while the writes do if stdout is a terminal.  The table needs rich.

  --json prints one JSON object per position on its own line as each is
  settled: symbol, position_idx, status (unchanged, changed, skipped, failed,
  planned, cancelled), reason, auto_add_margin (as read), size, trade_mode, ok,
  written, ret_code, attempts and error.  The plan line goes to stderr.
  The last line sums up requests, retries, 10006 seen, limiter wait and
  elapsed time (with --json, a final object {{"summary": {{...}}}}).

  Ctrl-C cancels the writes in flight, closes the session and reports the
  positions already settled; the rest are reported as cancelled.  A cancelled
  request may or may not have reached Bybit.

exit status:
  {EXIT_OK} every position was set or already had the value, or is skipped (skipped
  alone is not a failure), {EXIT_FAILED} some read or write failed, {EXIT_USAGE} usage
  error (nothing was sent), {EXIT_INTERRUPTED} interrupted.

examples:
  export {KEY_ENV}=... {SECRET_ENV}=...
  {PROG} {ENSURE} --on --testnet --dry-run
  {PROG} {ENSURE} BTCUSDT ETHUSDT --on --json | jq 'select(.written)'
  {PROG} {ENSURE} --off --settle-coin USDT --settle-coin USDC
"""


@dataclass(frozen=True, slots=True)
class _EnsureOutcome(Outcome):
    """An `Outcome` for one position of ensure-auto-add-margin, with its report row."""

    row: EnsureRow

    @property
    def key(self) -> str:
        """The symbol, with the side in hedge mode."""
        side = {1: " (buy)", 2: " (sell)"}.get(int(self.row.position_idx or 0), "")
        return self.symbol + side

    def as_json(self) -> dict[str, Any]:
        """The row's JSON object, with this outcome's status and message."""
        status = "cancelled" if self.status == "cancelled" else self.row.status
        return {
            **self.row.as_json(),
            "status": status,
            "reason": self.message,
            "ok": self.row.ok and status != "cancelled",
        }


_ENSURE_STATUSES: Mapping[str, Literal["set", "unchanged", "failed", "skipped", "planned"]] = {
    "changed": "set",
    "unchanged": "unchanged",
    "failed": "failed",
    "skipped": "skipped",
    "planned": "planned",
}


def _ensure_outcome(
    row: EnsureRow, flag: bool, redact: Callable[[str], str], *, cancelled: bool = False
) -> _EnsureOutcome:
    word = "on" if flag else "off"
    if cancelled:
        return _EnsureOutcome(
            row.symbol, "cancelled", "cancelled", None, "cancelled", None, "CancelledError", row
        )
    status = _ENSURE_STATUSES[row.status]
    label = {
        "set": "set",
        "unchanged": f"already {word}",
        "planned": f"to turn {word}",
    }.get(status, status)
    error = None if row.error is None else type(row.error).__name__
    return _EnsureOutcome(
        row.symbol, status, label, row.ret_code, redact(row.reason), row.attempts, error, row
    )


def _plan_line(plan: EnsureReport, coins: Sequence[str] | None) -> str:
    word = "on" if plan.auto_add_margin else "off"
    counts = [
        (plan.planned, f"to turn {word}"),
        (plan.unchanged, f"already {word}"),
        (plan.skipped, "skipped"),
        (plan.failed, "failed"),
    ]
    where = ", ".join(coins or ["USDT"])
    parts = ", ".join(f"{n} {what}" for n, what in counts if n) or "nothing to do"
    return (
        f"plan: {_plural(len(plan.rows), 'position')} ({where}; "
        f"{_plural(plan.reads, 'read')}): {parts}"
    )


async def _run_ensure(
    args: argparse.Namespace,
    symbols: list[str],
    api_key: str,
    api_secret: str,
    json_reporter: _JsonReporter | None,
    console: Console | None,
) -> int:
    redact = _redactor(api_secret)
    session = _session_for(args, api_key, api_secret, redact)
    flag: bool = args.flag
    phase: asyncio.Future[EnsureReport] | None = None
    interrupted_by: int | None = None
    settled: dict[tuple[str, int | None], Outcome] = {}
    reporter: _Reporter | None = None

    def interrupt(signum: int) -> None:
        nonlocal interrupted_by
        if interrupted_by is None:
            interrupted_by = signum
        if phase is not None:
            phase.cancel()

    def note(text: str) -> None:
        if console is not None:
            from rich.text import Text

            console.print(Text(text))
        else:
            print(text, file=sys.stderr, flush=True)

    def done(row: EnsureRow) -> None:
        outcome = _ensure_outcome(row, flag, redact)
        settled[row.symbol, row.position_idx] = outcome
        if reporter is not None:
            reporter.done(outcome)

    async def run(step: Awaitable[EnsureReport]) -> EnsureReport | None:
        nonlocal phase
        phase = asyncio.ensure_future(step)
        try:
            return await phase
        except asyncio.CancelledError:
            if interrupted_by is None:
                raise
            return None

    started = time.perf_counter()
    plan: EnsureReport | None = None
    try:
        # The signals are ours until the session is closed, as in set-auto-add-margin.
        with _on_signals(asyncio.get_running_loop(), interrupt):
            async with session:
                try:
                    plan = await run(
                        plan_auto_add_margin(
                            session,
                            symbols or None,
                            flag,
                            settle_coin=args.settle_coin,
                            classic=args.classic,
                        )
                    )
                except BybitError as exc:
                    note(f"{PROG} {ENSURE}: reading positions failed: {redact(str(exc))}")
                    return EXIT_FAILED
                if plan is None:
                    note(f"{PROG}: interrupted while reading positions: nothing was written")
                    return EXIT_TERMINATED if interrupted_by == signal.SIGTERM else EXIT_INTERRUPTED
                note(_plan_line(plan, args.settle_coin))
                if console is not None:
                    title = f"auto-add-margin {'on' if flag else 'off'} at {_host(args)}"
                    if args.dry_run:
                        title = f"dry run: {title}"
                    writes = plan.planned and not args.dry_run
                    show_progress = sys.stdout.isatty() and writes >= _PROGRESS_MIN_SYMBOLS
                    reporter = _TableReporter(
                        console, title=title, progress=show_progress, noun="position"
                    )
                else:
                    assert json_reporter is not None
                    reporter = json_reporter
                reporter.started(len(plan.rows))
                if args.dry_run or interrupted_by is not None:
                    # Interrupted before the writes: the rows that need none are settled.
                    for row in plan.rows:
                        if args.dry_run or row.status != "planned":
                            done(row)
                else:
                    await run(apply_plan(session, plan, on_row=done))
    finally:
        if reporter is not None:
            reporter.stop()
    assert plan is not None
    assert reporter is not None
    outcomes = [
        settled.get((row.symbol, row.position_idx))
        or _ensure_outcome(row, flag, redact, cancelled=True)
        for row in plan.rows
    ]
    reporter.finished(outcomes, time.perf_counter() - started, _Traffic.of(session.stats()))
    return _exit_for(outcomes, interrupted_by, "position")


def _ensure_auto_add_margin(args: argparse.Namespace) -> int:
    json_reporter, console = _open_output(args)
    if json_reporter is None and console is None:
        print(RICH_MISSING, file=sys.stderr)
        return EXIT_USAGE
    symbols, api_key, api_secret = _inputs(args, symbols_required=False)
    status = asyncio.run(_run_ensure(args, symbols, api_key, api_secret, json_reporter, console))
    if json_reporter is not None and json_reporter.broken:
        _silence_stdout()
    return status


def _settle_coin(text: str) -> str:
    try:
        position_list_params(settle_coin=text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_ensure_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        ENSURE,
        help="make auto-add-margin on or off on many positions, writing only what differs",
        description=(
            "Make auto-add-margin on (or off) on many linear positions: read the position\n"
            "list, print the plan, and write only the positions whose flag differs."
        ),
        epilog=_ENSURE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "symbols",
        nargs="*",
        metavar="SYMBOL",
        help="symbols such as BTCUSDT (uppercase), open or not; none: every open position of "
        "the settle coin(s)",
    )
    _add_flag_options(cmd)
    cmd.add_argument(
        "--settle-coin",
        action="append",
        type=_settle_coin,
        metavar="COIN",
        help="read the open positions settled in COIN (default USDT); may be repeated",
    )
    cmd.add_argument(
        "--classic",
        action="store_true",
        help="the account is a classic one: skip cross-margin positions (tradeMode 0) without "
        "a write",
    )
    cmd.add_argument(
        "--dry-run", action="store_true", help="read and print the plan; write nothing"
    )
    cmd.add_argument(
        "--symbols-file",
        action="append",
        metavar="FILE",
        help="read symbols from FILE ('-' for stdin), as set-auto-add-margin does",
    )
    _add_session_options(cmd)
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per position, one per line, as each is settled",
    )


# -- the parser ---------------------------------------------------------------------


def _whole_number(text: str, minimum: int) -> int:
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


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _add_flag_options(cmd: argparse.ArgumentParser) -> None:
    """--on and --off, one of them required."""
    flag = cmd.add_mutually_exclusive_group(required=True)
    flag.add_argument(
        "--on", dest="flag", action="store_const", const=True, help="turn auto-add-margin on"
    )
    flag.add_argument(
        "--off", dest="flag", action="store_const", const=False, help="turn auto-add-margin off"
    )


def _add_session_options(cmd: argparse.ArgumentParser) -> None:
    """The options of a command that sends: credentials, host, timing, rate limit."""
    cmd.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"read the API key and secret from FILE ('-' for stdin) instead of {KEY_ENV} and "
        f"{SECRET_ENV} (format below)",
    )
    host = cmd.add_mutually_exclusive_group()
    host.add_argument("--testnet", action="store_true", help="use Bybit's testnet")
    host.add_argument("--demo", action="store_true", help="use Bybit's demo trading host")
    host.add_argument(
        "--base-url",
        metavar="URL",
        help="an http(s) URL, or a host name such as mainnet, bytick, eu (default: mainnet, "
        "https://api.bybit.com)",
    )
    cmd.add_argument(
        "--recv-window",
        type=_positive_int,
        default=5000,
        metavar="MS",
        help="how old, in ms, a request may be when Bybit receives it (default 5000)",
    )
    cmd.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each attempt's answer (default 10)",
    )
    cmd.add_argument(
        "--rate-limit",
        type=_positive_int,
        default=ENDPOINT_LIMITS[SET_AUTO_ADD_MARGIN].limit,
        metavar="N",
        help="requests per second this client allows itself on the endpoint (default "
        f"{ENDPOINT_LIMITS[SET_AUTO_ADD_MARGIN].limit}, Bybit's limit; "
        "raise it only for a test server)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``bybit-async`` command line."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Command line for bybit_async, an asyncio client for Bybit V5."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="set auto-add-margin on 50 symbols against the built-in simulator; no keys needed",
        description="Set auto-add-margin on 50 symbols through a real session against the "
        "built-in Bybit simulator, and report what happened.  Needs no keys or network.",
    )
    cmd = commands.add_parser(
        "set-auto-add-margin",
        help="turn auto-add-margin on or off for many symbols at once",
        description=(
            "Turn auto-add-margin on or off for isolated-margin linear (USDT/USDC perpetual)\n"
            "positions.  Every symbol is sent concurrently through one session, whose\n"
            "limiter keeps the batch under Bybit's rate limits."
        ),
        epilog=_KEY_FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "symbols",
        nargs="*",
        metavar="SYMBOL",
        help="symbols such as BTCUSDT (uppercase), combined with --symbols-file",
    )
    _add_flag_options(cmd)
    cmd.add_argument(
        "--position-idx",
        type=int,
        choices=(0, 1, 2),
        help="0 one-way mode, 1 hedge-mode buy side, 2 hedge-mode sell side (default: not sent)",
    )
    cmd.add_argument(
        "--symbols-file",
        action="append",
        metavar="FILE",
        help="read symbols from FILE ('-' for stdin): one per line, blank lines and # comments "
        "ignored; may be repeated; duplicates are dropped, keeping the first",
    )
    _add_session_options(cmd)
    cmd.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the account's rate limits with other processes through the Redis at URL "
        "(redis://[:password@]host:port/db; needs bybit-async[redis])",
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
    show = cmd.add_mutually_exclusive_group()
    show.add_argument(
        "--failures-only",
        dest="show",
        action="store_const",
        const="failures",
        default="all",
        help="list only the symbols that failed or were cancelled, then the counts",
    )
    show.add_argument(
        "--summary-only",
        dest="show",
        action="store_const",
        const="summary",
        help="print only the counts (with --json, one object of counts)",
    )
    _add_ensure_command(commands)
    return parser


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in _SYMBOL_COMMANDS or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        # argparse gives SYMBOL... only the first run of positionals; let
        # symbols also follow options, as in "BTCUSDT --on ETHUSDT".
        args.symbols += extra
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == ENSURE:
            return _ensure_auto_add_margin(args)
        return _set_auto_add_margin(args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bybit-async`` command line with *argv* (default ``sys.argv[1:]``).

    Return the exit status: `EXIT_OK`, `EXIT_FAILED`,
    `EXIT_USAGE` or `EXIT_INTERRUPTED`.
    """
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        # argparse's errors and --help, and rich when stdout's reader has gone.
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        # Ctrl-C outside the requests (starting up, say); the run itself handles its own.
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
