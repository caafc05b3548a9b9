"""``bybit-async guard-auto-add-margin``: keep the flag as wanted until stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BybitError
from ..events import Event, GuardActed, StreamConnected, StreamDisconnected
from ..positions import EnsureRow
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    KEY_ENV,
    PROG,
    SECRET_ENV,
    Command,
    Interrupter,
    add_flag_options,
    add_symbols_argument,
    add_symbols_file_option,
    on_signals,
    plural,
    settle_coin,
    stopped_by,
)
from .credentials import CREDENTIALS_HELP, redactor
from .output import JsonReporter, RowOutcome, Status, Traffic, run_command
from .session_setup import add_session_options, flag_title, session_for

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ["COMMAND"]

GUARD = "guard-auto-add-margin"

_GUARD_HELP = f"""\
{CREDENTIALS_HELP}

what it does:
  Runs until stopped.  Holds Bybit's private WebSocket stream; on start and
  after every reconnect it reads the position list and writes only the
  positions whose flag differs (as ensure-auto-add-margin does), and between
  reads it writes a position as soon as a push shows its flag differing: a new
  position, or one whose flag someone changed.  Never two writes for one
  position at once.  A position Bybit refuses the flag (cross or portfolio
  margin: retCode 110076 or 110077) is "skipped" and not written again until
  its margin mode changes; a failed write is tried again after a back-off.
  Without symbols it guards every open position of the settle coin; with
  symbols, those symbols, open or not.

output:
  A live table: one row per position with its latest action (set, already
  on/off, skipped, failed), retCode, message and how many actions it has had,
  and a status line (connected, reconnects).  The table needs rich.

  --json prints one JSON object per action on its own line as it happens:
  symbol, position_idx, status (changed, unchanged, skipped, failed), reason,
  auto_add_margin (as read), size, trade_mode, ok, written, ret_code,
  attempts, error, and trigger (reconcile, update or retry).

  Ctrl-C or SIGTERM stops it: the writes in flight are cancelled, the stream
  and the session are closed, and a summary (actions by outcome, requests,
  retries, elapsed time) is printed; with --json, a final object
  {{"summary": {{...}}}}.

exit status:
  {EXIT_INTERRUPTED} stopped by Ctrl-C, {EXIT_TERMINATED} stopped by SIGTERM (the usual ways
  it ends), {EXIT_FAILED} the stream refused the key or signature, {EXIT_USAGE} usage error
  (nothing was sent).

examples:
  export {KEY_ENV}=... {SECRET_ENV}=...
  {PROG} {GUARD} --on --testnet
  {PROG} {GUARD} BTCUSDT ETHUSDT --on --json | jq -c 'select(.written)'
"""


@dataclass(frozen=True, slots=True)
class _GuardOutcome(RowOutcome):
    """A `RowOutcome` for one guard action, with what set it off."""

    trigger: str

    def as_json(self) -> dict[str, Any]:
        """The row's JSON object and what set it off."""
        return {**self.row.as_json(), "reason": self.message, "trigger": self.trigger}


# Anything else a guard reports is a failure.
_GUARD_STATUSES: Mapping[str, Status] = {
    "changed": "set",
    "unchanged": "unchanged",
    "skipped": "skipped",
}


def _outcome(row: EnsureRow, trigger: str, flag: bool, redact: Any) -> _GuardOutcome:
    status = _GUARD_STATUSES.get(row.status, "failed")
    return _GuardOutcome.of(row, status, flag, redact, trigger=trigger)


class _LiveTable:
    """The latest action of each position, redrawn as actions come."""

    def __init__(self, console: Console, title: str) -> None:
        from rich.live import Live

        self.console = console
        self.title = title
        self.latest: dict[tuple[str, int | None], _GuardOutcome] = {}
        self.actions: Counter[tuple[str, int | None]] = Counter()
        self.status = "connecting"
        self.live: Live = Live(self.render(), console=console, refresh_per_second=4)

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"{self.title}: {self.status}")
        for name in ("symbol", "latest", "retCode", "message", "actions"):
            table.add_column(name, overflow="fold")
        for key, o in sorted(self.latest.items(), key=lambda item: item[1].key):
            table.add_row(
                Text(o.key),
                Text(o.label),
                Text("-" if o.ret_code is None else str(o.ret_code)),
                Text(o.message),
                Text(str(self.actions[key])),
            )
        return table

    def done(self, outcome: _GuardOutcome) -> None:
        key = (outcome.row.symbol, outcome.row.position_idx)
        self.latest[key] = outcome
        self.actions[key] += 1
        self.live.update(self.render())

    def note(self, status: str) -> None:
        self.status = status
        self.live.update(self.render())


async def _run_guard(
    args: argparse.Namespace,
    symbols: list[str],
    api_key: str,
    api_secret: str,
    json_reporter: JsonReporter | None,
    console: Console | None,
) -> int:
    redact = redactor(api_secret)
    flag: bool = args.flag
    table = None if console is None else _LiveTable(console, flag_title(args))
    reconnects = 0
    counts: Counter[str] = Counter()

    def on_event(event: Event) -> None:
        nonlocal reconnects
        if table is None:
            return
        if isinstance(event, StreamConnected):
            reconnects = event.connection - 1
            table.note(f"connected (reconnects: {reconnects})")
        elif isinstance(event, StreamDisconnected):
            table.note(f"reconnecting after {event.reason}")

    def on_guard_event(event: Event) -> None:
        # The actions come as events, which carry what set each off.
        if isinstance(event, GuardActed):
            outcome = _outcome(event.row, event.trigger, flag, redact)
            counts[outcome.label] += 1
            if json_reporter is not None:
                json_reporter.done(outcome)
            elif table is not None:
                table.done(outcome)
        else:
            on_event(event)

    session = session_for(args, api_key, api_secret, redact, on_event=on_guard_event)
    stop = Interrupter()

    started = time.perf_counter()
    status = EXIT_FAILED
    with on_signals(asyncio.get_running_loop(), stop.interrupt):
        if table is not None:
            table.live.start()
        try:
            async with session:
                try:
                    await stop.run(
                        session.guard_auto_add_margin(
                            flag,
                            symbols or None,
                            settle_coin=args.settle_coin,
                        )
                    )
                except BybitError as exc:
                    message = f"{PROG} {GUARD}: {redact(str(exc))}"
                    print(message, file=sys.stderr, flush=True)
        finally:
            if table is not None:
                table.live.stop()
                if not table.console.is_terminal:
                    print()  # rich leaves the last frame's line open when not on a terminal
    elapsed = time.perf_counter() - started
    traffic = Traffic.of(session.stats())
    total = sum(counts.values())
    parts = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    line = f"{plural(total, 'action')} in {elapsed:.2f} s{': ' + parts if parts else ''}"
    if json_reporter is not None:
        json_reporter.finished([], elapsed, traffic)
    else:
        print(line)
        print(traffic.line(elapsed))
    if stop.by is not None:
        how, status = stopped_by(stop.by)
        print(f"{PROG}: {how}: {line}", file=sys.stderr, flush=True)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``guard-auto-add-margin``; return its exit status."""
    return run_command(args, _run_guard, symbols_required=False)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``guard-auto-add-margin`` to *commands*."""
    cmd = commands.add_parser(
        GUARD,
        help="keep auto-add-margin on or off on positions as they open and change, until stopped",
        description=(
            "Keep auto-add-margin on (or off) on linear positions as they open and change:\n"
            "read and fix on start and after every reconnect, then act on every push."
        ),
        epilog=_GUARD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_symbols_argument(
        cmd,
        "symbols such as BTCUSDT (uppercase), open or not; none: every open position of "
        "the settle coin",
    )
    add_flag_options(cmd)
    cmd.add_argument(
        "--settle-coin",
        type=settle_coin,
        default="USDT",
        metavar="COIN",
        help="guard the positions settled in COIN (default USDT)",
    )
    add_symbols_file_option(cmd)
    add_session_options(cmd)
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per action, one per line, as each happens",
    )


#: The ``guard-auto-add-margin`` command.
COMMAND = Command(GUARD, add_parser, run, takes_symbols=True)
