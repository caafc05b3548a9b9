"""Rate limits as Bybit counts them: per IP, and per UID and budget key in a rolling window.

The per-UID limits come from `bybit_async.endpoint_limits`, the table the
client uses.  A limit given as a plain int counts per the window the table
gives its key (or its path), one second for keys the table lacks: Bybit's
``X-Bapi-Limit`` header states only the number, the window is the
endpoint's.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Mapping

from ..endpoint_limits import ENDPOINT_LIMITS, EndpointLimit

__all__ = [
    "ENDPOINT_LIMITS",
    "ENDPOINT_WINDOW",
    "EndpointLimit",
    "Headers",
    "LimitValue",
    "Windows",
]

#: The per-UID window of keys the table lacks, seconds.
ENDPOINT_WINDOW = 1.0

Headers = dict[str, str]
#: A limit as set: requests per the key's window, or an explicit `EndpointLimit`.
LimitValue = int | EndpointLimit


def window_of(key: str) -> float:
    """The table's window for *key* (or its path), else one second."""
    entry = ENDPOINT_LIMITS.get(key)
    if entry is None:
        entry = ENDPOINT_LIMITS.get(key.partition(":")[0])
    return ENDPOINT_WINDOW if entry is None else entry.window


def as_limit(key: str, value: LimitValue) -> EndpointLimit:
    """*value* as an `EndpointLimit`; an int counts per *key*'s window."""
    if isinstance(value, EndpointLimit):
        return value
    return EndpointLimit(value, window_of(key))


def check_limit(key: str, value: object) -> LimitValue:
    """Return *value* if it is a usable limit for *key*; raise TypeError or ValueError."""
    if not isinstance(key, str) or not key.startswith("/"):
        raise ValueError(f"a limit's key must be a path or budget key, got {key!r}")
    if isinstance(value, EndpointLimit):
        number, window = value.limit, value.window
    elif type(value) is int:
        number, window = value, 1.0
    else:
        raise TypeError(f"the limit of {key} must be an int, got {value!r}")
    if type(number) is not int or number < 0:
        raise ValueError(f"the limit of {key} must be a non-negative int, got {number!r}")
    if not (isinstance(window, int | float) and window > 0):
        raise ValueError(f"the window of {key} must be positive, got {window!r}")
    return value


def lookup(
    key: str, per_uid: Mapping[str, LimitValue] | None, defaults: Mapping[str, LimitValue]
) -> EndpointLimit | None:
    """The limit in force for budget *key*: the UID's own, then the defaults; key before path.

    None: the key has no per-UID limit.
    """
    path = key.partition(":")[0]
    for table in (per_uid, defaults):
        if table:
            value = table.get(key)
            if value is None and path != key:
                value = table.get(path)
            if value is not None:
                return as_limit(key, value)
    return None


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
        self, uid: str, key: str, at: float, limit: EndpointLimit, enforce: bool, now_ms: int
    ) -> tuple[bool, Headers]:
        """Count *uid*'s request to budget *key* arriving at *at*; return (admitted, headers).

        Over the limit and *enforce*: refused and not counted, and the reset
        header is when the oldest counted request leaves the window.  Otherwise
        it is counted, and the reset header is the current time, as Bybit
        sends it whenever the limit has not been exceeded.
        """
        wkey = (uid, key)
        arrivals = self.endpoint.get(wkey)
        if arrivals is None:
            arrivals = self.endpoint[wkey] = deque()
        # _expire and _add inlined: this runs on every signed request.
        cutoff = at - limit.window
        while arrivals and arrivals[0] <= cutoff:
            arrivals.popleft()
        if enforce and len(arrivals) >= limit.limit:
            return False, self.exceeded(uid, key, limit, now_ms)
        if not arrivals or arrivals[-1] <= at:
            arrivals.append(at)
        else:
            bisect.insort(arrivals, at)
        left = limit.limit - len(arrivals)
        return True, {
            "X-Bapi-Limit": str(limit.limit),
            "X-Bapi-Limit-Status": str(left) if left > 0 else "0",
            "X-Bapi-Limit-Reset-Timestamp": str(now_ms),
        }

    def exceeded(self, uid: str, key: str, limit: EndpointLimit, now_ms: int) -> Headers:
        """The headers of a 10006: nothing left until the oldest counted request leaves."""
        arrivals = self.endpoint.get((uid, key))
        wait_ms = 1
        if arrivals:
            # Round up: coming back at the rounded-down millisecond would still be too early.
            left_s = arrivals[0] + limit.window - time.monotonic()
            wait_ms = max(math.ceil(left_s * 1000), 1)
        return {
            "X-Bapi-Limit": str(limit.limit),
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
