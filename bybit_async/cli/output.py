"""What the commands print: one `Outcome` per symbol or position, as a table or JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, TypeVar

from ..positions import EnsureRow
from ..stats import SessionStats
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    PROGRESS_MIN_SYMBOLS,
    RICH_MISSING,
    plural,
    silence_stdout,
    stopped_by,
)
from .credentials import inputs

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["Outcome"]


# -- outcomes -------------------------------------------------------------------

Status = Literal["set", "unchanged", "failed", "cancelled", "skipped", "planned"]


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
    status: Status
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


_R = TypeVar("_R", bound="RowOutcome")


@dataclass(frozen=True, slots=True)
class RowOutcome(Outcome):
    """An `Outcome` for one position, with the `EnsureRow` it reports."""

    row: EnsureRow

    @property
    def key(self) -> str:
        """The symbol, with the side in hedge mode."""
        side = {1: " (buy)", 2: " (sell)"}.get(int(self.row.position_idx or 0), "")
        return self.symbol + side

    @classmethod
    def of(
        cls: type[_R],
        row: EnsureRow,
        status: Status,
        flag: bool,
        redact: Callable[[str], str],
        **fields: Any,
    ) -> _R:
        """*row* as *status*, labelled for the flag *flag*; *fields* are a subclass's own."""
        word = "on" if flag else "off"
        label = {
            "set": "set",
            "unchanged": f"already {word}",
            "planned": f"to turn {word}",
        }.get(status, status)
        error = None if row.error is None else type(row.error).__name__
        return cls(
            row.symbol,
            status,
            label,
            row.ret_code,
            redact(row.reason),
            row.attempts,
            error,
            row,
            **fields,
        )


# -- reporters ------------------------------------------------------------------


class Reporter(Protocol):
    def started(self, total: int) -> None: ...

    def done(self, outcome: Outcome) -> None: ...

    def stop(self) -> None: ...

    def finished(
        self, outcomes: list[Outcome], elapsed: float, traffic: Traffic | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a run's sessions sent, for the summary at its end.

    *requests* counts the attempts that were sent (one that got no
    connection was not); *retries* the retries by reason (such as
    ``"retCode 10006"``); *rate_limited* the answers with retCode 10006;
    *limiter_wait_wall* the wall time during which a call waited for the
    rate limiter, *limiter_wait_sum* and *limiter_wait_max* the waits summed
    over the calls (overlapping waits add up) and the longest; *calls* and
    *calls_failed* the calls and, by reason, those that raised.
    """

    requests: int
    retries: Mapping[str, int]
    rate_limited: int
    limiter_wait_wall: float
    limiter_wait_sum: float
    limiter_wait_max: float
    calls: int
    calls_failed: Mapping[str, int]

    @classmethod
    def of(cls, *stats: SessionStats) -> Traffic:
        """Add up the stats of a run's sessions."""
        retries: dict[str, int] = {}
        failed: dict[str, int] = {}
        for one in stats:
            for reason, n in one.retries.items():
                retries[reason] = retries.get(reason, 0) + n
            for reason, n in one.calls_failed.items():
                failed[reason] = failed.get(reason, 0) + n
        return cls(
            # An attempt that got no connection sent nothing (a TLS handshake
            # refused, say): "nothing was sent" and the count must agree.
            requests=sum(
                one.requests - sum(p.failures.get("ConnectError", 0) for p in one.paths.values())
                for one in stats
            ),
            retries=dict(sorted(retries.items(), key=lambda item: (-item[1], item[0]))),
            rate_limited=sum(one.rate_limited for one in stats),
            # The sessions of a run wait one after the other (the probe first).
            limiter_wait_wall=sum(one.limiter_wait_wall for one in stats),
            limiter_wait_sum=sum(one.limiter_wait.total for one in stats),
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
            f"limiter wait: {self.limiter_wait_wall:.2f} s of wall time "
            f"(summed over calls {self.limiter_wait_sum:.2f} s, max "
            f"{self.limiter_wait_max:.2f} s), elapsed: {elapsed:.2f} s"
        )

    def as_json(self, elapsed: float) -> dict[str, Any]:
        """The summary as ``--json``'s final record holds it."""
        return {
            "requests": self.requests,
            "retried": sum(self.retries.values()),
            "retries": dict(self.retries),
            "rate_limited": self.rate_limited,
            "limiter_wait_wall_s": round(self.limiter_wait_wall, 3),
            "limiter_wait_sum_s": round(self.limiter_wait_sum, 3),
            "limiter_wait_max_s": round(self.limiter_wait_max, 3),
            "calls": self.calls,
            "calls_failed": dict(self.calls_failed),
            "elapsed_s": round(elapsed, 3),
        }


# Which symbols the output lists: all, those that did not succeed, or none (counts only).
Show = Literal["all", "failures", "summary"]


def _listed(outcome: Outcome, show: Show) -> bool:
    # The cancelled are counted, not listed, with --failures-only: after a
    # Ctrl-C they may be thousands, and would bury the failures.
    return show == "all" or (show == "failures" and outcome.status == "failed")


class JsonReporter:
    """One JSON line per symbol as each finishes; cancelled ones at the end.

    With *show* ``"summary"``, one object of counts at the end instead.  The
    run's traffic, if given, is the last line: ``{"summary": {...}}``.
    """

    def __init__(self, stream: TextIO, show: Show = "all") -> None:
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
        self, outcomes: list[Outcome], elapsed: float, traffic: Traffic | None = None
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


class TableReporter:
    """A progress bar while running (on a terminal), then a table in input order."""

    def __init__(
        self,
        console: Console,
        *,
        title: str,
        progress: bool,
        show: Show = "all",
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

        self._console.print(Text(f"{self._title}: {plural(total, self._noun)}"))
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
        self, outcomes: list[Outcome], elapsed: float, traffic: Traffic | None = None
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
                Text(f"({number}) {plural(counts[message], self._noun)}: {message}")
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
    return f"{plural(len(outcomes), noun)} in {elapsed:.2f} s: {', '.join(parts)}"


# The width a console not on a terminal lays out in: wider than any line.
_UNWRAPPED = 10_000


def _rich_console() -> Console | None:
    try:
        from rich.console import Console
    except ImportError:
        return None
    if sys.stdout.isatty():
        return Console(highlight=False)
    # Piped or redirected: every row and line whole, whatever COLUMNS says,
    # for grep, a log or a file (rich would wrap at 80 columns).
    return Console(highlight=False, width=_UNWRAPPED, soft_wrap=True)


def open_output(args: argparse.Namespace) -> tuple[JsonReporter | None, Console | None]:
    """--json's reporter, or the console for a table; neither when rich is missing."""
    if args.json:
        return JsonReporter(sys.stdout, getattr(args, "show", "all")), None
    return None, _rich_console()


def reporter_for(
    json_reporter: JsonReporter | None,
    console: Console | None,
    *,
    title: str,
    items: int,
    show: Show,
    noun: str = "symbol",
) -> Reporter:
    """--json's reporter, or a table with a progress bar on a terminal for many *items*."""
    if console is None:
        assert json_reporter is not None
        return json_reporter
    progress = sys.stdout.isatty() and items >= PROGRESS_MIN_SYMBOLS
    return TableReporter(console, title=title, progress=progress, show=show, noun=noun)


def run_command(
    args: argparse.Namespace,
    main: Callable[
        [argparse.Namespace, list[str], str, str, JsonReporter | None, Console | None],
        Coroutine[Any, Any, int],
    ],
    *,
    symbols_required: bool = True,
) -> int:
    """Run ``main(args, symbols, api_key, api_secret, json_reporter, console)``; return its status.

    The output is opened first, so a missing extra costs nothing but one line.
    """
    json_reporter, console = open_output(args)
    if json_reporter is None and console is None:
        print(RICH_MISSING, file=sys.stderr)
        return EXIT_USAGE
    symbols, api_key, api_secret = inputs(args, symbols_required=symbols_required)
    status = asyncio.run(main(args, symbols, api_key, api_secret, json_reporter, console))
    if json_reporter is not None and json_reporter.broken:
        silence_stdout()
    return status


def exit_for(outcomes: list[Outcome], interrupted_by: int | None, noun: str = "symbol") -> int:
    """The exit status for *outcomes*; after a signal, says on stderr how far it got."""
    if interrupted_by is not None:
        cancelled = sum(1 for o in outcomes if o.status == "cancelled")
        done = len(outcomes) - cancelled
        how, status = stopped_by(interrupted_by)
        print(
            f"{PROG}: {how}: {done} of {plural(len(outcomes), noun)} done, "
            f"{cancelled} cancelled (a cancelled request may still have reached Bybit)",
            file=sys.stderr,
            flush=True,
        )
        return status
    # Skipped positions cannot have the flag: reported, but not a failure.
    return EXIT_FAILED if any(o.status in ("failed", "cancelled") for o in outcomes) else EXIT_OK
