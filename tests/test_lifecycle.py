"""Cancellation, closing, and keeping the secret out of everything printable."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
from aiohttp import web

from bybit_async import (
    ApiResponse,
    AuthenticationError,
    BybitError,
    BybitSession,
    ForbiddenError,
    LocalLimiter,
    RateLimits,
    SessionClosedError,
    SessionHaltedError,
)
from bybit_async.testing import BybitSimulator, Fault

from .conftest import MakeSession
from .hostile import HostileServer, envelope, serve

PATH = "/v5/position/set-auto-add-margin"


def open_connections(session: BybitSession | aiohttp.ClientSession) -> int:
    """Connections a pool holds, idle or in use (aiohttp keeps no public count)."""
    http = session._http if isinstance(session, BybitSession) else session
    if http is None:
        return 0
    connector = http.connector
    if connector is None:
        return 0
    assert connector is not None
    idle = sum(len(conns) for conns in connector._conns.values())  # type: ignore[attr-defined]
    return idle + len(connector._acquired)  # type: ignore[attr-defined]


async def test_cancelling_100_in_flight_calls(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=None)
    await session.get_server_time()
    sim.inject(Fault.stall(), path=PATH, times=100)
    tasks = [
        asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(100)
    ]
    await sim.wait_for_requests(1 + 1 + 100)  # time sync, get_server_time, 100 stalled
    assert open_connections(session) >= 100
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert open_connections(session) == 0
    await session.close()
    assert session._http is None


async def test_cancel_during_first_clock_sync(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.stall(), path="/v5/market/time")
    session = make_session()
    task = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
    await sim.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await session.close()


async def test_async_with_closes(sim: BybitSimulator) -> None:
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        await session.set_auto_add_margin("BTCUSDT", True)
        assert session._http is not None
    assert session.closed
    assert session._http is None


SECRET = "s3cr3t-value-never-shown"


async def test_secret_never_printed(
    sim: BybitSimulator, make_session: MakeSession, caplog: pytest.LogCaptureFixture
) -> None:
    sim.add_account("other-key", SECRET)
    caplog.set_level(logging.DEBUG)
    session = make_session(api_key="other-key", api_secret=SECRET)
    await session.set_auto_add_margin("BTCUSDT", True)
    sim.inject(Fault.http_status(503), path=PATH)
    await session.set_auto_add_margin("BTCUSDT", False)

    wrong = make_session(api_key="other-key", api_secret=SECRET + "x")
    with pytest.raises(AuthenticationError) as info:
        await wrong.set_auto_add_margin("BTCUSDT", True)
    signatures = [r.signature for r in sim.requests if r.signature]
    shown = "\n".join(
        [
            caplog.text,
            repr(session),
            repr(wrong),
            str(info.value),
            repr(info.value),
            "".join(traceback.format_exception(info.value)),
        ]
    )
    assert caplog.records, "DEBUG logging must be on for this test to mean anything"
    assert SECRET not in shown
    for signature in signatures:
        assert signature not in shown


# -- closing with calls under way ------------------------------------------------------

GUARD = 30  # seconds: turns a hang into a failure, measures nothing
ONE_PERMIT = RateLimits(endpoints={PATH: 1}, window=3600)


def queued(session: BybitSession) -> int:
    limiter = session._limiter
    assert isinstance(limiter, LocalLimiter)
    return sum(len(q) for q in limiter._queues.values())


async def until(condition: object) -> None:
    """Yield loop turns until *condition*() holds (bounded: a failure, not a hang)."""
    for _ in range(10_000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_close_ends_100_queued_calls_at_once(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=ONE_PERMIT)
    await session.set_auto_add_margin("BTCUSDT", True)  # the permit is out for an hour
    tasks = [
        asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(100)
    ]
    await until(lambda: queued(session) == 100)
    await session.close()
    await asyncio.sleep(0)  # one loop turn
    assert all(task.done() for task in tasks)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, SessionClosedError)
        assert outcome.sent is False
        assert isinstance(outcome, BybitError)
    assert sim.count(PATH) == 1
    with pytest.raises(SessionClosedError):
        await session.set_auto_add_margin("BTCUSDT", True)


async def test_a_retry_queued_at_close_may_have_been_sent(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=ONE_PERMIT)
    sim.inject(Fault.http_status(503), path=PATH)
    task = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
    await until(lambda: sim.count(PATH) == 1 and queued(session) == 1)
    await session.close()
    with pytest.raises(SessionClosedError) as raised:
        await asyncio.wait_for(task, GUARD)
    assert raised.value.sent is True  # the first attempt got a 503: it may have run


async def test_close_ends_calls_in_flight_without_retrying(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=None)
    await session.get_server_time()
    sim.inject(Fault.stall(), path=PATH, times=10)
    tasks = [asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(10)]
    await sim.wait_for_requests(1 + 1 + 10)
    http = session._http
    assert http is not None
    assert open_connections(http) >= 10
    await session.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD)
    for outcome in outcomes:
        assert isinstance(outcome, SessionClosedError), outcome
        assert outcome.attempts == 1
        assert outcome.sent is True
    assert sim.count(PATH) == 10
    assert open_connections(http) == 0


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    async for started in serve():
        yield started


async def test_an_ip_ban_ends_the_queued_calls_at_once(server: HostileServer) -> None:
    release = asyncio.Event()

    async def banned(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=403, text="access too frequent")

    server.handler = banned
    async with BybitSession("k", "s", base_url=server.url, rate_limits=ONE_PERMIT) as session:
        await session.warm_up()
        first = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
        await until(lambda: server.paths() == [PATH])
        others = [
            asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(5)
        ]
        await until(lambda: queued(session) == 5)
        release.set()
        with pytest.raises(ForbiddenError):
            await first
        outcomes = await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), GUARD)
        assert all(isinstance(o, SessionHaltedError) for o in outcomes), outcomes
        assert server.paths() == [PATH]


async def test_close_during_the_first_clock_sync(server: HostileServer) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return envelope()

    server.time_handler = hang
    session = BybitSession("k", "s", base_url=server.url)
    tasks = [asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(3)]
    cancelled = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
    await server.arrived.wait()
    cancelled.cancel()
    await session.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD)
    assert all(isinstance(o, SessionClosedError) for o in outcomes), outcomes
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert server.paths() == []


async def test_under_faults_and_a_close_every_call_returns_or_raises_a_bybit_error(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    faults = [
        Fault.http_status(503),
        Fault.drop(),
        Fault.stall(),
        Fault.html(status=200),
        Fault.ret_code(10006),
        Fault.ret_code(10016),
        Fault.http_status(429),
    ]
    for i in range(140):
        sim.inject(faults[i % len(faults)], path=PATH)
    session = make_session(timeout=0.5, rate_limits=RateLimits(endpoints={PATH: 50}))
    tasks = [
        asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(200)
    ]
    await sim.wait_for_requests(60)
    http = session._http
    assert http is not None
    await session.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD)
    assert all(isinstance(o, (ApiResponse, BybitError)) for o in outcomes), {
        type(o).__name__ for o in outcomes
    }
    assert open_connections(http) == 0


async def test_under_hostile_answers_every_call_returns_or_raises_a_bybit_error(
    server: HostileServer,
) -> None:
    from .hostile import endless, gzip_bomb

    bomb = gzip_bomb(1024 * 1024)

    async def hostile(request: web.Request) -> web.StreamResponse:
        n = len(server.received) % 8
        if n == 0:
            return await endless(request)
        if n == 1:
            return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})
        if n == 2:
            return web.Response(status=307, headers={"Location": "http://localhost:1/x"})
        if n == 3:
            return envelope(**{"X-Bapi-Limit-Status": "0", "Retry-After": "9" * 400})
        if n == 4:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if n == 5:
            return web.Response(status=429, headers={"Retry-After": "86400"})
        if n == 6:
            return web.Response(text="<html>bad gateway</html>", status=200)
        return envelope()

    server.handler = hostile
    async with BybitSession(
        "k",
        "s",
        base_url=server.url,
        max_response_bytes=64 * 1024,
        backoff_initial=0.001,
        rate_limits=None,
    ) as session:
        tasks = [
            asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(100)
        ]
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD)
        assert all(isinstance(o, (ApiResponse, BybitError)) for o in outcomes), {
            type(o).__name__ for o in outcomes
        }
        http = session._http
        assert http is not None
        assert http.connector is not None
        assert len(http.connector._acquired) == 0  # type: ignore[attr-defined]


# -- one event loop per session ----------------------------------------------------------


class _Time(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    closed: threading.Event

    def do_GET(self) -> None:
        now = time.time_ns()
        body = json.dumps({"retCode": 0, "retMsg": "OK", "result": {"timeNano": str(now)}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def finish(self) -> None:
        super().finish()
        type(self).closed.set()  # the client closed the keep-alive connection

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def threaded_server() -> Iterator[tuple[str, threading.Event]]:
    """A server in a thread, so that it outlives the test's event loops."""
    closed = threading.Event()
    handler = type("Handler", (_Time,), {"closed": closed})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", closed
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_session_used_from_a_second_event_loop_raises_at_once(
    threaded_server: tuple[str, threading.Event],
) -> None:
    url, closed = threaded_server
    session = BybitSession("k", "s", base_url=url, max_retries=0)
    asyncio.run(session.get_server_time())  # opens a keep-alive connection, then the loop ends

    async def second() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            await session.get_server_time()
        with pytest.raises(RuntimeError, match="another event loop"):
            await session.set_auto_add_margin("BTCUSDT", True)
        with pytest.raises(RuntimeError, match="another event loop"):
            await session.warm_up()
        await session.close()

    asyncio.run(second())
    assert session.closed
    assert closed.wait(GUARD), "the connection was left open"
    gc.collect()  # an unclosed session, connector or transport would warn here


async def test_a_clock_sync_stopped_with_a_reason_fails_its_callers_with_it() -> None:
    from bybit_async import ServerClock
    from bybit_async.clock import TimeSample

    clock = ServerClock()
    never = asyncio.Event()

    async def fetch() -> TimeSample:
        await never.wait()
        raise AssertionError("unreachable")

    waiting = [asyncio.create_task(clock.sync(fetch)) for _ in range(3)]
    cancelled = asyncio.create_task(clock.sync(fetch))
    await until(lambda: clock._pending is not None)
    await asyncio.sleep(0)
    cancelled.cancel()
    reason = SessionClosedError("closed", method="GET", path="/v5/market/time")
    clock.cancel(reason)
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(o is reason for o in outcomes), outcomes
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert clock.offset_ms is None


async def test_no_signature_in_a_cancelled_call_traceback_with_locals(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=None)
    await session.get_server_time()
    sim.inject(Fault.stall(), path=PATH)
    task = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
    await sim.wait_for_requests(3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await task
    shown = "".join(
        traceback.TracebackException.from_exception(raised.value, capture_locals=True).format()
    )
    (signature,) = [r.signature for r in sim.requests if r.path == PATH]
    assert signature
    assert signature not in shown
