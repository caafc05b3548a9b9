"""A local Bybit V5 REST simulator for tests and benchmarks.

`BybitSimulator` serves ``GET /v5/market/time`` and
``POST /v5/position/set-auto-add-margin`` on a local port with Bybit's
signing, timestamp window, rate limits and error codes, keeps each account's
positions in memory, records every request it receives, and misbehaves on
demand (see `Fault`):

    async with BybitSimulator() as sim:
        sim.inject(Fault.http_status(503))
        ...  # point a client at sim.url with sim.api_key / sim.api_secret
        assert sim.auto_add_margin("BTCUSDT") == 1

``python -m bybit_async.testing`` runs one in the foreground; see `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import hmac
import math
import random
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, NamedTuple

import orjson
from aiohttp import web

from .ratelimit import ENDPOINT_LIMITS, IP_LIMIT, IP_WINDOW

__all__ = [
    "MARKET_TIME_PATH",
    "NOT_MODIFIED_MSG",
    "SET_AUTO_ADD_MARGIN_PATH",
    "BybitSimulator",
    "Fault",
    "NetworkDelay",
    "Position",
    "RecordedRequest",
    "main",
]

#: retMsg of the retCode 10001 answer when autoAddMargin already has the requested value.
NOT_MODIFIED_MSG = "auto add margin not modified"

#: The public server-time endpoint.
MARKET_TIME_PATH = "/v5/market/time"
#: The signed endpoint that sets a position's auto-add-margin flag.
SET_AUTO_ADD_MARGIN_PATH = "/v5/position/set-auto-add-margin"

_DEFAULT_RECV_WINDOW = 5000
# Bybit rejects timestamps this many ms or more ahead of its clock.
_MAX_AHEAD_MS = 1000
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9-]*")
_MARGIN_MODES = ("isolated", "cross", "portfolio")

_DEFAULT_MESSAGES: Mapping[int, str] = {
    0: "OK",
    10000: "Server Timeout",
    10001: "params error",
    10002: "invalid request, please check your server timestamp or recv_window param",
    10003: "API key is invalid.",
    10004: "error sign!",
    10005: "Permission denied, please check your API key permissions.",
    10006: "Too many visits!",
    10007: "User authentication failed.",
    10008: "Common banned, please check your account mode",
    10009: "The service is not available in your region.",
    10010: "Unmatched IP, please check your API key's bound IP addresses.",
    10014: "Request is duplicate",
    10016: "Server error.",
    10017: "Route not found.",
    10018: "Exceeded the IP Rate Limit.",
    10024: "Compliance rules triggered",
    10027: "Controller Transactions are banned",
    10028: "The API can only be accessed by unified account users.",
    10029: "The requested symbol is invalid, please check symbol whitelist",
    33004: "Your api key has expired.",
    110015: "In the process of reversing the position",
    110025: "Position mode is not modified",
    110026: "Cross/isolated margin mode is not modified",
    110027: "Margin is not modified",
    110029: "Hedge mode is not available for this symbol",
    110067: "Unified account is not supported.",
    110074: "This contract is not live",
    110076: "Only isolated mode can set auto-add-margin",
    110077: "Pm mode cannot support",
}

# Swapped out by tests that need a fixed clock; everything reads wall time through it.
_wall_ns: Callable[[], int] = time.time_ns


@dataclass(frozen=True)
class Fault:
    """A misbehaviour for the simulator to answer one request with.

    Build one with a class method; `BybitSimulator.inject` queues it.
    """

    kind: Literal["http_status", "drop", "stall", "html", "ret_code"]
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

        An empty *msg* becomes Bybit's usual message for *code*.
        """
        return cls("ret_code", status=200, code=code, msg=msg or _default_message(code))


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


class _DelayDraws:
    """The delays of one `NetworkDelay`: a random stream per direction."""

    def __init__(self, delay: NetworkDelay) -> None:
        self.delay = delay
        seeds = random.Random(delay.seed)
        # Separate streams: the inbound sequence does not depend on how
        # answers interleave with arrivals.
        self._inbound = random.Random(seeds.getrandbits(64))
        self._outbound = random.Random(seeds.getrandbits(64))

    def inbound(self) -> float:
        return self._draw(self._inbound)

    def outbound(self) -> float:
        return self._draw(self._outbound)

    def _draw(self, rng: random.Random) -> float:
        d = self.delay
        seconds = rng.uniform(d.low, d.high)
        if d.spike_probability and rng.random() < d.spike_probability:
            seconds += d.spike
        return seconds


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received and answered it.

    *status* is 0 and *ret_code* ``None`` while the request is being handled,
    and for requests that got no answer (dropped, released at close, or whose
    client had gone).  *at* is `time.monotonic` at arrival.
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


@dataclass
class Position:
    """One position's settings: *position_idx* 0 in one-way mode, 1 or 2 in hedge mode.

    *margin_mode* is ``"isolated"`` or ``"cross"``; a portfolio-margin
    account's mode is the account's, not the position's.
    """

    symbol: str
    position_idx: int
    auto_add_margin: int = 0
    margin_mode: str = "isolated"


@dataclass
class _Account:
    api_key: str
    # Exactly one of these: the HMAC secret, or a verifier of RSA signatures.
    secret: bytes | None = field(repr=False)
    margin_mode: str
    positions: dict[str, dict[int, Position]] = field(default_factory=dict)
    rsa_verify: Callable[[bytes, bytes], bool] | None = field(default=None, repr=False)


@dataclass
class _Injection:
    fault: Fault
    path: str | None
    remaining: int


# (retCode, retMsg, result) as a handler's outcome.
_Outcome = tuple[int, str, dict[str, Any]]


class _Route(NamedTuple):
    method: str
    private: bool
    handler: Callable[[_Account | None, RecordedRequest], _Outcome]


class BybitSimulator:
    """A Bybit V5 REST server on a local port, with one account to start with.

    The default account's credentials are *api_key* and *api_secret*.
    *enforce_limits* turns on the per-IP limit (*ip_limit* requests per
    *ip_window* seconds, then a ban of *ip_ban_seconds*) and the per-account,
    per-endpoint limits in *endpoint_limits* (requests per rolling second;
    ``None`` means `ENDPOINT_LIMITS`).  The
    server's clock runs *clock_offset_ms* ahead of the wall clock.
    *network_delay* delays each request before it arrives (is recorded and
    counted) and each answer before it is sent; see `NetworkDelay`.

    Limits, the offset and the delay are plain attributes and may be changed
    at any time.  Use it as an async context manager, or call `start` and
    `close`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        enforce_limits: bool = True,
        ip_limit: int = IP_LIMIT,
        ip_window: float = IP_WINDOW,
        ip_ban_seconds: float = 600.0,
        endpoint_limits: Mapping[str, int] | None = None,
        clock_offset_ms: int = 0,
        network_delay: NetworkDelay | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret
        self.enforce_limits = enforce_limits
        self.ip_limit = ip_limit
        self.ip_window = ip_window
        self.ip_ban_seconds = ip_ban_seconds
        self.endpoint_limits: dict[str, int] = dict(
            ENDPOINT_LIMITS if endpoint_limits is None else endpoint_limits
        )
        self.clock_offset_ms = clock_offset_ms
        self.network_delay = network_delay
        self.requests: list[RecordedRequest] = []

        self._accounts: dict[str, _Account] = {}
        self._faults: list[_Injection] = []
        self._ip_windows: dict[str, deque[float]] = {}
        self._ip_bans: dict[str, float] = {}
        self._endpoint_windows: dict[tuple[str, str], deque[float]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._delay_draws: _DelayDraws | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Future[None] | None = None
        self._url: str | None = None
        self._routes: dict[str, _Route] = {
            MARKET_TIME_PATH: _Route("GET", False, self._market_time),
            SET_AUTO_ADD_MARGIN_PATH: _Route("POST", True, self._set_auto_add_margin),
        }
        self.add_account(api_key, api_secret)

    def __repr__(self) -> str:
        """Show the URL and the default API key, never a secret."""
        where = self._url if self._url is not None else "not started"
        return f"<{type(self).__name__} {where} api_key={self.api_key!r}>"

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ``http://HOST:PORT``; only available once started."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    async def start(self) -> None:
        """Start serving; binds *host* and *port* (0 picks a free port)."""
        if self._runner is not None or self._closing is not None:
            raise RuntimeError("the simulator was already started")
        # Exists before the port opens: a stalled request waits on it.
        self._closing = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: close() releases every held request
        # first, so handlers finish at once and nothing waits for it.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._closing = None
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Release held requests unanswered and stop serving.  Safe to call twice."""
        runner, self._runner = self._runner, None
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> BybitSimulator:
        """Start the simulator and return it."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the simulator."""
        await self.close()

    # -- state -----------------------------------------------------------

    def server_time_ms(self) -> int:
        """The server's clock in milliseconds: wall clock plus `clock_offset_ms`."""
        return _wall_ns() // 1_000_000 + self.clock_offset_ms

    def add_account(
        self,
        api_key: str,
        api_secret: str | None = None,
        *,
        rsa_public_key: str | bytes | None = None,
        margin_mode: str = "isolated",
    ) -> None:
        """Add an account, replacing any account with the same key and its positions.

        Give the HMAC *api_secret*, or the PEM *rsa_public_key* registered for a
        self-made RSA key (this needs the ``cryptography`` package).
        *margin_mode* ``"portfolio"`` is account-wide; ``"isolated"`` or
        ``"cross"`` is the mode new positions start in.
        """
        if margin_mode not in _MARGIN_MODES:
            raise ValueError(f"margin_mode must be one of {_MARGIN_MODES}, got {margin_mode!r}")
        if (api_secret is None) == (rsa_public_key is None):
            raise ValueError("give exactly one of api_secret and rsa_public_key")
        secret = api_secret.encode() if api_secret is not None else None
        verify = _rsa_verifier(rsa_public_key) if rsa_public_key is not None else None
        self._accounts[api_key] = _Account(api_key, secret, margin_mode, rsa_verify=verify)

    def set_position(
        self,
        symbol: str,
        *,
        api_key: str | None = None,
        margin_mode: str | None = None,
        hedge: bool | None = None,
        auto_add_margin: int | None = None,
    ) -> None:
        """Set up *symbol*'s position(s) in an account (the default one if *api_key* is None).

        *margin_mode* is ``"isolated"`` or ``"cross"``.  *hedge* switches
        between one-way (index 0) and hedge mode (indices 1 and 2); switching
        starts the new positions with auto-add-margin off.  *auto_add_margin*
        sets the flag on every position of the symbol.  Arguments left
        ``None`` keep their current value.
        """
        if margin_mode is not None and margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be 'isolated' or 'cross', got {margin_mode!r}")
        if auto_add_margin is not None and auto_add_margin not in (0, 1):
            raise ValueError(f"auto_add_margin must be 0 or 1, got {auto_add_margin!r}")
        positions = self._positions(self._account(api_key), symbol)
        if hedge is not None and hedge != (0 not in positions):
            mode = next(iter(positions.values())).margin_mode
            indices = (1, 2) if hedge else (0,)
            positions.clear()
            positions.update({i: Position(symbol, i, 0, mode) for i in indices})
        for position in positions.values():
            if margin_mode is not None:
                position.margin_mode = margin_mode
            if auto_add_margin is not None:
                position.auto_add_margin = auto_add_margin

    def position(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> Position:
        """Return the live `Position`, creating the symbol's defaults on first use."""
        positions = self._positions(self._account(api_key), symbol)
        try:
            return positions[position_idx]
        except KeyError:
            mode = "hedge" if 0 not in positions else "one-way"
            raise ValueError(
                f"{symbol} is in {mode} mode and has no position_idx {position_idx}"
            ) from None

    def auto_add_margin(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> int:
        """Return the auto-add-margin flag (0 or 1) of one position."""
        return self.position(symbol, position_idx, api_key=api_key).auto_add_margin

    def _account(self, api_key: str | None) -> _Account:
        key = self.api_key if api_key is None else api_key
        try:
            return self._accounts[key]
        except KeyError:
            raise KeyError(f"no account with api_key {key!r}") from None

    def _positions(self, account: _Account, symbol: str) -> dict[int, Position]:
        positions = account.positions.get(symbol)
        if positions is None:
            if not _SYMBOL.fullmatch(symbol):
                raise ValueError(f"symbol must be uppercase letters and digits, got {symbol!r}")
            mode = "isolated" if account.margin_mode == "isolated" else "cross"
            positions = account.positions[symbol] = {0: Position(symbol, 0, 0, mode)}
        return positions

    # -- faults and inspection ---------------------------------------------

    def inject(self, fault: Fault, *, path: str | None = None, times: int = 1) -> None:
        """Queue *fault* for the next *times* requests to *path*.

        A *path* of ``None`` matches only the signed endpoints the simulator
        serves; a fault for ``/v5/market/time`` or an unknown path must name it.
        Queued faults apply first in, first out, one per request; requests
        refused by the IP limit consume none.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times!r}")
        self._faults.append(_Injection(fault, path, times))

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

    def reset_limits(self) -> None:
        """Forget all rate-limit windows and IP bans."""
        self._ip_windows.clear()
        self._ip_bans.clear()
        self._endpoint_windows.clear()

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

    # -- request handling --------------------------------------------------

    def _draws(self, delay: NetworkDelay) -> _DelayDraws:
        draws = self._delay_draws
        if draws is None or draws.delay is not delay:
            # A new NetworkDelay (set at run time) starts its own seeded streams.
            draws = self._delay_draws = _DelayDraws(delay)
        return draws

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        delay = self.network_delay
        if delay is not None and await self._stall(self._draws(delay).inbound()):
            # Closed while the request was on its way: it never arrived.
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        at = time.monotonic()
        try:
            body = await request.read()
        except (web.HTTPException, ConnectionError):
            # Too large, or the client left mid-body: nothing worth answering.
            body = b""
            unreadable = True
        else:
            unreadable = False
        headers = request.headers
        ts = headers.get("X-BAPI-TIMESTAMP")
        record = RecordedRequest(
            at=at,
            method=request.method,
            path=request.path,
            api_key=headers.get("X-BAPI-API-KEY"),
            body=body,
            query=request.rel_url.raw_query_string,
            timestamp=None if ts is None else _parse_uint(ts),
            signature=headers.get("X-BAPI-SIGN"),
        )
        index = len(self.requests)
        self.requests.append(record)
        if self._waiters:
            self._notify()

        path = record.path
        route = self._routes.get(path)
        fault: Fault | None = None
        response: web.Response | None
        ret_code: int | None = None
        if unreadable:
            response = _text(413, "request body too large")
        elif self.enforce_limits and self._ip_rejects(request.remote or "", at):
            response = _text(403, "access too frequent")
        else:
            if self._faults:
                fault = self._take_fault(path, route is not None and route.private)
                if fault is not None:
                    # Show the fault on the record while the request is held or handled.
                    record = self._settle(index, record, 0, None, fault)
            response, ret_code = await self._respond(request, record, route, fault)

        if delay is not None and response is not None:
            delay = self.network_delay
            if delay is not None and await self._stall(self._draws(delay).outbound()):
                response = None
        transport = request.transport
        if response is None or transport is None or transport.is_closing():
            if transport is not None:
                transport.abort()
            self._settle(index, record, 0, None, fault)
            # Nothing reaches the client; aiohttp fails to write this quietly.
            return web.Response()
        self._settle(index, record, response.status, ret_code, fault)
        return response

    def _settle(
        self,
        index: int,
        record: RecordedRequest,
        status: int,
        ret_code: int | None,
        fault: Fault | None,
    ) -> RecordedRequest:
        # Tests may clear or edit the list; only replace the entry if it is still ours.
        if index < len(self.requests) and self.requests[index] is record:
            # Direct construction: dataclasses.replace() costs several times more.
            r = record
            record = RecordedRequest(
                r.at,
                r.method,
                r.path,
                r.api_key,
                r.body,
                r.query,
                r.timestamp,
                r.signature,
                status,
                ret_code,
                fault,
            )
            self.requests[index] = record
        return record

    async def _respond(
        self,
        request: web.Request,
        record: RecordedRequest,
        route: _Route | None,
        fault: Fault | None,
    ) -> tuple[web.Response | None, int | None]:
        """Return the response (None: drop the connection) and its retCode."""
        if fault is not None:
            kind = fault.kind
            if kind == "http_status":
                return _text(fault.status, fault.body), None
            if kind == "html":
                return _html(fault.status), None
            if kind == "ret_code":
                return self._envelope(fault.code, fault.msg), fault.code
            if kind == "drop" and not fault.after_execution:
                return None, None
            if kind == "stall" and await self._stall(fault.seconds):
                return None, None
        response, ret_code = self._dispatch(request, record, route)
        if fault is not None and fault.kind == "drop":
            return None, None
        return response, ret_code

    async def _stall(self, seconds: float | None) -> bool:
        """Wait *seconds* (None: forever); return True if released by close() instead."""
        closing = self._closing
        assert closing is not None
        if not closing.done():
            await asyncio.wait((closing,), timeout=seconds)
        return closing.done()

    def _take_fault(self, path: str, private: bool) -> Fault | None:
        for i, injection in enumerate(self._faults):
            if path == injection.path or (injection.path is None and private):
                injection.remaining -= 1
                if injection.remaining <= 0:
                    del self._faults[i]
                return injection.fault
        return None

    def _dispatch(
        self, request: web.Request, record: RecordedRequest, route: _Route | None
    ) -> tuple[web.Response, int | None]:
        if route is None or request.method != route.method:
            return _text(404, "404 page not found"), None
        if not route.private:
            code, msg, result = route.handler(None, record)
            return self._envelope(code, msg, result), code
        account_or_reply = self._authenticate(request.headers, record)
        if not isinstance(account_or_reply, _Account):
            return account_or_reply
        account = account_or_reply
        limit_headers: dict[str, str] | None = None
        if self.enforce_limits:
            limit = self.endpoint_limits.get(record.path)
            if limit is not None:
                admitted, limit_headers = self._endpoint_admits(
                    account.api_key, record.path, record.at, limit
                )
                if not admitted:
                    return self._envelope(10006, "Too many visits!", None, limit_headers), 10006
        code, msg, result = route.handler(account, record)
        return self._envelope(code, msg, result, limit_headers), code

    def _authenticate(
        self, headers: Mapping[str, str], record: RecordedRequest
    ) -> _Account | tuple[web.Response, int | None]:
        api_key = record.api_key
        ts_text = headers.get("X-BAPI-TIMESTAMP")
        sign = record.signature
        if api_key is None or ts_text is None or sign is None:
            missing = [
                name
                for name, value in (
                    ("X-BAPI-API-KEY", api_key),
                    ("X-BAPI-TIMESTAMP", ts_text),
                    ("X-BAPI-SIGN", sign),
                )
                if value is None
            ]
            return _text(401, f"401 Unauthorized: missing {', '.join(missing)}"), None
        account = self._accounts.get(api_key)
        if account is None:
            return self._error(10003, "API key is invalid.")
        rw_text = headers.get("X-BAPI-RECV-WINDOW")
        recv_window = _DEFAULT_RECV_WINDOW if rw_text is None else _parse_uint(rw_text)
        if recv_window is None:
            return self._error(10001, "params error: X-BAPI-RECV-WINDOW must be an integer")
        ts = record.timestamp
        if ts is None:
            return self._error(10001, "params error: X-BAPI-TIMESTAMP must be an integer")
        server_time = self.server_time_ms()
        if not server_time - recv_window <= ts < server_time + _MAX_AHEAD_MS:
            return self._error(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{server_time}],recv_window[{recv_window}]",
            )
        sign_type = headers.get("X-BAPI-SIGN-TYPE")
        if sign_type is not None and sign_type != "2":
            return self._error(10004, f"error sign! unsupported X-BAPI-SIGN-TYPE {sign_type!r}")
        # The string to sign uses the headers exactly as sent: an absent
        # X-BAPI-RECV-WINDOW contributes nothing.
        payload = record.body if record.method == "POST" else record.query.encode()
        origin = (ts_text + api_key + (rw_text or "")).encode() + payload
        if account.rsa_verify is not None:
            valid = account.rsa_verify(origin, sign.encode("utf-8", "backslashreplace"))
        else:
            assert account.secret is not None
            expected = hmac.new(account.secret, origin, hashlib.sha256).hexdigest().encode()
            valid = hmac.compare_digest(expected, sign.encode("utf-8", "backslashreplace"))
        if not valid:
            shown = origin.decode("utf-8", "replace")
            return self._error(10004, f"error sign! origin_string[{shown}]")
        return account

    def _ip_rejects(self, remote: str, at: float) -> bool:
        banned_until = self._ip_bans.get(remote)
        if banned_until is not None:
            if at < banned_until:
                return True
            del self._ip_bans[remote]
            self._ip_windows.pop(remote, None)
        window = self._ip_windows.get(remote)
        if window is None:
            window = self._ip_windows[remote] = deque()
        _expire(window, at - self.ip_window)
        if len(window) >= self.ip_limit:
            self._ip_bans[remote] = at + self.ip_ban_seconds
            return True
        _add(window, at)
        return False

    def _endpoint_admits(
        self, api_key: str, path: str, at: float, limit: int
    ) -> tuple[bool, dict[str, str]]:
        key = (api_key, path)
        window = self._endpoint_windows.get(key)
        if window is None:
            window = self._endpoint_windows[key] = deque()
        _expire(window, at - 1.0)
        admitted = len(window) < limit
        if admitted:
            _add(window, at)
        left = max(limit - len(window), 0)
        now_ms = self.server_time_ms()
        reset_ms = now_ms
        if left == 0 and window:
            # Round up: coming back at the rounded-down millisecond would still be too early.
            reset_ms += max(math.ceil((window[0] + 1.0 - time.monotonic()) * 1000), 0)
        return admitted, {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(left),
            "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
        }

    def _envelope(
        self,
        code: int,
        msg: str,
        result: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = orjson.dumps(
            {
                "retCode": code,
                "retMsg": msg,
                "result": {} if result is None else result,
                "retExtInfo": {},
                "time": self.server_time_ms(),
            }
        )
        return web.Response(body=body, content_type="application/json", headers=headers)

    def _error(self, code: int, msg: str) -> tuple[web.Response, int]:
        return self._envelope(code, msg), code

    # -- endpoints -----------------------------------------------------------

    def _market_time(self, account: _Account | None, record: RecordedRequest) -> _Outcome:
        ns = _wall_ns() + self.clock_offset_ms * 1_000_000
        return 0, "OK", {"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}

    def _set_auto_add_margin(self, account: _Account | None, record: RecordedRequest) -> _Outcome:
        assert account is not None
        try:
            params = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _params_error("request body is not valid JSON")
        if not isinstance(params, dict):
            return _params_error("request body must be a JSON object")
        category = params.get("category")
        if category is None:
            return _params_error("category is required")
        if category != "linear":
            return _params_error("category must be linear")
        symbol = params.get("symbol")
        if symbol is None:
            return _params_error("symbol is required")
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            return _params_error("symbol must be uppercase letters and digits")
        if "autoAddMargin" not in params:
            return _params_error("autoAddMargin is required")
        flag = params["autoAddMargin"]
        if type(flag) is not int or flag not in (0, 1):
            return _params_error("autoAddMargin must be 0 or 1")
        idx: int | None = None
        if "positionIdx" in params:
            # Present means it must be a real index: null is refused, not read as absent.
            idx = params["positionIdx"]
            if type(idx) is not int or idx not in (0, 1, 2):
                return _params_error("positionIdx must be 0, 1 or 2")

        positions = self._positions(account, symbol)
        hedge = 0 not in positions
        if (idx in (1, 2)) != hedge:
            return 10001, "position idx not match position mode", {}
        position = positions[0 if idx is None else idx]
        if account.margin_mode == "portfolio":
            return 110077, _DEFAULT_MESSAGES[110077], {}
        if position.margin_mode != "isolated":
            return 110076, _DEFAULT_MESSAGES[110076], {}
        if position.auto_add_margin == flag:
            return 10001, NOT_MODIFIED_MSG, {}
        position.auto_add_margin = flag
        return 0, "OK", {}


def _rsa_verifier(public_key_pem: str | bytes) -> Callable[[bytes, bytes], bool]:
    """Return a check of base64 RSASSA-PKCS1-v1_5 SHA-256 signatures by this public key."""
    import base64
    import binascii

    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ImportError(
            "RSA accounts need the 'cryptography' package: pip install 'bybit-async[rsa]'"
        ) from None
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"expected an RSA public key, got {type(key).__name__}")

    def verify(message: bytes, signature_b64: bytes) -> bool:
        try:
            key.verify(
                base64.b64decode(signature_b64, validate=True),
                message,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    return verify


def _params_error(problem: str) -> _Outcome:
    return 10001, f"params error: {problem}", {}


def _default_message(code: int) -> str:
    return _DEFAULT_MESSAGES.get(code, f"simulated error {code}")


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status code, got {status!r}")


def _parse_uint(text: str) -> int | None:
    # int() would also take signs, spaces, underscores and non-ASCII digits.
    if text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return None


def _expire(window: deque[float], before_or_at: float) -> None:
    while window and window[0] <= before_or_at:
        window.popleft()


def _add(window: deque[float], at: float) -> None:
    # Arrivals are recorded before the body is read, so they can be handled
    # slightly out of order; keep the window sorted.
    if not window or window[-1] <= at:
        window.append(at)
    else:
        bisect.insort(window, at)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _html(status: int) -> web.Response:
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


async def _serve(host: str, port: int, enforce_limits: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with BybitSimulator(host=host, port=port, enforce_limits=enforce_limits) as sim:
            print(f"BYBIT_SIMULATOR_URL={sim.url}", flush=True)
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    """Run a simulator until SIGINT or SIGTERM; return the exit status.

    Prints one line, ``BYBIT_SIMULATOR_URL=<url>``, once it is listening.
    The default account is ``test-key`` / ``test-secret``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bybit_async.testing", description="Run a local Bybit V5 REST simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--no-limits", action="store_true", help="do not enforce rate limits")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, not args.no_limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
