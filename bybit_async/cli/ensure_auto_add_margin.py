"""``bybit-async ensure-auto-add-margin``: read the positions, write only what differs."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import BybitError
from ..positions import (
    EnsureReport,
    EnsureRow,
    apply_plan,
    plan_auto_add_margin,
)
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    KEY_ENV,
    PROG,
    SECRET_ENV,
    Command,
    Interrupter,
    add_flag_options,
    add_show_options,
    add_symbols_argument,
    add_symbols_file_option,
    on_signals,
    plural,
    settle_coin,
    stopped_by,
)
from .credentials import CREDENTIALS_HELP, redactor
from .output import (
    JsonReporter,
    Outcome,
    Reporter,
    RowOutcome,
    Traffic,
    exit_for,
    reporter_for,
    run_command,
)
from .session_setup import add_session_options, flag_title, session_for

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["COMMAND"]

ENSURE = "ensure-auto-add-margin"


_ENSURE_HELP = f"""\
{CREDENTIALS_HELP}

what it does:
  Reads the position list first (pages of 200 by settle coin for the open
  positions), prints the plan, and sends set-auto-add-margin only to the open
  positions whose flag differs.  A named symbol with no open position is
  written without a read (a read would cost more than the write it saves;
  Bybit answers "not modified" if the flag already had the value); with
  --dry-run it is read instead, to say what a write would do.  Without symbols
  it covers every open position of the settle coin(s).  In hedge mode each side
  is its own row.  --dry-run stops after the plan.

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
  elapsed time (with --json, a final object {{"summary": {{...}}}}), also when
  the reads failed or were interrupted.

  --failures-only lists only the positions that failed (the cancelled ones
  are counted, not listed); --summary-only prints only the counts (with
  --json, one object of counts).

  Ctrl-C (SIGINT) or SIGTERM cancels the reads or the writes in flight, closes
  the session and reports the positions already settled; the rest are
  reported as cancelled.  A cancelled request may or may not have reached
  Bybit.

exit status:
  {EXIT_OK} every position was set or already had the value, or is skipped (skipped
  alone is not a failure), {EXIT_FAILED} some read or write failed, {EXIT_USAGE} usage
  error (nothing was sent), {EXIT_INTERRUPTED} interrupted (SIGINT), {EXIT_TERMINATED} terminated
  (SIGTERM).

examples:
  export {KEY_ENV}=... {SECRET_ENV}=...
  {PROG} {ENSURE} --on --testnet --dry-run
  {PROG} {ENSURE} BTCUSDT ETHUSDT --on --json | jq 'select(.written)'
  {PROG} {ENSURE} --off --settle-coin USDT --settle-coin USDC
"""


@dataclass(frozen=True, slots=True)
class _EnsureOutcome(RowOutcome):
    """A `RowOutcome` for one position of ensure-auto-add-margin."""

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
    if cancelled:
        return _EnsureOutcome(
            row.symbol, "cancelled", "cancelled", None, "cancelled", None, "CancelledError", row
        )
    return _EnsureOutcome.of(row, _ENSURE_STATUSES[row.status], flag, redact)


def _plan_line(plan: EnsureReport, coins: Sequence[str] | None) -> str:
    word = "on" if plan.auto_add_margin else "off"
    unread = sum(1 for row in plan.rows if row.status == "planned" and row.position is None)
    counts = [
        (plan.planned - unread, f"to turn {word}"),
        (unread, f"not open, to write without a read (Bybit says if it was already {word})"),
        (plan.unchanged, f"already {word}"),
        (plan.skipped, "skipped"),
        (plan.failed, "failed"),
    ]
    where = ", ".join(coins or ["USDT"])
    parts = ", ".join(f"{n} {what}" for n, what in counts if n) or "nothing to do"
    return (
        f"plan: {plural(len(plan.rows), 'position')} ({where}; "
        f"{plural(plan.reads, 'read')}): {parts}"
    )


class _Unread(Exception):
    """The reads ended without a plan: they failed, or a signal stopped them."""


async def _run_ensure(
    args: argparse.Namespace,
    symbols: list[str],
    api_key: str,
    api_secret: str,
    json_reporter: JsonReporter | None,
    console: Console | None,
) -> int:
    redact = redactor(api_secret)
    session = session_for(args, api_key, api_secret, redact)
    flag: bool = args.flag
    stop = Interrupter()
    settled: dict[tuple[str, int | None], Outcome] = {}
    reporter: Reporter | None = None

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

    started = time.perf_counter()
    plan: EnsureReport | None = None
    unread: int | None = None  # the exit status when the reads did not end in a plan
    try:
        # The signals are ours until the session is closed, as in set-auto-add-margin.
        with on_signals(asyncio.get_running_loop(), stop.interrupt):
            async with session:
                try:
                    plan = await stop.run(
                        plan_auto_add_margin(
                            session,
                            symbols or None,
                            flag,
                            settle_coin=args.settle_coin,
                            classic=args.classic,
                            # A write costs no more than the read it would save.
                            read_flat=args.dry_run,
                        )
                    )
                except BybitError as exc:
                    note(f"{PROG} {ENSURE}: reading positions failed: {redact(str(exc))}")
                    unread = EXIT_FAILED
                if plan is None and unread is None:
                    assert stop.by is not None
                    how, unread = stopped_by(stop.by)
                    note(f"{PROG}: {how} while reading positions: nothing was written")
                if plan is None:
                    raise _Unread
                note(_plan_line(plan, args.settle_coin))
                title = flag_title(args)
                reporter = reporter_for(
                    json_reporter,
                    console,
                    title=f"dry run: {title}" if args.dry_run else title,
                    items=0 if args.dry_run else plan.planned,
                    show=args.show,
                    noun="position",
                )
                reporter.started(len(plan.rows))
                if args.dry_run or stop.by is not None:
                    # Interrupted before the writes: the rows that need none are settled.
                    for row in plan.rows:
                        if args.dry_run or row.status != "planned":
                            done(row)
                else:
                    await stop.run(apply_plan(session, plan, on_row=done, classic=args.classic))
    except _Unread:
        # No position to list, but what was sent is still summed up (with
        # --json, the summary record: a script reading the output gets one).
        traffic = Traffic.of(session.stats())
        elapsed = time.perf_counter() - started
        if json_reporter is not None:
            json_reporter.finished([], elapsed, traffic)
        elif console is not None:
            from rich.text import Text

            console.print(Text(traffic.line(elapsed)))
        assert unread is not None
        return unread
    finally:
        if reporter is not None:
            reporter.stop()
    assert plan is not None
    assert reporter is not None
    outcomes: list[Outcome] = []
    for row in plan.rows:
        outcome = settled.get((row.symbol, row.position_idx))
        if outcome is None and row.position_idx is None:
            # Written without a read, it may have ended as hedge mode's two sides.
            sides = [settled[row.symbol, i] for i in (1, 2) if (row.symbol, i) in settled]
            if sides:
                outcomes += sides
                continue
        outcomes.append(outcome or _ensure_outcome(row, flag, redact, cancelled=True))
    reporter.finished(outcomes, time.perf_counter() - started, Traffic.of(session.stats()))
    return exit_for(outcomes, stop.by, "position")


def run(args: argparse.Namespace) -> int:
    """Run ``ensure-auto-add-margin``; return its exit status."""
    return run_command(args, _run_ensure, symbols_required=False)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ensure-auto-add-margin`` to *commands*."""
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
    add_symbols_argument(
        cmd,
        "symbols such as BTCUSDT (uppercase), open or not; none: every open position of "
        "the settle coin(s)",
    )
    add_flag_options(cmd)
    cmd.add_argument(
        "--settle-coin",
        action="append",
        type=settle_coin,
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
    add_symbols_file_option(cmd)
    add_session_options(cmd)
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per position, one per line, as each is settled",
    )
    add_show_options(cmd, "positions")


#: The ``ensure-auto-add-margin`` command.
COMMAND = Command(ENSURE, add_parser, run, takes_symbols=True)
