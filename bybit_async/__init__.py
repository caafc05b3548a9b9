"""bybit_async: an asyncio client for the Bybit V5 REST API.

One `BybitSession` per process holds the connection pool, the rate
limiter shared by every coroutine, the server clock and the retry policy:

    async with BybitSession(api_key, api_secret, testnet=True) as session:
        resp = await session.set_auto_add_margin("BTCUSDT", True)

`bybit_async.testing` holds a Bybit simulator to run it against.
"""

from ._version import __version__
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
    SessionHaltedError,
    TimestampError,
    TooManyRequestsError,
    TransportError,
)
from .models import ApiResponse, PositionIdx
from .positions import EnsureReport, EnsureRow, EnsureStatus, Position
from .ratelimit import ENDPOINT_LIMITS, Limiter, LocalLimiter, Permit, RateLimits
from .session import HOSTS, BybitSession
from .signing import HmacSigner, RsaSigner, Signer

__all__ = [
    "ENDPOINT_LIMITS",
    "HOSTS",
    "ApiResponse",
    "AuthenticationError",
    "BybitAPIError",
    "BybitError",
    "BybitSession",
    "ConnectError",
    "ConnectionDroppedError",
    "EnsureReport",
    "EnsureRow",
    "EnsureStatus",
    "ForbiddenError",
    "HTTPStatusError",
    "HmacSigner",
    "IPRateLimitError",
    "InvalidParameterError",
    "InvalidResponseError",
    "Limiter",
    "LimiterUnavailableError",
    "LocalLimiter",
    "PermissionDeniedError",
    "Permit",
    "Position",
    "PositionError",
    "PositionIdx",
    "RateLimitError",
    "RateLimits",
    "RequestTimeout",
    "RsaSigner",
    "ServerBusyError",
    "ServerClock",
    "ServerError",
    "SessionHaltedError",
    "Signer",
    "TimestampError",
    "TooManyRequestsError",
    "TransportError",
    "__version__",
]
