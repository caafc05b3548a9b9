"""Misbehaviour on demand: faults for single requests and network delay for all of them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web

from .protocol import default_message

FaultKind = Literal["http_status", "drop", "stall", "html", "ret_code"]
#: Faults that come from the edge (a proxy in front of Bybit): before authentication.
EDGE_KINDS: frozenset[str] = frozenset({"http_status", "drop", "stall", "html"})


@dataclass(frozen=True)
class Fault:
    """A misbehaviour for the simulator to answer one request with.

    Build one with a class method; `BybitSimulator.inject` queues it.
    Edge faults (`http_status`, `html`, `drop`, `stall`) act before
    authentication, as a proxy in front of Bybit would; `ret_code` acts after
    it, so a request with a bad signature is still rejected first.
    """

    kind: FaultKind
    status: int = 0
    body: str = ""
    code: int = 0
    msg: str = ""
    after_execution: bool = True
    seconds: float | None = None

    @classmethod
    def http_status(cls, status: int, body: str = "") -> Fault:
        """Answer HTTP *status* with *body* as plain text, without executing the request."""
        _check_status(status)
        return cls("http_status", status=status, body=body)

    @classmethod
    def drop(cls, *, after_execution: bool = True) -> Fault:
        """Close the connection without answering.

        With *after_execution* the request is first handled in full, so its
        effect is applied; otherwise it is not executed at all.
        """
        return cls("drop", after_execution=after_execution)

    @classmethod
    def stall(cls, seconds: float | None = None) -> Fault:
        """Hold the request for *seconds*, then handle it normally.

        The request is executed after the stall even if its client has given
        up meanwhile.  With *seconds* ``None`` it is held until the simulator
        closes; a request still held at close is dropped unanswered and not
        executed.
        """
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"seconds must be None or non-negative, got {seconds!r}")
        return cls("stall", seconds=seconds)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Answer HTTP *status* with a proxy-style HTML error page, without executing."""
        _check_status(status)
        return cls("html", status=status)

    @classmethod
    def ret_code(cls, code: int, msg: str = "") -> Fault:
        """Answer HTTP 200 with retCode *code*, without executing the request.

        An empty *msg* becomes Bybit's usual message for *code*.  The answer
        comes after authentication and carries the rate-limit headers.
        """
        return cls("ret_code", status=200, code=code, msg=msg or default_message(code))

    @property
    def edge(self) -> bool:
        """True for faults that act before authentication, as a proxy's would."""
        return self.kind in EDGE_KINDS

    def to_json(self) -> dict[str, Any]:
        """The fault as the control API shows it."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("http_status", "html"):
            out["status"] = self.status
        if self.kind == "http_status":
            out["body"] = self.body
        if self.kind == "ret_code":
            out.update(code=self.code, msg=self.msg)
        if self.kind == "drop":
            out["afterExecution"] = self.after_execution
        if self.kind == "stall":
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from the control API's JSON form (see `to_json`)."""
        kind = data.get("kind")
        if kind == "http_status":
            return cls.http_status(int(data["status"]), str(data.get("body", "")))
        if kind == "html":
            return cls.html(int(data.get("status", 502)))
        if kind == "ret_code":
            return cls.ret_code(int(data["code"]), str(data.get("msg", "")))
        if kind == "drop":
            return cls.drop(after_execution=bool(data.get("afterExecution", True)))
        if kind == "stall":
            seconds = data.get("seconds")
            return cls.stall(None if seconds is None else float(seconds))
        raise ValueError(f"unknown fault kind {kind!r}")


@dataclass(frozen=True)
class NetworkDelay:
    """One-way network delays for the simulator to add to every request.

    Each direction (request in, answer out) waits its own delay, drawn
    uniformly from [*low*, *high*] seconds, plus *spike* seconds with
    probability *spike_probability*.  *seed* makes the draws repeatable.
    """

    low: float = 0.0
    high: float = 0.0
    spike_probability: float = 0.0
    spike: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        """Check the bounds."""
        if not 0.0 <= self.low <= self.high:
            raise ValueError(f"need 0 <= low <= high, got low={self.low!r}, high={self.high!r}")
        if not 0.0 <= self.spike_probability <= 1.0:
            raise ValueError(
                f"spike_probability must be between 0 and 1, got {self.spike_probability!r}"
            )
        if not self.spike >= 0.0:
            raise ValueError(f"spike must be non-negative, got {self.spike!r}")


class DelayDraws:
    """The delays of one `NetworkDelay`: a random stream per direction."""

    def __init__(self, delay: NetworkDelay) -> None:
        self.delay = delay
        seeds = random.Random(delay.seed)
        # Separate streams: the inbound sequence does not depend on how
        # answers interleave with arrivals.
        self._inbound = random.Random(seeds.getrandbits(64))
        self._outbound = random.Random(seeds.getrandbits(64))

    def inbound(self) -> float:
        """The next request's one-way delay to the server."""
        return self._draw(self._inbound)

    def outbound(self) -> float:
        """The next answer's one-way delay back to the client."""
        return self._draw(self._outbound)

    def _draw(self, rng: random.Random) -> float:
        d = self.delay
        seconds = rng.uniform(d.low, d.high)
        if d.spike_probability and rng.random() < d.spike_probability:
            seconds += d.spike
        return seconds


@dataclass
class Injection:
    """A queued fault: for *path* (None: any signed endpoint), *remaining* more times."""

    fault: Fault
    path: str | None
    remaining: int


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status code, got {status!r}")


def text_response(status: int, text: str) -> web.Response:
    """A plain-text answer, as the edge gives for 401, 403, 404 and the like."""
    return web.Response(status=status, text=text, content_type="text/plain")


def html_response(status: int) -> web.Response:
    """A proxy-style HTML error page."""
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>cloudfront</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")
