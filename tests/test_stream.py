"""The private WebSocket stream, against the simulator's real WebSocket endpoint on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from bybit_async import AuthenticationError, BybitSession, Position, SessionClosedError
from bybit_async.events import (
    Event,
    StreamConnected,
    StreamDisconnected,
    StreamReconnected,
    StreamSnapshot,
)
from bybit_async.stream import PositionStream, private_stream_url
from bybit_async.testing import BybitSimulator

from .conftest import MakeSession
from .test_rsa import KeyPair

# Small intervals: a dead link is found in tens of milliseconds, not tens of seconds.
FAST: dict[str, Any] = {
    "ping_interval": 0.05,
    "pong_timeout": 0.05,
    "backoff_initial": 0.001,
    "backoff_max": 0.005,
}


class Events:
    """An ``on_event`` that keeps the stream's events and lets a test await one."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        self._changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]

    async def wait(self, kind: type[Any], count: int = 1) -> list[Any]:
        while len(self.of(kind)) < count:
            self._changed.clear()
            await self._changed.wait()
        return self.of(kind)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def session(make_session: MakeSession, events: Events) -> BybitSession:
    return make_session(on_event=events)


async def take(stream: PositionStream, n: int) -> list[Position]:
    out = []
    async for position in stream:
        out.append(position)
        if len(out) == n:
            break
    return out


async def until(stream: PositionStream, check: Callable[[Position], bool]) -> Position:
    async for position in stream:
        if check(position):
            return position
    raise AssertionError("the stream ended")


# -- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.bybit.com", "wss://stream.bybit.com/v5/private"),
        ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/private"),
        ("https://api-demo.bybit.com", "wss://stream-demo.bybit.com/v5/private"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v5/private"),
        ("https://api.bybit.nl", "wss://api.bybit.nl/v5/private"),
    ],
)
def test_stream_url_follows_the_rest_host(base_url: str, expected: str) -> None:
    assert private_stream_url(base_url) == expected
    assert BybitSession("k", "s", base_url=base_url).stream_url == expected


def test_session_names_pick_the_stream_host() -> None:
    assert BybitSession("k", "s", testnet=True).stream_url.startswith("wss://stream-testnet.")
    assert BybitSession("k", "s", demo=True).stream_url.startswith("wss://stream-demo.")
    assert BybitSession("k", "s").stream_url == "wss://stream.bybit.com/v5/private"


def test_stream_url_overrides() -> None:
    session = BybitSession("k", "s", stream_url="wss://example.test/v5/private")
    assert session.stream_url == "wss://example.test/v5/private"


@pytest.mark.parametrize(
    "url", ["https://stream.bybit.com/v5/private", "stream.bybit.com", "ws://"]
)
def test_stream_url_not_ws_is_refused_before_any_io(sim: BybitSimulator, url: str) -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, stream_url=url)
    assert sim.requests == []


def test_bad_stream_options_are_refused(session: BybitSession) -> None:
    with pytest.raises(ValueError, match="linear"):
        session.stream_positions("spot")
    with pytest.raises(ValueError, match="ping_interval"):
        session.stream_positions(ping_interval=0)
    with pytest.raises(ValueError, match="settle_coin"):
        session.stream_positions(settle_coin="usdt")


# -- connect, snapshot, pushes ----------------------------------------------------------


async def test_snapshot_then_pushes(
    sim: BybitSimulator, session: BybitSession, events: Events
) -> None:
    sim.set_position("ETHUSDT", size="2")
    async with session.stream_positions(**FAST) as stream:
        (first,) = await take(stream, 1)
        assert isinstance(first, Position)
        assert (first.symbol, first.size, first.auto_add_margin) == ("ETHUSDT", Decimal(2), False)
        await events.wait(StreamSnapshot)
        sim.set_position("BTCUSDT", size="1")
        opened = await until(stream, lambda p: p.symbol == "BTCUSDT")
        assert opened.is_open
        assert opened.trade_mode == 1
        await session.set_auto_add_margin("BTCUSDT", True)
        turned = await until(stream, lambda p: p.symbol == "BTCUSDT")
        assert turned.auto_add_margin is True
    (connected,) = events.of(StreamConnected)
    assert connected.url == session.stream_url
    assert connected.connection == 1
    assert events.of(StreamSnapshot)[0].positions == 1
    stats = session.stats()
    assert stats.stream_snapshots == 1
    assert stats.stream_messages >= 2


async def test_messages_are_in_the_request_log(sim: BybitSimulator, session: BybitSession) -> None:
    async with session.stream_positions(**FAST) as stream:
        await stream.wait_connected()
        sent = [orjson.loads(r.body) for r in sim.requests if r.method == "WS"]
    assert [m["op"] for m in sent[:2]] == ["auth", "subscribe"]
    assert sent[1]["args"] == ["position.linear"]
    api_key, expires, signature = sent[0]["args"]
    assert api_key == sim.api_key
    assert isinstance(expires, int)
    assert len(signature) == 64
    assert any(r.method == "PUSH" and r.path == "/v5/private" for r in sim.requests)


async def test_rsa_key_authenticates(sim: BybitSimulator, make_session: MakeSession) -> None:
    pair = KeyPair(2048)
    sim.add_account("rsa-key", rsa_public_key=pair.public_pem)
    sim.set_position("SOLUSDT", size="3", api_key="rsa-key")
    session = make_session(api_key="rsa-key", api_secret=pair.private_pem())
    assert session.sign_type == "rsa"
    async with session.stream_positions(**FAST) as stream:
        (position,) = await take(stream, 1)
    assert position.symbol == "SOLUSDT"


async def test_bad_signature_raises_without_reconnecting(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(api_secret="not-the-secret")
    async with session.stream_positions(**FAST) as stream:
        with pytest.raises(AuthenticationError) as caught:
            await take(stream, 1)
    assert caught.value.path == "/v5/private"
    assert "not-the-secret" not in repr(caught.value) + str(caught.value)
    assert sim.stream.connects == 1


async def test_unknown_key_raises(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session(api_key="nobody")
    async with session.stream_positions(**FAST) as stream:
        with pytest.raises(AuthenticationError, match="apikey"):
            await stream.wait_connected()
    assert sim.stream.connects == 1


# -- dead links -------------------------------------------------------------------------


async def test_dropped_link_reconnects_and_reads_again(
    sim: BybitSimulator, session: BybitSession, events: Events
) -> None:
    sim.set_position("ETHUSDT", size="2")
    async with session.stream_positions(**FAST) as stream:
        await take(stream, 1)
        await events.wait(StreamSnapshot)
        assert sim.stream.drop_all() == 1
        # Changed while no connection is up: no push reaches the client.
        sim.set_position("ETHUSDT", size="5")
        changed = await until(stream, lambda p: p.size == 5)
        assert changed.symbol == "ETHUSDT"
        await events.wait(StreamSnapshot, 2)
    (lost,) = events.of(StreamDisconnected)[:1]
    assert lost.reason == "closed"
    assert lost.connection == 1
    (again,) = events.of(StreamReconnected)
    assert again.connection == 2
    assert again.downtime >= 0
    assert session.stats().stream_reconnects == 1
    assert session.stats().stream_snapshots == 2


async def test_missing_pong_is_a_dead_link(
    sim: BybitSimulator, session: BybitSession, events: Events
) -> None:
    async with session.stream_positions(**FAST) as stream:
        await stream.wait_connected()
        sim.stream.answer_pings = False
        (lost,) = await events.wait(StreamDisconnected)
        assert lost.reason == "no pong"
        sim.stream.answer_pings = True
        await events.wait(StreamReconnected)


async def test_silence_is_a_dead_link(
    sim: BybitSimulator, session: BybitSession, events: Events
) -> None:
    options = {**FAST, "ping_interval": 3600.0, "silence_timeout": 0.05, "snapshot": False}
    async with session.stream_positions(**options) as stream:
        await stream.wait_connected()
        (lost,) = await events.wait(StreamDisconnected)
    assert lost.reason == "silent"


async def test_connects_are_capped_per_window(
    sim: BybitSimulator, session: BybitSession, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    waiting = asyncio.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "stream connects in" in record.getMessage():
                waiting.set()

    spy = Spy()
    logging.getLogger("bybit_async.stream").addHandler(spy)
    try:
        options = {**FAST, "max_connects": 2, "connects_window": 3600.0}
        async with session.stream_positions(**options) as stream:
            await stream.wait_connected()
            sim.stream.drop_all()
            await events.wait(StreamReconnected)
            sim.stream.drop_all()
            await waiting.wait()
        assert sim.stream.connects == 2
    finally:
        logging.getLogger("bybit_async.stream").removeHandler(spy)


def test_backoff_is_capped_and_jittered(session: BybitSession) -> None:
    stream = session.stream_positions(backoff_initial=0.5, backoff_max=4.0)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0), (1000, 4.0)):
        waits = {stream._backoff(failures) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1


# -- what is yielded -----------------------------------------------------------------------


def push(symbol: str, seq: Any, **fields: Any) -> str:
    item = {
        "symbol": symbol,
        "positionIdx": 0,
        "side": "Buy",
        "size": "1",
        "tradeMode": 1,
        "autoAddMargin": 0,
        "seq": seq,
        "category": "linear",
        **fields,
    }
    return orjson.dumps({"topic": "position.linear", "id": "x", "data": [item]}).decode()


async def test_older_updates_are_dropped(sim: BybitSimulator, session: BybitSession) -> None:
    async with session.stream_positions(**FAST, snapshot=False) as stream:
        await stream.wait_connected()
        sim.stream.push_raw(push("BTCUSDT", 500, size="5"))
        sim.stream.push_raw(push("BTCUSDT", 400, size="4"))  # older: dropped
        sim.stream.push_raw(push("BTCUSDT", 500, size="4"))  # the same seq again: dropped
        sim.stream.push_raw(push("ETHUSDT", 400, size="1"))  # another position: kept
        sim.stream.push_raw(push("BTCUSDT", 501, size="6"))
        seen: set[tuple[str, Decimal]] = set()
        async for position in stream:
            seen.add((position.symbol, position.size))
            if {("BTCUSDT", Decimal(6)), ("ETHUSDT", Decimal(1))} <= seen:
                break
    assert ("BTCUSDT", Decimal(4)) not in seen
    assert session.stats().stream_stale == 2


async def test_bad_pushes_are_logged_once_counted_and_skipped(
    sim: BybitSimulator, session: BybitSession, caplog: pytest.LogCaptureFixture
) -> None:
    bad = [
        "not json at all",
        "not json at all",
        orjson.dumps({"topic": "position.linear", "data": [{"symbol": "BTCUSDT"}]}).decode(),
        push("BTCUSDT", 1, size="lots"),
        push("BTCUSDT", 2, size="NaN"),
        push("BTCUSDT", 3, autoAddMargin="yes"),
        push("BTCUSDT", 4, autoAddMargin=None),
    ]
    caplog.set_level(logging.WARNING, "bybit_async.stream")
    async with session.stream_positions(**FAST, snapshot=False) as stream:
        await stream.wait_connected()
        for text in bad:
            sim.stream.push_raw(text)
        sim.stream.push_raw(push("ETHUSDT", 9, autoAddMargin="1"))
        (good,) = await take(stream, 1)
    assert good.symbol == "ETHUSDT"
    assert good.auto_add_margin is True
    assert session.stats().stream_bad == len(bad)
    warnings = [r.getMessage() for r in caplog.records if r.name == "bybit_async.stream"]
    assert sum("not JSON" in w for w in warnings) == 1
    assert sum("size not a number" in w for w in warnings) == 1
    assert any("missing positionIdx" in w for w in warnings)
    assert any("autoAddMargin" in w for w in warnings)


async def test_a_slow_consumer_gets_the_latest_state(
    sim: BybitSimulator, session: BybitSession
) -> None:
    async with session.stream_positions(**FAST, snapshot=False) as stream:
        await stream.wait_connected()
        for size in range(1, 6):
            sim.set_position("BTCUSDT", size=size)
        sim.set_position("ETHUSDT", size=1)
        # Once ETHUSDT is yielded, every BTCUSDT push before it has been read.
        seen = [p async for p in _until_symbol(stream, "ETHUSDT")]
        assert seen[-1].symbol == "ETHUSDT"
        assert [p.size for p in seen if p.symbol == "BTCUSDT"][-1] == 5
        assert len(seen) <= 6


async def _until_symbol(stream: PositionStream, symbol: str) -> AsyncIterator[Position]:
    async for position in stream:
        yield position
        if position.symbol == symbol:
            return


def client_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the stream and the guard (the simulator's own are not counted)."""
    names = ("PositionStream.", "_Guard.")
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith(names)
    ]


async def test_closing_leaves_no_task_behind(sim: BybitSimulator, session: BybitSession) -> None:
    async with session.stream_positions(**FAST) as stream:
        await stream.wait_connected()
        assert client_tasks()
    assert client_tasks() == []
    assert [p async for p in stream] == []


async def test_closing_the_session_ends_the_stream_with_an_error(
    sim: BybitSimulator, session: BybitSession
) -> None:
    async with session.stream_positions(**FAST) as stream:
        await stream.wait_connected()
        await session.close()
        with pytest.raises(SessionClosedError):
            await take(stream, 100)


async def test_iterating_outside_async_with_is_refused(session: BybitSession) -> None:
    stream = session.stream_positions()
    with pytest.raises(RuntimeError, match="async with"):
        await stream.__anext__()
