"""The request log: what the simulator received and how it answered, for tests to inspect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .faults import Fault


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received and answered it.

    *status* is 0 and *ret_code* ``None`` while the request is being handled,
    and for requests that got no answer (dropped, released at close, or whose
    client had gone).  *at* is `time.monotonic` at arrival, after any
    inbound network delay; rate limits are counted at that time.  *time_ms*
    is the same moment on the wall clock, in milliseconds since the epoch.
    """

    at: float
    method: str
    path: str
    api_key: str | None
    body: bytes
    query: str
    timestamp: int | None
    signature: str | None
    status: int = 0
    ret_code: int | None = None
    fault: Fault | None = None
    time_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        """The record as the control API's request log shows it; ``time`` in wall-clock ms."""
        return {
            "time": self.time_ms,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "apiKey": self.api_key,
            "timestamp": self.timestamp,
            "signature": self.signature,
            "body": self.body.decode("utf-8", "replace"),
            "status": self.status,
            "retCode": self.ret_code,
            "fault": None if self.fault is None else self.fault.to_json(),
        }


class RequestLog:
    """The simulator's request log and the questions tests ask of it."""

    requests: list[RecordedRequest]
    _waiters: list[tuple[int, asyncio.Future[None]]]

    def count(
        self, path: str | None = None, *, ret_code: int | None = None, status: int | None = None
    ) -> int:
        """Count recorded requests to *path* (any if None) with the given retCode and status."""
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == path)
            and (ret_code is None or r.ret_code == ret_code)
            and (status is None or r.status == status)
        )

    def max_in_window(self, path: str | None = None, window: float = 1.0) -> int:
        """Return the most recorded requests to *path* (any if None) in one *window*.

        Windows are half-open: ``[t, t + window)`` for any start ``t``,
        measured on arrival times.
        """
        times = sorted(r.at for r in self.requests if path is None or r.path == path)
        best = end = 0
        for start, t in enumerate(times):
            while end < len(times) and times[end] - t < window:
                end += 1
            best = max(best, end - start)
        return best

    async def wait_for_requests(self, n: int) -> None:
        """Return once at least *n* requests have arrived (been recorded)."""
        if len(self.requests) >= n:
            return
        entry = (n, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        finally:
            self._waiters.remove(entry)

    def _notify(self) -> None:
        arrived = len(self.requests)
        for n, waiter in self._waiters:
            if arrived >= n and not waiter.done():
                waiter.set_result(None)
