"""The auto-add-margin guard: keep the flag as wanted on positions as they open and change.

`guard_auto_add_margin` (and `BybitSession.guard_auto_add_margin`) runs
until cancelled.  It holds a `PositionStream` and, on start and after every
reconnect, reconciles exactly as `ensure_auto_add_margin` does: it reads the
position list and writes only the positions whose flag differs.  Between
reads it acts on pushes: a position whose flag differs from the wanted one
gets one write.  The rules that make it safe to leave running:

* never two writes for one position at once (the last update that came
  meanwhile is looked at when the write ends), and none for a position whose
  write Bybit already confirmed until a newer state shows the flag as wanted
  (a wrong state seen after a confirmed write is checked with a read of that
  symbol first, since it may be a push sent before the write took effect);
* every write goes through the session: its limiter, retries and
  not-modified handling;
* a position Bybit refuses the flag (cross or portfolio margin, 110076 and
  110077) is skipped and not written again until its ``tradeMode`` changes;
* a failed write is tried again after a capped back-off, after a read;
* every action is an `EnsureRow`, given to *on_action* and emitted as a
  `GuardActed` event;
* cancelling it cancels its writes and reads and closes the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final, Literal, Protocol

from .errors import BybitError
from .events import GuardActed
from .positions import (
    EnsureRow,
    Position,
    PositionKey,
    _Client,
    _decide,
    _write,
    auto_add_margin_params,
    plan_auto_add_margin,
    position_list_params,
    settle_coin_of,
)
from .stream import PositionStream, _PositionSource, jittered_backoff

__all__ = ["guard_auto_add_margin", "settle_coin_of"]

_log = logging.getLogger("bybit_async.guard")

# Failed writes and reads are tried again after this much, doubling, at most _RETRY_MAX.
_RETRY_INITIAL: Final = 1.0
_RETRY_MAX: Final = 60.0

Trigger = Literal["reconcile", "update", "retry"]


class _Session(_Client, _PositionSource, Protocol):
    """What the guard needs of a `BybitSession`: reads and writes, and the stream."""

    def stream_positions(self, category: str = "linear", **options: Any) -> PositionStream: ...


async def guard_auto_add_margin(
    session: _Session,
    on: bool | int = True,
    symbols: Iterable[str] | None = None,
    *,
    settle_coin: str = "USDT",
    on_action: Callable[[EnsureRow], object] | None = None,
    retry_initial: float = _RETRY_INITIAL,
    retry_max: float = _RETRY_MAX,
    **stream_options: Any,
) -> None:
    """Keep auto-add-margin *on* (or off) until cancelled; see the module documentation.

    *symbols* None guards every open position settled in *settle_coin*;
    otherwise the named symbols, open or not (as `ensure_auto_add_margin`
    does).  *on_action* is called with an `EnsureRow` for every action:
    ``"changed"`` (written), ``"unchanged"`` (already as wanted, by a read
    or Bybit's not-modified answer), ``"skipped"`` or ``"failed"``.  A
    failed write is tried again after *retry_initial* seconds, doubling up
    to *retry_max*.  *stream_options* go to `PositionStream` (ping interval,
    back-off, limits).  Raises `TypeError` or `ValueError` for a bad
    argument before any I/O, and `AuthenticationError` if the stream's key is
    refused; otherwise returns only by cancellation.
    """
    if isinstance(on, bool) or (isinstance(on, int) and on in (0, 1)):
        flag = bool(on)
    else:
        raise (ValueError if isinstance(on, int) else TypeError)(
            f"on must be True/False or 1/0, got {on!r}"
        )
    if isinstance(symbols, str):
        raise TypeError("symbols must be an iterable of symbols, not one str")
    names: frozenset[str] | None = None
    if symbols is not None:
        names = frozenset(symbols)
        for name in names:
            auto_add_margin_params(name, flag)
    if not isinstance(settle_coin, str):
        raise TypeError(f"settle_coin must be a str, got {type(settle_coin).__name__}")
    position_list_params(settle_coin=settle_coin)
    if on_action is not None and not callable(on_action):
        raise TypeError("on_action must be callable")
    for name, value in (("retry_initial", retry_initial), ("retry_max", retry_max)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    guard = _Guard(session, flag, names, settle_coin, on_action, retry_initial, retry_max)
    stream = session.stream_positions(
        settle_coin=settle_coin, snapshot=False, on_connect=guard.connected, **stream_options
    )
    await guard.run(stream)


class _Guard:
    def __init__(
        self,
        session: _Session,
        flag: bool,
        names: frozenset[str] | None,
        settle_coin: str,
        on_action: Callable[[EnsureRow], object] | None,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self.session = session
        self.flag = flag
        self.names = names
        self.settle_coin = settle_coin
        self.on_action = on_action
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.link = session._stream_link()
        # Writes under way; writes Bybit confirmed with no later state seen as wanted;
        # positions refused the flag -> their tradeMode then; symbol reads under way.
        self.inflight: set[PositionKey] = set()
        self.confirmed: set[PositionKey] = set()
        self.skipped: dict[PositionKey, int] = {}
        self.verifying: set[PositionKey] = set()
        # The latest update of a position that came while its write or read was under way.
        self.deferred: dict[PositionKey, Position] = {}
        self.failures: dict[PositionKey, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.reconciling: asyncio.Task[None] | None = None
        self.random = random.Random()

    async def run(self, stream: PositionStream) -> None:
        try:
            async with stream:
                async for position in stream:
                    self.consider(position, "update")
        finally:
            tasks = [*self.tasks, *([self.reconciling] if self.reconciling else [])]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # -- scheduling ------------------------------------------------------------

    def spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def connected(self, number: int) -> None:
        """The stream (re)connected: read everything again, as ensure_auto_add_margin does."""
        if self.reconciling is not None:
            self.reconciling.cancel()
        self.reconciling = asyncio.create_task(self.reconcile())

    def report(self, row: EnsureRow, trigger: Trigger) -> None:
        if self.on_action is not None:
            try:
                self.on_action(row)
            except Exception:
                _log.exception("on_action raised on %s", row.symbol)
        emit = self.link.emit
        if emit is not None:
            emit(GuardActed(time.time(), row, trigger))

    # -- deciding ---------------------------------------------------------------

    def wanted(self, position: Position) -> bool:
        """Whether the guard looks after *position*."""
        if self.names is not None:
            return position.symbol in self.names
        return position.is_open and settle_coin_of(position.symbol) == self.settle_coin

    def consider(self, position: Position, trigger: Trigger) -> None:
        if not self.wanted(position):
            return
        key = (position.symbol, position.position_idx)
        if position.auto_add_margin == self.flag:
            self.confirmed.discard(key)
            return
        mode = self.skipped.get(key)
        if mode is not None:
            if mode == position.trade_mode:
                return
            del self.skipped[key]
        if key in self.inflight or key in self.verifying:
            # Looked at once that write or read ends: it may show a change made meanwhile.
            self.deferred[key] = position
            return
        row = _decide(position, self.flag, False)
        if key in self.confirmed:
            # Possibly a push sent before the confirmed write took effect: read first.
            self.verifying.add(key)
            self.spawn(self.verify(key, trigger))
            return
        self.inflight.add(key)
        self.spawn(self.write(row, trigger))

    async def write(self, row: EnsureRow, trigger: Trigger) -> None:
        assert row.position_idx is not None
        key = (row.symbol, row.position_idx)
        try:
            done = await _write(self.session, row, self.flag)
        finally:
            self.inflight.discard(key)
        if done.status in ("changed", "unchanged"):
            self.confirmed.add(key)
            self.failures.pop(key, None)
        elif done.status == "skipped":
            self.skipped[key] = row.position.trade_mode if row.position is not None else 0
            self.failures.pop(key, None)
        else:
            self.retry_later(key)
        self.report(done, trigger)
        self.resume(key)

    def resume(self, key: PositionKey) -> None:
        """Look at the update that came while *key*'s write or read was under way, if any."""
        position = self.deferred.pop(key, None)
        if position is not None:
            self.consider(position, "update")

    def retry_later(self, key: PositionKey) -> None:
        failures = self.failures[key] = self.failures.get(key, 0) + 1
        wait = self.backoff(failures)
        self.verifying.add(key)
        self.spawn(self.verify(key, "retry", wait))

    async def verify(self, key: PositionKey, trigger: Trigger, wait: float = 0.0) -> None:
        """Read one symbol; write its position if the flag is still not as wanted."""
        symbol, idx = key
        try:
            if wait:
                await asyncio.sleep(wait)
            positions = await self.session.get_positions(symbol=symbol)
        except BybitError as error:
            _log.warning("guard: reading %s failed (%s); trying later", symbol, error.message)
            self.verifying.discard(key)
            self.retry_later(key)
            return
        except BaseException:
            self.verifying.discard(key)
            raise
        self.verifying.discard(key)
        for position in positions:
            if position.symbol == symbol and position.position_idx == idx:
                if position.auto_add_margin == self.flag:
                    # Wanted as read: a wrong push after this one is read before a write.
                    self.confirmed.add(key)
                    if trigger != "retry":
                        # The push that looked wrong was older than the confirmed write.
                        row = _decide(position, self.flag, False)
                        self.report(replace(row, reason=f"{row.reason} (read)"), trigger)
                else:
                    self.confirmed.discard(key)
                    self.consider(position, trigger)
        self.resume(key)

    def backoff(self, failures: int) -> float:
        return jittered_backoff(failures, self.retry_initial, self.retry_max, self.random)

    async def reconcile(self) -> None:
        """Read and write only what differs, as `ensure_auto_add_margin`; retried until read."""
        failures = 0
        while True:
            try:
                plan = await plan_auto_add_margin(
                    self.session,
                    None if self.names is None else sorted(self.names),
                    self.flag,
                    settle_coin=self.settle_coin,
                )
            except BybitError as error:
                failures += 1
                _log.warning("guard: reading positions failed (%s); again soon", error.message)
                await asyncio.sleep(self.backoff(failures))
                continue
            unread = False
            for row in plan.rows:
                if row.position_idx is None or row.position is None:
                    unread = True
                    self.report(row, "reconcile")  # this symbol's read failed
                    continue
                self.reconcile_row(row, (row.symbol, row.position_idx))
            if not unread:
                return
            failures += 1
            await asyncio.sleep(self.backoff(failures))

    def reconcile_row(self, row: EnsureRow, key: PositionKey) -> None:
        assert row.position is not None
        if row.status != "planned":
            if row.status == "unchanged":
                self.confirmed.discard(key)
            self.report(row, "reconcile")
            return
        if key in self.inflight or key in self.verifying:
            return
        if key in self.confirmed:
            self.verifying.add(key)
            self.spawn(self.verify(key, "reconcile"))
            return
        if self.skipped.get(key) == row.position.trade_mode:
            return
        self.skipped.pop(key, None)
        self.inflight.add(key)
        self.spawn(self.write(row, "reconcile"))
