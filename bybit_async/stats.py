"""Counts and timings of a session, as `BybitSession.stats` returns them.

A session keeps a `StatsRecorder` unless created with ``stats=False``.  It
counts every attempt by path, HTTP status, retCode and transport failure,
every retry by reason, every call, and every wait for the rate limiter; it
keeps the last ``X-Bapi-Limit-Status`` of each path and the clock's offset.
Percentiles (`Percentiles`) are over the last `SAMPLES` values of each
series, so that they follow an engine that runs for weeks; counts and
totals are since the session was created (or `StatsRecorder.reset`).

`BybitSession.stats` returns a `SessionStats`, a frozen snapshot;
`SessionStats.as_dict` gives it as plain JSON-ready values, for a metrics
exporter or a log line.  Nothing in it is secret: paths, codes, counts,
seconds and reasons (`bybit_async.events.reason_of`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

from .ratelimit import LimitInForce

__all__ = [
    "MAX_KEYS",
    "OTHER",
    "OTHER_CODE",
    "SAMPLES",
    "LimitStatus",
    "PathStats",
    "Percentiles",
    "SessionStats",
    "StatsRecorder",
]

#: How many of the latest values of each series the percentiles are over.
SAMPLES: Final = 1024

#: How many distinct keys each count by retCode, status or reason keeps: a
#: server controls them, so the rest are counted together under `OTHER` or
#: `OTHER_CODE`.
MAX_KEYS: Final = 64
#: The reason the counts by reason file the rest under, past `MAX_KEYS`.
OTHER: Final = "other"
#: The retCode or HTTP status the counts by code file the rest under, past `MAX_KEYS`.
OTHER_CODE: Final = -1

_EMPTY: Mapping[Any, int] = MappingProxyType({})
_NO_LIMITS: Mapping[str, LimitInForce] = MappingProxyType({})

# Disjoint spans of limiter waits kept to merge later waits with.
_WAIT_SPANS: Final = 64

_K = TypeVar("_K")


def _count(counts: Counter[_K], key: _K, other: _K) -> None:
    """Add one to *key* in *counts*, or to *other* once `MAX_KEYS` keys are there."""
    if key in counts or len(counts) < MAX_KEYS:
        counts[key] += 1
    else:
        counts[other] += 1


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A series of durations in seconds.

    *count* and *total* are over every value recorded; *max* and the
    percentiles *p50*, *p90* and *p99* (nearest rank) are over the last
    `SAMPLES`.  All are 0 when nothing was recorded.
    """

    count: int
    total: float
    max: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, count: int, total: float, recent: Iterable[float]) -> Percentiles:
        """Return the percentiles of *recent*, with *count* and *total* over all values."""
        ordered = sorted(recent)
        if not ordered:
            return cls(count, total, 0.0, 0.0, 0.0, 0.0)
        last = len(ordered) - 1

        def rank(q: float) -> float:
            return ordered[min(last, max(0, math.ceil(q * len(ordered)) - 1))]

        return cls(count, total, ordered[-1], rank(0.5), rank(0.9), rank(0.99))


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The rate-limit headers of the last answer on a path.

    *remaining* is ``X-Bapi-Limit-Status``, *limit* ``X-Bapi-Limit`` (None
    if absent), *reset_at_ms* ``X-Bapi-Limit-Reset-Timestamp`` (Unix ms,
    None if absent) and *at* the wall-clock time of the answer.
    """

    remaining: int
    limit: int | None
    reset_at_ms: int | None
    at: float

    @property
    def used(self) -> float | None:
        """The share of the limit in use, from 0.0 to 1.0; None without a limit."""
        if not self.limit:
            return None
        return min(1.0, max(0.0, 1 - self.remaining / self.limit))


@dataclass(frozen=True, slots=True)
class PathStats:
    """The attempts on one path.

    *requests* counts attempts that were made; *errors* those that did not
    succeed.  *by_status* counts answers by HTTP status, *by_ret_code* by
    retCode (0 included), and *failures* the attempts that got no answer by
    reason (such as ``"RequestTimeout"``); past `MAX_KEYS` distinct keys the
    rest are counted under `OTHER_CODE` (-1) or `OTHER` (``"other"``).
    *latency* is from sending to the body read, answers only; *limit* the last
    rate-limit headers.
    """

    requests: int
    errors: int
    by_status: Mapping[int, int]
    by_ret_code: Mapping[int, int]
    failures: Mapping[str, int]
    latency: Percentiles
    limit: LimitStatus | None


@dataclass(frozen=True, slots=True)
class SessionStats:
    """A snapshot of a session's counts and timings.

    *started_at* is when recording began (Unix seconds) and *elapsed* the
    seconds since.  *calls* counts the session's calls (one per
    ``set_auto_add_margin``, ``request``, ...), *calls_failed* those that
    raised, by reason.  *requests* and *errors* total the attempts over
    *paths*.  *retries* counts retries by the reason of the failure before
    them, and *rate_limited* the answers with retCode 10006.  Counts by reason
    keep `MAX_KEYS` distinct reasons, the rest under `OTHER`.  *limiter_wait*
    is every wait for the rate limiter, zero-length ones included: its
    *total* is summed over the calls, so waits that overlap add up (and can
    exceed *elapsed*); *limiter_wait_wall* is the wall time, in seconds,
    during which at least one call waited.
    *clock_offset_ms* and *clock_round_trip_ms* are from the last of
    *clock_syncs* syncs (None before the first).  *halted* says whether an IP
    ban stops sending now, after *halts* halts; *callback_errors* counts
    exceptions raised by ``on_event``.  *limits* holds, for each rate-limit
    budget the session has used, the limit in force and where it came from
    (`bybit_async.ratelimit.LimitInForce`: ``table``, ``learned``,
    ``configured`` or ``unknown``).  The private stream
    (`bybit_async.stream`) counts *stream_messages* received,
    *stream_reconnects*, *stream_snapshots* (position-list reads after a
    connect), *stream_stale* updates dropped as older than one already
    yielded, and *stream_bad* pushes skipped as malformed.
    """

    started_at: float
    elapsed: float
    calls: int
    calls_failed: Mapping[str, int]
    requests: int
    errors: int
    paths: Mapping[str, PathStats]
    retries: Mapping[str, int]
    rate_limited: int
    limiter_wait: Percentiles
    clock_offset_ms: int | None
    clock_round_trip_ms: int | None
    clock_syncs: int
    halted: bool
    halts: int
    callback_errors: int
    stream_messages: int = 0
    stream_reconnects: int = 0
    stream_snapshots: int = 0
    stream_stale: int = 0
    stream_bad: int = 0
    limiter_wait_wall: float = 0.0
    limits: Mapping[str, LimitInForce] = field(default_factory=lambda: _NO_LIMITS)

    @property
    def retried(self) -> int:
        """The number of retries, all reasons together."""
        return sum(self.retries.values())

    def __str__(self) -> str:
        """A few short lines for a log or ``print``: the counts, waits and each path."""
        failed = ", ".join(f"{k}: {n}" for k, n in sorted(self.calls_failed.items()))
        retries = ", ".join(f"{k}: {n}" for k, n in sorted(self.retries.items()))
        wait = self.limiter_wait
        lines = [
            f"session stats over {self.elapsed:.1f} s: {self.calls} calls, "
            f"{sum(self.calls_failed.values())} failed{f' ({failed})' if failed else ''}",
            f"  requests: {self.requests}, errors: {self.errors}, retries: {self.retried}"
            f"{f' ({retries})' if retries else ''}, 10006 answers: {self.rate_limited}",
            f"  limiter wait: {self.limiter_wait_wall:.3f} s of wall time; summed over "
            f"{wait.count} waits {wait.total:.3f} s (p99 {wait.p99 * 1e3:.1f} ms, max "
            f"{wait.max * 1e3:.1f} ms)",
        ]
        if self.clock_offset_ms is not None:
            lines.append(
                f"  clock: offset {self.clock_offset_ms} ms, round trip "
                f"{self.clock_round_trip_ms} ms, syncs: {self.clock_syncs}"
            )
        if self.halted or self.halts or self.callback_errors:
            lines.append(
                f"  halted: {'yes' if self.halted else 'no'} ({self.halts} halts), "
                f"on_event errors: {self.callback_errors}"
            )
        for name, path in self.paths.items():
            codes = ", ".join(f"{code}: {n}" for code, n in path.by_ret_code.items())
            failures = ", ".join(f"{k}: {n}" for k, n in sorted(path.failures.items()))
            line = (
                f"  {name}: {path.requests} requests, {path.errors} errors, latency p50 "
                f"{path.latency.p50 * 1e3:.1f} ms, p99 {path.latency.p99 * 1e3:.1f} ms"
            )
            lines.append(line)
            if codes:
                lines.append(f"    by retCode: {codes}")
            if failures:
                lines.append(f"    no answer: {failures}")
            if path.limit is not None:
                lines.append(
                    f"    limit: {path.limit.remaining} of {path.limit.limit} left in the window"
                )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as JSON-ready values: dicts, lists, str, numbers, None.

        Mapping keys become strings (``"200"``, ``"10006"``); the `LimitStatus`
        of a path gains ``used``.
        """
        out: dict[str, Any] = {
            name: _plain(getattr(self, name)) for name in self.__dataclass_fields__
        }
        out["retried"] = self.retried
        for name, path in self.paths.items():
            if path.limit is not None:
                out["paths"][name]["limit"]["used"] = path.limit.used
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, LimitInForce):
        return value._asdict()
    if isinstance(value, (Percentiles, LimitStatus, PathStats)):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _Path:
    __slots__ = (
        "by_ret_code",
        "by_status",
        "errors",
        "failures",
        "latency",
        "latency_count",
        "latency_total",
        "limit",
        "plain",
        "requests",
    )

    def __init__(self) -> None:
        # The answers of HTTP 200 and retCode 0: by far the most, counted with one add.
        self.plain = 0
        # Every attempt but the plain answers.
        self.requests = 0
        self.errors = 0
        self.by_status: Counter[int] = Counter()
        self.by_ret_code: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self.latency: deque[float] = deque(maxlen=SAMPLES)
        self.latency_count = 0
        self.latency_total = 0.0
        # (remaining, limit, reset_at_ms, at): a LimitStatus is built only for a snapshot.
        self.limit: tuple[int, int | None, int | None, float] | None = None

    def snapshot(self) -> PathStats:
        by_status, by_ret_code = dict(self.by_status), dict(self.by_ret_code)
        if self.plain:
            by_status[200] = by_status.get(200, 0) + self.plain
            by_ret_code[0] = by_ret_code.get(0, 0) + self.plain
        return PathStats(
            self.requests + self.plain,
            self.errors,
            MappingProxyType(dict(sorted(by_status.items()))),
            MappingProxyType(dict(sorted(by_ret_code.items()))),
            MappingProxyType(dict(self.failures)),
            Percentiles.of(self.latency_count, self.latency_total, self.latency),
            None if self.limit is None else LimitStatus(*self.limit),
        )


class StatsRecorder:
    """Records what a session does; `snapshot` returns a `SessionStats`.

    The session calls its methods on the request path, so each only counts
    and appends; the sorting for percentiles happens in `snapshot`.
    *wall* is the wall clock (Unix seconds).
    """

    __slots__ = (
        "_callback_errors",
        "_calls",
        "_calls_failed",
        "_clock",
        "_clock_syncs",
        "_halted",
        "_halts",
        "_monotonic",
        "_paths",
        "_rate_limited",
        "_retries",
        "_started_at",
        "_stream",
        "_wait_count",
        "_wait_spans",
        "_wait_total",
        "_wait_wall",
        "_waits",
        "_wall",
        "at_once",
    )

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._wall = wall
        # messages, reconnects, snapshots, stale, bad: the private stream's counts,
        # zeroed in place by reset() since a stream holds the list (see stream_counts).
        self._stream: list[int] = [0, 0, 0, 0, 0]
        self._monotonic = monotonic
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded; start again from now."""
        self._started_at: float = self._wall()
        self._paths: dict[str, _Path] = {}
        self._calls = 0
        self._calls_failed: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._rate_limited = 0
        self._waits: deque[float] = deque(maxlen=SAMPLES)
        self._wait_count = 0
        self._wait_total = 0.0
        #: Permits had at once (waits of zero) not yet among the samples.  The
        #: session adds to it itself: a count costs less per request than a
        #: sample or a call, and zeros add nothing to the total.
        self.at_once = 0
        # The union of the waits so far: its length, and its last disjoint
        # spans [start, end] (older ones are final: no wait reaches back past
        # _WAIT_SPANS gaps in practice, and if one does it is counted twice).
        self._wait_wall = 0.0
        self._wait_spans: deque[list[float]] = deque(maxlen=_WAIT_SPANS)
        self._clock: tuple[int, int] | None = None
        self._clock_syncs = 0
        self._halted = False
        self._halts = 0
        self._callback_errors = 0
        self._stream[:] = [0, 0, 0, 0, 0]

    def _path(self, path: str) -> _Path:
        row = self._paths.get(path)
        if row is None:
            row = self._paths[path] = _Path()
        return row

    def answered(
        self,
        path: str,
        status: int,
        ret_code: int | None,
        latency: float,
        ok: bool,
        remaining: int | None = None,
        limit: int | None = None,
        reset_at_ms: int | None = None,
    ) -> None:
        """Count an attempt that got an answer, with its rate-limit headers if it had them."""
        row = self._paths.get(path)
        if row is None:
            row = self._path(path)
        if ret_code == 0 and status == 200:
            row.plain += 1
        else:
            row.requests += 1
            if not ok:
                row.errors += 1
            _count(row.by_status, status, OTHER_CODE)
            if ret_code is not None:
                _count(row.by_ret_code, ret_code, OTHER_CODE)
                if ret_code == 10006:
                    self._rate_limited += 1
        row.latency.append(latency)
        row.latency_count += 1
        row.latency_total += latency
        if remaining is not None:
            row.limit = (remaining, limit, reset_at_ms, self._wall())

    def failed(self, path: str, reason: str) -> None:
        """Count an attempt that got no answer, for *reason*."""
        row = self._path(path)
        row.requests += 1
        row.errors += 1
        _count(row.failures, reason, OTHER)

    def retried(self, reason: str) -> None:
        """Count a retry after a failure for *reason*."""
        _count(self._retries, reason, OTHER)

    def _count_zero_waits(self) -> None:
        zeros, self.at_once = self.at_once, 0
        self._wait_count += zeros
        self._waits.extend(itertools.repeat(0.0, min(zeros, SAMPLES)))

    def waited(self, seconds: float) -> None:
        """Record one wait for the rate limiter, which ended now."""
        if self.at_once:
            self._count_zero_waits()
        self._waits.append(seconds)
        self._wait_count += 1
        self._wait_total += seconds
        if seconds <= 0:
            return
        end = self._monotonic()
        start = end - seconds
        spans = self._wait_spans
        # Waits are reported as they end, so every span ends before this one:
        # those reaching into it merge with it.
        while spans and spans[-1][1] >= start:
            old_start, old_end = spans.pop()
            self._wait_wall -= old_end - old_start
            start = min(start, old_start)
        spans.append([start, end])
        self._wait_wall += end - start

    def call_ended(self, reason: str | None) -> None:
        """Count a call that returned (*reason* None) or raised for *reason*."""
        self._calls += 1
        if reason is not None:
            _count(self._calls_failed, reason, OTHER)

    def clock_synced(self, offset_ms: int, round_trip_ms: int) -> None:
        """Record a clock sync."""
        self._clock = (offset_ms, round_trip_ms)
        self._clock_syncs += 1

    def halted(self, on: bool) -> None:
        """Record that the session halted (*on*) or resumed."""
        if on:
            self._halts += 1
        self._halted = on

    def stream_counts(self) -> list[int]:
        """The private stream's counts, which a stream adds to in place, one add per push.

        In order: messages, reconnects, snapshots, stale updates, bad pushes.
        """
        return self._stream

    def stream_counted(
        self,
        messages: int = 0,
        reconnects: int = 0,
        snapshots: int = 0,
        stale: int = 0,
        bad: int = 0,
    ) -> None:
        """Add to the private stream's counts."""
        counts = self._stream
        counts[0] += messages
        counts[1] += reconnects
        counts[2] += snapshots
        counts[3] += stale
        counts[4] += bad

    def callback_failed(self) -> None:
        """Count an exception raised by ``on_event``."""
        self._callback_errors += 1

    def snapshot(
        self, *, halted: bool | None = None, limits: Mapping[str, LimitInForce] | None = None
    ) -> SessionStats:
        """Return what was recorded so far.

        *halted*, if given, is the halt's state now, and *limits* the limits
        in force by budget.
        """
        if self.at_once:
            self._count_zero_waits()
        paths = {name: row.snapshot() for name, row in sorted(self._paths.items())}
        clock = self._clock
        return SessionStats(
            started_at=self._started_at,
            elapsed=max(0.0, self._wall() - self._started_at),
            calls=self._calls,
            calls_failed=MappingProxyType(dict(self._calls_failed)),
            requests=sum(p.requests for p in paths.values()),
            errors=sum(p.errors for p in paths.values()),
            paths=MappingProxyType(paths),
            retries=MappingProxyType(dict(self._retries)),
            rate_limited=self._rate_limited,
            limiter_wait=Percentiles.of(self._wait_count, self._wait_total, self._waits),
            clock_offset_ms=None if clock is None else clock[0],
            clock_round_trip_ms=None if clock is None else clock[1],
            clock_syncs=self._clock_syncs,
            halted=self._halted if halted is None else halted,
            halts=self._halts,
            callback_errors=self._callback_errors,
            stream_messages=self._stream[0],
            stream_reconnects=self._stream[1],
            stream_snapshots=self._stream[2],
            stream_stale=self._stream[3],
            stream_bad=self._stream[4],
            limiter_wait_wall=self._wait_wall,
            limits=MappingProxyType(dict(sorted((limits or {}).items()))),
        )
