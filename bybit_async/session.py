"""The session: one connection pool, limiter, clock and retry policy per process.

Every request goes through `BybitSession.request`, which serializes the
parameters once and then, for each attempt, takes a permit from the limiter,
stamps and signs the request afresh, sends it, gives the permit back when the
answer arrives and reads the answer (`bybit_async.answers`).  Endpoint
methods such as `BybitSession.set_auto_add_margin` only validate their
arguments and call it.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Final, TypeVar, cast

import aiohttp
import orjson
from yarl import URL

from ._version import __version__
from .answers import AnswerReader
from .calls import CallsUnderWay
from .clock import ServerClock, TimeSample, parse_time_nano
from .egress import Egress, egress_for, egress_name
from .encoding import encode_query, json_body
from .endpoint_limits import CATEGORY_KEYS, budget_key
from .errors import (
    BybitAPIError,
    BybitError,
    InvalidResponseError,
    LimiterUnavailableError,
    SessionClosedError,
)
from .events import (
    LIMITER_WAIT_REPORTED,
    ClockSynced,
    Event,
    EventHook,
    LimiterWaited,
    RetryScheduled,
    SessionClosed,
    reason_of,
)
from .http import (
    CONNECTED,
    Connector,
    close_sockets,
    frameless,
    read_capped,
    scrubbed,
    transport_error,
)
from .models import ApiResponse, PositionIdx
from .positions import EnsureReport, EnsureRow, Position, auto_add_margin_params
from .positions import ensure_auto_add_margin as _ensure_auto_add_margin
from .positions import get_positions as _get_positions
from .ratelimit import (
    Limiter,
    LocalLimiter,
    Permit,
    RateLimits,
    shared_ip_budget,
)
from .retry import RetryPolicy, RetryRule
from .signing import Signer, signer_for
from .stats import SessionStats, StatsRecorder
from .stream import PositionStream, StreamLink, private_stream_url

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMITS",
    "HOSTS",
    "BybitSession",
    "auto_add_margin_params",
]

_log = logging.getLogger("bybit_async")

T = TypeVar("T")

#: Bybit's REST hosts by name; any of these names, or a URL, may be given as ``base_url``.
HOSTS: Mapping[str, str] = MappingProxyType(
    {
        "mainnet": "https://api.bybit.com",
        "bytick": "https://api.bytick.com",
        "testnet": "https://api-testnet.bybit.com",
        "demo": "https://api-demo.bybit.com",
        "nl": "https://api.bybit.nl",
        "tr": "https://api.bybit.tr",
        "kz": "https://api.bybit.kz",
        "ge": "https://api.bybitgeorgia.ge",
        "ae": "https://api.bybit.ae",
        "id": "https://api.bybit.id",
        "eu": "https://api.bybit.eu",
        "jp": "https://api.manepa.jp",
    }
)

#: Bybit's published limits: 600 requests per 5 s per IP, and the per-endpoint table.
DEFAULT_RATE_LIMITS: Final = RateLimits()

#: The largest answer body read, after decompression: a full page of the
#: position list is far below it, and an endless or inflating body stops here.
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

SET_AUTO_ADD_MARGIN: Final = "/v5/position/set-auto-add-margin"
SERVER_TIME: Final = "/v5/market/time"

# A V5 path: no query, no escapes, nothing a URL parser could read two ways.
_PATH = re.compile(r"/v5(?:/[A-Za-z0-9_-]+)+\Z")


def _is_coroutine_function(hook: object) -> bool:
    """Whether *hook* is a coroutine function, a partial of one, or has one as ``__call__``."""
    while isinstance(hook, functools.partial):
        hook = hook.func
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(type(hook).__call__)


def _check_deadline(deadline: object) -> None:
    _check_positive("deadline", deadline, (int, float))
    if not math.isfinite(deadline):  # type: ignore[arg-type]
        raise ValueError(f"deadline must be finite, got {deadline!r}")


def _check_positive(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not value > 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be positive, got {value!r}")


class BybitSession:
    """An asyncio client for Bybit's V5 REST API.

    Create one per process and share it between coroutines: it owns the
    connection pool, the rate limiter and the server clock.  Use it as an
    async context manager, or call `close` when done.  A session belongs to
    the event loop of its first call; using it from another loop raises
    `RuntimeError` before anything is sent.

    *api_secret* is the HMAC secret of a system-made key, or the PEM private
    key of a self-made RSA key (an unencrypted PEM private key is recognised;
    `sign_type` tells which was chosen).  For an encrypted key or any
    other signer, pass ``signer=`` (such as `RsaSigner`)
    instead of *api_secret*.

    *base_url* is a URL or a name from `HOSTS`; *testnet* and *demo*
    pick those hosts.  Redirects are never followed: the signed headers go to
    that host only.  *recv_window* (ms) is how old a request may arrive;
    *timeout* (s) bounds each attempt, and *deadline* (s) a whole call,
    retries, back-off and waits for the limiter included (None: attempts
    times *timeout* plus back-off).  Failed requests are retried up to
    *max_retries* times (see `bybit_async.retry`), waiting between
    *backoff_initial* and *backoff_max* seconds.  *rate_limits* are the limits
    kept on the client side; None turns client-side limiting off, and a
    *limiter* (such as `RedisLimiter`) replaces the built-in one.  A server
    that asks for a wait longer than *max_server_wait* seconds (a rate-limit
    reset or ``Retry-After`` far ahead) is not waited for: the call raises
    with `BybitError.retry_after` set.  After HTTP 403 or retCode 10018 (an
    IP ban) the session sends nothing for *ban_cooldown* seconds: calls raise
    `SessionHaltedError` at once (see `resume`).  Every session of a process
    that leaves through the same *egress* shares the IP limit's permits and
    the halt after a ban (`bybit_async.egress`); by default the egress is
    named after *proxy* and *base_url*'s host, so sessions for several
    accounts on one host share one IP budget without being told.  An answer body over
    *max_response_bytes* (counted after decompression) raises
    `InvalidResponseError`.  *proxy* is an HTTP proxy URL.

    *on_event* is called with an event (`bybit_async.events`) for each
    attempt, retry, limiter wait, call, clock sync, halt and close; one that
    raises is logged and the call goes on.  It is called synchronously on the
    request path: a coroutine function raises `TypeError` here (hand the event
    to a queue instead), and a returned coroutine is closed and counted as a
    callback error.  The counts and timings that
    `stats` returns are kept unless *stats* is false.  *trace_configs* go
    to the `aiohttp.ClientSession` (for tracing, such as OpenTelemetry's).

    *stream_url* is the private WebSocket stream's URL (`stream_positions`);
    None derives it from *base_url* (see `bybit_async.stream`).
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str | bytes | None = None,
        *,
        base_url: str | None = None,
        testnet: bool = False,
        demo: bool = False,
        recv_window: int = 5000,
        timeout: float = 10.0,
        max_retries: int = 3,
        rate_limits: RateLimits | None = DEFAULT_RATE_LIMITS,
        limiter: Limiter | None = None,
        signer: Signer | None = None,
        proxy: str | None = None,
        max_connections: int = 100,
        backoff_initial: float = 0.25,
        backoff_max: float = 8.0,
        clock: ServerClock | None = None,
        ban_cooldown: float = 600.0,
        max_server_wait: float = 10.0,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_event: EventHook | None = None,
        stats: bool = True,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        egress: str | None = None,
        stream_url: str | None = None,
    ) -> None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str, got {type(api_key).__name__}")
        if not api_key or api_key != api_key.strip():
            raise ValueError("api_key must be a non-empty string without surrounding spaces")
        if signer is None:
            if api_secret is None or api_secret in ("", b""):
                raise ValueError("api_secret is required (or pass signer=)")
            signer = signer_for(api_secret)
        elif api_secret is not None:
            raise ValueError("pass either api_secret or signer, not both")
        _check_positive("recv_window", recv_window, int)
        _check_positive("timeout", timeout, (int, float))
        _check_positive("max_connections", max_connections, int)
        _check_positive("ban_cooldown", ban_cooldown, (int, float))
        _check_positive("max_server_wait", max_server_wait, (int, float))
        _check_positive("max_response_bytes", max_response_bytes, int)
        if deadline is not None:
            _check_deadline(deadline)
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable, got {type(on_event).__name__}")
        if on_event is not None and _is_coroutine_function(on_event):
            # Called on the request path, it could never be awaited there.
            raise TypeError(
                "on_event must be a plain function, not a coroutine function: it is "
                "called synchronously; to do async work, hand the event to a queue "
                "or to loop.create_task from a plain function"
            )
        if not isinstance(stats, bool):
            raise TypeError(f"stats must be a bool, got {stats!r}")
        if trace_configs is not None:
            trace_configs = list(trace_configs)
            if not all(isinstance(t, aiohttp.TraceConfig) for t in trace_configs):
                raise TypeError("trace_configs must be aiohttp.TraceConfig objects")
        if testnet and demo:
            raise ValueError("testnet and demo are different hosts: choose one")
        if base_url is None:
            base_url = HOSTS["testnet" if testnet else "demo" if demo else "mainnet"]
        elif testnet or demo:
            raise ValueError("base_url excludes testnet= and demo=")
        base_url = HOSTS.get(base_url, base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL or one of {sorted(HOSTS)}")
        # The private stream's URL (bybit_async.stream): a bad one fails here, before any I/O.
        self._stream_url = private_stream_url(base_url, stream_url)
        if proxy is not None and not proxy.startswith(("http://", "https://")):
            raise ValueError("proxy must be an http(s) URL")
        if egress is not None:
            if not isinstance(egress, str):
                raise TypeError(f"egress must be a str, got {type(egress).__name__}")
            if not egress.strip():
                raise ValueError("egress must be a non-empty name")
        # The IP limits of the process-wide budget this session joins, if it limits.
        self._ip_limits = rate_limits
        if limiter is None and rate_limits is not None:
            limiter = LocalLimiter(rate_limits)
        elif limiter is not None:
            limits = getattr(limiter, "limits", None)
            self._ip_limits = limits if isinstance(limits, RateLimits) else DEFAULT_RATE_LIMITS
        # A limiter shared between processes may name its budget after the key.
        bind_api_key = getattr(limiter, "bind_api_key", None)
        if bind_api_key is not None:
            bind_api_key(api_key)
        # ... and fit how long it keeps a permit to how long a request may take.
        bind_timeout = getattr(limiter, "bind_timeout", None)
        if bind_timeout is not None:
            bind_timeout(timeout)

        self._api_key = api_key
        self._base_url = base_url
        self._recv_window = recv_window
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._deadline = deadline
        self._max_response_bytes = max_response_bytes
        self._on_event = on_event
        self._stats = StatsRecorder() if stats else None
        # Whether anything observes: one test on the request path when nothing does.
        self._observed = on_event is not None or stats
        self._trace_configs = trace_configs
        # The exception types of on_event already logged with their traceback.
        self._callback_failures: set[type[BaseException]] = set()
        self._signer = signer
        self._limiter = limiter
        # A limiter may grant at once without a coroutine (LocalLimiter and
        # RedisLimiter do).  LocalLimiter's _take grants without making a
        # permit object: the session releases each permit exactly once.
        self._try_acquire: Callable[[str, bool], Permit | None] | None = (
            limiter._take
            if type(limiter) is LocalLimiter  # a subclass may grant its own way
            else getattr(limiter, "try_acquire", None)
        )
        self._proxy = proxy
        self._max_connections = max_connections
        self._clock = clock or ServerClock()
        # The clock's generation last reported: a sync shared by many callers is one event.
        self._clock_seen = self._clock.generation
        # The calls under way, and the halt after an IP ban.
        self._calls = CallsUnderWay(self._stats, self._emit if on_event is not None else None)
        self._retry = RetryPolicy(
            max_retries,
            initial_wait=backoff_initial,
            max_wait=backoff_max,
            max_server_wait=max_server_wait,
            sleep=self._calls.back_off,
        )
        self._ban_cooldown = ban_cooldown
        self._answers = AnswerReader(
            limiter=limiter,
            clock=self._clock,
            max_server_wait=max_server_wait,
            stats=self._stats,
            emit=self._emit if on_event is not None else None,
            halt=self._halt,
            ban_cooldown=ban_cooldown,
        )
        self._egress_name = egress if egress is not None else egress_name(base_url, proxy)
        # Joined at the first call, in the loop the session then belongs to.
        self._egress: Egress | None = None
        self._http: aiohttp.ClientSession | None = None
        self._closed = False
        # The loop of the first call: the pool, limiter and clock belong to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, URL] = {}
        # The constant part of the string to sign, and of the headers.
        self._key_window = f"{api_key}{recv_window}".encode()
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        self._auth_headers = {
            **self._headers,
            "X-BAPI-API-KEY": api_key,
            "X-BAPI-RECV-WINDOW": str(recv_window),
            # "2" is Bybit's only sign type; HMAC and RSA keys both send it.
            "X-BAPI-SIGN-TYPE": "2",
        }

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> BybitSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool and end every call still under way.

        Calls queued or in flight raise `SessionClosedError` (a cancelled
        caller still sees `asyncio.CancelledError`), and so does any later call.
        Closing twice is harmless.  After the session's event loop has closed
        (a second ``asyncio.run``, say), closing from another loop closes its
        connections without that loop; while that loop is still open,
        closing from another one raises `RuntimeError`.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            if not self._loop.is_closed():
                raise RuntimeError(
                    "this BybitSession belongs to another event loop, which is still "
                    "open: close it from a coroutine running in that loop"
                )
            self._closed = True
            self._abandon_pool()
            return
        if not self._closed and self._on_event is not None:
            self._emit(SessionClosed(time.time(), len(self._calls.tasks)))
        self._closed = True
        self._calls.close()
        self._clock.cancel(
            SessionClosedError("the session was closed", method="GET", path=SERVER_TIME)
        )
        if self._egress is not None:
            self._egress.detach(self)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    def _abandon_pool(self) -> None:
        """Close the pool's sockets when its event loop is gone, without that loop."""
        http, self._http = self._http, None
        if http is None:
            return
        connector = http.connector
        # aiohttp closes connections through their loop; a closed loop cannot run
        # that, so the sockets are closed here, and the pool marked closed, so
        # that neither a socket nor an "unclosed" warning outlives the session.
        if connector is not None:
            close_sockets(connector)
        http._connector = None

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    @property
    def base_url(self) -> str:
        """The host requests go to."""
        return self._base_url

    @property
    def sign_type(self) -> str:
        """How this session signs: ``"hmac"`` or ``"rsa"``."""
        return self._signer.sign_type

    @property
    def clock(self) -> ServerClock:
        """The session's estimate of the server clock."""
        return self._clock

    def __repr__(self) -> str:
        # Safe on a session whose __init__ failed part-way: tracebacks with
        # locals call repr on it, and a repr that raises breaks their formatting.
        api_key = getattr(self, "_api_key", None)
        key = api_key[:4] + "…" if isinstance(api_key, str) and len(api_key) > 4 else "…"
        base_url = getattr(self, "_base_url", None) or "(no host)"
        if "_closed" not in vars(self):
            state = "not initialised"
        else:
            state = "closed" if self._closed else "open"
        return f"<BybitSession {base_url} api_key={key!r} {state}>"

    def resume(self) -> None:
        """Send again before the cool-off after an IP ban has ended.

        Every session of the same egress resumes with this one.
        """
        if self._egress is not None:
            self._egress.resume()
        if self._calls.halted is not None:
            self._calls.resumed(early=True)

    @property
    def egress(self) -> str:
        """The name of the egress whose IP budget and ban this session shares."""
        return self._egress_name

    def egress_halted(
        self, halted: tuple[float, BybitError] | None, cooldown: float, early: bool
    ) -> None:
        """Take in a halt of this session's egress (called by `bybit_async.egress.Egress`)."""
        self._calls.egress_halted(halted, cooldown, early)

    def stats(self) -> SessionStats:
        """Return a snapshot of the session's counts and timings (`bybit_async.stats`).

        Raises `RuntimeError` for a session created with ``stats=False``.
        """
        if self._stats is None:
            raise RuntimeError("this session was created with stats=False")
        halted_until = self._calls.halted
        halted = halted_until is not None and halted_until[0] > time.monotonic()
        in_force = getattr(self._limiter, "limits_in_force", None)
        limits = in_force() if in_force is not None else {}
        return self._stats.snapshot(halted=halted, limits=limits)

    def _emit(self, event: Event) -> None:
        """Give *event* to ``on_event``; what it raises is logged, never passed on."""
        assert self._on_event is not None
        try:
            returned = self._on_event(event)
            if returned is not None and inspect.isawaitable(returned):
                if inspect.iscoroutine(returned):
                    returned.close()  # never awaited: no "never awaited" warning
                raise TypeError("on_event returned a coroutine, which is never awaited")
        except Exception as exc:
            if self._stats is not None:
                self._stats.callback_failed()
            first = type(exc) not in self._callback_failures
            self._callback_failures.add(type(exc))
            # A traceback once per kind: a broken callback must not flood the log.
            _log.error(
                "on_event raised %s on %s%s",
                type(exc).__name__,
                type(event).__name__,
                "" if first else " (again)",
                exc_info=first,
            )

    def _halt(self, error: BybitError) -> None:
        """Stop this session and every other of its egress for the cool-off."""
        if self._egress is not None:
            self._egress.halt(error, self._ban_cooldown)
        else:  # not yet bound to a loop (cannot happen on an answer); alone then
            self.egress_halted(
                (time.monotonic() + self._ban_cooldown, error), self._ban_cooldown, False
            )

    def _open(self, method: str, path: str) -> aiohttp.ClientSession:
        if self._closed:
            raise SessionClosedError("the session is closed", method=method, path=path)
        connector = Connector(limit=self._max_connections, ttl_dns_cache=300)
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trace_configs=self._trace_configs
        )
        return self._http

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path, encoded=True)
        return url

    # -- calls under way -------------------------------------------------------

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        """Return the running loop; raise if the session belongs to another one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                raise RuntimeError(
                    "this BybitSession belongs to another event loop (each asyncio.run() "
                    "starts a new one); create the session inside the coroutine that "
                    "runs it, e.g. 'async with BybitSession(...) as session:', and "
                    "close it there"
                )
            self._loop = loop
            self._join_egress(loop)
        return loop

    def _join_egress(self, loop: asyncio.AbstractEventLoop) -> None:
        """Share the IP budget and the ban of the sessions of this loop with the same egress."""
        egress = self._egress = egress_for(loop, self._egress_name)
        share_ip = getattr(self._limiter, "share_ip", None)
        if share_ip is not None and self._ip_limits is not None:
            share_ip(shared_ip_budget(loop, self._egress_name, self._ip_limits))
        egress.attach(self)

    def _guard(
        self,
        method: str,
        path: str,
        deadline: float | None,
        work: Awaitable[T],
        again: Callable[[BybitError], Awaitable[T]] | None = None,
    ) -> Awaitable[T]:
        """*work* as a call of this session, to await: bounded by *deadline*, ended by `close`.

        *again* takes over when *work* raises (see `CallsUnderWay.guard`).
        Raises `RuntimeError` at once when the session belongs to another loop.
        """
        try:
            loop = self._own_loop()
        except RuntimeError:
            if asyncio.iscoroutine(work):
                work.close()  # never started: no "never awaited" warning
            raise
        return self._calls.guard(loop, method, path, deadline, work, again)

    def _retried(self, error: BybitError, attempt: int, wait: float) -> None:
        reason = reason_of(error)
        if self._stats is not None:
            self._stats.retried(reason)
        if self._on_event is not None:
            self._emit(RetryScheduled(time.time(), error.method, error.path, attempt, reason, wait))

    def _clock_synced(self) -> None:
        """Report the clock's last sync, once however many callers shared it."""
        clock = self._clock
        if clock.generation == self._clock_seen or clock.offset_ms is None:
            return
        self._clock_seen = clock.generation
        round_trip = clock.round_trip_ms or 0
        if self._stats is not None:
            self._stats.clock_synced(clock.offset_ms, round_trip)
        if self._on_event is not None:
            self._emit(ClockSynced(time.time(), clock.offset_ms, round_trip))

    # -- the one request path --------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = True,
        idempotent: bool | None = None,
        deadline: float | None = None,
    ) -> ApiResponse:
        """Send a request to any V5 endpoint and return the answer.

        POST *params* go as a JSON body, GET *params* as the query string
        (`encode_query`).  *path* is a plain V5 path such as
        ``/v5/position/list``, without a query.  The request is signed unless
        *signed* is false.  Failures where the request may have been executed
        are retried only when *idempotent* (default: true for GET, false for
        POST).  *deadline* (s) bounds this call instead of the session's.
        Raises a `BybitError` when Bybit does not answer with success, and
        `ValueError` or `TypeError` before sending for bad arguments.
        """
        if method not in ("GET", "POST"):
            raise ValueError(f"method must be 'GET' or 'POST', got {method!r}")
        if not isinstance(path, str) or not _PATH.match(path):
            raise ValueError(
                f"path must be a V5 path such as '/v5/market/time' (letters, digits, "
                f"'-', '_'; no query), got {path!r}"
            )
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping, got {type(params).__name__}")
        if deadline is not None:
            _check_deadline(deadline)
        if method == "POST":
            payload = orjson.dumps(json_body(params or {}))
            url = self._url(path)
        else:
            query = encode_query(params) if params else ""
            payload = query.encode()
            url = URL(
                f"{self._base_url}{path}?{query}" if query else self._base_url + path, encoded=True
            )
        if idempotent is None:
            idempotent = method == "GET"
        # Trade endpoints are limited per business line: the category picks the budget.
        key = budget_key(path, (params or {}).get("category")) if path in CATEGORY_KEYS else path
        return await self._call(method, path, url, payload, signed, idempotent, deadline, key)

    def _call(
        self,
        method: str,
        path: str,
        url: URL,
        payload: bytes,
        signed: bool,
        idempotent: bool,
        deadline: float | None = None,
        key: str | None = None,
    ) -> Awaitable[ApiResponse]:
        """The call, to await: its first attempt, then the retries its failure allows."""
        send = functools.partial(self._send, method, path, url, payload, signed, key or path)

        def again(first: BybitError) -> Awaitable[ApiResponse]:
            return self._retry.retry(
                first,
                send,
                idempotent=idempotent,
                before_retry=self._before_retry,
                on_retry=self._retried if self._observed else None,
            )

        return self._guard(
            method, path, self._deadline if deadline is None else deadline, send(1), again
        )

    async def _before_retry(self, error: BybitError, rule: RetryRule) -> None:
        _log.info("retrying %s %s after %s", error.method, error.path, type(error).__name__)
        if rule.resync_clock:
            generation = error.clock_generation if isinstance(error, BybitAPIError) else None
            await self._sync_clock(generation)

    async def _sync_clock(self, generation: int | None = None) -> None:
        """Sync the clock for a request about to be sent; its failure means "not sent"."""
        try:
            await self._clock.sync(self._sample_server_time, signed_at_generation=generation)
            if self._observed:
                self._clock_synced()
        except BybitError as error:
            # The error is shared by every caller of the sync: each gets its own copy.
            unsent = copy.copy(error)
            unsent.sent = False
            raise unsent from error

    async def _send(
        self, method: str, path: str, url: URL, payload: bytes, signed: bool, key: str, number: int
    ) -> ApiResponse:
        if self._calls.halted is not None:
            self._calls.check_halted(method, path)
        http = self._http or self._open(method, path)
        if signed and self._clock.offset_ms is None:
            await self._sync_clock()
        # _permit_at_once, written out: one Python call fewer per request.
        try_acquire = self._try_acquire
        permit = None if try_acquire is None else try_acquire(key, signed)
        if permit is None:
            permit = await self._acquire(method, path, number, key, signed)
        elif self._stats is not None:
            self._stats.at_once += 1
        generation = self._clock.generation
        task = asyncio.current_task()
        calls = self._calls
        if task in calls.tasks:
            calls.attempted[task] = number
        # The signed headers are built in the call itself, never bound to a name
        # here: a traceback shown with its locals must not show the signature.
        status, resp_headers, body, latency = await self._exchange(
            http,
            permit,
            method,
            path,
            url,
            payload,
            self._signed_headers(payload) if signed else self._headers,
            number,
        )
        return self._answers.read(
            method,
            path,
            status,
            resp_headers,
            body,
            generation,
            number,
            latency,
            key if signed else None,
        )

    def _signed_headers(self, payload: bytes) -> dict[str, str]:
        timestamp = str(self._clock.now_ms())
        return {
            **self._auth_headers,
            "X-BAPI-TIMESTAMP": timestamp,
            "X-BAPI-SIGN": self._signer.sign(timestamp.encode() + self._key_window + payload),
        }

    def _permit_at_once(self, key: str, signed: bool) -> Permit | None:
        """The limiter's permit if it can be had now, else None (then `_acquire`).

        A permit to be had at once needs no coroutine, no queue entry and no timing.
        """
        try_acquire = self._try_acquire
        if try_acquire is None:
            return None
        permit = try_acquire(key, signed)
        if permit is not None and self._stats is not None:
            self._stats.at_once += 1
        return permit

    async def _acquire(
        self, method: str, path: str, number: int = 1, key: str | None = None, signed: bool = False
    ) -> Permit | None:
        """Wait for the limiter's permit of budget *key* for attempt *number* of a call to *path*.

        None when there is no limiter.  A request that is not *signed* takes
        an IP permit only.  Callers try `_permit_at_once` first; this is the
        way that may wait.
        """
        if self._limiter is None:
            return None
        task = asyncio.current_task()
        queued = self._calls.queued
        if task is not None:
            queued[task] = number == 1
        started = time.perf_counter() if self._observed else 0.0
        try:
            permit = await self._limiter.acquire(key or path, signed=signed)
        except LimiterUnavailableError as error:
            error.method = method
            raise
        finally:
            queued.pop(task, None)  # type: ignore[arg-type]
        if self._observed:
            waited = time.perf_counter() - started
            if self._stats is not None:
                self._stats.waited(waited)
            if self._on_event is not None and waited >= LIMITER_WAIT_REPORTED:
                self._emit(LimiterWaited(time.time(), method, path, waited))
        if self._calls.halted is not None:  # halted while this request waited
            permit.release(sent=False)
            self._calls.check_halted(method, path)
        return permit

    async def _exchange(
        self,
        http: aiohttp.ClientSession,
        permit: Permit | None,
        method: str,
        path: str,
        url: URL,
        payload: bytes,
        headers: Mapping[str, str],
        number: int,
    ) -> tuple[int, Mapping[str, str], bytes, float]:
        """Send one request and read its answer; give *permit* back when it ends.

        Returns the status, headers, body and the seconds the exchange took.
        Redirects are not followed, and the body is read up to the cap only.
        """
        failure: BybitError | None = None
        cap = self._max_response_bytes
        CONNECTED.set(False)
        started = time.perf_counter()
        try:
            async with http.request(
                method,
                url,
                data=payload if method == "POST" else None,
                headers=headers,
                proxy=self._proxy,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                length = resp.content_length
                if length is not None and length <= cap and "Content-Encoding" not in resp_headers:
                    body = await resp.read()  # one read, at most the cap: the usual case
                else:
                    body, whole = await read_capped(resp, cap)
                    if not whole and status == 200:
                        failure = InvalidResponseError(
                            body,
                            method=method,
                            path=path,
                            reason=f"answer larger than max_response_bytes={cap}",
                        )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            failure = transport_error(exc, method, path, CONNECTED.get())
            failure.__cause__ = scrubbed(exc)
            _log.debug("%s %s attempt %d: %s", method, path, number, failure.message)
        except asyncio.CancelledError as exc:
            del headers  # keep the signature out of this frame's locals in tracebacks
            if permit is not None:
                permit.release(sent=CONNECTED.get())
            # aiohttp's frames below hold the signed headers too; a cancellation
            # needs none of them to be understood.
            raise exc.with_traceback(None)  # noqa: B904 (the same exception)
        except BaseException:
            del headers
            if permit is not None:
                permit.release(sent=CONNECTED.get())
            raise
        del headers
        latency = time.perf_counter() - started
        if permit is not None:
            # Positional, as the protocol allows: a keyword costs on every request.
            permit.release(failure is None or failure.sent)
        if failure is not None and self._observed:
            self._answers.failed(method, path, number, failure, latency)
        if failure is not None:
            # Raised outside the except clause, with aiohttp's error as the cause
            # but stripped of its frames, which hold the signed headers: a
            # traceback shown with its locals names the cause, not the signature.
            raise failure from frameless(failure.__cause__)
        return status, resp_headers, body, latency

    async def _sample_server_time(self) -> TimeSample:
        """Read the server's clock, timing the HTTP exchange alone, not the limiter's wait."""
        if self._calls.halted is not None:
            self._calls.check_halted("GET", SERVER_TIME)
        http = self._http or self._open("GET", SERVER_TIME)
        permit = self._permit_at_once(SERVER_TIME, False)
        if permit is None:
            permit = await self._acquire("GET", SERVER_TIME)
        url = self._url(SERVER_TIME)
        sent = self._clock.local_ms()
        status, headers, body, latency = await self._exchange(
            http, permit, "GET", SERVER_TIME, url, b"", self._headers, 1
        )
        received = self._clock.local_ms()
        resp = self._answers.read(
            "GET", SERVER_TIME, status, headers, body, self._clock.generation, 1, latency
        )
        result = resp.result
        server = parse_time_nano(result.get("timeNano") if isinstance(result, dict) else None)
        if server is None:
            # Adopting it would move every later timestamp by years: the clock stays as it was.
            raise InvalidResponseError(
                body,
                method="GET",
                path=SERVER_TIME,
                reason="server time is not a timeNano string between 2020 and 2100",
            )
        return TimeSample(server, sent, received)

    # -- endpoints -------------------------------------------------------------

    async def get_server_time(self) -> int:
        """Return Bybit's time in Unix milliseconds (``GET /v5/market/time``)."""
        sample = await self._guard(
            "GET",
            SERVER_TIME,
            self._deadline,
            self._retry.call(
                lambda _: self._sample_server_time(),
                idempotent=True,
                before_retry=self._before_retry,
                on_retry=self._retried if self._observed else None,
            ),
        )
        return sample.server_ms

    async def warm_up(self, connections: int = 1) -> None:
        """Sync the server clock and open up to *connections* keep-alive connections.

        Sends *connections* concurrent ``GET /v5/market/time`` requests (they
        count against the IP limit) and takes the clock's offset from the one
        with the shortest round trip.  A signed call afterwards then costs one
        round trip instead of three (connect, clock sync, request), as long as
        it comes before the pool closes idle connections (aiohttp's keep-alive
        timeout, 15 s).  A limiter with a ``warm_up`` coroutine method (such as
        `RedisLimiter`, which connects to Redis) is warmed up first.
        """
        if isinstance(connections, bool) or not isinstance(connections, int):
            raise TypeError(f"connections must be an int, got {connections!r}")
        if not 1 <= connections <= self._max_connections:
            raise ValueError(
                f"connections must be from 1 to max_connections={self._max_connections}, "
                f"got {connections!r}"
            )

        async def best_of() -> TimeSample:
            outcomes = await asyncio.gather(
                *(self._sample_server_time() for _ in range(connections)),
                return_exceptions=True,
            )
            samples = [o for o in outcomes if isinstance(o, TimeSample)]
            if not samples:
                raise cast("BaseException", outcomes[0])
            return min(samples, key=lambda sample: sample.round_trip_ms)

        async def sync(_: int) -> None:
            await self._clock.sync(best_of)
            if self._observed:
                self._clock_synced()

        limiter_warm_up: Callable[[], Awaitable[object]] | None = getattr(
            self._limiter, "warm_up", None
        )

        async def warm() -> None:
            # The limiter first: the clock's samples then take their permits
            # without waiting for its connections.
            if limiter_warm_up is not None:
                await limiter_warm_up()
            await self._retry.call(
                sync,
                idempotent=True,
                before_retry=self._before_retry,
                on_retry=self._retried if self._observed else None,
            )

        await self._guard("GET", SERVER_TIME, self._deadline, warm())

    async def set_auto_add_margin(
        self,
        symbol: str,
        auto_add_margin: bool | int,
        *,
        category: str = "linear",
        position_idx: int | PositionIdx | None = None,
    ) -> ApiResponse:
        """Turn auto-add-margin on or off for an isolated-margin position.

        ``POST /v5/position/set-auto-add-margin``.  *symbol* is uppercase, such as
        ``"BTCUSDT"``; *auto_add_margin* is a bool or 1/0; *position_idx* is
        required for hedge-mode positions (1 buy side, 2 sell side) and left out
        of the request when None.  When the flag already had the requested
        value, the answer has ``modified`` false instead of raising.
        """
        params = auto_add_margin_params(
            symbol, auto_add_margin, category=category, position_idx=position_idx
        )
        return await self._call(
            "POST",
            SET_AUTO_ADD_MARGIN,
            self._url(SET_AUTO_ADD_MARGIN),
            orjson.dumps(params),
            True,
            True,
        )

    async def set_auto_add_margin_many(
        self,
        symbols: Iterable[str],
        auto_add_margin: bool | int,
        *,
        category: str = "linear",
        position_idx: int | PositionIdx | None = None,
    ) -> list[ApiResponse | Exception]:
        """Set auto-add-margin for every symbol in *symbols* concurrently.

        Returns one outcome per symbol, in input order: the `ApiResponse`,
        or the exception that symbol's request raised.  One symbol's failure
        neither cancels nor hides the others.  Every argument is checked before
        any request is sent.
        """
        if isinstance(symbols, str):
            raise TypeError("symbols must be an iterable of symbols, not one str")
        bodies = [
            orjson.dumps(
                auto_add_margin_params(
                    s, auto_add_margin, category=category, position_idx=position_idx
                )
            )
            for s in symbols
        ]
        url = self._url(SET_AUTO_ADD_MARGIN)
        outcomes = await asyncio.gather(
            *(self._call("POST", SET_AUTO_ADD_MARGIN, url, b, True, True) for b in bodies),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome
        return cast("list[ApiResponse | Exception]", outcomes)

    async def get_positions(
        self,
        category: str = "linear",
        *,
        symbol: str | None = None,
        settle_coin: str | None = None,
    ) -> list[Position]:
        """Return positions from ``GET /v5/position/list``, every page of them.

        With *symbol*, that symbol's positions, open or not (one per side in
        hedge mode); with *settle_coin* (such as ``"USDT"``) and no symbol,
        every open position settled in it.  Pages of 200 are read, following
        ``nextPageCursor`` to the end; reads are retried like any idempotent call.
        The session's *deadline* bounds the whole read, every page included.  A
        list that does not end (more than `positions.MAX_PAGES` pages, or
        a page over the limit) raises `InvalidResponseError`; a page that
        adds no new position ends it, and each (symbol, position_idx) is
        returned once.
        """
        return await _get_positions(
            self, category, symbol=symbol, settle_coin=settle_coin, deadline=self._deadline
        )

    async def ensure_auto_add_margin(
        self,
        symbols: Iterable[str] | None = None,
        on: bool | int = True,
        *,
        settle_coin: str | Sequence[str] | None = None,
        classic: bool = False,
        dry_run: bool = False,
    ) -> EnsureReport:
        """Make auto-add-margin *on* (or off) on many positions, writing only what differs.

        Reads the position list first: with *symbols* None, every open position
        settled in *settle_coin* (default ``"USDT"``; a list reads each coin);
        otherwise the named symbols, open or not, every position of each (both
        sides in hedge mode).  Then sends set-auto-add-margin, concurrently
        through `set_auto_add_margin`, only to positions whose flag differs.
        A named symbol with no open position is written without a read (its
        write answers "not modified" when nothing changes, and costs less than
        the read would); a dry run reads it instead.
        Returns an `EnsureReport` with one row per position; a failed read or
        write is a ``"failed"`` row and stops nothing else, and a position
        Bybit refuses the flag (cross or portfolio margin, 110076/110077) is
        ``"skipped"``.  *classic* says the account is a classic one, where the
        list's ``tradeMode`` 0 reliably means cross margin: such positions are
        skipped without a write.  With *dry_run*, only reads: the report is the
        plan.  Raises `TypeError` or `ValueError` for a bad argument before
        sending anything, and a settle coin's read error (nothing is written then).
        The session's *deadline* bounds all the reads together; each write is a
        call of its own.
        """
        return await _ensure_auto_add_margin(
            self,
            symbols,
            on,
            settle_coin=settle_coin,
            classic=classic,
            dry_run=dry_run,
            deadline=self._deadline,
        )

    # -- live positions ---------------------------------------------------------

    @property
    def stream_url(self) -> str:
        """The private WebSocket stream's URL."""
        return self._stream_url

    def _stream_link(self) -> StreamLink:
        """What a `PositionStream` needs of this session: pool, key, signer, hooks."""
        self._own_loop()
        http = self._http or self._open("GET", "/v5/private")
        return StreamLink(
            self._stream_url,
            http,
            self._api_key,
            self._signer.sign,
            self._proxy,
            self._emit if self._on_event is not None else None,
            self._stats,
        )

    def stream_positions(self, category: str = "linear", **options: Any) -> PositionStream:
        """Return a `PositionStream` of this account's position updates.

        Use it as ``async with session.stream_positions() as stream: async for
        position in stream: ...``.  *options* are `PositionStream`'s
        (``settle_coin``, ``ping_interval``, back-off and limits).  Raises
        `ValueError` or `TypeError` for a bad argument, before any I/O.
        """
        return PositionStream(self, category, **options)

    async def guard_auto_add_margin(
        self,
        on: bool | int = True,
        symbols: Iterable[str] | None = None,
        *,
        settle_coin: str = "USDT",
        on_action: Callable[[EnsureRow], object] | None = None,
        **stream_options: Any,
    ) -> None:
        """Keep auto-add-margin *on* (or off) on positions as they open and change, until cancelled.

        See `bybit_async.guard.guard_auto_add_margin`.
        """
        from .guard import guard_auto_add_margin

        await guard_auto_add_margin(
            self, on, symbols, settle_coin=settle_coin, on_action=on_action, **stream_options
        )


_USER_AGENT = f"bybit-async/{__version__}"
