"""Live positions: Bybit's private WebSocket stream as an async iterator of `Position`.

`BybitSession.stream_positions` returns a `PositionStream`::

    async with session.stream_positions() as stream:
        async for position in stream:
            ...

The stream connects to the session's private stream host, authenticates
with the session's key (``"GET/realtime" + expires``, signed as the REST
requests are, HMAC or RSA), subscribes to ``position.linear`` and sends
``{"op": "ping"}`` every *ping_interval* seconds.  A missing pong, a closed
socket or silence is a dead link: it connects again after a capped, jittered
back-off, never more than *max_connects* times per *connects_window*
seconds (Bybit allows 500 per 5 minutes per IP).  Bybit replays nothing, so
after every connect it reads ``GET /v5/position/list`` and yields what it
lists as a snapshot.  Updates are dropped when not newer, by ``seq``, than
one already yielded for the same position.  A consumer slower than the
pushes gets the latest state of each position, not every state in between:
the stream holds at most one pending update per position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import orjson
from yarl import URL

from .clock import ServerClock
from .errors import AuthenticationError, BybitError, SessionClosedError
from .events import (
    Event,
    StreamConnected,
    StreamDisconnected,
    StreamReconnected,
    StreamSnapshot,
)
from .positions import Position, PositionKey, _coins
from .stats import StatsRecorder

__all__ = [
    "PRIVATE_PATH",
    "STREAM_HOSTS",
    "PositionStream",
    "StreamLink",
    "private_stream_url",
]

_log = logging.getLogger("bybit_async.stream")

#: The private stream's path.
PRIVATE_PATH: Final = "/v5/private"

#: Bybit's REST hosts -> their private stream URLs.
STREAM_HOSTS: Mapping[str, str] = {
    "api.bybit.com": "wss://stream.bybit.com/v5/private",
    "api-testnet.bybit.com": "wss://stream-testnet.bybit.com/v5/private",
    "api-demo.bybit.com": "wss://stream-demo.bybit.com/v5/private",
}

_PING: Final = '{"op":"ping"}'

if TYPE_CHECKING:
    # Generic only in newer aiohttp: subscripted for the type checker alone.
    _WebSocket = aiohttp.ClientWebSocketResponse[bool]


def jittered_backoff(failures: int, initial: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after *failures* failures in a row: doubling from *initial* up to *cap*.

    Half fixed, half random: it spreads many clients' retries without ever
    retrying at once.
    """
    ceiling = min(cap, initial * 2.0 ** min(failures - 1, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _ws_timeout(close: float) -> Any:
    """ws_connect's timeout: a ClientWSTimeout where aiohttp has one (3.11+), else seconds."""
    cls = getattr(aiohttp, "ClientWSTimeout", None)
    return close if cls is None else cls(ws_receive=None, ws_close=close)


def private_stream_url(base_url: str, stream_url: str | None = None) -> str:
    """Return the private stream URL for a REST *base_url*, or *stream_url* if given.

    Mainnet, testnet and demo map to Bybit's stream hosts; any other host
    keeps its name and port, with a ws(s) scheme and the path
    ``/v5/private``.  Raises `ValueError` for a *stream_url* that is not ws(s).
    """
    if stream_url is not None:
        if not isinstance(stream_url, str):
            raise TypeError(f"stream_url must be a str, got {type(stream_url).__name__}")
        if not stream_url.startswith(("ws://", "wss://")) or not URL(stream_url).host:
            raise ValueError(f"stream_url must be a ws:// or wss:// URL, got {stream_url!r}")
        return stream_url
    url = URL(base_url)
    mapped = STREAM_HOSTS.get(url.host or "")
    if mapped is not None:
        return mapped
    scheme = "wss" if url.scheme == "https" else "ws"
    return str(url.with_scheme(scheme).with_path(PRIVATE_PATH).with_query(None))


@dataclass(frozen=True)
class StreamLink:
    """What a stream needs of its session; `BybitSession` makes one per stream.

    *url* is the stream's URL, *http* the session's connection pool,
    *api_key* and *sign* (a `Signer`'s ``sign``) authenticate, *proxy* is
    the session's, *emit* gives an event to ``on_event`` (None: nobody
    listens), and *stats* is the session's recorder (None: ``stats=False``).
    """

    url: str
    http: aiohttp.ClientSession
    api_key: str
    sign: Callable[[bytes], str]
    proxy: str | None = None
    emit: Callable[[Event], None] | None = None
    stats: StatsRecorder | None = None

    def __repr__(self) -> str:
        return f"<StreamLink {self.url}>"


class _PositionSource(Protocol):
    """What the stream and the guard read positions and the stream's link from."""

    async def get_positions(
        self,
        category: str = "linear",
        *,
        symbol: str | None = None,
        settle_coin: str | None = None,
    ) -> list[Position]: ...

    def _stream_link(self) -> StreamLink: ...


class _Session(_PositionSource, Protocol):
    """What the stream needs of a `BybitSession`."""

    @property
    def clock(self) -> ServerClock: ...

    async def warm_up(self, connections: int = 1) -> None: ...


class _LinkDead(Exception):
    """The connection is dead; the message is the reason."""


# Fields a push must carry, and the ones whose value must be an integer (or its digits).
_INT_FIELDS: Final = ("positionIdx", "tradeMode", "autoAddMargin")


class PositionStream:
    """An async context manager and iterator of `Position` updates from the private stream.

    Made by `BybitSession.stream_positions`; see the module documentation.
    *category* is ``"linear"``.  With *snapshot* (the default) every connect
    reads the open positions of *settle_coin* (a coin or several) and yields
    them.  A link is dead when a ping (sent every *ping_interval* seconds)
    gets no pong within *pong_timeout*, when nothing at all (pongs
    included) arrives for *silence_timeout* (default: the two added), or
    when the socket closes.  Reconnects wait from *backoff_initial* doubling
    up to *backoff_max* seconds, jittered, starting over once a connection
    has stayed up *stable_after* seconds, and make at most *max_connects*
    connects per *connects_window* seconds.  *expires_in* is how long the
    auth signature is valid (seconds).  *on_connect*, if given, is called
    with the connection number (from 1) after each subscribe succeeds.

    Iterating raises `AuthenticationError` if Bybit refuses the key or
    signature (there is no reconnect then), and `SessionClosedError` once the
    session is closed.
    """

    def __init__(
        self,
        session: _Session,
        category: str = "linear",
        *,
        settle_coin: str | Sequence[str] = "USDT",
        snapshot: bool = True,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        silence_timeout: float | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        max_connects: int = 500,
        connects_window: float = 300.0,
        expires_in: float = 10.0,
        on_connect: Callable[[int], object] | None = None,
    ) -> None:
        if category != "linear":
            raise ValueError(f"the stream serves category 'linear' only, got {category!r}")
        coins = _coins(settle_coin)
        for name, value in (
            ("ping_interval", ping_interval),
            ("pong_timeout", pong_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
            ("connects_window", connects_window),
            ("expires_in", expires_in),
            ("silence_timeout", silence_timeout if silence_timeout is not None else 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if isinstance(stable_after, bool) or not isinstance(stable_after, int | float):
            raise TypeError(f"stable_after must be a number, got {stable_after!r}")
        if isinstance(max_connects, bool) or not isinstance(max_connects, int):
            raise TypeError(f"max_connects must be an int, got {max_connects!r}")
        if max_connects < 1:
            raise ValueError(f"max_connects must be at least 1, got {max_connects!r}")
        if backoff_max < backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        if on_connect is not None and not callable(on_connect):
            raise TypeError("on_connect must be callable")
        self._session = session
        self._coins = coins
        self._snapshot = snapshot
        self._ping_interval = float(ping_interval)
        self._pong_timeout = float(pong_timeout)
        self._silence = (
            float(silence_timeout)
            if silence_timeout is not None
            else self._ping_interval + self._pong_timeout
        )
        self._backoff_initial = float(backoff_initial)
        self._backoff_max = float(backoff_max)
        self._stable_after = float(stable_after)
        self._max_connects = max_connects
        self._connects_window = float(connects_window)
        self._expires_in = float(expires_in)
        self._on_connect = on_connect
        self._random = random.Random()

        self._link: StreamLink | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[PositionKey, Position] = {}
        self._wake = asyncio.Event()
        self._error: BaseException | None = None
        self._done = False
        self._seqs: dict[PositionKey, int] = {}
        self._bad_kinds: set[str] = set()
        self._connects: deque[float] = deque()
        # Set by the reader when a pong arrives; a new one per ping.
        self._pong: asyncio.Future[None] | None = None
        self._heard = 0
        self._counts: list[int] = [0, 0, 0, 0, 0]
        self._connection = 0
        self._connected = asyncio.Event()

    def __repr__(self) -> str:
        url = self._link.url if self._link is not None else "(not started)"
        return f"<PositionStream {url} connection={self._connection}>"

    # -- public --------------------------------------------------------------

    @property
    def connection(self) -> int:
        """Connections made so far (the current one's number while connected)."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether a connection is up: authenticated and subscribed."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once a connection is up (at once if one is)."""
        while not self._connected.is_set():
            if self._error is not None:
                raise self._error
            waiter = asyncio.ensure_future(self._connected.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((waiter, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                woken.cancel()
            if self._error is not None:
                raise self._error

    async def __aenter__(self) -> PositionStream:
        if self._task is not None:
            raise RuntimeError("a PositionStream is entered once")
        self._attach()
        self._task = asyncio.create_task(self._run(), name="bybit_async position stream")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and stop; iterating afterwards ends at once."""
        self._done = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task is not None and not task.cancelled():
            task.exception()  # retrieved: stored in _error already
        self._wake.set()

    def __aiter__(self) -> PositionStream:
        return self

    async def __anext__(self) -> Position:
        pending = self._pending
        while not pending:
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            if self._task is None:
                raise RuntimeError("use the stream in 'async with': it connects on entering")
            self._wake.clear()
            await self._wake.wait()
        return pending.pop(next(iter(pending)))

    # -- the connection loop ---------------------------------------------------

    def _attach(self) -> None:
        """Take what the stream needs from the session: its pool, signer, hooks, counts."""
        self._link = self._session._stream_link()
        stats = self._link.stats
        # The session's counts, added to in place: one add per push, no call.
        self._counts = stats.stream_counts() if stats is not None else [0, 0, 0, 0, 0]

    def _emit(self, event: Event) -> None:
        link = self._link
        if link is not None and link.emit is not None:
            link.emit(event)

    def _count(self, **counts: int) -> None:
        link = self._link
        if link is not None and link.stats is not None:
            link.stats.stream_counted(**counts)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake.set()

    def _backoff(self, failures: int) -> float:
        return jittered_backoff(failures, self._backoff_initial, self._backoff_max, self._random)

    async def _respect_connect_limit(self) -> None:
        connects = self._connects
        loop = asyncio.get_running_loop()
        now = loop.time()
        while connects and now - connects[0] >= self._connects_window:
            connects.popleft()
        if len(connects) >= self._max_connects:
            wait = connects[0] + self._connects_window - now
            _log.warning(
                "%d stream connects in %.0f s: waiting %.1f s",
                len(connects),
                self._connects_window,
                wait,
            )
            await asyncio.sleep(wait)
            connects.popleft()
        connects.append(loop.time())

    async def _run(self) -> None:
        link = self._link
        assert link is not None
        loop = asyncio.get_running_loop()
        failures = 0
        down_since: float | None = None
        try:
            while True:
                if link.http.closed:
                    # The session was closed: no connection can be made with it again.
                    self._fail(
                        SessionClosedError(
                            "the session was closed", method="GET", path=PRIVATE_PATH
                        )
                    )
                    return
                await self._respect_connect_limit()
                try:
                    ws = await self._open(link)
                except AuthenticationError as error:
                    self._fail(error)
                    return
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError, _LinkDead) as error:
                    failures += 1
                    wait = self._backoff(failures)
                    _log.warning("stream connect failed (%s); again in %.2f s", _why(error), wait)
                    await asyncio.sleep(wait)
                    continue
                self._connection += 1
                number = self._connection
                up_at = loop.time()
                self._connected.set()
                self._emit(StreamConnected(time.time(), link.url, number))
                if number > 1:
                    self._count(reconnects=1)
                    downtime = 0.0 if down_since is None else up_at - down_since
                    self._emit(StreamReconnected(time.time(), number, downtime))
                reason = await self._serve(ws, number)
                self._connected.clear()
                down_since = loop.time()
                uptime = down_since - up_at
                self._emit(StreamDisconnected(time.time(), number, reason, uptime))
                if self._error is not None:
                    return
                failures = 1 if uptime >= self._stable_after else failures + 1
                wait = self._backoff(failures)
                _log.warning("stream link lost (%s); reconnecting in %.2f s", reason, wait)
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # a bug or a stop: surface it to the consumer
            self._fail(error)
            raise
        finally:
            self._connected.clear()

    async def _open(self, link: StreamLink) -> _WebSocket:
        """Connect, authenticate and subscribe; the socket is closed on any failure."""
        session = self._session
        if not session.clock.synced:
            with contextlib.suppress(BybitError):
                await session.warm_up()
        handshake = self._pong_timeout
        ws = await link.http.ws_connect(
            link.url,
            proxy=link.proxy,
            autoping=True,
            timeout=_ws_timeout(min(1.0, handshake)),
            max_msg_size=16 * 1024 * 1024,
        )
        try:
            expires = session.clock.now_ms() + int(self._expires_in * 1000)
            signature = link.sign(f"GET/realtime{expires}".encode())
            await ws.send_str(
                orjson.dumps({"op": "auth", "args": [link.api_key, expires, signature]}).decode()
            )
            del signature
            answer = await self._answer(ws, "auth", handshake)
            if answer.get("success") is not True:
                text = str(answer.get("ret_msg") or "refused")
                code = 10003 if "apikey" in text.lower() else 10004
                raise AuthenticationError(
                    code,
                    text,
                    method="GET",
                    path=PRIVATE_PATH,
                    hint="the private stream refused the key or signature",
                )
            await ws.send_str('{"op":"subscribe","args":["position.linear"]}')
            answer = await self._answer(ws, "subscribe", handshake)
            if answer.get("success") is not True:
                raise _LinkDead(f"subscribe refused: {answer.get('ret_msg')!s:.80}")
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _answer(self, ws: _WebSocket, op: str, timeout: float) -> dict[str, Any]:
        """Read until the answer to *op*; pushes meanwhile are handled as usual."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await ws.receive(timeout=max(0.0, deadline - loop.time()))
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise _LinkDead(f"closed during {op}")
            try:
                message = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                self._bad("not JSON")
                continue
            if isinstance(message, dict) and message.get("op") == op:
                return message
            self._on_message(msg.data)

    async def _serve(self, ws: _WebSocket, number: int) -> str:
        """Read the connection until it dies; return why."""
        reader = asyncio.create_task(self._read(ws))
        watcher = asyncio.create_task(self._watch(ws))
        tasks: set[asyncio.Task[Any]] = {reader, watcher}
        reading = None
        if self._snapshot:
            reading = asyncio.create_task(self._read_snapshot(number))
            tasks.add(reading)
        if self._on_connect is not None:
            try:
                self._on_connect(number)
            except Exception:
                _log.exception("on_connect raised")
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if reading is not None and reading in done and not reading.exception():
                    tasks.discard(reading)
                    reading = None
                    continue
                task = done.pop()
                error = task.exception()
                if isinstance(error, _LinkDead):
                    return str(error)
                if isinstance(error, BybitError) and task is reading:
                    # The missed state cannot be read: connect again and read again.
                    return f"snapshot read failed: {_why(error)}"
                if error is not None:
                    self._fail(error)
                    return _why(error)
                return "closed"
        finally:
            running = [t for t in (reader, watcher, reading) if t is not None]
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await ws.close()

    async def _read(self, ws: _WebSocket) -> None:
        on_message = self._on_message
        async for msg in ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                on_message(msg.data)
            else:
                break
        raise _LinkDead("closed")

    async def _watch(self, ws: _WebSocket) -> None:
        """Ping every *ping_interval*; raise `_LinkDead` on a missing pong or on silence."""
        loop = asyncio.get_running_loop()
        heard = self._heard
        heard_at = loop.time()
        next_ping = heard_at + self._ping_interval
        while True:
            await asyncio.sleep(max(0.0, min(next_ping, heard_at + self._silence) - loop.time()))
            now = loop.time()
            if self._heard != heard:
                heard, heard_at = self._heard, now
            elif now - heard_at >= self._silence:
                raise _LinkDead("silent")
            if now >= next_ping:
                pong = self._pong = loop.create_future()
                await ws.send_str(_PING)
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that comes as the pong does, and the watcher would then ping on.
                await asyncio.wait((pong,), timeout=self._pong_timeout)
                if not pong.done():
                    pong.cancel()
                    raise _LinkDead("no pong")
                next_ping = loop.time() + self._ping_interval

    async def _read_snapshot(self, number: int) -> None:
        session = self._session
        positions: list[Position] = []
        for coin in self._coins:
            positions += await session.get_positions(settle_coin=coin)
        for position in positions:
            self._offer(position, _seq(position.raw.get("seq")), snapshot=True)
        self._count(snapshots=1)
        self._emit(StreamSnapshot(time.time(), number, len(positions)))

    # -- messages ----------------------------------------------------------------

    def _on_message(self, data: str | bytes) -> None:
        self._heard += 1
        self._counts[0] += 1
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._bad("not JSON")
            return
        if not isinstance(message, dict):
            self._bad("not an object")
            return
        topic = message.get("topic")
        if topic is None:
            op = message.get("op")
            if op == "pong" or (op == "ping" and message.get("ret_msg") == "pong"):
                pong = self._pong
                if pong is not None and not pong.done():
                    pong.set_result(None)
            return
        if not isinstance(topic, str) or not topic.startswith("position"):
            return
        items = message.get("data")
        if not isinstance(items, list):
            self._bad("no data list")
            return
        for item in items:
            parsed = self._parse(item)
            if parsed is not None:
                self._offer(*parsed, snapshot=False)

    def _parse(self, item: Any) -> tuple[Position, int | None] | None:
        if not isinstance(item, dict):
            self._bad("item not an object")
            return None
        if item.get("category", "linear") != "linear":
            return None
        for name in ("symbol", "positionIdx", "size", "autoAddMargin"):
            if name not in item:
                self._bad(f"missing {name}")
                return None
        fixed: dict[str, Any] | None = None
        for name in _INT_FIELDS:
            value = item.get(name)
            if type(value) is int or value is None:
                continue
            if isinstance(value, str) and value.isdigit() and len(value) < 4:
                if fixed is None:
                    fixed = dict(item)
                fixed[name] = int(value)
            else:
                self._bad(f"{name} not a number")
                return None
        try:
            position = Position.from_json(fixed if fixed is not None else item)
        except (TypeError, ValueError, KeyError) as error:
            text = str(error)
            self._bad("size not a number" if text.startswith("size") else f"malformed ({text:.40})")
            return None
        return position, _seq(item.get("seq"))

    def _offer(self, position: Position, seq: int | None, *, snapshot: bool) -> None:
        key = (position.symbol, position.position_idx)
        if seq is not None:
            last = self._seqs.get(key)
            if last is not None and (seq < last or (seq == last and not snapshot)):
                self._counts[3] += 1
                return
            self._seqs[key] = seq
        self._pending[key] = position
        self._wake.set()

    def _bad(self, kind: str) -> None:
        self._counts[4] += 1
        if kind not in self._bad_kinds:
            self._bad_kinds.add(kind)
            _log.warning("skipping a private-stream message: %s (logged once per kind)", kind)


def _seq(value: object) -> int | None:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def _why(error: BaseException) -> str:
    if isinstance(error, _LinkDead):
        return str(error)
    return type(error).__name__
