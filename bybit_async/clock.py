"""The server clock: local wall time plus an offset measured against Bybit.

Bybit accepts a timestamp only when
``server_time - recv_window <= timestamp < server_time + 1000``, so a client
clock just one second fast is rejected.  `ServerClock` asks the server
for its time (``GET /v5/market/time``), assumes the answer was taken halfway
through the round trip, and keeps the difference as an offset.  Widening
``recv_window`` would hide a slow clock but never a fast one.

The round trip is timed around the HTTP exchange alone (`TimeSample`), never
around a wait for the rate limiter: behind a queue of requests, a round trip
that counted the wait would put the estimate off by half the wait.

Syncs are shared: while one is under way, every caller awaits the same one,
and a caller whose request was signed before the latest sync skips it.

A server time is taken only as a string of decimal digits between
`EARLIEST_MS` and `LATEST_MS` (`parse_time_nano`): a broken or hostile
answer must not move every later timestamp by decades.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

__all__ = [
    "EARLIEST_MS",
    "LATEST_MS",
    "ServerClock",
    "TimeSample",
    "parse_time_nano",
    "wall_clock_ms",
]

#: The earliest server time believed: 2020-01-01T00:00:00Z, Unix ms.
EARLIEST_MS = 1_577_836_800_000
#: The latest server time believed: 2100-01-01T00:00:00Z, Unix ms.
LATEST_MS = 4_102_444_800_000


def wall_clock_ms() -> int:
    """Return the local wall-clock time in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def parse_time_nano(value: object) -> int | None:
    """Return Bybit's ``timeNano`` string as Unix ms, or None if it is no sane time.

    Only ASCII digits are accepted (Bybit sends a string), and only a time
    from `EARLIEST_MS` to `LATEST_MS`.
    """
    # 19 digits are nanoseconds until 2286; more could only be garbage, and
    # int() of a long string costs time that a hostile answer should not buy.
    if type(value) is not str or not 0 < len(value) <= 19:
        return None
    if not (value.isascii() and value.isdigit()):
        return None
    ms = int(value) // 1_000_000
    return ms if EARLIEST_MS <= ms <= LATEST_MS else None


class TimeSample(NamedTuple):
    """One reading of the server's clock, with the local times around its exchange."""

    #: The server's time in the answer, Unix ms.
    server_ms: int
    #: Local time (`ServerClock.local_ms`) just before the request was sent.
    sent_ms: int
    #: Local time just after the answer was read.
    received_ms: int

    @property
    def round_trip_ms(self) -> int:
        """Milliseconds between send and answer."""
        return self.received_ms - self.sent_ms


class ServerClock:
    """Estimates the server's time from the local clock and a measured offset.

    *local_ms* is the local clock (Unix milliseconds); inject another to test.
    """

    __slots__ = ("_local_ms", "_pending", "_task", "generation", "offset_ms", "round_trip_ms")

    def __init__(self, local_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._local_ms = local_ms
        # What callers await, and the task that measures: apart, so that
        # cancel() can fail the callers with a reason instead of cancelling them.
        self._pending: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Server time minus local time, ms; None until the first sync.
        self.offset_ms: int | None = None
        #: Round trip of the last sync, ms.
        self.round_trip_ms: int | None = None
        #: Counts completed syncs; a request records it when signed.
        self.generation = 0

    @property
    def synced(self) -> bool:
        """Whether an offset has been measured."""
        return self.offset_ms is not None

    @property
    def uncertainty_ms(self) -> int:
        """How far off `now_ms` may be: half the last sync's round trip."""
        return (self.round_trip_ms or 0) // 2 + 1

    def now_ms(self) -> int:
        """Return the estimated server time in Unix milliseconds."""
        return self._local_ms() + (self.offset_ms or 0)

    def local_ms(self) -> int:
        """Return the local clock's time in Unix milliseconds, as offsets are taken against."""
        return self._local_ms()

    def adopt(self, sample: TimeSample) -> None:
        """Take the offset from *sample*, read halfway through its round trip."""
        self.offset_ms = sample.server_ms - (sample.sent_ms + sample.received_ms) // 2
        self.round_trip_ms = sample.round_trip_ms
        self.generation += 1

    async def sync(
        self,
        fetch: Callable[[], Awaitable[TimeSample]],
        *,
        signed_at_generation: int | None = None,
    ) -> None:
        """Measure the offset with *fetch*, which reads the server's clock.

        With *signed_at_generation*, skip the sync when a newer one has completed
        since a request was signed at that generation.  Concurrent callers share
        one fetch; cancelling one caller does not cancel it for the others.
        """
        if signed_at_generation is not None and signed_at_generation != self.generation:
            return
        pending = self._pending
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._pending = loop.create_future()
            pending.add_done_callback(self._finished)
            self._task = loop.create_task(self._measure(fetch, pending))
        await asyncio.shield(pending)

    async def _measure(
        self, fetch: Callable[[], Awaitable[TimeSample]], pending: asyncio.Future[None]
    ) -> None:
        try:
            sample = await fetch()
        except asyncio.CancelledError:
            if not pending.done():
                pending.cancel()
            raise
        except BaseException as exc:  # the callers get it; the task itself ends quietly
            if not pending.done():
                pending.set_exception(exc)
            return
        if not pending.done():
            self.adopt(sample)
            pending.set_result(None)

    def _finished(self, future: asyncio.Future[None]) -> None:
        if self._pending is future:
            self._pending = None
            self._task = None
        # Every caller may have been cancelled: retrieve the outcome so that
        # asyncio does not report an exception that nobody awaited.
        if not future.cancelled():
            future.exception()

    def cancel(self, reason: BaseException | None = None) -> None:
        """Stop a sync under way, if any.

        Its callers raise *reason*; without one they are cancelled, as before.
        Only the callers that were themselves cancelled see `asyncio.CancelledError`
        when a *reason* is given.
        """
        pending, task = self._pending, self._task
        if pending is not None and not pending.done():
            if reason is None:
                pending.cancel()
            else:
                pending.set_exception(reason)
        if task is not None:
            task.cancel()
