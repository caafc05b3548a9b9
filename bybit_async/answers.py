"""Reading an answer: its limit headers to the limiter, its body to a result or an error.

`AnswerReader.read` is the last step of an attempt on the session's one
request path (`bybit_async.session`): it tells the limiter what the
answer's ``X-Bapi-Limit*`` headers say of the budget, records the attempt
in the session's stats and events, and returns the `ApiResponse` or raises
the `BybitError` the answer means (`bybit_async.errors`), halting the
session's egress when the answer is an IP ban (`bybit_async.retry`).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import cast

import orjson

from .clock import ServerClock
from .errors import (
    BybitError,
    HTTPStatusError,
    InvalidResponseError,
    error_for_ret_code,
    error_for_status,
    is_not_modified,
)
from .events import AttemptAnswered, AttemptFailed, Event, reason_of
from .http import int_header, redirect_detail
from .models import ApiResponse
from .ratelimit import MAX_LEARNED_LIMIT, Limiter
from .retry import rule_for
from .stats import StatsRecorder

__all__ = ["AnswerReader"]

_log = logging.getLogger("bybit_async")

_Observe = Callable[[str, int | None, float | None, int | None], None]


def _observer(limiter: Limiter) -> _Observe:
    """*limiter*'s ``observe``, called without the limit if it takes none (0.2's protocol)."""
    observe = limiter.observe
    try:
        inspect.signature(observe).bind("", None, None, None)
    except TypeError:
        _log.debug("%r: observe takes no limit; learned limits are not passed to it", limiter)

        def without_limit(
            path: str, remaining: int | None, reset_in: float | None, _limit: int | None
        ) -> None:
            observe(path, remaining, reset_in)

        return without_limit
    except ValueError:  # no signature to read (a builtin): called as the protocol says
        pass
    return observe


class AnswerReader:
    """Reads the answers of one session's attempts.

    *limiter* is told each signed answer's limit headers (None: no limiter);
    *clock* converts their reset time; a reset further ahead than
    *max_server_wait* seconds is not passed on.  *stats* and *emit* record
    each attempt (None: not recorded); *halt* stops the session's egress
    for *ban_cooldown* seconds after an IP ban.
    """

    __slots__ = (
        "_ban_cooldown",
        "_clock",
        "_emit",
        "_halt",
        "_max_server_wait",
        "_observe",
        "_observed",
        "_stats",
    )

    def __init__(
        self,
        *,
        limiter: Limiter | None,
        clock: ServerClock,
        max_server_wait: float,
        stats: StatsRecorder | None,
        emit: Callable[[Event], None] | None,
        halt: Callable[[BybitError], None],
        ban_cooldown: float,
    ) -> None:
        self._observe = None if limiter is None else _observer(limiter)
        self._clock = clock
        self._max_server_wait = max_server_wait
        self._stats = stats
        self._emit = emit
        # Whether anything records: one test on the request path when nothing does.
        self._observed = stats is not None or emit is not None
        self._halt = halt
        self._ban_cooldown = ban_cooldown

    def failed(
        self, method: str, path: str, number: int, failure: BybitError, latency: float
    ) -> None:
        """Record attempt *number* of a call to *path* that ended in *failure*, not an answer."""
        reason = reason_of(failure)
        if self._stats is not None:
            self._stats.failed(path, reason)
        if self._emit is not None:
            self._emit(
                AttemptFailed(time.time(), method, path, number, reason, failure.sent, latency)
            )

    def _answered(
        self,
        method: str,
        path: str,
        number: int,
        status: int,
        ret_code: int | None,
        latency: float,
        ok: bool,
        limit: int | None,
        limit_status: int | None,
        reset_at: int | None,
    ) -> None:
        if self._stats is not None:
            self._stats.answered(path, status, ret_code, latency, ok, limit_status, limit, reset_at)
        if self._emit is not None:
            self._emit(
                AttemptAnswered(
                    time.time(),
                    method,
                    path,
                    number,
                    status,
                    ret_code,
                    latency,
                    limit_status,
                    limit,
                    ok,
                )
            )

    def read(
        self,
        method: str,
        path: str,
        status: int,
        resp_headers: Mapping[str, str],
        body: bytes,
        generation: int,
        number: int,
        latency: float,
        key: str | None = None,
    ) -> ApiResponse:
        """Return the answer to attempt *number* as an `ApiResponse`, or raise the error it means.

        *status*, *resp_headers* and *body* are the answer and *latency* the
        seconds it took; *generation* is the clock's generation the request
        was signed at, kept on an API error (a timestamp error resyncs only
        a clock not synced since).  *key* is the budget the limiter is told
        the answer's limit headers of (None: a public request, whose headers
        say nothing of a budget).
        """
        limit = int_header(resp_headers, "X-Bapi-Limit")
        limit_status = int_header(resp_headers, "X-Bapi-Limit-Status")
        reset_at = int_header(resp_headers, "X-Bapi-Limit-Reset-Timestamp")
        retry_after: float | None = None
        reset_in: float | None = None
        if limit_status is not None and reset_at is not None:
            # Late rather than early: the reset is in server time, known only so well.
            clock = self._clock
            reset_in = (reset_at - clock.now_ms() + clock.uncertainty_ms) / 1000
            if limit_status == 0:
                retry_after = max(0.0, reset_in)
        observe = self._observe
        if (
            observe is not None
            and key is not None
            and (limit is not None or limit_status is not None)
        ):
            learned = limit
            if learned is not None and not 1 <= learned <= MAX_LEARNED_LIMIT:
                _log.debug("%s %s: X-Bapi-Limit %d ignored", method, path, learned)
                learned = None
            # A reset further ahead than the cap is not trusted to hold the endpoint.
            if reset_in is not None and reset_in > self._max_server_wait:
                reset_in = None
            observe(key, limit_status, reset_in, learned)

        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s %s attempt %d: HTTP %d", method, path, number, status)
        ret_code: object = None
        if status != 200:
            if 300 <= status < 400:
                error: BybitError = HTTPStatusError(
                    status,
                    body.decode("utf-8", "replace"),
                    method=method,
                    path=path,
                    detail=redirect_detail(resp_headers.get("Location")),
                )
            else:
                error = error_for_status(status, body, method=method, path=path)
        else:
            try:
                envelope = orjson.loads(body)
                ret_code = envelope["retCode"]
                ret_msg = str(envelope.get("retMsg") or "")
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                ret_code = None
            if type(ret_code) is not int:
                ret_code = None
                error = InvalidResponseError(body, method=method, path=path)
            elif ret_code == 0 or is_not_modified(path, ret_code, ret_msg):
                if self._emit is not None:
                    self._answered(
                        method,
                        path,
                        number,
                        status,
                        ret_code,
                        latency,
                        True,
                        limit,
                        limit_status,
                        reset_at,
                    )
                elif self._stats is not None:  # the common case, without a call more
                    self._stats.answered(
                        path, status, ret_code, latency, True, limit_status, limit, reset_at
                    )
                return ApiResponse(
                    ret_code,
                    ret_msg,
                    envelope.get("result"),
                    envelope.get("retExtInfo"),
                    envelope.get("time"),
                    limit,
                    limit_status,
                    reset_at,
                    ret_code == 0,
                    number,
                )
            else:
                api_error = error_for_ret_code(
                    ret_code, ret_msg, envelope.get("retExtInfo"), method=method, path=path
                )
                api_error.clock_generation = generation
                error = api_error
        # Read on errors only: a success has nothing to wait for.
        if retry_after is None and (header := int_header(resp_headers, "Retry-After")):
            retry_after = float(header)
        error.retry_after = retry_after
        if self._observed:
            self._answered(
                method,
                path,
                number,
                status,
                cast("int | None", ret_code),
                latency,
                False,
                limit,
                limit_status,
                reset_at,
            )
        if rule_for(error).halt:
            _log.warning("%s %s: %s; halting for %.0f s", method, path, error, self._ban_cooldown)
            self._halt(error)
        raise error
