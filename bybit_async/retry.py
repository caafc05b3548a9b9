"""Which failures are retried, and the back-off between attempts.

Failures fall into three kinds, by what the client knows of the request's fate:

* rejected before execution (no connection, HTTP 429, retCode 10006 or 10002),
  or failed before the request was sent (`BybitError.sent` false, such as a
  failed first clock sync): always safe to send again;
* outcome unknown (timeout or dropped connection after sending, 5xx, a body that
  is not JSON, retCode 10000 or 10016): sent again only for idempotent requests,
  since a retry could apply a non-idempotent request twice;
* final (everything else: bad parameters, auth, permissions, positions, HTTP
  3xx/401/403/404, a shared limiter out of reach, a closed session): raised at
  once.  HTTP 403 and
  retCode 10018 mean the IP is banned, so they also halt the session for a
  cool-off (``halt``).

A server that asks for a longer wait than the policy's ``max_server_wait``
(``Retry-After``, or a rate-limit reset far ahead) is not waited for: the
error is raised at once with its `BybitError.retry_after`, since a hint that
large is broken or hostile, and sleeping on it would stall the caller.

`RETRY_RULES` is that decision as one table, and `should_retry`
its only reader.  `RetryPolicy` makes the first attempt directly and
brings in tenacity only once an attempt has failed, so a call that succeeds
first time pays nothing for the retry machinery.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .errors import (
    BybitError,
    ConnectError,
    ConnectionDroppedError,
    ForbiddenError,
    InvalidResponseError,
    IPRateLimitError,
    LimiterUnavailableError,
    RateLimitError,
    RequestTimeout,
    ServerBusyError,
    ServerError,
    SessionClosedError,
    TimestampError,
    TooManyRequestsError,
    TransportError,
)

__all__ = ["RETRY_RULES", "Retry", "RetryPolicy", "RetryRule", "rule_for", "should_retry"]

T = TypeVar("T")


class Retry(enum.Enum):
    """When a failure may be retried."""

    NEVER = "never"
    #: The request was rejected before execution.
    ALWAYS = "always"
    #: The outcome is unknown: retry only requests declared idempotent.
    IF_IDEMPOTENT = "if idempotent"


@dataclass(frozen=True)
class RetryRule:
    """How to treat one kind of failure.

    :ivar retry: whether it is retried: always, only for idempotent requests, or never.
    :ivar resync_clock: measure the server clock again before the next attempt.
    :ivar halt: stop sending anything for a while: the IP is banned or blocked.
    """

    retry: Retry
    resync_clock: bool = False
    halt: bool = False


_NEVER = RetryRule(Retry.NEVER)

#: Exception class -> rule; the most derived listed class of an error applies.
RETRY_RULES: Mapping[type[BybitError], RetryRule] = MappingProxyType(
    {
        ConnectError: RetryRule(Retry.ALWAYS),
        TooManyRequestsError: RetryRule(Retry.ALWAYS),
        RateLimitError: RetryRule(Retry.ALWAYS),
        IPRateLimitError: RetryRule(Retry.NEVER, halt=True),
        ForbiddenError: RetryRule(Retry.NEVER, halt=True),
        TimestampError: RetryRule(Retry.ALWAYS, resync_clock=True),
        TransportError: RetryRule(Retry.IF_IDEMPOTENT),
        RequestTimeout: RetryRule(Retry.IF_IDEMPOTENT),
        ConnectionDroppedError: RetryRule(Retry.IF_IDEMPOTENT),
        ServerError: RetryRule(Retry.IF_IDEMPOTENT),
        InvalidResponseError: RetryRule(Retry.IF_IDEMPOTENT),
        ServerBusyError: RetryRule(Retry.IF_IDEMPOTENT),
        LimiterUnavailableError: _NEVER,
        SessionClosedError: _NEVER,
    }
)


def rule_for(error: BaseException) -> RetryRule:
    """Return the rule for *error*: its most derived class listed in `RETRY_RULES`."""
    for cls in type(error).__mro__:
        rule = RETRY_RULES.get(cls)
        if rule is not None:
            return rule
    return _NEVER


def should_retry(error: BaseException, idempotent: bool) -> bool:
    """Return whether a request that failed with *error* may be sent again.

    An outcome-unknown failure of a request that was never sent
    (`BybitError.sent` false) is retried like a rejection: Bybit cannot have
    executed it.
    """
    retry = rule_for(error).retry
    if retry is Retry.IF_IDEMPOTENT:
        return idempotent or not getattr(error, "sent", True)
    return retry is Retry.ALWAYS


def _before_sleep(
    on_retry: Callable[[BybitError, int, float], object],
) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if isinstance(error, BybitError):
            on_retry(error, state.attempt_number, float(wait))

    return before_sleep


class RetryPolicy:
    """Up to *max_retries* retries with exponential back-off and full jitter.

    The n-th retry waits a random time up to ``min(max_wait, initial_wait * 2**n)``,
    or longer when the server said how long to wait (`BybitError.retry_after`),
    but an error whose wait would exceed *max_server_wait* seconds is raised.
    """

    __slots__ = ("_backoff", "initial_wait", "max_retries", "max_server_wait", "max_wait", "sleep")

    def __init__(
        self,
        max_retries: int = 3,
        *,
        initial_wait: float = 0.25,
        max_wait: float = 8.0,
        max_server_wait: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if not initial_wait > 0 or not max_wait >= initial_wait:
            raise ValueError("backoff needs 0 < initial_wait <= max_wait")
        if not max_server_wait >= 0:
            raise ValueError(f"max_server_wait must not be negative, got {max_server_wait!r}")
        self.max_retries = max_retries
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.max_server_wait = max_server_wait
        self.sleep = sleep
        self._backoff = wait_random_exponential(multiplier=initial_wait, max=max_wait)

    def _wait(self, state: RetryCallState) -> float:
        backoff = float(self._backoff(state))
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after if isinstance(error, BybitError) else None
        return max(backoff, hint) if hint is not None else backoff

    def may_retry(self, error: BaseException, idempotent: bool) -> bool:
        """Return whether this policy sends a request that failed with *error* again."""
        if not should_retry(error, idempotent):
            return False
        hint = error.retry_after if isinstance(error, BybitError) else None
        return hint is None or hint <= self.max_server_wait

    async def call(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        idempotent: bool,
        before_retry: Callable[[BybitError, RetryRule], Awaitable[None]],
        on_retry: Callable[[BybitError, int, float], object] | None = None,
    ) -> T:
        """Return ``await attempt(n)`` for n = 1, 2, ... until it succeeds or may not retry.

        *before_retry* runs after the back-off, before each new attempt, with the
        previous error.  *on_retry*, if given, is called before each back-off
        with the error, the number of the attempt that failed and the wait in
        seconds.  The error finally raised has ``attempts`` set.
        """
        try:
            return await attempt(1)
        except BybitError as error:
            first = error
        return await self.retry(
            first, attempt, idempotent=idempotent, before_retry=before_retry, on_retry=on_retry
        )

    async def retry(
        self,
        first: BybitError,
        attempt: Callable[[int], Awaitable[T]],
        *,
        idempotent: bool,
        before_retry: Callable[[BybitError, RetryRule], Awaitable[None]],
        on_retry: Callable[[BybitError, int, float], object] | None = None,
    ) -> T:
        """Go on as `call` does after the first attempt failed with *first*.

        A caller on a hot path makes the first attempt itself and comes here only
        on failure, so that a request that succeeds at once costs no more than
        the attempt.  Raises *first* when it may not be retried.
        """
        if self.max_retries == 0 or not self.may_retry(first, idempotent):
            raise first
        pending: BybitError | None = first
        last = first
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: self.may_retry(e, idempotent)),
            sleep=self.sleep,
            before_sleep=None if on_retry is None else _before_sleep(on_retry),
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    if pending is not None:
                        # Replay the failed first attempt so tenacity counts it and waits.
                        replay, pending = pending, None
                        raise replay
                    await before_retry(last, rule_for(last))
                    try:
                        return await attempt(try_.retry_state.attempt_number)
                    except BybitError as failed:
                        last = failed
                        raise
        except BybitError as final:
            final.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        raise AssertionError("unreachable: tenacity neither returned nor raised")
