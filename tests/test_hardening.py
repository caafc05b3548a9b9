"""Hardening, second pass (issue 23): what a hostile server or a careless caller can push on.

Each test drives a small server on loopback (`tests.hostile`) or the
simulator.  ``asyncio.wait_for`` bounds only turn an old hang into a failure;
no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import re
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from bybit_async import BybitError, BybitSession, InvalidResponseError, RequestTimeout
from bybit_async.events import CallEnded
from bybit_async.positions import MAX_PAGES, POSITION_LIST
from bybit_async.stats import MAX_KEYS, OTHER, OTHER_CODE, StatsRecorder

from .hostile import HostileServer, envelope, serve, session_for

GUARD = 30  # seconds: turns a hang into a failure, measures nothing
PATH = "/v5/position/set-auto-add-margin"


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    async for started in serve():
        yield started


def item(symbol: str, idx: int = 0, size: str = "1", flag: int = 0) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "positionIdx": idx,
        "side": "Buy",
        "size": size,
        "tradeMode": 1,
        "autoAddMargin": flag,
    }


def pages(make: Callable[[int], tuple[list[dict[str, Any]], str]]) -> Any:
    """A handler answering the position list's page n (from 0) with ``make(n)``."""
    count = itertools.count()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path != POSITION_LIST:
            return envelope()
        items, cursor = make(next(count))
        return envelope(result={"list": items, "nextPageCursor": cursor})

    return handler


def reads(server: HostileServer) -> int:
    return server.paths().count(POSITION_LIST)


# -- 1. endless position pages ------------------------------------------------------


async def test_new_cursors_with_new_positions_forever_stop_at_the_page_cap(
    server: HostileServer,
) -> None:
    server.handler = pages(lambda n: ([item(f"P{n}USDT")], f"cursor-{n}"))
    async with session_for(server) as session:
        with pytest.raises(InvalidResponseError, match="pages"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        assert reads(server) == MAX_PAGES
        with pytest.raises(InvalidResponseError, match="pages"):
            await asyncio.wait_for(session.ensure_auto_add_margin(None, True), GUARD)
        assert PATH not in server.paths()


async def test_new_cursors_over_the_same_positions_end_the_list(server: HostileServer) -> None:
    server.handler = pages(lambda n: ([item("BTCUSDT"), item("ETHUSDT")], f"cursor-{n}"))
    async with session_for(server) as session:
        positions = await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
    assert [p.symbol for p in positions] == ["BTCUSDT", "ETHUSDT"]
    assert reads(server) == 2


async def test_each_position_is_returned_once(server: HostileServer) -> None:
    listed = [
        [item("BTCUSDT"), item("BTCUSDT"), item("ETHUSDT", 1), item("ETHUSDT", 2)],
        [item("ETHUSDT", 1), item("XRPUSDT")],
        [],
    ]
    server.handler = pages(lambda n: (listed[n % 3], f"cursor-{n}" if n % 3 < 2 else ""))
    async with session_for(server) as session:
        positions = await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        report = await asyncio.wait_for(
            session.ensure_auto_add_margin(None, True, dry_run=True), GUARD
        )
    keys = [(p.symbol, int(p.position_idx)) for p in positions]
    assert keys == [("BTCUSDT", 0), ("ETHUSDT", 1), ("ETHUSDT", 2), ("XRPUSDT", 0)]
    assert [(r.symbol, r.position_idx) for r in report.rows] == keys


async def test_a_page_longer_than_the_limit_is_refused(server: HostileServer) -> None:
    server.handler = pages(lambda n: ([item(f"P{i}USDT") for i in range(201)], ""))
    async with session_for(server) as session:
        with pytest.raises(InvalidResponseError, match="more than the limit of 200"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)


async def test_the_deadline_bounds_the_whole_read_not_each_page(server: HostileServer) -> None:
    # Each page comes well within the deadline; all of them together do not.
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)  # latency, not synchronization
        return await endless(request)

    endless = pages(lambda n: ([item(f"P{n}USDT")], f"cursor-{n}"))
    server.handler = slow
    async with session_for(server, deadline=1.0) as session:
        with pytest.raises(RequestTimeout, match="deadline of 1 s"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        assert reads(server) < MAX_PAGES
        before = reads(server)
        with pytest.raises(RequestTimeout, match="deadline of 1 s"):
            await asyncio.wait_for(session.ensure_auto_add_margin(["BTCUSDT"], True), GUARD)
        assert reads(server) - before < MAX_PAGES


# -- 2. nothing secret reachable from an error ---------------------------------------

KEY = "KEY-reachable-0123456789"

_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
)


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from *root*, tracebacks and frames aside.

    A traceback's frames hold the caller's own objects (the session, which
    keeps its key); what an error carries besides them must hold nothing secret.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        yield obj
        stack += gc.get_referents(obj)
        if isinstance(obj, BaseException):
            stack += [obj.__cause__, obj.__context__]
            stack += list(vars(obj).values()) if hasattr(obj, "__dict__") else []


def secrets_in(error: BaseException, secrets: list[str]) -> list[str]:
    found = []
    for obj in reachable(error):
        texts: list[str] = []
        if isinstance(obj, str):
            texts.append(obj)
        elif isinstance(obj, bytes | bytearray):
            texts.append(bytes(obj).decode("latin-1"))
        else:
            with contextlib.suppress(Exception):
                texts.append(repr(obj))
        found += [s for s in secrets for text in texts if s in text]
    return found


class RawServer:
    """Answers the clock properly and everything else with *answer*, bytes as given."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                body = await reader.readexactly(int(length[1])) if length else b""
                self.requests.append(head + body)
                if head.startswith(b"GET /v5/market/time"):
                    now = time.time_ns()
                    payload = (
                        b'{"retCode":0,"retMsg":"OK","result":{"timeNano":"%d"},"time":%d}'
                        % (now, now // 10**6)
                    )
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                else:
                    writer.write(self.answer)
                    break  # and hang up: a body cut short stays short
                await writer.drain()
        writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def signatures(self) -> list[str]:
        return [
            m.decode() for r in self.requests for m in re.findall(rb"(?i)x-bapi-sign: *(\w+)", r)
        ]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}",  # a malformed header
        b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}",  # a malformed status line
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",  # a body cut short
    ],
)
async def test_no_signature_or_key_reachable_from_an_error(answer: bytes) -> None:
    async with RawServer(answer) as raw:
        session = BybitSession(KEY, "secret", base_url=raw.url, max_retries=0)
        async with session:
            with pytest.raises(BybitError) as raised:
                await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
    assert raw.signatures()
    assert secrets_in(raised.value, [KEY, "secret", *raw.signatures()]) == []
    # What aiohttp said is kept, without the secrets.
    assert raised.value.__cause__ is not None


# -- 4. the deadline's error says what happened to the call ---------------------------


async def test_a_deadline_during_the_first_clock_sync_says_not_sent(
    server: HostileServer,
) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return envelope()

    server.time_handler = hang
    events: list[Any] = []
    async with session_for(server, deadline=0.2, timeout=3600, on_event=events.append) as session:
        with pytest.raises(RequestTimeout, match="deadline") as raised:
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
    assert raised.value.sent is False
    assert "not sent" in str(raised.value)
    assert PATH not in server.paths()
    (ended,) = [e for e in events if isinstance(e, CallEnded) and e.path == PATH]
    assert ended.reason == "RequestTimeout"


async def test_a_deadline_after_many_10006_answers_counts_every_attempt(
    server: HostileServer,
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return envelope(10006)

    server.handler = refuse
    events: list[Any] = []
    options = {"deadline": 0.3, "max_retries": 10_000, "backoff_max": 0.01}
    async with session_for(server, **options, on_event=events.append) as session:
        with pytest.raises(RequestTimeout, match="deadline") as raised:
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
        stats = session.stats()
    received = server.paths().count(PATH)
    assert received > 2
    # The last attempt may have been on its way when the deadline passed.
    assert received <= raised.value.attempts <= received + 1
    assert raised.value.sent is True
    (ended,) = [e for e in events if isinstance(e, CallEnded) and e.path == PATH]
    assert ended.attempts == raised.value.attempts
    assert stats.paths[PATH].requests >= received


# -- 5. a server cannot grow the stats without bound -----------------------------------


def test_distinct_ret_codes_and_reasons_are_bounded_the_rest_counted_as_other() -> None:
    recorder = StatsRecorder()
    for code in range(20_000, 25_000):
        recorder.answered(PATH, 200, code, 0.001, False)
        recorder.answered(PATH, 100 + code % 900, None, 0.001, False)
        recorder.failed(PATH, f"Reason{code}")
        recorder.retried(f"retCode {code}")
        recorder.call_ended(f"retCode {code}")
    stats = recorder.snapshot()
    row = stats.paths[PATH]
    for counts in (row.by_ret_code, row.by_status, row.failures, stats.retries, stats.calls_failed):
        assert len(counts) <= MAX_KEYS + 1
        assert sum(counts.values()) in (5000, 10_000)
    assert row.by_ret_code[OTHER_CODE] == 5000 - MAX_KEYS
    assert stats.calls_failed[OTHER] == 5000 - MAX_KEYS
    assert stats.calls == 5000
    # The first ones seen keep their own count.
    assert row.by_ret_code[20_000] == stats.calls_failed["retCode 20000"] == 1


async def test_a_server_answering_ever_new_ret_codes_leaves_bounded_stats(
    server: HostileServer,
) -> None:
    codes = itertools.count(30_000)

    async def refuse(request: web.Request) -> web.StreamResponse:
        return envelope(next(codes))

    server.handler = refuse
    async with session_for(server, rate_limits=None, max_retries=0) as session:
        for _ in range(MAX_KEYS + 20):
            with pytest.raises(BybitError):
                await session.set_auto_add_margin("BTCUSDT", True)
        stats = session.stats()
    assert len(stats.paths[PATH].by_ret_code) == MAX_KEYS + 1
    assert stats.paths[PATH].by_ret_code[OTHER_CODE] == 20
    assert len(stats.calls_failed) == MAX_KEYS + 1
    assert stats.calls_failed[OTHER] == 20


# -- 7. sizes that are not numbers ---------------------------------------------------


@pytest.mark.parametrize("size", ["NaN", "sNaN", "Infinity", "-Infinity", "-nan", "inf"])
async def test_a_size_that_is_not_a_finite_number_refuses_the_page(
    server: HostileServer, size: str
) -> None:
    server.handler = pages(lambda n: ([item("BTCUSDT"), item("ETHUSDT", size=size)], ""))
    async with session_for(server) as session:
        with pytest.raises(InvalidResponseError):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        with pytest.raises(InvalidResponseError):
            await asyncio.wait_for(session.ensure_auto_add_margin(None, True), GUARD)
    assert PATH not in server.paths()


# -- 3. a coroutine function as on_event ------------------------------------------------


async def test_an_async_on_event_is_refused_at_construction() -> None:
    async def hook(event: object) -> None:
        pass

    class Hook:
        async def __call__(self, event: object) -> None:
            pass

    for bad in (hook, Hook(), functools.partial(hook)):
        with pytest.raises(TypeError, match="coroutine function"):
            BybitSession("key", "secret", on_event=bad)  # type: ignore[arg-type]


async def test_a_hook_returning_a_coroutine_is_counted_as_failing_not_dropped(
    server: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[object] = []

    async def deliver(event: object) -> None:
        delivered.append(event)

    async with session_for(server, on_event=lambda event: deliver(event)) as session:
        await session.set_auto_add_margin("BTCUSDT", True)
        stats = session.stats()
    assert stats.callback_errors > 0
    assert delivered == []
    assert "on_event returned a coroutine" in caplog.text


# -- 9. stats that say what they measure -------------------------------------------------


def test_overlapping_limiter_waits_add_up_in_the_sum_not_in_the_wall_time() -> None:
    now = [0.0]
    recorder = StatsRecorder(monotonic=lambda: now[0])

    def wait_ending_at(end: float, seconds: float) -> None:
        now[0] = end
        recorder.waited(seconds)

    # Twenty calls queued together for 5 s, each released a quarter second later.
    for i in range(20):
        wait_ending_at(0.25 * (i + 1), 0.25 * (i + 1))
    wait_ending_at(6.0, 0.5)  # a later wait alone
    wait_ending_at(7.0, 2.0)  # one that began before the last ended: [5, 7] takes in [5.5, 6]
    stats = recorder.snapshot()
    assert stats.limiter_wait.total == pytest.approx(sum(0.25 * (i + 1) for i in range(20)) + 2.5)
    assert stats.limiter_wait_wall == pytest.approx(5.0 + 2.0)
    recorder.waited(0.0)  # no wait: nothing to add
    assert recorder.snapshot().limiter_wait_wall == pytest.approx(7.0)


async def test_stats_print_as_a_few_short_lines(server: HostileServer) -> None:
    calls = 0

    async def some_fail(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return envelope(110076 if calls % 3 == 0 else 0)

    server.handler = some_fail
    async with session_for(server) as session:
        await asyncio.gather(
            *(session.set_auto_add_margin(f"S{i}USDT", True) for i in range(9)),
            return_exceptions=True,
        )
        text = str(session.stats())
    lines = text.splitlines()
    assert 4 <= len(lines) <= 12, text
    assert all(len(line) <= 100 for line in lines), text
    assert lines[0].startswith("session stats over ")
    assert "9 calls, 3 failed (retCode 110076: 3)" in lines[0]
    assert "limiter wait: " in lines[2]
    assert "of wall time" in lines[2]
    assert "summed over" in lines[2]
    assert f"{PATH}: 9 requests" in text
    assert "by retCode: 0: 6, 110076: 3" in text
