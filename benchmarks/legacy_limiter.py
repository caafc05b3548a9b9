"""The limiter of bybit_async 0.1, kept only as the baseline of the rate-limit benchmarks.

Token buckets from aiolimiter, sized for rolling windows: a burst of one
request, then ``(limit - 1) / (window + 0.05 s + 2 ms)`` per second.  A call
waits for its endpoint bucket, then for the IP bucket.  Its permits are
no-ops: a bucket paces sends and knows nothing of answers.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter

from bybit_async.ratelimit import ENDPOINT_LIMITS, Permit, RateLimits

JITTER = 0.05
TIMER_SLACK = 0.002


class _NoPermit:
    __slots__ = ()

    def release(self, sent: bool = True) -> None:
        pass


_NO_PERMIT = _NoPermit()


def bucket(limit: int, window: float) -> AsyncLimiter:
    """Return 0.1's bucket for *limit* requests in any *window* seconds."""
    rate = (limit - 1) / (window + JITTER + TIMER_SLACK)
    capacity = 1 + rate * TIMER_SLACK
    return AsyncLimiter(capacity, capacity / rate)


class TokenBucketLimiter:
    """bybit_async 0.1's ``LocalLimiter``, behind the 0.2 ``Limiter`` interface."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        limits = RateLimits() if limits is None else limits
        self.limits = limits
        self._ip = bucket(limits.ip_limit, limits.ip_window)
        # 0.1 kept one bucket per path of its per-second table; RateLimits.endpoints
        # now holds overrides only, on top of that table.
        table: dict[str, int] = {
            path: budget.limit
            for path, budget in ENDPOINT_LIMITS.items()
            if budget.window == 1.0 and budget.limit > 1
        }
        for path in table.keys() | limits.endpoints.keys():
            configured = limits.configured(path)
            if configured is not None:
                table[path] = configured.limit
        self._buckets = {path: bucket(limit, 1.0) for path, limit in table.items()}
        self._blocked_until: dict[str, float] = {}

    async def acquire(self, path: str, *, signed: bool = True) -> Permit:
        """Wait for the endpoint's bucket, any server-reported block, then the IP bucket."""
        endpoint = self._buckets.get(path) if signed else None
        if endpoint is not None:
            await endpoint.acquire()
        until = self._blocked_until.get(path)
        if until is not None:
            delay = until - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                del self._blocked_until[path]
        await self._ip.acquire()
        return _NO_PERMIT

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        """Block *path* until the reported reset when the server says none are left."""
        if remaining == 0 and reset_in is not None and reset_in > 0:
            until = asyncio.get_running_loop().time() + reset_in + JITTER
            if until > self._blocked_until.get(path, 0.0):
                self._blocked_until[path] = until
