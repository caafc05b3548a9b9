"""The calls a session has under way, and its halt after an IP ban.

`bybit_async.session.BybitSession` holds one `CallsUnderWay`: each call runs
in its `CallsUnderWay.guard`, which ends it when its deadline passes or the
session closes, and the session's halt after a ban (shared through
`bybit_async.egress`) ends the calls that wait in the limiter or in back-off.
Internal: nothing here is part of the public API.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from .errors import BybitError, RequestTimeout, SessionClosedError, SessionHaltedError
from .events import CallEnded, Event, SessionHalted, SessionResumed, reason_of
from .models import ApiResponse
from .stats import StatsRecorder

__all__ = ["CallsUnderWay", "Reason", "ended"]

T = TypeVar("T")

# The reason of a call its caller cancelled, in stats and events.
_CANCELLED: Final = "cancelled"

#: Why the session ended a call: makes the error it raises, from its method and path.
Reason = Callable[[str, str], BybitError]


def ended(cls: type[BybitError], text: str, sent: bool) -> Reason:
    """The reason that raises *cls* with *text*, saying whether the request was sent."""

    def reason(method: str, path: str) -> BybitError:
        tail = "" if sent else "; the request was not sent"
        error = cls(text + tail, method=method, path=path)
        error.sent = sent
        return error

    return reason


def _being_cancelled(task: asyncio.Task[Any]) -> bool:
    if sys.version_info >= (3, 11):
        return task.cancelling() > 0
    # 3.10 keeps no count: a pending cancellation shows on the future it awaits,
    # or as a cancellation still to be thrown in.
    waiter = getattr(task, "_fut_waiter", None)
    return bool(getattr(task, "_must_cancel", False)) or (waiter is not None and waiter.cancelled())


class CallsUnderWay:
    """A session's calls under way, what ends them, and its halt after an IP ban.

    *stats* records the calls' ends, halts and resumes; *emit* (None: no
    ``on_event``) reports them as events.
    """

    __slots__ = (
        "_emit",
        "_observed",
        "_stats",
        "attempted",
        "halted",
        "queued",
        "sleeping",
        "tasks",
    )

    def __init__(self, stats: StatsRecorder | None, emit: Callable[[Event], None] | None) -> None:
        self._stats = stats
        self._emit = emit
        self._observed = stats is not None or emit is not None
        #: The tasks of the calls under way -> why the session interrupted one
        #: (None while it runs on).
        self.tasks: dict[asyncio.Task[Any], Reason | None] = {}
        #: The calls waiting in the limiter -> whether none of their attempts was sent before.
        self.queued: dict[asyncio.Task[Any], bool] = {}
        #: The calls in back-off between attempts.
        self.sleeping: set[asyncio.Task[Any]] = set()
        #: The calls under way that sent something -> the number of their last
        #: attempt to reach the network (none: nothing of the call was sent).
        self.attempted: dict[asyncio.Task[Any], int] = {}
        #: Set after an IP ban: (loop time until which nothing is sent, the error).
        self.halted: tuple[float, BybitError] | None = None

    # -- ending calls ----------------------------------------------------------

    def may_have_sent(self, task: asyncio.Task[Any]) -> bool:
        """Whether an attempt of *task*'s call may have reached Bybit (unknown: True)."""
        # A call waiting for its first permit or clock sync has sent nothing.
        return task in self.attempted

    def deadline_passed(self, task: asyncio.Task[Any], deadline: float) -> None:
        """End *task*'s call: its *deadline* passed."""
        self.interrupt(
            task,
            ended(
                RequestTimeout,
                f"the call's deadline of {deadline:g} s passed (retries and waits included)",
                self.may_have_sent(task),
            ),
        )

    def interrupt(self, task: asyncio.Task[Any], reason: Reason) -> None:
        """End the call that *task* is making: it raises ``reason(method, path)``.

        A task already being cancelled is left to its cancellation.
        """
        calls = self.tasks
        if task in calls and calls[task] is None and not _being_cancelled(task):
            calls[task] = reason
            task.cancel()

    def close(self) -> None:
        """End every call under way: each raises `SessionClosedError`."""
        for task in list(self.tasks):
            self.interrupt(
                task,
                ended(
                    SessionClosedError,
                    "the session was closed before the call ended",
                    self.may_have_sent(task),
                ),
            )

    async def guard(
        self,
        loop: asyncio.AbstractEventLoop,
        method: str,
        path: str,
        deadline: float | None,
        work: Awaitable[T],
        again: Callable[[BybitError], Awaitable[T]] | None = None,
    ) -> T:
        """Await *work* as a call under way: bounded by *deadline*, ended by `close`.

        When *work* raises a `BybitError`, *again* (if given) is awaited with it
        instead, within the same bounds: the retries of a first attempt.
        """
        task = asyncio.current_task()
        if task is None or task in self.tasks:  # no task to end, or a call within a call
            try:
                return await work
            except BybitError as first:
                if again is None:
                    raise
                return await again(first)
        self.tasks[task] = None
        timer = (
            None
            if deadline is None
            else loop.call_later(deadline, self.deadline_passed, task, deadline)
        )
        converted = False
        # Only an event has the call's elapsed time: stats alone need no clock reading.
        started = time.perf_counter() if self._emit is not None else 0.0
        try:
            # The first attempt is awaited here rather than in a coroutine of the
            # session's: a call that succeeds at once passes through one fewer.
            try:
                result = await work
            except BybitError as first:
                if again is None:
                    raise
                result = await again(first)
        except asyncio.CancelledError:
            reason = self.tasks[task]
            if reason is not None:
                converted = True
            # Another cancellation besides the session's own wins (3.11+ can tell).
            if reason is None or (sys.version_info >= (3, 11) and task.uncancel() > 0):
                if self._observed:
                    self._call_ended(method, path, started, _CANCELLED, self.attempted.get(task, 0))
                raise
            error = reason(method, path)
            error.attempts = max(1, self.attempted.get(task, 0))
            if self._observed:
                self._call_ended(method, path, started, reason_of(error), error.attempts)
            raise error from None
        except BybitError as error:
            if self._observed:
                self._call_ended(method, path, started, reason_of(error), error.attempts)
            raise
        else:
            if self._emit is not None:
                attempts = result.attempts if isinstance(result, ApiResponse) else 1
                self._call_ended(method, path, started, None, attempts)
            elif self._stats is not None:  # the common case, without a call more
                self._stats.call_ended(None)
            return result
        finally:
            if timer is not None:
                timer.cancel()
            reason = self.tasks.pop(task)
            self.attempted.pop(task, None)
            if reason is not None and not converted and sys.version_info >= (3, 11):
                task.uncancel()  # the cancellation was swallowed on the way: undo its count

    def _call_ended(
        self, method: str, path: str, started: float, reason: str | None, attempts: int
    ) -> None:
        if self._stats is not None:
            self._stats.call_ended(reason)
        if self._emit is not None:
            elapsed = time.perf_counter() - started
            self._emit(CallEnded(time.time(), method, path, attempts, elapsed, reason))

    async def back_off(self, seconds: float) -> None:
        """Sleep between attempts; a halt meanwhile ends the sleep (see `egress_halted`)."""
        task = asyncio.current_task()
        if task is None:
            await asyncio.sleep(seconds)
            return
        self.sleeping.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.sleeping.discard(task)

    # -- the halt after an IP ban ------------------------------------------------

    def egress_halted(
        self, halted: tuple[float, BybitError] | None, cooldown: float, early: bool
    ) -> None:
        """Take in a halt of the session's egress (None: it resumed, *early* or not)."""
        if halted is None:
            if self.halted is not None:
                self.resumed(early=early)
            return
        if self.halted is not None and self.halted[0] >= halted[0]:
            return
        self.halted = halted
        error = halted[1]
        if self._stats is not None:
            self._stats.halted(True)
        if self._emit is not None:
            self._emit(SessionHalted(time.time(), reason_of(error), cooldown))
        for task in [*self.queued, *self.sleeping]:
            self.interrupt(task, self.halted_reason)

    def resumed(self, *, early: bool) -> None:
        """End the halt: before its cool-off ended when *early*."""
        self.halted = None
        if self._stats is not None:
            self._stats.halted(False)
        if self._emit is not None:
            self._emit(SessionResumed(time.time(), early))

    def check_halted(self, method: str, path: str) -> None:
        """Raise `SessionHaltedError` while halted; resume once the cool-off has ended."""
        assert self.halted is not None
        until, cause = self.halted
        resume_in = until - time.monotonic()
        if resume_in <= 0:
            self.resumed(early=False)
            return
        raise SessionHaltedError(cause, resume_in, method=method, path=path)

    def halted_reason(self, method: str, path: str) -> BybitError:
        """The error of a call the halt ended."""
        if self.halted is not None:
            until, cause = self.halted
            resume_in = max(0.0, until - time.monotonic())
            return SessionHaltedError(cause, resume_in, method=method, path=path)
        return SessionHaltedError(  # resumed meanwhile; the call was stopped all the same
            BybitError("an IP ban", method=method, path=path), 0.0, method=method, path=path
        )
