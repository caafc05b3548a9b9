"""Exceptions raised by bybit_async, and the table that maps Bybit's answers onto them.

The hierarchy:

    BybitError                       any failure of a request
    ├── TransportError               no usable answer arrived
    │   ├── ConnectError             no connection was made: the request was not sent
    │   ├── RequestTimeout           sent, but no answer within the timeout
    │   └── ConnectionDroppedError   the connection closed before the answer
    ├── HTTPStatusError              an HTTP status other than 200 (a redirect too)
    │   ├── ForbiddenError           403: IP rate limit ban or blocked region
    │   ├── TooManyRequestsError     429: Bybit sheds load
    │   └── ServerError              5xx from Bybit or its edge
    ├── InvalidResponseError         200 but not a JSON envelope (an HTML proxy page, say)
    ├── SessionHaltedError           not sent: the session is cooling off after an IP ban
    ├── LimiterUnavailableError      not sent: a shared rate limiter could not be reached
    ├── SessionClosedError           the session was closed before the call ended
    └── BybitAPIError                a JSON envelope with ``retCode != 0``
        ├── ServerBusyError          10000, 10016: Bybit failed; the outcome is unknown
        ├── InvalidParameterError    10001, 10014, 10017
        ├── TimestampError           10002: the timestamp was outside recv_window
        ├── AuthenticationError      10003, 10004, 10007, 33004
        ├── PermissionDeniedError    10005, 10008, 10009, 10010, 10024, 10027-10029
        ├── RateLimitError           10006: the per-UID, per-endpoint limit
        │   └── IPRateLimitError     10018: the per-IP limit, like HTTP 403
        └── PositionError            110xxx: the request is wrong for the position

Every error names the request's method and path and, once retries are over,
how many attempts were made; `BybitError.sent` tells whether the request
may have reached Bybit.  None of them carries the API secret or the
signature, and every one survives a pickle round trip (to pass it between
processes).  `error_for_ret_code` and `error_for_status` hold the
only mapping from Bybit's answers to these classes; whether each is retried is
decided in `bybit_async.retry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "AuthenticationError",
    "BybitAPIError",
    "BybitError",
    "ConnectError",
    "ConnectionDroppedError",
    "ForbiddenError",
    "HTTPStatusError",
    "IPRateLimitError",
    "InvalidParameterError",
    "InvalidResponseError",
    "LimiterUnavailableError",
    "PermissionDeniedError",
    "PositionError",
    "RateLimitError",
    "RequestTimeout",
    "ServerBusyError",
    "ServerError",
    "SessionClosedError",
    "SessionHaltedError",
    "TimestampError",
    "TooManyRequestsError",
    "TransportError",
    "error_for_ret_code",
    "error_for_status",
    "is_not_modified",
]

_BODY_EXCERPT = 200


def _restore(cls: type[BybitError], args: tuple[Any, ...]) -> BybitError:
    # The subclasses' __init__ take keyword-only arguments that pickle's default
    # (cls(*args)) cannot pass: build the instance bare and let the state fill it.
    error = cls.__new__(cls, *args)
    Exception.__init__(error, *args)
    return error


class BybitError(Exception):
    """Base class of every error a request can raise."""

    #: False when the request never left this machine (no connection, refused
    #: before sending, or the call failed before its request was sent), so
    #: Bybit cannot have executed it; such a failure is retried even for a
    #: request that is not idempotent.
    sent: bool = True

    #: HTTP method of the failed request.
    method: str
    #: Path of the failed request, such as ``/v5/position/set-auto-add-margin``.
    path: str
    #: Attempts made, retries included; set when the session gives up.
    attempts: int
    #: Seconds the server asked the client to wait before trying again, if it said.
    retry_after: float | None

    def __init__(self, message: str, *, method: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.attempts = 1
        self.retry_after = None

    def __str__(self) -> str:
        tail = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.method} {self.path}: {self.message}{tail}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args), self.__dict__.copy())


class TransportError(BybitError):
    """The request got no usable answer: connection, timeout or protocol failure."""


class ConnectError(TransportError):
    """No connection could be made (or none came free in time): the request was not sent."""

    sent = False


class RequestTimeout(TransportError):
    """The request was sent but no answer came in time; it may have been executed."""


class ConnectionDroppedError(TransportError):
    """The connection closed before the answer arrived; the request may have been executed."""


class HTTPStatusError(BybitError):
    """The server answered with an HTTP status other than 200.

    A redirect (3xx) is never followed, since it would take the signed headers
    to another host; *detail* then names where it pointed.
    """

    def __init__(self, status: int, body: str, *, method: str, path: str, detail: str = "") -> None:
        self.status = status
        #: The start of the response body, for diagnosis.
        self.body = body[:_BODY_EXCERPT]
        excerpt = " ".join(self.body.split()) or "<empty body>"
        text = f"HTTP {status} {detail}: {excerpt}" if detail else f"HTTP {status}: {excerpt}"
        super().__init__(text, method=method, path=path)


class ForbiddenError(HTTPStatusError):
    """HTTP 403: this IP is banned for exceeding the IP limit, or the region is blocked."""


class TooManyRequestsError(HTTPStatusError):
    """HTTP 429: Bybit rejected the request under system load; it was not executed."""


class ServerError(HTTPStatusError):
    """HTTP 5xx from Bybit or the proxy in front of it; the outcome is unknown."""


class InvalidResponseError(BybitError):
    """HTTP 200 with a body that is not a Bybit JSON envelope, or an answer out of bounds.

    *reason* says what was wrong when it is not the body's form, such as a body
    over ``max_response_bytes`` or a server time outside any sane range.
    """

    def __init__(self, body: bytes, *, method: str, path: str, reason: str = "") -> None:
        self.body = body[:_BODY_EXCERPT].decode("utf-8", "replace")
        excerpt = " ".join(self.body.split()) or "<empty body>"
        text = reason or "not a Bybit JSON response"
        super().__init__(f"{text}: {excerpt}", method=method, path=path)


class SessionHaltedError(BybitError):
    """Not sent: an earlier request was refused for the IP (HTTP 403 or retCode 10018).

    Bybit bans an IP that goes over its limit for ten minutes or more, and each
    further request can extend the ban, so the session sends nothing until the
    cool-off ends or `BybitSession.resume` is called.
    """

    sent = False

    def __init__(self, cause: BybitError, resume_in: float, *, method: str, path: str) -> None:
        #: The error that halted the session.
        self.cause = cause
        #: Seconds until the session sends again.
        self.resume_in = resume_in
        super().__init__(
            f"not sent: the session halted {resume_in:.0f} s more after "
            f"{cause.method} {cause.path} got {cause.message}",
            method=method,
            path=path,
        )


class LimiterUnavailableError(BybitError):
    """Not sent: the rate limiter shared with other processes could not be reached.

    Without the shared count the session cannot know what the account's other
    engines have sent, so it sends nothing (see `bybit_async.RedisLimiter`).
    """

    sent = False


class SessionClosedError(BybitError, RuntimeError):
    """The session was closed before the call ended, or the call came after `close`.

    A call still queued (in the rate limiter, say) was not sent; a call cut off
    mid-attempt has `sent` true and may have been executed.  It is also a
    `RuntimeError`, which using a closed session raised before.
    """

    sent = False


class BybitAPIError(BybitError):
    """Bybit answered with a non-zero ``retCode``."""

    #: The server-clock generation the request was signed at (see `bybit_async.clock`).
    clock_generation: int | None = None

    def __init__(
        self,
        ret_code: int,
        ret_msg: str,
        ret_ext_info: Any = None,
        *,
        method: str,
        path: str,
        hint: str = "",
    ) -> None:
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.ret_ext_info = ret_ext_info
        text = f"retCode {ret_code}: {ret_msg or '<no message>'}"
        super().__init__(f"{text} ({hint})" if hint else text, method=method, path=path)


class ServerBusyError(BybitAPIError):
    """retCode 10000 or 10016: Bybit timed out or failed inside; the outcome is unknown."""


class InvalidParameterError(BybitAPIError):
    """The request's parameters were rejected (10001, 10014, 10017)."""


class TimestampError(BybitAPIError):
    """retCode 10002: the request's timestamp fell outside the server's window."""


class AuthenticationError(BybitAPIError):
    """The API key or signature was not accepted."""


class PermissionDeniedError(BybitAPIError):
    """The key is valid but may not do this (permission, IP binding, region, account)."""


class RateLimitError(BybitAPIError):
    """retCode 10006: the per-UID, per-endpoint limit was exceeded."""


class IPRateLimitError(RateLimitError):
    """retCode 10018: the per-IP limit was exceeded; stop instead of retrying."""


class PositionError(BybitAPIError):
    """A 110xxx code: the request does not fit the position or account (110076 and kin)."""


_KEY_HINT = (
    "mainnet, testnet and demo trading keys differ: check the key was made "
    "for the host this session uses"
)

#: retCode -> (exception class, hint added to the message).  Codes not listed
#: fall back to PositionError for 110000-110999 and BybitAPIError otherwise.
RET_CODE_ERRORS: Mapping[int, tuple[type[BybitAPIError], str]] = MappingProxyType(
    {
        10000: (ServerBusyError, ""),
        10001: (InvalidParameterError, ""),
        10002: (TimestampError, ""),
        10003: (AuthenticationError, _KEY_HINT),
        10004: (AuthenticationError, "check the API secret"),
        10005: (PermissionDeniedError, ""),
        10006: (RateLimitError, ""),
        10007: (AuthenticationError, ""),
        10008: (PermissionDeniedError, ""),
        10009: (PermissionDeniedError, ""),
        10010: (PermissionDeniedError, "the request IP is not bound to this key"),
        10014: (InvalidParameterError, ""),
        10016: (ServerBusyError, ""),
        10017: (InvalidParameterError, ""),
        10018: (IPRateLimitError, ""),
        10024: (PermissionDeniedError, ""),
        10027: (PermissionDeniedError, ""),
        10028: (PermissionDeniedError, ""),
        10029: (PermissionDeniedError, ""),
        33004: (AuthenticationError, "the API key has expired"),
    }
)

#: HTTP status -> exception class; other 5xx are ServerError, the rest HTTPStatusError.
HTTP_STATUS_ERRORS: Mapping[int, type[HTTPStatusError]] = MappingProxyType(
    {403: ForbiddenError, 429: TooManyRequestsError}
)


def error_for_ret_code(
    ret_code: int, ret_msg: str, ret_ext_info: Any, *, method: str, path: str
) -> BybitAPIError:
    """Return the exception for a Bybit envelope with a non-zero *ret_code*."""
    entry = RET_CODE_ERRORS.get(ret_code)
    if entry is not None:
        cls, hint = entry
    else:
        cls, hint = (PositionError if 110000 <= ret_code < 111000 else BybitAPIError), ""
    return cls(ret_code, ret_msg, ret_ext_info, method=method, path=path, hint=hint)


def error_for_status(status: int, body: bytes, *, method: str, path: str) -> HTTPStatusError:
    """Return the exception for an HTTP *status* other than 200."""
    cls = HTTP_STATUS_ERRORS.get(status) or (ServerError if status >= 500 else HTTPStatusError)
    return cls(status, body.decode("utf-8", "replace"), method=method, path=path)


#: Answers that mean "already so": path -> (retCode, text the lowercased retMsg
#: contains).  Bybit does not document what set-auto-add-margin answers when the
#: flag already has the requested value; 10001 "auto add margin not modified" is
#: what the V5 API has been recorded to send, and 130060 is the older linear
#: API's code for it (sources in docs/protocol-notes.md).
NOT_MODIFIED: Mapping[str, tuple[tuple[int, str], ...]] = MappingProxyType(
    {
        "/v5/position/set-auto-add-margin": ((10001, "not modified"), (130060, "")),
    }
)


def is_not_modified(path: str, ret_code: int, ret_msg: str) -> bool:
    """Return whether Bybit's answer means the setting already had the requested value."""
    entries = NOT_MODIFIED.get(path)
    if not entries:
        return False
    text = ret_msg.lower()
    return any(code == ret_code and needle in text for code, needle in entries)
