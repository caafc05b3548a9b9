"""What a session tells an ``on_event`` callback, one small event per thing that happens.

``BybitSession(..., on_event=callback)`` calls *callback* synchronously, in
the event loop, with one of these frozen dataclasses:

* `AttemptAnswered`: an attempt got an HTTP answer (any status);
* `AttemptFailed`: an attempt got no answer (connection refused, dropped,
  timed out);
* `RetryScheduled`: a failed attempt will be sent again after a wait;
* `LimiterWaited`: a request waited at least `LIMITER_WAIT_REPORTED`
  seconds for the rate limiter;
* `CallEnded`: a call of the session returned or raised;
* `ClockSynced`: the server clock's offset was measured;
* `SessionHalted` and `SessionResumed`: an IP ban stopped the session
  from sending, and the cool-off ended (or `BybitSession.resume` ended it);
* `SessionClosed`: `BybitSession.close` ran;
* `StreamConnected`, `StreamDisconnected`, `StreamReconnected` and
  `StreamSnapshot`: the private stream (`bybit_async.stream`) connected,
  lost its link, connected again, and read the position list;
* `GuardActed`: the auto-add-margin guard (`bybit_async.guard`) wrote,
  found unchanged, skipped or failed one position.

Every event has ``at``, the wall-clock time it happened (Unix seconds).  No
event holds the API key, the secret, a signature or a body: a *reason* is a
short class of failure (`reason_of`), such as ``"retCode 10006"``.

A callback that raises is logged (its traceback once per exception type)
and counted in `SessionStats.callback_errors`; the call goes on.  It runs
on the request path, so it should only record: hand anything slow to a
queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from .errors import BybitAPIError, HTTPStatusError
from .positions import EnsureRow

__all__ = [
    "LIMITER_WAIT_REPORTED",
    "AttemptAnswered",
    "AttemptFailed",
    "CallEnded",
    "ClockSynced",
    "Event",
    "EventHook",
    "GuardActed",
    "LimiterWaited",
    "RetryScheduled",
    "SessionClosed",
    "SessionHalted",
    "SessionResumed",
    "StreamConnected",
    "StreamDisconnected",
    "StreamReconnected",
    "StreamSnapshot",
    "reason_of",
]

#: The shortest limiter wait, in seconds, that gives a `LimiterWaited` event
#: (every wait counts in `SessionStats.limiter_wait`).
LIMITER_WAIT_REPORTED: Final = 0.001


def reason_of(error: BaseException) -> str:
    """Return the class of failure of *error*, as events and stats name it.

    ``"retCode N"`` for an API error, ``"HTTP N"`` for an HTTP status, and
    otherwise the exception's class name, such as ``"RequestTimeout"``.
    """
    if isinstance(error, BybitAPIError):
        return f"retCode {error.ret_code}"
    if isinstance(error, HTTPStatusError):
        return f"HTTP {error.status}"
    return type(error).__name__


@dataclass(frozen=True, slots=True)
class AttemptAnswered:
    """An attempt got an HTTP answer, at wall-clock time *at* (Unix seconds).

    *method* and *path* are the request's; *attempt* counts from 1;
    *status* is the HTTP status; *ret_code* the answer's retCode (None when
    the body had none); *latency* the seconds from sending to the whole body
    read; *limit_status* and *limit* the ``X-Bapi-Limit-Status`` and
    ``X-Bapi-Limit`` headers (None if absent).
    *ok* says whether the session took it as a success.
    """

    at: float
    method: str
    path: str
    attempt: int
    status: int
    ret_code: int | None
    latency: float
    limit_status: int | None
    limit: int | None
    ok: bool


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt got no answer, or one that could not be read.

    *at* is the wall-clock time (Unix seconds), *method* and *path* the
    request's, *attempt* its number from 1, *reason* why it failed, *sent*
    whether it may have reached Bybit, and *latency* the seconds it took.
    """

    at: float
    method: str
    path: str
    attempt: int
    reason: str
    sent: bool
    latency: float


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """Attempt *attempt* failed for *reason*; the next is sent after *wait* seconds.

    *at* is the wall-clock time (Unix seconds); *method* and *path* are the request's.
    """

    at: float
    method: str
    path: str
    attempt: int
    reason: str
    wait: float


@dataclass(frozen=True, slots=True)
class LimiterWaited:
    """A *method* request to *path* waited *seconds* for the rate limiter's permit.

    *at* is the wall-clock time (Unix seconds) the permit came.
    """

    at: float
    method: str
    path: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call returned (*reason* None) or raised, after *attempts* and *elapsed* seconds.

    *at* is the wall-clock time (Unix seconds); *method* and *path* are the
    call's.  *attempts* counts the attempts that reached the network; a call
    ended before sending anything (its deadline passed while it waited for the
    limiter or the clock, say) counts 1, and a call its caller cancelled has
    *reason* ``"cancelled"`` and the attempts sent so far (0 for none).
    """

    at: float
    method: str
    path: str
    attempts: int
    elapsed: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class ClockSynced:
    """The server clock was measured at *at* (Unix seconds).

    *offset_ms* is server time minus local time, and *round_trip_ms* the
    round trip of the sample it was taken from.
    """

    at: float
    offset_ms: int
    round_trip_ms: int


@dataclass(frozen=True, slots=True)
class SessionHalted:
    """An IP ban (*reason*) stopped the session from sending for *cooldown* seconds.

    *at* is the wall-clock time (Unix seconds) of the answer that halted it.
    """

    at: float
    reason: str
    cooldown: float


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """The session sends again from *at* (Unix seconds).

    The cool-off ended, or *early* is true: `BybitSession.resume` ended it.
    """

    at: float
    early: bool


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """`BybitSession.close` ran at *at* (Unix seconds), ending *calls_ended* calls under way."""

    at: float
    calls_ended: int


@dataclass(frozen=True, slots=True)
class StreamConnected:
    """The private stream at *url* authenticated and subscribed, at *at* (Unix seconds).

    *connection* counts the stream's connections from 1.
    """

    at: float
    url: str
    connection: int


@dataclass(frozen=True, slots=True)
class StreamDisconnected:
    """Connection *connection* of the private stream ended, for *reason*, after *uptime* s.

    *reason* is short: ``"no pong"``, ``"silent"``, ``"closed"``, an error's
    class name...  *at* is the wall-clock time (Unix seconds).
    """

    at: float
    connection: int
    reason: str
    uptime: float


@dataclass(frozen=True, slots=True)
class StreamReconnected:
    """The private stream connected again (*connection*, from 2) after *downtime* seconds.

    *at* is the wall-clock time (Unix seconds).
    """

    at: float
    connection: int
    downtime: float


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """After connect *connection*, the stream read the position list: *positions* of them.

    *at* is the wall-clock time (Unix seconds) the read ended.
    """

    at: float
    connection: int
    positions: int


@dataclass(frozen=True, slots=True)
class GuardActed:
    """The auto-add-margin guard acted on one position, at *at* (Unix seconds).

    *row* says what it found and did, as `ensure_auto_add_margin` reports
    it; *trigger* is ``"reconcile"`` (the read on start or reconnect) or
    ``"update"`` (a push).
    """

    at: float
    row: EnsureRow
    trigger: str


#: Any event a session emits.
Event: TypeAlias = (
    AttemptAnswered
    | AttemptFailed
    | RetryScheduled
    | LimiterWaited
    | CallEnded
    | ClockSynced
    | SessionHalted
    | SessionResumed
    | SessionClosed
    | StreamConnected
    | StreamDisconnected
    | StreamReconnected
    | StreamSnapshot
    | GuardActed
)

#: The type of ``on_event``: called with each `Event`, its result ignored.
EventHook = Callable[[Event], object]
