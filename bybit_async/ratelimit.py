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
import bisect
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from .endpoint_limits import ENDPOINT_LIMITS, EndpointLimit

__all__ = [
    "ENDPOINT_LIMITS",
    "ENDPOINT_WINDOW",
    "IP_LIMIT",
    "IP_WINDOW",
    "MAX_LEARNED_LIMIT",
    "WINDOW_MARGIN",
    "EndpointLimit",
    "IpBudget",
    "LimitInForce",
    "LimitSource",
    "Limiter",
    "LocalLimiter",
    "Permit",
    "RateLimits",
]

_log = logging.getLogger("bybit_async")

#: Seconds of Bybit's per-UID, per-endpoint rolling window (most endpoints).
ENDPOINT_WINDOW = 1.0

#: Per-IP limit: requests per `IP_WINDOW` seconds, all endpoints together.
IP_LIMIT = 600
IP_WINDOW = 5.0

#: Seconds a permit stays out beyond its window.  Bybit stamps arrivals and
#: resets in whole milliseconds and its gateways' clocks agree only to a few
#: milliseconds, so a request exactly one window after another may still be
#: counted with it; 10 ms covers both and costs 1% of a one-second window.
WINDOW_MARGIN = 0.01

#: The largest ``X-Bapi-Limit`` taken as a budget's limit; a larger one is
#: ignored as broken (Bybit's largest published limits are in the thousands).
MAX_LEARNED_LIMIT = 100_000

#: Where a budget's limit in force came from: Bybit's published table, an
#: answer's ``X-Bapi-Limit``, `RateLimits.endpoints`, or nowhere yet (one
#: request at a time until an answer states it).
LimitSource = Literal["table", "learned", "configured", "unknown"]


class LimitInForce(NamedTuple):
    """A budget's limit now: *limit* requests per *window* seconds, from *source*."""

    limit: int
    window: float
    source: LimitSource


@dataclass(frozen=True)
class RateLimits:
    """The limits a limiter keeps under.

    *ip_limit* requests per *ip_window* seconds over all endpoints.  Each
    endpoint's per-UID limit is Bybit's published one (`ENDPOINT_LIMITS`)
    until an answer states the account's own (``X-Bapi-Limit``), which then
    holds from the next request on; a budget the table lacks allows one
    request in flight until an answer states its limit.  *endpoints*
    overrides both for the budget keys it names (see
    `bybit_async.endpoint_limits`; a path names all of its business lines):
    an int is requests per *window* seconds, an `EndpointLimit` carries its
    own window.  A permit comes back its window plus *margin* seconds after
    its request's answer.
    """

    ip_limit: int = IP_LIMIT
    ip_window: float = IP_WINDOW
    endpoints: Mapping[str, int | EndpointLimit] = field(default_factory=dict)
    window: float = ENDPOINT_WINDOW
    margin: float = WINDOW_MARGIN

    def __post_init__(self) -> None:
        for name, seconds in (("ip_window", self.ip_window), ("window", self.window)):
            _check_window(name, seconds)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)):
            raise TypeError(f"margin must be a number, got {self.margin!r}")
        if not self.margin >= 0:
            raise ValueError(f"margin must not be negative, got {self.margin!r}")
        if not isinstance(self.endpoints, Mapping):
            raise TypeError(f"endpoints must be a mapping, got {type(self.endpoints).__name__}")
        _check_limit("ip_limit", self.ip_limit)
        for key, value in self.endpoints.items():
            if isinstance(value, EndpointLimit):
                _check_limit(key, value.limit)
                _check_window(f"window of {key}", value.window)
            else:
                _check_limit(key, value)
            if not isinstance(key, str) or not key.startswith("/v5/"):
                raise ValueError(f"endpoints keys must be V5 paths or budget keys, got {key!r}")

    def configured(self, key: str) -> EndpointLimit | None:
        """Return the override for budget *key* (or for its path), if any."""
        value = self.endpoints.get(key)
        if value is None and ":" in key:
            value = self.endpoints.get(key.partition(":")[0])
        if value is None:
            return None
        return value if isinstance(value, EndpointLimit) else EndpointLimit(value, self.window)


def _check_window(name: str, seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number, got {seconds!r}")
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {seconds!r}")


def _check_limit(name: str, limit: object) -> None:
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
    """What a session needs from a rate limiter.

    A limiter may also have ``try_acquire(path, signed) -> Permit | None``,
    which the session tries first: a permit to be had at once then costs no
    coroutine (`LocalLimiter.try_acquire`; `RedisLimiter.try_acquire` with
    its spare permits).
    """

    async def acquire(self, path: str, *, signed: bool = True) -> Permit:
        """Wait until one request to budget *path* may be sent, and return its permit.

        *path* is a budget key (`bybit_async.endpoint_limits.budget_key`).  A
        request that is not *signed* counts against the IP limit only.
        """

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        """Take in an answer's limit headers for budget *path*.

        *remaining* requests are left, the window resets in *reset_in* s, and
        *limit* is the account's limit for the budget (``X-Bapi-Limit``).  The
        session passes *reset_in* only when it is at most its
        ``max_server_wait``, and *limit* only when it is from 1 to
        `MAX_LEARNED_LIMIT`, so that a hostile or broken header cannot hold
        or open an endpoint.
        """


class _Level:
    """The permits of one limit: *limit* of them, each out until *hold* s after release.

    *room* is how many may be taken now: the limit less the permits in
    flight and those cooling down, kept as one count because it is read on
    every request.  *cooling* holds the release times of the permits cooling
    down, ascending; they are counted back in batches (`prune`), so *room*
    may understate what is free, never overstate it.

    While *source* is ``"unknown"`` only requests in flight count (*room*
    is 1 less them): one at a time until an answer states the limit.
    Released permits still cool down, so that they count once the limit is
    known.

    An endpoint's level is also the permit the session takes on every
    request (`LocalLimiter._take`): its `release` gives back the endpoint's
    permit and the one of *ip*, the IP level of *budget*, stamped with
    *clock*.  The IP level's own *ip* is None.
    """

    __slots__ = (
        "budget",
        "clock",
        "cooling",
        "heard",
        "hold",
        "ip",
        "lag",
        "limit",
        "margin",
        "prune_at",
        "room",
        "source",
        "unknown",
        "window",
    )

    def __init__(
        self,
        limit: int,
        window: float,
        margin: float,
        source: LimitSource,
        budget: IpBudget,
        clock: Callable[[], float],
        ip: _Level | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.margin = margin
        self.hold = window + margin
        # Cooled permits are counted back at most once per lag: one prune per
        # batch instead of one per request, and at most an eighth of a window
        # more kept in memory.
        self.lag = self.hold / 8
        self.prune_at = 0.0
        self.source: LimitSource = source
        # source == "unknown", kept as a flag: it is read on every release.
        self.unknown = source == "unknown"
        self.room = 1 if self.unknown else limit
        # Release times, not return times: the IP level and an endpoint's are
        # stamped with the same float, which no release then has to make.
        self.cooling: list[float] = []
        # The last X-Bapi-Limit acted on (`LocalLimiter.observe`).
        self.heard: int | None = None
        self.budget = budget
        self.clock = clock
        self.ip = ip

    @property
    def in_flight(self) -> int:
        """Permits taken and not yet released."""
        if self.unknown:
            return 1 - self.room
        return self.limit - self.room - len(self.cooling)

    def prune(self, now: float) -> None:
        """Count back the permits that have cooled by *now*."""
        cooling = self.cooling
        hold = self.hold
        # Back when release + hold has come, the sum next_return reports and the
        # dispatch timer waits for (now - hold may round to either side of it).
        back = bisect.bisect_right(cooling, now, key=lambda released: released + hold)
        if back:
            del cooling[:back]
            if not self.unknown:
                self.room += back
        self.prune_at = now + self.lag

    def free(self, now: float) -> int:
        self.prune(now)
        return self.room

    def set_limit(self, limit: int) -> None:
        """Make *limit* the limit from now on; an unknown level becomes known."""
        in_flight = self.in_flight
        self.limit = limit
        self.unknown = False
        self.room = limit - in_flight - len(self.cooling)

    def next_return(self) -> float | None:
        if self.unknown:
            return None  # only an answer opens it
        return self.cooling[0] + self.hold if self.cooling else None

    def release(self, sent: bool = True) -> None:
        """Give back one permit of this level and one of *ip*: see `Permit.release`.

        Unlike a `Permit`'s, it must be called once only: the session calls
        it for the level `LocalLimiter._take` gave it, and a `_LocalPermit`
        for its own.
        """
        ip = self.ip
        if sent:
            # In flight until now, cooling from now: the room stays as it is.
            now = self.clock()
            self.cooling.append(now)
            if now > self.prune_at:
                self.prune(now)
            if ip is not None:
                ip.cooling.append(now)
                if now > ip.prune_at:
                    ip.prune(now)
            if self.unknown:  # only requests in flight count
                self.room += 1
        else:
            self.room += 1
            if ip is not None:
                ip.room += 1
        budget = self.budget
        if budget._waiting:
            budget._dispatch()


class _LocalPermit:
    # No __init__: a class without one is called without a Python frame
    # (cheaper than object.__new__, which checks its argument).
    __slots__ = ("_level",)

    # The level to release: an endpoint's (with the IP's), or the IP's alone.
    _level: _Level | None

    def release(self, sent: bool = True) -> None:
        level, self._level = self._level, None
        if level is not None:
            level.release(sent)


def _permit(level: _Level) -> _LocalPermit:
    """A permit of *level* (an endpoint's, with the IP's, or the IP's alone)."""
    permit = _LocalPermit()
    permit._level = level
    return permit


class _Waiter:
    __slots__ = ("endpoint", "future", "limiter", "path", "seq")

    def __init__(
        self,
        limiter: LocalLimiter,
        seq: int,
        path: str,
        endpoint: _Level | None,
        future: asyncio.Future[Permit],
    ) -> None:
        self.limiter = limiter
        self.seq = seq
        self.path = path
        self.endpoint = endpoint
        self.future = future


class IpBudget:
    """The per-IP permits (*limit* per *window* seconds) shared by the limiters of one egress.

    Every `LocalLimiter` given the same budget takes its IP permits from it,
    and calls waiting in any of them are served oldest first.  A session
    shares one budget with every other session of the process that leaves
    through the same egress (see `BybitSession`).  All its methods must be
    called from one event loop.
    """

    __slots__ = ("__weakref__", "_clock", "_level", "_seq", "_timer", "_timer_at", "_waiting")

    def __init__(
        self,
        limit: int = IP_LIMIT,
        window: float = IP_WINDOW,
        *,
        margin: float = WINDOW_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limit("the IP", limit)
        _check_window("window", window)
        self._level = _Level(limit, window, margin, "configured", self, clock)
        self._clock = clock
        self._seq = itertools.count()
        # The limiters with calls waiting, in no particular order.
        self._waiting: dict[LocalLimiter, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def limit(self) -> int:
        """Requests allowed per window."""
        return self._level.limit

    @property
    def window(self) -> float:
        """The window in seconds."""
        return self._level.window

    def free(self) -> int:
        """Return how many IP permits could be taken now."""
        return self._level.free(self._clock())

    def __repr__(self) -> str:
        level = self._level
        return f"<IpBudget {level.limit} per {level.window:g} s, {level.in_flight} in flight>"

    def _dispatch(self) -> None:
        """Grant permits to waiting calls, oldest admissible first, then set the timer."""
        now = self._clock()
        ip = self._level
        waiting = self._waiting
        while waiting:
            best: _Waiter | None = None
            for limiter in list(waiting):
                queues = limiter._queues
                for path in list(queues):
                    queue = queues[path]
                    while queue and queue[0].future.done():  # cancelled while waiting
                        queue.popleft()
                    if not queue:
                        del queues[path]
                        continue
                    head = queue[0]
                    if (best is None or head.seq < best.seq) and limiter._admits(
                        path, head.endpoint, now
                    ):
                        best = head
                if not queues:
                    del waiting[limiter]
            if best is None or ip.free(now) <= 0:
                break
            limiter = best.limiter
            queue = limiter._queues[best.path]
            queue.popleft()
            if not queue:
                del limiter._queues[best.path]
                if not limiter._queues:
                    del waiting[limiter]
            best.future.set_result(limiter._grant(best.endpoint))
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        """Wake `_dispatch` when the next permit or hold that a waiting call needs ends."""
        wake: float | None = None
        if self._waiting:
            times = [self._level.next_return()]
            for limiter in self._waiting:
                for path, queue in limiter._queues.items():
                    endpoint = queue[0].endpoint
                    times.append(limiter._blocked_until.get(path))
                    if endpoint is not None:
                        times.append(endpoint.next_return())
            # Permits still in flight come back through their release, which dispatches;
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


class LocalLimiter:
    """A `Limiter` for one account in one process, shared by its coroutines.

    *limits* are the limits to keep; *clock* is the monotonic clock permits
    are timed with (seconds).  *ip* is the IP budget to take IP permits from
    (None: one of its own, from *limits*, on *clock*; one given must keep
    the same clock); a session replaces its own with the process's budget
    for its egress (`share_ip`) before its first request.  All its methods
    must be called from one event loop.
    """

    __slots__ = (
        "__weakref__",
        "_blocked_until",
        "_clock",
        "_endpoints",
        "_ip",
        "_ip_budget",
        "_ip_given",
        "_limits",
        "_queues",
    )

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ip: IpBudget | None = None,
    ) -> None:
        self._limits = limits = RateLimits() if limits is None else limits
        self._clock = clock
        self._ip_given = ip is not None
        if ip is None:
            ip = IpBudget(limits.ip_limit, limits.ip_window, margin=limits.margin, clock=clock)
        self._ip_budget = ip
        self._ip = ip._level
        # Budgets by key, made on first use: a budget the table lacks must not
        # be set up before its first request.
        self._endpoints: dict[str, _Level] = {}
        # Calls waiting, by key, oldest first; a key is present only while
        # its queue is not empty.
        self._queues: dict[str, deque[_Waiter]] = {}
        # Clock time before which a key must not be called: set when the server
        # reports the endpoint's window as used up.
        self._blocked_until: dict[str, float] = {}

    @property
    def limits(self) -> RateLimits:
        """The limits this limiter was configured with."""
        return self._limits

    @property
    def ip(self) -> IpBudget:
        """The IP budget this limiter takes IP permits from."""
        return self._ip_budget

    def share_ip(self, budget: IpBudget) -> None:
        """Take IP permits from *budget* from now on.

        A no-op when the constructor was given a budget, when *budget* keeps
        another clock (its permits and this limiter's would not be timed
        alike), or once the limiter has been used: permits out stay counted
        where they were taken.
        """
        if self._ip_given or budget is self._ip_budget:
            return
        if budget._clock is not self._clock:
            _log.debug("LocalLimiter on a clock of its own; keeps its own IP budget")
            return
        if self._ip.room != self._ip.limit or self._queues:
            # Already in use (by a session of another egress): switching now
            # would lose the permits it has out; it keeps the budget it has.
            _log.debug("LocalLimiter already in use; keeps its own IP budget")
            return
        self._ip_budget = budget
        self._ip = budget._level
        for level in self._endpoints.values():
            level.budget = budget
            level.ip = budget._level

    def limit_in_force(self, key: str) -> LimitInForce:
        """Return budget *key*'s limit now and where it came from."""
        level = self._endpoint(key)
        return LimitInForce(level.limit, level.window, level.source)

    def limits_in_force(self) -> dict[str, LimitInForce]:
        """Return the limit now of every budget this limiter has used, by key."""
        return {
            key: LimitInForce(level.limit, level.window, level.source)
            for key, level in self._endpoints.items()
        }

    def available(self, path: str, *, signed: bool = True) -> int:
        """Return how many requests to budget *path* could be sent now without waiting.

        A request that is not *signed* needs an IP permit only.
        """
        now = self._clock()
        if path in self._queues or self._blocked(path, now):
            return 0
        ip = self._ip.free(now)
        # A limit learned lower than the permits out makes free() negative for a while.
        return max(0, min(ip, self._endpoint(path).free(now)) if signed else ip)

    def try_acquire(self, path: str, signed: bool = True) -> Permit | None:
        """Return a permit of budget *path* and of the IP limit if both may be taken now.

        None when the call would have to wait (or calls to *path* already
        wait): then `acquire` queues it.  A request that is not *signed*
        needs an IP permit only.
        """
        level = self._take(path, signed)
        if level is None:
            return None
        return _permit(level)

    def _take(self, key: str, signed: bool = True) -> _Level | None:
        """`try_acquire` without the permit: the level taken from, to release once.

        What the session calls on every request (its permit is released
        exactly once): one object fewer made and freed per request.  The
        level is *key*'s, or the IP's when the request is not *signed*.
        """
        if key in self._queues:
            return None
        ip = self._ip
        # A level's room, with cooled permits counted back only in batches,
        # can only understate what is free: a level with room has it, and
        # only one without needs the clock and the pruning (_Level.free).
        if ip.room <= 0 and ip.free(self._clock()) <= 0:
            return None
        if signed:
            level = self._endpoints.get(key)
            if level is None:
                level = self._endpoint(key)
            if level.room <= 0 and level.free(self._clock()) <= 0:
                return None
            if self._blocked_until and self._blocked(key, self._clock()):
                return None
            level.room -= 1
            ip.room -= 1
            return level
        if self._blocked_until and self._blocked(key, self._clock()):
            return None
        ip.room -= 1
        return ip

    async def acquire(self, path: str, *, signed: bool = True) -> Permit:
        """Wait for a permit of budget *path* and of the IP limit, taken together.

        A request that is not *signed* takes an IP permit only.
        """
        permit = self.try_acquire(path, signed)
        if permit is not None:
            return permit
        endpoint = self._endpoint(path) if signed else None
        budget = self._ip_budget
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(self, next(budget._seq), path, endpoint, future)
        queue = self._queues.get(path)
        if queue is None:
            queue = self._queues[path] = deque()
        queue.append(waiter)
        budget._waiting[self] = None
        budget._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted as the caller was cancelled: nothing was sent.
                future.result().release(sent=False)
            else:
                budget._dispatch()  # let the calls behind it move up
            raise

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        """Learn budget *path*'s *limit*; hold it until the reset when none are *remaining*."""
        if limit is not None:
            level = self._endpoints.get(path)
            if level is None:
                level = self._endpoint(path)
            # Most answers state the limit the last one did: one comparison.
            if limit != level.heard:
                self._learn(level, limit)
        if remaining == 0 and reset_in is not None and reset_in > 0:
            # Requests sent after the reset may still arrive with the window's
            # last ones, by the same few milliseconds as a permit's margin.
            until = self._clock() + reset_in + self._limits.margin
            if until > self._blocked_until.get(path, 0.0):
                self._blocked_until[path] = until

    # -- internals -------------------------------------------------------------

    def _learn(self, level: _Level, limit: int) -> None:
        """Make *limit*, stated by an answer, *level*'s limit unless one is configured."""
        level.heard = limit
        if level.source == "configured":
            return
        opened = level.unknown or limit > level.limit
        level.set_limit(limit)
        level.source = "learned"
        if opened and self._ip_budget._waiting:
            self._ip_budget._dispatch()

    def _endpoint(self, key: str) -> _Level:
        level = self._endpoints.get(key)
        if level is not None:
            return level
        limits = self._limits
        budget = limits.configured(key)
        source: LimitSource = "configured"
        if budget is None:
            budget = ENDPOINT_LIMITS.get(key)
            source = "table"
        if budget is None:
            budget = EndpointLimit(1, limits.window)
            source = "unknown"
        level = self._endpoints[key] = _Level(
            budget.limit,
            budget.window,
            limits.margin,
            source,
            self._ip_budget,
            self._clock,
            self._ip,
        )
        return level

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
        ip = self._ip
        ip.room -= 1
        if endpoint is None:
            return _permit(ip)
        endpoint.room -= 1
        return _permit(endpoint)


# -- one IP budget per egress, per event loop -----------------------------------

_BUDGETS: weakref.WeakValueDictionary[tuple[object, ...], IpBudget] = weakref.WeakValueDictionary()


def shared_ip_budget(loop: asyncio.AbstractEventLoop, egress: str, limits: RateLimits) -> IpBudget:
    """Return the process's IP budget for *egress* in *loop*, made from *limits* if new.

    Sessions with other IP limits (``ip_limit``, ``ip_window``) keep
    budgets of their own.  A budget lives as long as a limiter uses it.
    """
    key = (loop, egress, limits.ip_limit, limits.ip_window, limits.margin)
    budget = _BUDGETS.get(key)
    if budget is None:
        budget = IpBudget(limits.ip_limit, limits.ip_window, margin=limits.margin)
        _BUDGETS[key] = budget
    return budget
