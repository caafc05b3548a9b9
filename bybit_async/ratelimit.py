"""Client-side rate limiting: Bybit's published limits and the limiter that keeps under them.

Bybit counts requests in rolling windows at the moment they *arrive*: 600 per
5 seconds per IP across all endpoints, and a per-UID, per-endpoint limit per
rolling second (`ENDPOINT_LIMITS`).  A token bucket whose burst equals
the limit lets up to twice the limit into one rolling window (a full burst,
then a refill's worth), so each bucket here is sized from the window instead:
a burst of ``burst`` requests and a refill rate of
``(limit - burst) / (window + jitter + TIMER_SLACK)`` per second.  Any interval
of ``window + jitter`` seconds then admits at most ``limit`` requests, which
keeps every rolling window at the server within the limit even when requests
sent ``jitter`` seconds apart arrive together.

An event loop's timers fire up to a millisecond late, and a bucket that is
empty when its waiter wakes loses that time for good: over 300 requests at
100/s that is a quarter of a second.  Each bucket therefore holds
``TIMER_SLACK`` seconds of refill beyond ``burst``, so a late wake-up uses
capacity that had already accrued instead of losing it; the refill rate above
pays for that extra capacity.

The server's own accounting wins when it is stricter: when a response says
``X-Bapi-Limit-Status: 0``, later calls to that endpoint wait until
``X-Bapi-Limit-Reset-Timestamp``.

`Limiter` is the interface the session talks to, so that a limiter
shared by several processes can replace `LocalLimiter`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from aiolimiter import AsyncLimiter

__all__ = [
    "ENDPOINT_LIMITS",
    "IP_LIMIT",
    "IP_WINDOW",
    "TIMER_SLACK",
    "Limiter",
    "LocalLimiter",
    "RateLimits",
]

#: Per-UID limits, requests per rolling second, by endpoint path.  Source:
#: Bybit V5 "Rate Limit" page; the position writes are not raisable by VIP level.
ENDPOINT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "/v5/position/set-auto-add-margin": 10,
        "/v5/position/set-leverage": 10,
        "/v5/position/switch-mode": 10,
        "/v5/position/trading-stop": 10,
        "/v5/position/add-margin": 10,
    }
)

#: Seconds of refill a bucket holds beyond its burst, for timers that fire late.
TIMER_SLACK = 0.002

#: Per-IP limit: requests per `IP_WINDOW` seconds, all endpoints together.
IP_LIMIT = 600
IP_WINDOW = 5.0


@dataclass(frozen=True)
class RateLimits:
    """The limits a session keeps under.

    *ip_limit* requests per *ip_window* seconds over all endpoints, and, for
    each path in *endpoints*, that many requests per rolling second.  *jitter*
    is how much closer together (seconds) two requests may arrive than they
    were sent; *burst* is how many requests a bucket lets through at once.
    """

    ip_limit: int = IP_LIMIT
    ip_window: float = IP_WINDOW
    endpoints: Mapping[str, int] = field(default_factory=lambda: dict(ENDPOINT_LIMITS))
    jitter: float = 0.05
    burst: int = 1

    def __post_init__(self) -> None:
        if self.ip_window <= 0:
            raise ValueError(f"ip_window must be positive, got {self.ip_window!r}")
        if self.jitter < 0:
            raise ValueError(f"jitter must not be negative, got {self.jitter!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst!r}")
        for name, limit in [("ip_limit", self.ip_limit), *self.endpoints.items()]:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit for {name} must be an int, got {limit!r}")
            if limit <= self.burst:
                raise ValueError(f"limit for {name} must exceed burst={self.burst}, got {limit}")

    def bucket(self, limit: int, window: float) -> AsyncLimiter:
        """Return a bucket that admits at most *limit* requests in any *window* seconds."""
        rate = (limit - self.burst) / (window + self.jitter + TIMER_SLACK)
        capacity = self.burst + rate * TIMER_SLACK
        return AsyncLimiter(capacity, capacity / rate)


class Limiter(Protocol):
    """What a session needs from a rate limiter."""

    async def acquire(self, path: str) -> None:
        """Wait until one request to *path* may be sent."""

    def observe(self, path: str, remaining: int | None, reset_in: float | None) -> None:
        """Take in a response's limit headers: *remaining* requests, reset in *reset_in* s."""


class LocalLimiter:
    """A `Limiter` for one process: aiolimiter buckets shared by its coroutines."""

    __slots__ = ("_blocked_until", "_buckets", "_ip", "_limits")

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        self._ip = limits.bucket(limits.ip_limit, limits.ip_window)
        self._buckets: dict[str, AsyncLimiter] = {
            path: limits.bucket(limit, 1.0) for path, limit in limits.endpoints.items()
        }
        # Loop time before which a path must not be called: set when the server
        # reports the endpoint's window as used up.
        self._blocked_until: dict[str, float] = {}

    @property
    def limits(self) -> RateLimits:
        """The limits this limiter enforces."""
        return self._limits

    async def acquire(self, path: str) -> None:
        """Wait for the endpoint's bucket, any server-reported block, then the IP bucket."""
        bucket = self._buckets.get(path)
        if bucket is not None:
            await bucket.acquire()
        until = self._blocked_until.get(path)
        if until is not None:
            delay = until - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                del self._blocked_until[path]
        await self._ip.acquire()

    def observe(self, path: str, remaining: int | None, reset_in: float | None) -> None:
        """Block *path* until the reported reset when the server says none are left."""
        if remaining == 0 and reset_in is not None and reset_in > 0:
            # Requests sent after the reset may still arrive together: keep the margin.
            until = asyncio.get_running_loop().time() + reset_in + self._limits.jitter
            if until > self._blocked_until.get(path, 0.0):
                self._blocked_until[path] = until
