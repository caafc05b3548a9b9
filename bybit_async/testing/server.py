"""The simulator's HTTP server: request handling, authentication and the routes it serves."""

from __future__ import annotations

import asyncio
import copy
import hmac
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from ..ratelimit import IP_LIMIT, IP_WINDOW
from .accounts import SIDES, Accounts, ApiKey, Instruments, Position, User, check_symbol
from .faults import (
    DelayDraws,
    Fault,
    Injection,
    NetworkDelay,
    html_response,
    text_response,
)
from .limits import ENDPOINT_LIMITS, Headers, Windows
from .protocol import (
    CONTROL_PREFIX,
    DEFAULT_INSTRUMENTS,
    DEFAULT_MESSAGES,
    MARKET_TIME_PATH,
    NOT_MODIFIED_MSG,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
)
from .stream import StreamHub

_DEFAULT_RECV_WINDOW = 5000
# Bybit rejects timestamps this many ms or more ahead of its clock.
_MAX_AHEAD_MS = 1000

# The one wall-clock hook: tests that need a fixed clock replace it.
_wall_ns: Callable[[], int] = time.time_ns


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received and answered it.

    *status* is 0 and *ret_code* ``None`` while the request is being handled,
    and for requests that got no answer (dropped, released at close, or whose
    client had gone).  *at* is `time.monotonic` at arrival, after any
    inbound network delay; rate limits are counted at that time.
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

    def to_json(self) -> dict[str, Any]:
        """The record as the control API's request log shows it."""
        return {
            "at": self.at,
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


# (retCode, retMsg, result) as a handler's outcome; retMsg None means the success message.
_Outcome = tuple[int, str | None, dict[str, Any]]


class _Route(NamedTuple):
    method: str
    private: bool
    handler: Callable[[BybitSimulator, User | None, RecordedRequest], _Outcome]
    # retMsg of a success, as Bybit's page for the endpoint shows it.
    success_msg: str


@dataclass
class _Start:
    """What `BybitSimulator.reset` goes back to."""

    accounts: Accounts
    instruments: Instruments
    settings: dict[str, Any]


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
)


class BybitSimulator:
    """A Bybit V5 REST server on a local port, with one account to start with.

    The default account's credentials are *api_key* and *api_secret*, in UID
    *uid* (None: a made-up one).  *enforce_limits* turns on the per-IP limit
    (*ip_limit* requests per *ip_window* seconds, then a ban of
    *ip_ban_seconds*) and the per-UID, per-endpoint limits in
    *endpoint_limits* (requests per rolling second; ``None`` means
    `ENDPOINT_LIMITS`); with it off, signed answers still carry the
    ``X-Bapi-Limit`` headers.  The server's clock runs *clock_offset_ms*
    ahead of the wall clock.  *network_delay* delays each request before it
    arrives (is recorded and counted) and each answer before it is sent; see
    `NetworkDelay`.  *instruments* lists the symbols the server knows
    (symbols, or a mapping of symbol to settle coin; ``None`` accepts any
    well-formed symbol); others get retCode 10001 ``params error: symbol
    invalid``.  *success_messages*, if given, are the retMsg values of
    successes in turn (Bybit's vary between endpoints: see
    `SUCCESS_MESSAGES`); otherwise each endpoint answers as its Bybit page
    shows.

    Limits, the offset, the delay and the success messages are plain
    attributes and may be changed at any time; `reset` puts them, the
    accounts and positions back as they were at `start`.  Use it as an
    async context manager, or call `start` and `close`.  Paths under
    ``/_sim/`` are the control API (see the documentation).
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
        endpoint_limits: Mapping[str, int] | None = None,
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
        self.endpoint_limits: dict[str, int] = dict(
            ENDPOINT_LIMITS if endpoint_limits is None else endpoint_limits
        )
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
        settings = {name: copy.copy(getattr(self, name)) for name in _SETTINGS}
        return _Start(self._accounts.snapshot(), copy.deepcopy(self.instruments), settings)

    def reset(self) -> None:
        """Go back to the state at `start`: accounts, positions, instruments, limits,
        clock offset, delay and success messages; forget the request log, queued
        faults, rate-limit windows and IP bans.
        """
        start = self._start_state if self._start_state is not None else self._snapshot()
        self._accounts = start.accounts.snapshot()
        self.instruments = copy.deepcopy(start.instruments)
        for name, value in start.settings.items():
            setattr(self, name, copy.copy(value))
        self.requests.clear()
        self._faults.clear()
        self._windows.clear()
        self._successes = 0
        self._delay_draws = None
        self.stream.reset()

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
        uid: str | int | None = None,
    ) -> str:
        """Add an API key and return its UID; a key added again replaces the old one.

        Give the HMAC *api_secret*, or the PEM *rsa_public_key* registered for a
        self-made RSA key (this needs the ``cryptography`` package).  With
        *uid* None the key gets a new UID of its own; with the UID of an
        existing key it joins that account, sharing its positions and its
        per-UID rate limits (*margin_mode* is then the account's already).
        *margin_mode* ``"portfolio"`` is account-wide; ``"isolated"`` or
        ``"cross"`` is the mode new positions start in.
        """
        return self._accounts.add(api_key, api_secret, rsa_public_key, margin_mode, uid).uid

    def add_instruments(self, symbols: Iterable[str] | Mapping[str, str]) -> None:
        """List more symbols (a mapping gives their settle coins: ``USDT`` or ``USDC``)."""
        self.instruments.add(symbols)

    def set_position(
        self,
        symbol: str,
        *,
        api_key: str | None = None,
        margin_mode: str | None = None,
        hedge: bool | None = None,
        auto_add_margin: int | None = None,
        size: str | float | None = None,
        side: str | None = None,
        position_idx: int | None = None,
    ) -> None:
        """Set up *symbol*'s position(s) in an account (the default one if *api_key* is None).

        *margin_mode* is ``"isolated"`` or ``"cross"``.  *hedge* switches
        between one-way (index 0) and hedge mode (indices 1 and 2); switching
        starts the new positions empty with auto-add-margin off.
        *auto_add_margin*, *size* and *side* (``"Buy"``, ``"Sell"`` or ``""``)
        apply to the position *position_idx*, or to every position of the
        symbol if it is None; a hedge-mode position with a size takes its
        side from its index.  Arguments left ``None`` keep their current
        value.  The symbol must be a listed instrument.
        """
        if margin_mode is not None and margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be 'isolated' or 'cross', got {margin_mode!r}")
        if auto_add_margin is not None and auto_add_margin not in (0, 1):
            raise ValueError(f"auto_add_margin must be 0 or 1, got {auto_add_margin!r}")
        if side is not None and side not in SIDES:
            raise ValueError(f"side must be 'Buy', 'Sell' or '', got {side!r}")
        size_text = None if size is None else _decimal_text(size)
        check_symbol(symbol)
        if symbol not in self.instruments:
            raise ValueError(f"{symbol} is not a listed instrument; see add_instruments()")
        positions = Accounts.positions(self._user(api_key), symbol)
        if hedge is not None and hedge != (0 not in positions):
            mode = next(iter(positions.values())).margin_mode
            indices = (1, 2) if hedge else (0,)
            positions.clear()
            positions.update({i: Position(symbol, i, 0, mode) for i in indices})
        if position_idx is not None and position_idx not in positions:
            raise ValueError(f"{symbol} has no position_idx {position_idx}")
        for idx, position in positions.items():
            if margin_mode is not None:
                position.margin_mode = margin_mode
            if position_idx is not None and idx != position_idx:
                continue
            if auto_add_margin is not None:
                position.auto_add_margin = auto_add_margin
            if size_text is not None:
                position.size = size_text
            if side is not None:
                position.side = side
            if size_text is not None or side is not None:
                if float(position.size) == 0:
                    position.side = ""
                elif idx:
                    position.side = "Buy" if idx == 1 else "Sell"
                elif not position.side:
                    position.side = "Buy"
        for position in positions.values():
            self.stream.changed(self.uid(api_key), position)

    def position(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> Position:
        """Return the live `Position`, creating the symbol's defaults on first use."""
        positions = Accounts.positions(self._user(api_key), symbol)
        try:
            return positions[position_idx]
        except KeyError:
            mode = "hedge" if 0 not in positions else "one-way"
            raise ValueError(
                f"{symbol} is in {mode} mode and has no position_idx {position_idx}"
            ) from None

    def positions(self, *, api_key: str | None = None) -> list[Position]:
        """Every position the account has set up or touched, by symbol and index."""
        user = self._user(api_key)
        return [
            user.positions[symbol][idx]
            for symbol in sorted(user.positions)
            for idx in sorted(user.positions[symbol])
        ]

    def auto_add_margin(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> int:
        """Return the auto-add-margin flag (0 or 1) of one position."""
        return self.position(symbol, position_idx, api_key=api_key).auto_add_margin

    def uid(self, api_key: str | None = None) -> str:
        """The UID of *api_key* (the default key if None)."""
        return self._user(api_key).uid

    def api_keys(self) -> dict[str, str]:
        """Every API key and its UID."""
        return {key.api_key: key.uid for key in self._accounts.keys.values()}

    def _user(self, api_key: str | None) -> User:
        return self._accounts.user(self.api_key if api_key is None else api_key)

    # -- faults and inspection ---------------------------------------------

    def inject(self, fault: Fault, *, path: str | None = None, times: int = 1) -> None:
        """Queue *fault* for the next *times* requests to *path*.

        A *path* of ``None`` matches only the signed endpoints the simulator
        serves; a fault for ``/v5/market/time`` or an unknown path must name it.
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
        self._windows.clear()

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
            timestamp=None if ts is None else _parse_uint(ts),
            signature=headers.get("X-BAPI-SIGN"),
        )
        index = len(self.requests)
        self.requests.append(record)
        if self._waiters:
            self._notify()

        path = record.path
        route = _ROUTES.get(path)
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
                fault = self._take_fault(path, route, edge=True)
                if fault is not None:
                    # Show the fault on the record while the request is held or handled.
                    record = self._settle(index, record, 0, None, fault)
            response, ret_code, fault = await self._respond(request, record, route, fault)

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
            )
            self.requests[index] = record
        return record

    async def _respond(
        self,
        request: web.Request,
        record: RecordedRequest,
        route: _Route | None,
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
        response, ret_code, api_fault = self._dispatch(request, record, route)
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

    def _take_fault(self, path: str, route: _Route | None, *, edge: bool) -> Fault | None:
        private = route is not None and route.private
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
        self, request: web.Request, record: RecordedRequest, route: _Route | None
    ) -> tuple[web.Response, int | None, Fault | None]:
        if route is None or request.method != route.method:
            # Not Bybit's wording: a test that reaches a path the simulator does
            # not serve must not read it as a wrong path.
            served = ", ".join(f"{r.method} {path}" for path, r in _ROUTES.items())
            text = (
                f"404 not implemented by the simulator: {request.method} {request.path} "
                f"(it implements {served})"
            )
            return text_response(404, text), None, None
        if not route.private:
            fault = self._take_fault(record.path, route, edge=False) if self._faults else None
            if fault is not None:
                return self._envelope(fault.code, fault.msg), fault.code, fault
            code, msg, result = route.handler(self, None, record)
            return self._envelope(code, self._message(route, msg), result), code, None
        # One clock reading per request: the timestamp check, the limit headers and "time".
        now_ms = self.server_time_ms()
        key_or_reply = self._authenticate(request.headers, record, now_ms)
        if not isinstance(key_or_reply, ApiKey):
            return (*key_or_reply, None)
        key = key_or_reply
        path = record.path
        headers: Headers | None = None
        limit = self.endpoint_limits.get(path)
        # Taken only now: a request that fails authentication leaves it queued.
        if self._faults and (fault := self._take_fault(path, route, edge=False)) is not None:
            if limit is not None:
                if fault.code == 10006:
                    # Refused as a real 10006 is: not counted.
                    headers = self._windows.exceeded(key.uid, path, limit, now_ms)
                else:
                    _, headers = self._windows.admit(key.uid, path, record.at, limit, False, now_ms)
            return self._envelope(fault.code, fault.msg, None, headers, now_ms), fault.code, fault
        if limit is not None:
            admitted, headers = self._windows.admit(
                key.uid, path, record.at, limit, self.enforce_limits, now_ms
            )
            if not admitted:
                return (
                    self._envelope(10006, DEFAULT_MESSAGES[10006], None, headers, now_ms),
                    10006,
                    None,
                )
        code, msg, result = route.handler(self, self._accounts.users[key.uid], record)
        if msg is None:
            msg = self._success_message(route)
        return self._envelope(code, msg, result, headers, now_ms), code, None

    def _message(self, route: _Route, msg: str | None) -> str:
        return msg if msg is not None else self._success_message(route)

    def _success_message(self, route: _Route) -> str:
        messages = self.success_messages
        if not messages:
            return route.success_msg
        self._successes += 1
        return messages[(self._successes - 1) % len(messages)]

    def _authenticate(
        self, headers: Mapping[str, str], record: RecordedRequest, server_time: int
    ) -> ApiKey | tuple[web.Response, int | None]:
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
            return text_response(401, f"401 Unauthorized: missing {', '.join(missing)}"), None
        key = self._accounts.keys.get(api_key)
        if key is None:
            return self._error(10003, DEFAULT_MESSAGES[10003])
        rw_text = headers.get("X-BAPI-RECV-WINDOW")
        recv_window = _DEFAULT_RECV_WINDOW if rw_text is None else _parse_uint(rw_text)
        if recv_window is None:
            return self._error(10001, "params error: X-BAPI-RECV-WINDOW must be an integer")
        ts = record.timestamp
        if ts is None:
            return self._error(10001, "params error: X-BAPI-TIMESTAMP must be an integer")
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
        # X-BAPI-RECV-WINDOW contributes nothing.  GET signs the query
        # string exactly as sent, percent-encoding and order included.
        payload = record.body if record.method == "POST" else record.query.encode()
        origin = (ts_text + api_key + (rw_text or "")).encode() + payload
        if key.rsa_verify is not None:
            valid = key.rsa_verify(origin, sign.encode("utf-8", "backslashreplace"))
        else:
            expected = key.hmac_hex(origin)
            valid = hmac.compare_digest(expected, sign.encode("utf-8", "backslashreplace"))
        if not valid:
            shown = origin.decode("utf-8", "replace")
            return self._error(10004, f"error sign! origin_string[{shown}]")
        return key

    def _envelope(
        self,
        code: int,
        msg: str,
        result: dict[str, Any] | None = None,
        headers: Headers | None = None,
        now_ms: int | None = None,
    ) -> web.Response:
        body = orjson.dumps(
            {
                "retCode": code,
                "retMsg": msg,
                "result": {} if result is None else result,
                "retExtInfo": {},
                # The clock read for the limit headers, if any: one reading per answer.
                "time": self.server_time_ms() if now_ms is None else now_ms,
            }
        )
        return web.Response(body=body, content_type="application/json", headers=headers)

    def _error(self, code: int, msg: str) -> tuple[web.Response, int]:
        return self._envelope(code, msg), code

    # -- endpoints -----------------------------------------------------------

    def _market_time(self, user: User | None, record: RecordedRequest) -> _Outcome:
        ns = _wall_ns() + self.clock_offset_ms * 1_000_000
        return 0, None, {"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}

    def _set_auto_add_margin(self, user: User | None, record: RecordedRequest) -> _Outcome:
        assert user is not None
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
        if symbol not in self.instruments:
            return _params_error("symbol invalid")
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

        positions = Accounts.positions(user, symbol)
        hedge = 0 not in positions
        if (idx in (1, 2)) != hedge:
            return 10001, "position idx not match position mode", {}
        position = positions[0 if idx is None else idx]
        if user.margin_mode == "portfolio":
            return 110077, DEFAULT_MESSAGES[110077], {}
        if position.margin_mode != "isolated":
            return 110076, DEFAULT_MESSAGES[110076], {}
        if position.auto_add_margin == flag:
            return 10001, NOT_MODIFIED_MSG, {}
        position.auto_add_margin = flag
        self.stream.changed(user.uid, position)
        return 0, None, {}

    def _position_list(self, user: User | None, record: RecordedRequest) -> _Outcome:
        assert user is not None
        params: dict[str, str] = {}
        for name, value in parse_qsl(record.query, keep_blank_values=True):
            if name in params:
                return _params_error(f"{name} given twice")
            params[name] = value
        category = params.get("category")
        if not category:
            return _params_error("category is required")
        if category != "linear":
            return _params_error("category only support linear")
        limit_text = params.get("limit", "20")
        limit = _parse_uint(limit_text)
        if limit is None or not 1 <= limit <= 200:
            return _params_error("limit must be an integer from 1 to 200")
        cursor = params.get("cursor", "")
        offset = 0
        if cursor:
            parsed = _parse_uint(cursor.removeprefix("page-"))
            if not cursor.startswith("page-") or parsed is None:
                return _params_error("cursor invalid")
            offset = parsed
        symbol = params.get("symbol")
        settle = params.get("settleCoin")
        if symbol:
            if symbol not in self.instruments:
                return _params_error(f"symbol invalid {symbol}")
            found = sorted(Accounts.positions(user, symbol).items())
            listed = [position for _, position in found]
        elif settle:
            listed = [
                position
                for name in sorted(user.positions)
                if self.instruments.settle_coin(name) == settle
                for _, position in sorted(user.positions[name].items())
                if float(position.size) > 0
            ]
        else:
            return _params_error("symbol or settleCoin is required")
        page = listed[offset : offset + limit]
        more = offset + limit < len(listed)
        return (
            0,
            None,
            {
                "list": [position.to_json() for position in page],
                "nextPageCursor": f"page-{offset + limit}" if more else "",
                "category": "linear",
            },
        )


#: The routes: path -> (method, signed, handler, success retMsg); the one table of them.
_ROUTES: Mapping[str, _Route] = {
    MARKET_TIME_PATH: _Route("GET", False, BybitSimulator._market_time, "OK"),
    SET_AUTO_ADD_MARGIN_PATH: _Route("POST", True, BybitSimulator._set_auto_add_margin, "OK"),
    POSITION_LIST_PATH: _Route("GET", True, BybitSimulator._position_list, "OK"),
}


def _params_error(problem: str) -> _Outcome:
    return 10001, f"params error: {problem}", {}


def _parse_uint(text: str) -> int | None:
    # int() would also take signs, spaces, underscores and non-ASCII digits.
    if text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return None


def _decimal_text(size: str | float) -> str:
    value = float(size)
    if not value >= 0:
        raise ValueError(f"size must be a non-negative number, got {size!r}")
    return str(size) if isinstance(size, str) else format(value, "g")
