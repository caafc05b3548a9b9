"""The simulator's HTTP server: the request path (record, IP limit, faults,
authentication, per-UID limits, envelope), its lifecycle and its clock.

What each endpoint answers lives in `bybit_async.testing.routes`, the
signature check in `auth`, the limits in `limits`, user fixtures in
`fixtures`, and the accounts as tests set and read them in `state`
(`AccountState`), one of the simulator's parts with `overrides` and
`requestlog`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from ..endpoint_limits import EndpointLimit, budget_key
from ..ratelimit import IP_LIMIT, IP_WINDOW
from .accounts import Accounts, ApiKey, Instruments, User
from .auth import Rejection, authenticate, parse_uint
from .faults import (
    DelayDraws,
    Fault,
    Injection,
    NetworkDelay,
    html_response,
    text_response,
)
from .fixtures import Fixture, Fixtures
from .limits import ENDPOINT_LIMITS, Headers, LimitValue, Windows, check_limit, lookup
from .overrides import Overrides
from .protocol import (
    CONTROL_PREFIX,
    DEFAULT_INSTRUMENTS,
    DEFAULT_MESSAGES,
    PUBLIC_PREFIX,
    V5_PREFIX,
)
from .requestlog import RecordedRequest, RequestLog
from .routes import ROUTES, Call, Refused
from .state import AccountState
from .stream import StreamHub

_log = logging.getLogger("bybit_async.testing")

# The one wall-clock hook: tests that need a fixed clock replace it.
_wall_ns: Callable[[], int] = time.time_ns


def is_signed(path: str) -> bool:
    """Whether Bybit wants a signature on *path*: every V5 path but market data."""
    return path.startswith(V5_PREFIX) and not path.startswith(PUBLIC_PREFIX)


def parse_params(method: str, query: str, body: bytes) -> dict[str, Any] | str:
    """The request's parameters (query for GET, JSON object body for POST), or the retMsg
    of the parameter error that refuses them.
    """
    if method == "POST":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "params error: the request body is not valid JSON"
        if not isinstance(data, dict):
            return "params error: the request body must be a JSON object"
        return data
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            return f"params error: {name} given twice"
        params[name] = value
    return params


@dataclass
class _Start:
    """What `BybitSimulator.reset` goes back to."""

    accounts: Accounts
    instruments: Instruments
    settings: dict[str, Any]
    fixtures: dict[tuple[str, str], Fixture]


# Attributes that reset() restores.
_SETTINGS = (
    "enforce_limits",
    "ip_limit",
    "ip_window",
    "ip_ban_seconds",
    "endpoint_limits",
    "clock_offset_ms",
    "network_delay",
    "success_messages",
    "_uid_limits",
)


class BybitSimulator(AccountState, Overrides, RequestLog):
    """A Bybit V5 REST server on a local port, with one account to start with.

    The default account's credentials are *api_key* and *api_secret*, in UID
    *uid* (None: a made-up one).  *enforce_limits* turns on the per-IP limit
    (*ip_limit* requests per *ip_window* seconds, then a ban of
    *ip_ban_seconds*) and the per-UID limits of every account: by budget key
    (see `bybit_async.endpoint_limits.budget_key`), the defaults in
    *endpoint_limits* (``None`` means the client's table, `ENDPOINT_LIMITS`;
    an int counts per the window the table gives that key, one second for
    keys it lacks), and an account's own from `set_limit`.  With it off,
    signed answers still carry the ``X-Bapi-Limit`` headers.  The server's
    clock runs *clock_offset_ms* ahead of the wall clock.  *network_delay*
    delays each request before it arrives (is recorded and counted) and
    each answer before it is sent; see `NetworkDelay`.  *instruments* lists
    the symbols the server knows (symbols, or a mapping of symbol to settle
    coin; ``None`` accepts any well-formed symbol); others get retCode
    10001 ``params error: symbol invalid``.  Successes answer retMsg ``OK``,
    as Bybit documents; *success_messages*, if given, are the retMsg values
    of successes in turn instead (see `SUCCESS_MESSAGES`), for a client that
    must not read retMsg.

    Every path under ``/v5/`` is authenticated (market data is public) and
    counted against the limits; the endpoints of the `routes` package are answered from
    the accounts' state, any other from the fixtures of `add_route`, else
    HTTP 404 with retCode 10017.  Limits, the offset, the delay and the
    success messages are plain attributes and may be changed at any time;
    `reset` puts them, the accounts, positions and fixtures back as they
    were at `start`.  Use it as an async context manager, or call `start`
    and `close`.  Paths under ``/_sim/`` are the control API (see the
    documentation).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        uid: str | int | None = None,
        enforce_limits: bool = True,
        ip_limit: int = IP_LIMIT,
        ip_window: float = IP_WINDOW,
        ip_ban_seconds: float = 600.0,
        endpoint_limits: Mapping[str, LimitValue] | None = None,
        clock_offset_ms: int = 0,
        network_delay: NetworkDelay | None = None,
        instruments: Iterable[str] | Mapping[str, str] | None = DEFAULT_INSTRUMENTS,
        success_messages: Sequence[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret
        self.enforce_limits = enforce_limits
        self.ip_limit = ip_limit
        self.ip_window = ip_window
        self.ip_ban_seconds = ip_ban_seconds
        defaults = ENDPOINT_LIMITS if endpoint_limits is None else endpoint_limits
        self.endpoint_limits: dict[str, LimitValue] = {
            key: check_limit(key, value) for key, value in defaults.items()
        }
        # uid -> budget key (or path) -> that account's own limit.
        self._uid_limits: dict[str, dict[str, LimitValue]] = {}
        self.clock_offset_ms = clock_offset_ms
        self.network_delay = network_delay
        self.success_messages: tuple[str, ...] | None = (
            None if success_messages is None else tuple(success_messages)
        )
        self.requests: list[RecordedRequest] = []

        self.instruments = Instruments(instruments)
        self._accounts = Accounts()
        self._faults: list[Injection] = []
        self._windows = Windows()
        self._fixtures = Fixtures()
        self._successes = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._delay_draws: DelayDraws | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Future[None] | None = None
        self._url: str | None = None
        self._start_state: _Start | None = None
        #: The private WebSocket stream at ``/v5/private`` (`bybit_async.testing.stream`).
        self.stream = StreamHub(self)
        self.add_account(api_key, api_secret, uid=uid)

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

    @property
    def port_number(self) -> int:
        """The port it listens on; only available once started."""
        return int(self.url.rpartition(":")[2])

    async def start(self) -> None:
        """Start serving; binds *host* and *port* (0 picks a free port).

        The state at this moment is what `reset` restores.
        """
        if self._runner is not None or self._closing is not None:
            raise RuntimeError("the simulator was already started")
        # Exists before the port opens: a stalled request waits on it.
        self._closing = asyncio.get_running_loop().create_future()
        from .control import control_handler

        app = web.Application()
        app.router.add_route("*", CONTROL_PREFIX + "{tail:.*}", control_handler(self))
        self.stream.install(app)
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
        self._start_state = self._snapshot()

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

    def _snapshot(self) -> _Start:
        settings = {name: copy.deepcopy(getattr(self, name)) for name in _SETTINGS}
        return _Start(
            self._accounts.snapshot(),
            copy.deepcopy(self.instruments),
            settings,
            dict(self._fixtures.routes),
        )

    def reset(self) -> None:
        """Go back to the state at `start`: accounts, positions, instruments, limits
        (per-UID ones included), fixture routes, clock offset, delay and success
        messages; forget the request log, queued
        faults, rate-limit windows and IP bans.
        """
        start = self._start_state if self._start_state is not None else self._snapshot()
        self._accounts = start.accounts.snapshot()
        self.instruments = copy.deepcopy(start.instruments)
        self._fixtures.routes = dict(start.fixtures)
        for name, value in start.settings.items():
            setattr(self, name, copy.deepcopy(value))
        self.requests.clear()
        self._faults.clear()
        self._windows.clear()
        self._successes = 0
        self._delay_draws = None
        self.stream.reset()

    # -- clock -----------------------------------------------------------

    def server_time_ms(self) -> int:
        """The server's clock in milliseconds: wall clock plus `clock_offset_ms`."""
        return _wall_ns() // 1_000_000 + self.clock_offset_ms

    def server_time_ns(self) -> int:
        """The server's clock in nanoseconds."""
        return _wall_ns() + self.clock_offset_ms * 1_000_000

    # -- faults and inspection ---------------------------------------------

    def inject(self, fault: Fault, *, path: str | None = None, times: int = 1) -> None:
        """Queue *fault* for the next *times* requests to *path*.

        A *path* of ``None`` matches every signed path (all of ``/v5/`` but
        market data); a fault for a market path, or one outside ``/v5/``, must
        name it.
        Queued faults apply first in, first out, one per request.  Edge faults
        are taken as a request arrives; a `Fault.ret_code` only by a request
        that passes authentication, so one that fails it leaves the fault
        queued.  Requests refused by the IP limit consume none.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times!r}")
        self._faults.append(Injection(fault, path, times))

    @property
    def faults(self) -> list[tuple[Fault, str | None, int]]:
        """The queued faults: (fault, path, times left), first to apply first."""
        return [(i.fault, i.path, i.remaining) for i in self._faults]

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def reset_limits(self) -> None:
        """Forget all rate-limit windows and IP bans."""
        self._windows.clear()

    # -- request handling --------------------------------------------------

    def _draws(self, delay: NetworkDelay) -> DelayDraws:
        draws = self._delay_draws
        if draws is None or draws.delay is not delay:
            # A new NetworkDelay (set at run time) starts its own seeded streams.
            draws = self._delay_draws = DelayDraws(delay)
        return draws

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        delay = self.network_delay
        if delay is not None and await self._wait(self._draws(delay).inbound()):
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
            timestamp=None if ts is None else parse_uint(ts),
            signature=headers.get("X-BAPI-SIGN"),
            # Wall-clock ms of the arrival, for the request log.
            time_ms=_wall_ns() // 1_000_000,
        )
        index = len(self.requests)
        self.requests.append(record)
        if self._waiters:
            self._notify()

        path = record.path
        signed = is_signed(path)
        fault: Fault | None = None
        response: web.Response | None
        ret_code: int | None = None
        if unreadable:
            response = text_response(413, "request body too large")
        elif self.enforce_limits and self._windows.ip_rejects(
            request.remote or "", at, self.ip_limit, self.ip_window, self.ip_ban_seconds
        ):
            response = text_response(403, "access too frequent")
        else:
            if self._faults:
                fault = self._take_fault(path, signed, edge=True)
                if fault is not None:
                    # Show the fault on the record while the request is held or handled.
                    record = self._settle(index, record, 0, None, fault)
            response, ret_code, fault = await self._respond(request, record, signed, fault)

        if delay is not None and response is not None:
            delay = self.network_delay
            if delay is not None and await self._wait(self._draws(delay).outbound()):
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
                r.time_ms,
            )
            self.requests[index] = record
        return record

    async def _respond(
        self,
        request: web.Request,
        record: RecordedRequest,
        signed: bool,
        fault: Fault | None,
    ) -> tuple[web.Response | None, int | None, Fault | None]:
        """Return the response (None: drop the connection), its retCode and the fault applied."""
        if fault is not None:
            kind = fault.kind
            if kind == "http_status":
                return text_response(fault.status, fault.body), None, fault
            if kind == "html":
                return html_response(fault.status), None, fault
            if kind == "drop" and not fault.after_execution:
                return None, None, fault
            if kind == "stall" and await self._wait(fault.seconds):
                return None, None, fault
        response, ret_code, api_fault = self._dispatch(request, record, signed)
        if fault is not None and fault.kind == "drop":
            return None, None, fault
        return response, ret_code, api_fault or fault

    async def _wait(self, seconds: float | None) -> bool:
        """Wait *seconds* (None: forever); return True if released by close() instead."""
        closing = self._closing
        assert closing is not None
        if not closing.done():
            await asyncio.wait((closing,), timeout=seconds)
        return closing.done()

    def _take_fault(self, path: str, private: bool, *, edge: bool) -> Fault | None:
        for i, injection in enumerate(self._faults):
            if path == injection.path or (injection.path is None and private):
                if injection.fault.edge != edge:
                    # FIFO: a fault for the other stage is first in line.
                    return None
                injection.remaining -= 1
                if injection.remaining <= 0:
                    del self._faults[i]
                return injection.fault
        return None

    def _dispatch(
        self, request: web.Request, record: RecordedRequest, signed: bool
    ) -> tuple[web.Response, int | None, Fault | None]:
        path = record.path
        if not path.startswith(V5_PREFIX):
            # Not Bybit's wording: a test that reaches a path the simulator does
            # not serve must not read it as a wrong path.
            text = (
                f"404 not implemented by the simulator: {request.method} {path} "
                f"(it serves paths under {V5_PREFIX}; see BybitSimulator.add_route)"
            )
            return text_response(404, text), None, None
        # One clock reading per request: the timestamp check, the limit headers and "time".
        now_ms = self.server_time_ms()
        user: User | None = None
        key: ApiKey | None = None
        if signed:
            checked = authenticate(
                self._accounts, record.method, request.headers, record.query, record.body, now_ms
            )
            if isinstance(checked, Rejection):
                if checked.code is None:
                    return text_response(checked.status, checked.msg), None, None
                answer = self._envelope(checked.code, checked.msg, None, None, now_ms)
                return answer, checked.code, None
            key = checked
            user = self._accounts.users[key.uid]
        params = parse_params(record.method, record.query, record.body)
        headers: Headers | None = None
        limit: EndpointLimit | None = None
        budget = ""
        if key is not None:
            category = params.get("category") if isinstance(params, dict) else None
            budget = budget_key(path, category)
            limit = lookup(budget, self._uid_limits.get(key.uid), self.endpoint_limits)
        # Taken only now: a request that fails authentication leaves it queued.
        if self._faults and (fault := self._take_fault(path, signed, edge=False)) is not None:
            if limit is not None and key is not None:
                if fault.code == 10006:
                    # Refused as a real 10006 is: not counted.
                    headers = self._windows.exceeded(key.uid, budget, limit, now_ms)
                else:
                    _, headers = self._windows.admit(
                        key.uid, budget, record.at, limit, False, now_ms
                    )
            return self._envelope(fault.code, fault.msg, None, headers, now_ms), fault.code, fault
        if limit is not None and key is not None:
            admitted, headers = self._windows.admit(
                key.uid, budget, record.at, limit, self.enforce_limits, now_ms
            )
            if not admitted:
                return (
                    self._envelope(10006, DEFAULT_MESSAGES[10006], None, headers, now_ms),
                    10006,
                    None,
                )
        fixture = self._fixtures.get(record.method, path) if self._fixtures.routes else None
        handler = ROUTES.get((record.method, path)) if fixture is None else None
        if fixture is not None:
            code, msg, result = fixture.answer()
        elif handler is None:
            msg = (
                f"Route not found: {record.method} {path} is not implemented by the "
                "simulator; add a fixture route for it"
            )
            body = self._envelope_bytes(10017, msg, None, now_ms)
            response = web.Response(
                status=404, body=body, content_type="application/json", headers=headers
            )
            return response, 10017, None
        elif isinstance(params, str):
            _log.info("%s %s refused: %s", record.method, path, params)
            return self._envelope(10001, params, None, headers, now_ms), 10001, None
        else:
            call = Call(self, user, params, now_ms, None if key is None else key.api_key)
            try:
                code, msg, result = handler(call)
            except Refused as refused:
                code, msg, result = refused.outcome
            except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError):
                # Malformed input the handler did not foresee: Bybit's answer, never a 500.
                _log.warning("unforeseen input to %s %s", record.method, path, exc_info=True)
                code, msg, result = 10001, "params error", {}
        if msg is None:
            msg = self._success_message()
        elif code == 10001:
            # Bad input is answered as Bybit does and logged; the simulator goes on.
            _log.info("%s %s refused: %s", record.method, path, msg)
        return self._envelope(code, msg, result, headers, now_ms), code, None

    def _success_message(self) -> str:
        messages = self.success_messages
        if not messages:
            return "OK"
        self._successes += 1
        return messages[(self._successes - 1) % len(messages)]

    def _envelope(
        self,
        code: int,
        msg: str,
        result: dict[str, Any] | None = None,
        headers: Headers | None = None,
        now_ms: int | None = None,
    ) -> web.Response:
        body = self._envelope_bytes(code, msg, result, now_ms)
        return web.Response(body=body, content_type="application/json", headers=headers)

    def _envelope_bytes(
        self, code: int, msg: str, result: dict[str, Any] | None, now_ms: int | None
    ) -> bytes:
        return orjson.dumps(
            {
                "retCode": code,
                "retMsg": msg,
                "result": {} if result is None else result,
                "retExtInfo": {},
                # The clock read for the limit headers, if any: one reading per answer.
                "time": self.server_time_ms() if now_ms is None else now_ms,
            }
        )
