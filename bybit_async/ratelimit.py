"""Client-side rate limiting: Bybit's published limits and the limiter that keeps under them.

Bybit counts requests in rolling windows at the moment they *arrive*: 600 per
5 seconds per IP across all endpoints, and a per-UID, per-endpoint limit per
rolling second (`ENDPOINT_LIMITS`).  The limiter holds that many *permits*
for each limit.  A request takes one permit of each limit that applies before
it is sent, and each permit comes back one window (plus `WINDOW_MARGIN`) after
the request's answer or failure arrives.

A request arrives at the server somewhere between its send and its answer, so
the permit is out of the pool for the whole of any window that could count the
request.  No rolling window at the server can then hold more than the limit,
however the network delays or reorders requests, while a burst of up to the
limit leaves at once and the sustained rate is the limit per window plus one
round trip.  A request that was never sent (no connection could be made, or
the session refused it before sending) gives its permits back at once.

A call waits for its endpoint and the IP level together: it takes both
permits at the same moment, so it never holds one while it queues for the
other, and a backlog behind the IP level is not released at once into an
endpoint.  Calls to one endpoint are served first come, first served; across
endpoints, the oldest call that both levels admit goes first.

The server's own accounting wins when it is stricter: `Limiter.observe`
takes each response's ``X-Bapi-Limit-Status``, and a status of 0 with a reset
in the future holds the endpoint until the reset.

`Limiter` and `Permit` are the interface the session talks to, so that a
limiter shared by several processes (`bybit_async.RedisLimiter`) can replace
`LocalLimiter`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

__all__ = [
    "ENDPOINT_LIMITS",
    "ENDPOINT_WINDOW",
    "IP_LIMIT",
    "IP_WINDOW",
    "WINDOW_MARGIN",
    "Limiter",
    "LocalLimiter",
    "Permit",
    "RateLimits",
]

#: Per-UID limits, requests per rolling second, by endpoint path.  Source:
#: Bybit V5 "Rate Limit" page (Position table); none of these is raisable by
#: VIP level.  The simulator enforces the same table.
ENDPOINT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "/v5/position/set-auto-add-margin": 10,
        "/v5/position/set-leverage": 10,
        "/v5/position/switch-mode": 10,
        "/v5/position/trading-stop": 10,
        "/v5/position/add-margin": 10,
        "/v5/position/list": 50,
    }
)

#: Seconds of Bybit's per-UID, per-endpoint rolling window.
ENDPOINT_WINDOW = 1.0

#: Per-IP limit: requests per `IP_WINDOW` seconds, all endpoints together.
IP_LIMIT = 600
IP_WINDOW = 5.0

#: Seconds a permit stays out beyond its window.  Bybit stamps arrivals and
#: resets in whole milliseconds and its gateways' clocks agree only to a few
#: milliseconds, so a request exactly one window after another may still be
#: counted with it; 10 ms covers both and costs 1% of a one-second window.
WINDOW_MARGIN = 0.01


@dataclass(frozen=True)
class RateLimits:
    """The limits a limiter keeps under.

    *ip_limit* requests per *ip_window* seconds over all endpoints and, for
    each path in *endpoints*, that many requests per *window* seconds.  A
    permit comes back its window plus *margin* seconds after its request's
    answer.
    """

    ip_limit: int = IP_LIMIT
    ip_window: float = IP_WINDOW
    endpoints: Mapping[str, int] = field(default_factory=lambda: dict(ENDPOINT_LIMITS))
    window: float = ENDPOINT_WINDOW
    margin: float = WINDOW_MARGIN

    def __post_init__(self) -> None:
        for name, seconds in (("ip_window", self.ip_window), ("window", self.window)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise TypeError(f"{name} must be a number, got {seconds!r}")
            if not seconds > 0:
                raise ValueError(f"{name} must be positive, got {seconds!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)):
            raise TypeError(f"margin must be a number, got {self.margin!r}")
        if not self.margin >= 0:
            raise ValueError(f"margin must not be negative, got {self.margin!r}")
        for name, limit in [("ip_limit", self.ip_limit), *self.endpoints.items()]:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit for {name} must be an int, got {limit!r}")
            if limit < 1:
                raise ValueError(f"limit for {name} must be at least 1, got {limit}")


class Permit(Protocol):
    """One request's claim on the limits, from `Limiter.acquire`."""

    def release(self, sent: bool = True) -> None:
        """Give the permit back: one window after now if *sent*, at once otherwise.

        Call it when the request's answer or failure arrives.  Releasing twice
        does nothing.  It must not block: a limiter that needs I/O to release
        does it in the background.
        """


class Limiter(Protocol):
    """What a session needs from a rate limiter."""

    async def acquire(self, path: str) -> Permit:
        """Wait until one request to *path* may be sent, and return its permit."""

    def observe(self, path: str, remaining: int | None, reset_in: float | None) -> None:
        """Take in a response's limit headers: *remaining* requests, reset in *reset_in* s.

        The session passes *reset_in* only when it is at most its
        ``max_server_wait``, so that a hostile or broken header cannot hold an
        endpoint for long.
        """


class _Level:
    """The permits of one limit: *limit* of them, each out until *hold* s after release."""

    __slots__ = ("cooling", "hold", "in_flight", "limit")

    def __init__(self, limit: int, hold: float) -> None:
        self.limit = limit
        self.hold = hold
        self.in_flight = 0
        # Times at which released permits come back; ascending, since releases
        # are stamped with a monotonic clock and *hold* is fixed.
        self.cooling: deque[float] = deque()

    def free(self, now: float) -> int:
        cooling = self.cooling
        while cooling and cooling[0] <= now:
            cooling.popleft()
        return self.limit - self.in_flight - len(cooling)

    def next_return(self) -> float | None:
        return self.cooling[0] if self.cooling else None


class _LocalPermit:
    __slots__ = ("_endpoint", "_limiter")

    def __init__(self, limiter: LocalLimiter, endpoint: _Level | None) -> None:
        self._limiter: LocalLimiter | None = limiter
        self._endpoint = endpoint

    def release(self, sent: bool = True) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release(self._endpoint, sent)


class _Waiter:
    __slots__ = ("endpoint", "future", "path", "seq")

    def __init__(
        self, seq: int, path: str, endpoint: _Level | None, future: asyncio.Future[Permit]
    ) -> None:
        self.seq = seq
        self.path = path
        self.endpoint = endpoint
        self.future = future


class LocalLimiter:
    """A `Limiter` for one process, shared by its coroutines.

    *limits* are the limits to keep; *clock* is the monotonic clock permits
    are timed with (seconds).  All its methods must be called from one event
    loop.
    """

    __slots__ = (
        "_blocked_until",
        "_clock",
        "_endpoints",
        "_ip",
        "_limits",
        "_queues",
        "_seq",
        "_timer",
        "_timer_at",
    )

    def __init__(
        self, limits: RateLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = limits = RateLimits() if limits is None else limits
        self._clock = clock
        self._ip = _Level(limits.ip_limit, limits.ip_window + limits.margin)
        self._endpoints = {
            path: _Level(limit, limits.window + limits.margin)
            for path, limit in limits.endpoints.items()
        }
        # Calls waiting, by path, oldest first; a path is present only while
        # its queue is not empty.
        self._queues: dict[str, deque[_Waiter]] = {}
        self._seq = itertools.count()
        # Clock time before which a path must not be called: set when the server
        # reports the endpoint's window as used up.
        self._blocked_until: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def limits(self) -> RateLimits:
        """The limits this limiter enforces."""
        return self._limits

    def available(self, path: str) -> int:
        """Return how many requests to *path* could be sent now without waiting."""
        now = self._clock()
        if path in self._queues or self._blocked(path, now):
            return 0
        endpoint = self._endpoints.get(path)
        ip = self._ip.free(now)
        return ip if endpoint is None else min(ip, endpoint.free(now))

    async def acquire(self, path: str) -> Permit:
        """Wait for a permit of *path*'s endpoint limit and of the IP limit, taken together."""
        endpoint = self._endpoints.get(path)
        if path not in self._queues:
            now = self._clock()
            if self._admits(path, endpoint, now) and self._ip.free(now) > 0:
                return self._grant(endpoint)
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(next(self._seq), path, endpoint, future)
        queue = self._queues.get(path)
        if queue is None:
            queue = self._queues[path] = deque()
        queue.append(waiter)
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted as the caller was cancelled: nothing was sent.
                future.result().release(sent=False)
            else:
                self._dispatch()  # let the calls behind it move up
            raise

    def observe(self, path: str, remaining: int | None, reset_in: float | None) -> None:
        """Hold *path* until the reported reset when the server says none are left."""
        if remaining == 0 and reset_in is not None and reset_in > 0:
            # Requests sent after the reset may still arrive with the window's
            # last ones, by the same few milliseconds as a permit's margin.
            until = self._clock() + reset_in + self._limits.margin
            if until > self._blocked_until.get(path, 0.0):
                self._blocked_until[path] = until

    # -- internals -------------------------------------------------------------

    def _blocked(self, path: str, now: float) -> bool:
        until = self._blocked_until.get(path)
        if until is None:
            return False
        if until > now:
            return True
        del self._blocked_until[path]
        return False

    def _admits(self, path: str, endpoint: _Level | None, now: float) -> bool:
        """Whether *path*'s own limits would let one more request go now."""
        if self._blocked_until and self._blocked(path, now):
            return False
        return endpoint is None or endpoint.free(now) > 0

    def _grant(self, endpoint: _Level | None) -> Permit:
        if endpoint is not None:
            endpoint.in_flight += 1
        self._ip.in_flight += 1
        return _LocalPermit(self, endpoint)

    def _release(self, endpoint: _Level | None, sent: bool) -> None:
        now = self._clock()
        for level in (self._ip,) if endpoint is None else (endpoint, self._ip):
            level.in_flight -= 1
            if sent:
                level.cooling.append(now + level.hold)
        if self._queues:
            self._dispatch()

    def _dispatch(self) -> None:
        """Grant permits to waiting calls, oldest admissible first, then set the timer."""
        now = self._clock()
        queues = self._queues
        while queues:
            best: _Waiter | None = None
            for path in list(queues):
                queue = queues[path]
                while queue and queue[0].future.done():  # cancelled while waiting
                    queue.popleft()
                if not queue:
                    del queues[path]
                    continue
                head = queue[0]
                if (best is None or head.seq < best.seq) and self._admits(path, head.endpoint, now):
                    best = head
            if best is None or self._ip.free(now) <= 0:
                break
            queue = queues[best.path]
            queue.popleft()
            if not queue:
                del queues[best.path]
            best.future.set_result(self._grant(best.endpoint))
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        """Wake `_dispatch` when the next permit or hold that a waiting call needs ends."""
        wake: float | None = None
        if self._queues:
            times = [self._ip.next_return()]
            for path, queue in self._queues.items():
                endpoint = queue[0].endpoint
                times.append(self._blocked_until.get(path))
                if endpoint is not None:
                    times.append(endpoint.next_return())
            # Permits still in flight come back through _release, which dispatches;
            # times already past belong to levels that are not what holds the calls.
            wake = min((t for t in times if t is not None and t > now), default=None)
        timer = self._timer
        if timer is not None and (wake is None or wake != self._timer_at):
            timer.cancel()
            self._timer = None
        if wake is not None and self._timer is None:
            self._timer_at = wake
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(wake - now, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()
