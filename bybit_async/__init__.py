"""bybit_async: an asyncio client for the Bybit V5 REST API.

One `BybitSession` per process holds the connection pool, the rate
limiter shared by every coroutine, the server clock and the retry policy:

    async with BybitSession(api_key, api_secret, testnet=True) as session:
        resp = await session.set_auto_add_margin("BTCUSDT", True)

`bybit_async.testing` holds a Bybit simulator to run it against.
"""

from typing import TYPE_CHECKING

from ._version import __version__

# The names below are imported on first use (PEP 562), so that importing the
# package, and ``bybit-async --version``, does not load aiohttp and the rest.
if TYPE_CHECKING:
    from .clock import ServerClock
    from .errors import (
        AuthenticationError,
        BybitAPIError,
        BybitError,
        ConnectError,
        ConnectionDroppedError,
        ForbiddenError,
        HTTPStatusError,
        InvalidParameterError,
        InvalidResponseError,
        IPRateLimitError,
        LimiterUnavailableError,
        PermissionDeniedError,
        PositionError,
        RateLimitError,
        RequestTimeout,
        ServerBusyError,
        ServerError,
        SessionClosedError,
        SessionHaltedError,
        TimestampError,
        TooManyRequestsError,
        TransportError,
    )
    from .events import (
        AttemptAnswered,
        AttemptFailed,
        CallEnded,
        ClockSynced,
        Event,
        EventHook,
        GuardActed,
        LimiterWaited,
        RetryScheduled,
        SessionClosed,
        SessionHalted,
        SessionResumed,
        StreamConnected,
        StreamDisconnected,
        StreamReconnected,
        StreamSnapshot,
    )
    from .models import ApiResponse, PositionIdx
    from .positions import EnsureReport, EnsureRow, EnsureStatus, Position
    from .ratelimit import (
        ENDPOINT_LIMITS,
        EndpointLimit,
        IpBudget,
        Limiter,
        LimitInForce,
        LocalLimiter,
        Permit,
        RateLimits,
    )
    from .redis_limiter import RedisLimiter
    from .session import HOSTS, BybitSession
    from .signing import HmacSigner, RsaSigner, Signer
    from .stats import LimitStatus, PathStats, Percentiles, SessionStats
    from .stream import PositionStream

_LAZY = {
    "ServerClock": "clock",
    "AuthenticationError": "errors",
    "BybitAPIError": "errors",
    "BybitError": "errors",
    "ConnectError": "errors",
    "ConnectionDroppedError": "errors",
    "ForbiddenError": "errors",
    "HTTPStatusError": "errors",
    "InvalidParameterError": "errors",
    "InvalidResponseError": "errors",
    "IPRateLimitError": "errors",
    "LimiterUnavailableError": "errors",
    "PermissionDeniedError": "errors",
    "PositionError": "errors",
    "RateLimitError": "errors",
    "RequestTimeout": "errors",
    "ServerBusyError": "errors",
    "ServerError": "errors",
    "SessionClosedError": "errors",
    "SessionHaltedError": "errors",
    "TimestampError": "errors",
    "TooManyRequestsError": "errors",
    "TransportError": "errors",
    "AttemptAnswered": "events",
    "AttemptFailed": "events",
    "CallEnded": "events",
    "ClockSynced": "events",
    "Event": "events",
    "EventHook": "events",
    "GuardActed": "events",
    "LimiterWaited": "events",
    "RetryScheduled": "events",
    "SessionClosed": "events",
    "SessionHalted": "events",
    "SessionResumed": "events",
    "StreamConnected": "events",
    "StreamDisconnected": "events",
    "StreamReconnected": "events",
    "StreamSnapshot": "events",
    "ApiResponse": "models",
    "PositionIdx": "models",
    "EnsureReport": "positions",
    "EnsureRow": "positions",
    "EnsureStatus": "positions",
    "Position": "positions",
    "ENDPOINT_LIMITS": "ratelimit",
    "EndpointLimit": "ratelimit",
    "IpBudget": "ratelimit",
    "LimitInForce": "ratelimit",
    "Limiter": "ratelimit",
    "LocalLimiter": "ratelimit",
    "Permit": "ratelimit",
    "RateLimits": "ratelimit",
    "RedisLimiter": "redis_limiter",
    "HOSTS": "session",
    "BybitSession": "session",
    "HmacSigner": "signing",
    "RsaSigner": "signing",
    "Signer": "signing",
    "LimitStatus": "stats",
    "PathStats": "stats",
    "Percentiles": "stats",
    "SessionStats": "stats",
    "PositionStream": "stream",
}

__all__ = [
    "ENDPOINT_LIMITS",
    "HOSTS",
    "ApiResponse",
    "AttemptAnswered",
    "AttemptFailed",
    "AuthenticationError",
    "BybitAPIError",
    "BybitError",
    "BybitSession",
    "CallEnded",
    "ClockSynced",
    "ConnectError",
    "ConnectionDroppedError",
    "EndpointLimit",
    "EnsureReport",
    "EnsureRow",
    "EnsureStatus",
    "Event",
    "EventHook",
    "ForbiddenError",
    "GuardActed",
    "HTTPStatusError",
    "HmacSigner",
    "IPRateLimitError",
    "InvalidParameterError",
    "InvalidResponseError",
    "IpBudget",
    "LimitInForce",
    "LimitStatus",
    "Limiter",
    "LimiterUnavailableError",
    "LimiterWaited",
    "LocalLimiter",
    "PathStats",
    "Percentiles",
    "PermissionDeniedError",
    "Permit",
    "Position",
    "PositionError",
    "PositionIdx",
    "PositionStream",
    "RateLimitError",
    "RateLimits",
    "RedisLimiter",
    "RequestTimeout",
    "RetryScheduled",
    "RsaSigner",
    "ServerBusyError",
    "ServerClock",
    "ServerError",
    "SessionClosed",
    "SessionClosedError",
    "SessionHalted",
    "SessionHaltedError",
    "SessionResumed",
    "SessionStats",
    "Signer",
    "StreamConnected",
    "StreamDisconnected",
    "StreamReconnected",
    "StreamSnapshot",
    "TimestampError",
    "TooManyRequestsError",
    "TransportError",
    "__version__",
]


if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above and so still
    # report a misspelt name.

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
