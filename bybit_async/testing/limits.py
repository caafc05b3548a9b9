"""Rate limits as Bybit counts them: per IP, and per UID and endpoint in a rolling second."""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

from .. import endpoint_limits

#: Per-UID limits the simulator enforces, requests per rolling second, by
#: budget key: the client's table (`bybit_async.endpoint_limits`).
ENDPOINT_LIMITS: Mapping[str, int] = MappingProxyType(
    {key: budget.limit for key, budget in endpoint_limits.ENDPOINT_LIMITS.items()}
)

__all__ = ["ENDPOINT_LIMITS", "ENDPOINT_WINDOW", "Headers", "Windows"]

#: The per-UID window, seconds.
ENDPOINT_WINDOW = 1.0

Headers = dict[str, str]


class Windows:
    """The requests counted in each rolling window, and IP bans."""

    def __init__(self) -> None:
        self.ip: dict[str, deque[float]] = {}
        self.ip_bans: dict[str, float] = {}
        self.endpoint: dict[tuple[str, str], deque[float]] = {}

    def clear(self) -> None:
        """Forget every window and ban."""
        self.ip.clear()
        self.ip_bans.clear()
        self.endpoint.clear()

    def ip_rejects(self, remote: str, at: float, limit: int, window: float, ban: float) -> bool:
        """Count a request from *remote* at *at*; True if it is refused (and the IP banned)."""
        banned_until = self.ip_bans.get(remote)
        if banned_until is not None:
            if at < banned_until:
                return True
            del self.ip_bans[remote]
            self.ip.pop(remote, None)
        arrivals = self.ip.get(remote)
        if arrivals is None:
            arrivals = self.ip[remote] = deque()
        _expire(arrivals, at - window)
        if len(arrivals) >= limit:
            self.ip_bans[remote] = at + ban
            return True
        _add(arrivals, at)
        return False

    def admit(
        self, uid: str, path: str, at: float, limit: int, enforce: bool, now_ms: int
    ) -> tuple[bool, Headers]:
        """Count a request of *uid* to *path* arriving at *at*; return (admitted, headers).

        Over the limit and *enforce*: refused and not counted, and the reset
        header is when the oldest counted request leaves the window.  Otherwise
        it is counted, and the reset header is the current time, as Bybit
        sends it whenever the limit has not been exceeded.
        """
        key = (uid, path)
        arrivals = self.endpoint.get(key)
        if arrivals is None:
            arrivals = self.endpoint[key] = deque()
        # _expire and _add inlined: this runs on every signed request.
        cutoff = at - ENDPOINT_WINDOW
        while arrivals and arrivals[0] <= cutoff:
            arrivals.popleft()
        if enforce and len(arrivals) >= limit:
            return False, self.exceeded(uid, path, limit, now_ms)
        if not arrivals or arrivals[-1] <= at:
            arrivals.append(at)
        else:
            bisect.insort(arrivals, at)
        left = limit - len(arrivals)
        return True, {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(left) if left > 0 else "0",
            "X-Bapi-Limit-Reset-Timestamp": str(now_ms),
        }

    def exceeded(self, uid: str, path: str, limit: int, now_ms: int) -> Headers:
        """The headers of a 10006: nothing left until the oldest counted request leaves."""
        arrivals = self.endpoint.get((uid, path))
        wait_ms = 1
        if arrivals:
            # Round up: coming back at the rounded-down millisecond would still be too early.
            left_s = arrivals[0] + ENDPOINT_WINDOW - time.monotonic()
            wait_ms = max(math.ceil(left_s * 1000), 1)
        return {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": "0",
            "X-Bapi-Limit-Reset-Timestamp": str(now_ms + wait_ms),
        }


def _expire(window: deque[float], before_or_at: float) -> None:
    while window and window[0] <= before_or_at:
        window.popleft()


def _add(window: deque[float], at: float) -> None:
    # Arrivals are recorded before the body is read, so they can be handled
    # slightly out of order; keep the window sorted.
    if not window or window[-1] <= at:
        window.append(at)
    else:
        bisect.insort(window, at)
