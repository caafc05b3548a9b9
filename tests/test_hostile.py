"""Hostile and broken answers: every failure is a BybitError, bounded in time and memory.

Each test drives a small server on loopback (`tests.hostile`) or the
simulator.  ``asyncio.wait_for`` bounds only turn an old hang into a failure;
no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import time
import traceback
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientTimeout, web

from bybit_async import (
    AuthenticationError,
    BybitError,
    BybitSession,
    ConnectError,
    HTTPStatusError,
    InvalidResponseError,
    LocalLimiter,
    RateLimits,
    RequestTimeout,
    ServerError,
    TooManyRequestsError,
    errors,
)
from bybit_async.testing import BybitSimulator, Fault

from .conftest import MakeSession
from .hostile import HostileServer, envelope, gzip_bomb, serve, server_time, session_for

PATH = "/v5/position/set-auto-add-margin"
BODY = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
GUARD = 30  # seconds: turns a hang into a failure, measures nothing


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    async for started in serve():
        yield started


@pytest.fixture
async def evil() -> AsyncIterator[HostileServer]:
    """A second host, which must never see a request."""
    async for started in serve():
        yield started


# -- 1. server wait hints beyond max_server_wait --------------------------------


@pytest.mark.parametrize(("status", "error"), [(429, TooManyRequestsError), (503, ServerError)])
async def test_retry_after_a_day_raises_at_once_with_retry_after(
    server: HostileServer, status: int, error: type[BybitError]
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="busy", headers={"Retry-After": "86400"})

    server.handler = refuse
    async with session_for(server) as session:
        with pytest.raises(error) as raised:
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
        assert raised.value.attempts == 1
        assert raised.value.retry_after == 86400
        assert server.paths() == [PATH]
        assert isinstance(session._limiter, LocalLimiter)
        assert session._limiter.available(PATH) > 0


async def test_a_success_with_a_far_reset_does_not_hold_the_endpoint(
    server: HostileServer,
) -> None:
    async def far(request: web.Request) -> web.StreamResponse:
        reset = time.time_ns() // 10**6 + 600_000
        return envelope(**{"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)})

    server.handler = far
    async with session_for(server) as session:
        await session.set_auto_add_margin("BTCUSDT", True)
        assert isinstance(session._limiter, LocalLimiter)
        assert session._limiter.available(PATH) > 0
        await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)


# -- 2. a deadline per call -------------------------------------------------------


async def test_a_deadline_bounds_the_whole_call(server: HostileServer) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return envelope()

    server.handler = hang
    async with session_for(server, timeout=3600, deadline=0.2) as session:
        with pytest.raises(RequestTimeout, match="deadline") as raised:
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
        assert isinstance(raised.value, BybitError)
        with pytest.raises(RequestTimeout, match=r"deadline of 0\.1 s"):
            await asyncio.wait_for(session.request("POST", PATH, BODY, deadline=0.1), GUARD)


async def test_a_deadline_bounds_the_wait_in_the_limiter(server: HostileServer) -> None:
    limits = RateLimits(endpoints={PATH: 1}, window=3600)
    async with session_for(server, rate_limits=limits, deadline=0.2) as session:
        await session.set_auto_add_margin("BTCUSDT", True)  # takes the only permit
        with pytest.raises(RequestTimeout, match="deadline") as raised:
            await asyncio.wait_for(session.set_auto_add_margin("ETHUSDT", True), GUARD)
        assert raised.value.sent is False
        assert server.paths() == [PATH]
        assert session._calls.tasks == {}


# -- 3. absurd header values --------------------------------------------------------


HUGE = "9" * 400


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": HUGE},
        {"X-Bapi-Limit-Status": HUGE, "X-Bapi-Limit": HUGE},
        {"Retry-After": HUGE},
        {"X-Bapi-Limit-Status": "-1", "X-Bapi-Limit-Reset-Timestamp": "1e30"},
    ],
)
async def test_absurd_header_values_are_ignored(
    server: HostileServer, headers: dict[str, str]
) -> None:
    answers = iter([envelope(**headers), web.Response(status=429, headers=headers)])

    async def answer(request: web.Request) -> web.StreamResponse:
        return next(answers)

    server.handler = answer
    async with session_for(server, max_retries=0) as session:
        resp = await session.set_auto_add_margin("BTCUSDT", True)
        assert resp.ret_code == 0
        for value in (resp.limit, resp.limit_status, resp.limit_reset_timestamp):
            assert value is None or 0 <= value < 2**63
        with pytest.raises(TooManyRequestsError) as raised:
            await session.set_auto_add_margin("BTCUSDT", True)
        assert raised.value.retry_after is None


# -- 4. the clock takes sane server times only ---------------------------------------


@pytest.mark.parametrize(
    "nano",
    [
        "0",
        True,
        "9" * 300,
        "-1688639403423213947",
        "1e18",
        "\uff11" * 19,  # fullwidth digits: str.isdigit() says yes
        None,
    ],
)
async def test_an_insane_server_time_is_refused_and_the_offset_kept(
    server: HostileServer, nano: object
) -> None:
    async with session_for(server, max_retries=0) as session:
        await session.warm_up()
        offset = session.clock.offset_ms
        generation = session.clock.generation
        assert offset is not None

        async def bad(request: web.Request) -> web.StreamResponse:
            if nano is None:
                return envelope(result={"timeSecond": "1"})
            return server_time(nano)

        server.time_handler = bad
        with pytest.raises(InvalidResponseError, match="server time"):
            await session.warm_up()
        with pytest.raises(InvalidResponseError):
            await session.get_server_time()
        assert session.clock.offset_ms == offset
        assert session.clock.generation == generation


# -- 5. bodies are capped ----------------------------------------------------------


async def test_an_endless_body_stops_at_the_cap(server: HostileServer) -> None:
    from .hostile import endless

    server.handler = endless
    async with session_for(server, max_response_bytes=64 * 1024, max_retries=1) as session:
        with pytest.raises(InvalidResponseError, match="max_response_bytes") as raised:
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)
        assert raised.value.attempts == 2
        assert len(raised.value.body) <= 200


async def test_a_gzip_bomb_stops_at_the_cap(server: HostileServer) -> None:
    bomb = gzip_bomb(2 * 1024 * 1024)
    assert len(bomb) < 8 * 1024

    async def explode(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    server.handler = explode
    async with session_for(server, max_response_bytes=64 * 1024, max_retries=0) as session:
        with pytest.raises(InvalidResponseError, match="max_response_bytes"):
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), GUARD)


async def test_a_small_compressed_answer_is_read_whole(server: HostileServer) -> None:
    async def small(request: web.Request) -> web.StreamResponse:
        resp = envelope(result={"list": ["x" * 1000] * 50})
        resp.enable_compression()
        return resp

    server.handler = small
    async with session_for(server, max_response_bytes=64 * 1024) as session:
        resp = await session.request("POST", PATH, BODY)
        assert len(resp.result["list"]) == 50


# -- 6. credentials stay with the session's host -------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed(
    server: HostileServer, evil: HostileServer, status: int
) -> None:
    elsewhere = evil.url.replace("127.0.0.1", "localhost") + PATH

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": elsewhere})

    server.handler = redirect
    async with session_for(server) as session:
        with pytest.raises(HTTPStatusError) as raised:
            await session.set_auto_add_margin("BTCUSDT", True)
    assert raised.value.status == status
    assert str(status) in str(raised.value)
    assert "'localhost'" in str(raised.value)
    assert raised.value.attempts == 1
    assert evil.received == []


# -- 7. no signature in tracebacks with locals ----------------------------------------


def shown_with_locals(error: BaseException) -> str:
    """The traceback as the stdlib and rich print it with local variables."""
    text = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    try:  # the cli extra, which the dev extra includes
        from rich.console import Console
        from rich.traceback import Traceback
    except ImportError:
        return text
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(
        Traceback.from_exception(
            type(error), error, error.__traceback__, show_locals=True, locals_max_string=500
        )
    )
    return text + console.export_text()


@pytest.mark.parametrize(
    "fault",
    [Fault.ret_code(10004, "error sign!"), Fault.drop(), Fault.http_status(503)],
)
async def test_no_signature_in_a_traceback_with_locals(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault
) -> None:
    sim.inject(fault, path=PATH, times=10)
    with pytest.raises(BybitError) as raised:
        await make_session(max_retries=1).set_auto_add_margin("BTCUSDT", True)
    shown = shown_with_locals(raised.value)
    signatures = [r.signature for r in sim.requests if r.signature]
    assert signatures
    assert "_send" in shown  # the frames were there to look at
    for signature in signatures:
        assert signature not in shown


def test_repr_of_a_half_built_session_is_safe() -> None:
    with pytest.raises(ValueError, match="timeout") as raised:
        BybitSession("key", "secret", timeout=0)
    shown = shown_with_locals(raised.value)
    assert "<BybitSession" in shown
    assert "secret" not in repr(BybitSession("key", "secret"))


# -- 11. failures before sending are retried, whatever the request --------------------


async def test_a_failed_first_clock_sync_is_retried_for_a_non_idempotent_post(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.http_status(503), path="/v5/market/time")
    resp = await make_session().request("POST", PATH, BODY, idempotent=False)
    assert resp.attempts == 2
    assert sim.count(PATH) == 1


async def test_a_timeout_waiting_for_a_pooled_connection_is_not_sent(
    server: HostileServer,
) -> None:
    hold = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        if request.path == "/v5/hold":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await hold.wait()
            return resp
        return envelope()

    server.handler = slow
    limits = RateLimits(endpoints={PATH: 5})
    async with session_for(
        server, max_connections=1, timeout=0.2, max_retries=1, rate_limits=limits
    ) as session:
        await session.get_server_time()  # opens the pool
        http = session._http
        assert http is not None
        # The only connection, taken by a response the test keeps unread.
        held = await http.get(server.url + "/v5/hold", timeout=ClientTimeout(total=GUARD))
        try:
            with pytest.raises(ConnectError) as raised:
                await session.request("POST", PATH, BODY, idempotent=False)
            assert raised.value.sent is False
            assert raised.value.attempts == 2
            assert PATH not in server.paths()
            assert isinstance(session._limiter, LocalLimiter)
            assert session._limiter.available(PATH) == 5  # given back at once
        finally:
            hold.set()
            held.close()


# -- 14. errors survive pickling ----------------------------------------------------------


def every_error() -> list[BybitError]:
    where = {"method": "POST", "path": PATH}
    cause = errors.ForbiddenError(403, "access too frequent", **where)
    made: list[BybitError] = [
        errors.HTTPStatusError(307, "moved", detail="redirect to 'x' not followed", **where),
        errors.error_for_status(429, b"busy", **where),
        errors.error_for_status(502, b"<html>", **where),
        cause,
        errors.InvalidResponseError(b"<html>", reason="too big", **where),
        errors.SessionHaltedError(cause, 12.5, **where),
        errors.error_for_ret_code(10004, "error sign!", {"x": 1}, **where),
        errors.error_for_ret_code(110076, "not isolated", None, **where),
    ]
    for name in errors.__all__:
        cls = getattr(errors, name)
        known = any(type(e) is cls for e in made)
        if isinstance(cls, type) and issubclass(cls, errors.BybitError) and not known:
            try:
                made.append(cls("message", **where))
            except TypeError:
                made.append(cls(10001, "msg", None, **where))
    return made


def test_every_error_round_trips_through_pickle() -> None:
    for error in every_error():
        error.attempts = 3
        error.retry_after = 1.5
        error.sent = False
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.args == error.args
        state = vars(error)
        for name, value in vars(copy).items():
            if isinstance(value, BybitError):
                assert str(value) == str(state[name])
            else:
                assert value == state[name], (type(error).__name__, name)
        assert vars(copy).keys() == state.keys()


def test_every_error_class_is_covered_by_the_pickle_test() -> None:
    classes = {
        getattr(errors, n)
        for n in errors.__all__
        if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), BybitError)
    }
    assert {type(e) for e in every_error()} == classes
    assert AuthenticationError in classes
