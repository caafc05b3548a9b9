"""The rolling-window permit limiter: unit tests on an injected clock, then end to end.

The unit tests never let real time decide anything: the limiter's clock is a
number the test sets, and waiting calls are woken by releases, which dispatch
at once.  The end-to-end tests run against the simulator with network jitter
on and assert what the simulator counted, never how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from aiohttp import web

from bybit_async import (
    ApiResponse,
    BybitSession,
    ConnectError,
    LocalLimiter,
    Permit,
    RateLimitError,
    RateLimits,
    RequestTimeout,
)
from bybit_async.testing import BybitSimulator, Fault, NetworkDelay

from .conftest import ticking_clock

PATH = "/v5/position/set-auto-add-margin"
OTHER = "/v5/position/set-leverage"
TIME = "/v5/market/time"


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def symbols(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


def done_without_waiting(coro: Coroutine[Any, Any, Permit]) -> Permit:
    """Run *coro* one step; fail if it suspends, as a call that waits in the limiter does."""
    try:
        coro.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("acquire suspended: the call had to wait")


def limiter(clock: FakeClock, **kwargs: Any) -> LocalLimiter:
    options: dict[str, Any] = {"endpoints": {PATH: 10}, "margin": 0.01}
    options.update(kwargs)
    return LocalLimiter(RateLimits(**options), clock=clock)


# -- unit tests on an injected clock -------------------------------------------


async def test_a_full_burst_goes_without_waiting() -> None:
    lim = limiter(FakeClock())
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    assert len(permits) == 10
    assert lim.available(PATH) == 0
    eleventh = asyncio.ensure_future(lim.acquire(PATH))
    await asyncio.sleep(0)  # one loop turn: it is queued, not granted
    assert not eleventh.done()
    eleventh.cancel()


async def test_a_permit_comes_back_one_window_after_release() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    clock.now += 5.0  # a long round trip: the window counts from the answer
    assert lim.available(PATH) == 0
    for permit in permits:
        permit.release()
    clock.now += 1.0 + 0.01 - 1e-6
    assert lim.available(PATH) == 0
    clock.now += 2e-6
    assert lim.available(PATH) == 10


async def test_a_permit_is_back_at_the_very_return_time_its_level_reports() -> None:
    # The timer that wakes waiting calls is set for the return time the level
    # reports (release time plus the hold).  At that time the permit must be
    # back, also where (release + hold) - hold rounds below the release time:
    # else the timer finds nothing back, sets no new one, and the calls wait on.
    hold = 1.0 + 0.01
    released = next(r for r in (1 + k * 1e-4 for k in range(10_000)) if (r + hold) - hold < r)
    clock = FakeClock()
    clock.now = released
    lim = limiter(clock)
    for permit in [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]:
        permit.release()
    returns_at = lim._endpoints[PATH].next_return()
    assert returns_at == released + hold
    clock.now = returns_at
    assert lim.available(PATH) == 10


async def test_a_permit_not_sent_comes_back_at_once_and_wakes_the_next_caller() -> None:
    lim = limiter(FakeClock())
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    waiter = asyncio.ensure_future(lim.acquire(PATH))
    await asyncio.sleep(0)
    permits[0].release(sent=False)
    assert (await waiter) is not None
    permits[0].release(sent=False)  # releasing twice gives nothing back twice
    assert lim.available(PATH) == 0


async def test_limits_out_of_reach_keep_only_the_permits_still_cooling() -> None:
    # try_acquire prunes only a level that looks full; one never full must
    # still forget the permits whose window has passed, or memory grows per request.
    clock = FakeClock()
    lim = limiter(clock, endpoints={PATH: 10**6}, ip_limit=10**6)
    for _ in range(10_000):
        permit = lim.try_acquire(PATH)
        assert permit is not None
        permit.release()
        clock.now += 0.1
    # A window and an eighth (1.01 s, 5.01 s, each plus the eighth a release
    # may wait before pruning) of 0.1-s steps on the endpoint and the IP.
    assert len(lim._endpoints[PATH].cooling) <= 13
    assert len(lim._ip.cooling) <= 58


async def test_calls_to_one_endpoint_are_served_first_come_first_served() -> None:
    lim = limiter(FakeClock())
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    order: list[int] = []

    async def call(i: int) -> None:
        await lim.acquire(PATH)
        order.append(i)

    tasks = [asyncio.ensure_future(call(i)) for i in range(5)]
    await asyncio.sleep(0)
    for permit in permits[:5]:
        permit.release(sent=False)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_call_holds_no_endpoint_permit_while_it_waits_for_the_ip_level() -> None:
    clock = FakeClock()
    lim = limiter(clock, ip_limit=3, ip_window=5.0)
    others = [done_without_waiting(lim.acquire(OTHER)) for _ in range(3)]  # IP level full
    waiting = asyncio.ensure_future(lim.acquire(PATH))
    await asyncio.sleep(0)
    assert not waiting.done()
    # The endpoint's ten permits are all still there for when the IP level frees.
    assert lim._endpoints[PATH].free(clock()) == 10
    others[0].release(sent=False)
    await waiting
    assert lim._endpoints[PATH].free(clock()) == 9


async def test_the_oldest_call_goes_first_across_endpoints_at_the_ip_level() -> None:
    lim = limiter(FakeClock(), ip_limit=1, endpoints={PATH: 10, OTHER: 10})
    first = done_without_waiting(lim.acquire(PATH))
    order: list[str] = []

    async def call(path: str) -> Permit:
        permit = await lim.acquire(path)
        order.append(path)
        return permit

    a = asyncio.ensure_future(call(OTHER))
    await asyncio.sleep(0)
    b = asyncio.ensure_future(call(PATH))
    await asyncio.sleep(0)
    first.release(sent=False)
    (await a).release(sent=False)
    await b
    assert order == [OTHER, PATH]


async def test_a_cancelled_waiter_takes_nothing() -> None:
    lim = limiter(FakeClock())
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    cancelled = asyncio.ensure_future(lim.acquire(PATH))
    behind = asyncio.ensure_future(lim.acquire(PATH))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    permits[0].release(sent=False)
    await behind
    assert lim.available(PATH) == 0
    assert lim._endpoints[PATH].in_flight == 10


async def test_server_reported_exhaustion_holds_the_endpoint_until_the_reset() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    lim.observe(PATH, 0, 0.5)
    assert lim.available(PATH) == 0
    assert lim.available(OTHER) > 0
    clock.now += 0.5 + 0.01
    assert lim.available(PATH) == 10
    lim.observe(PATH, 3, 0.5)  # not exhausted: no hold
    assert lim.available(PATH) == 10


# -- the session's use of permits ----------------------------------------------


async def test_a_timed_out_request_returns_its_permit_one_window_after_the_timeout(
    sim: BybitSimulator,
) -> None:
    clock = FakeClock()
    lim = limiter(clock)
    sim.inject(Fault.stall(), path=PATH)
    async with BybitSession(
        sim.api_key, sim.api_secret, base_url=sim.url, limiter=lim, timeout=0.2, max_retries=0
    ) as session:
        await session.warm_up()
        with pytest.raises(RequestTimeout):
            await session.set_auto_add_margin("BTCUSDT", True)
    assert lim.available(PATH) == 9
    clock.now += 1.01
    assert lim.available(PATH) == 10


async def test_a_request_never_sent_returns_its_permit_at_once() -> None:
    lim = limiter(FakeClock())
    # Nothing listens on port 9 of loopback: the connection is refused.
    async with BybitSession(
        "k", "s", base_url="http://127.0.0.1:9", limiter=lim, max_retries=0
    ) as session:
        with pytest.raises(ConnectError):
            await session.request("GET", TIME, signed=False)
    assert lim.available(TIME, signed=False) == lim.limits.ip_limit


# -- end to end, against the simulator with network jitter ---------------------

JITTER = NetworkDelay(low=0.0, high=0.02, spike_probability=0.1, spike=0.3, seed=7)


async def test_60_symbols_at_the_real_limit_never_exceed_it_under_jitter() -> None:
    async with BybitSimulator(network_delay=JITTER, instruments=None) as sim:
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, clock=ticking_clock()
        ) as session:
            outcomes = await session.set_auto_add_margin_many(symbols(60), True)
        assert all(isinstance(o, ApiResponse) for o in outcomes)
        assert sim.count(PATH) == 60
        assert sim.count(ret_code=10006) == 0
        assert sim.max_in_window(PATH, 1.0) <= 10


async def test_an_endpoint_behind_an_ip_backlog_is_not_released_in_a_burst() -> None:
    # 40 writes behind 100 reads, with the IP limit lowered to 50 per second so
    # that the reads make a two-second backlog quickly; the endpoint keeps
    # Bybit's real 10 per rolling second.  A limiter that let writes take
    # endpoint permits while they queued for the IP level would release about
    # 20 of them together after the reads.
    delay = NetworkDelay(low=0.0, high=0.01, seed=3)
    async with BybitSimulator(
        ip_limit=50, ip_window=1.0, network_delay=delay, instruments=None
    ) as sim:
        limits = RateLimits(ip_limit=50, ip_window=1.0)
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=limits
        ) as session:
            await session.warm_up()  # a running engine: the writes need no clock sync
            reads = [
                asyncio.ensure_future(session.request("GET", TIME, signed=False))
                for _ in range(100)
            ]
            writes = await session.set_auto_add_margin_many(symbols(40), True)
            await asyncio.gather(*reads)
        assert all(isinstance(o, ApiResponse) for o in writes)
        assert sim.count(ret_code=10006) == 0
        assert sim.count(status=403) == 0
        assert sim.max_in_window(PATH, 1.0) <= 10


async def test_a_10006_with_a_reset_ahead_holds_the_endpoint_for_the_next_call() -> None:
    # The client's own endpoint limit is configured out of reach (a configured
    # limit wins over the learned one), so only Bybit's answer can hold the
    # endpoint: the 10006's reset header is in the future (as on Bybit, the
    # header is about "now" on answers that merely use up the window).
    async with BybitSimulator(endpoint_limits={PATH: 3}) as sim:
        async with BybitSession(
            sim.api_key,
            sim.api_secret,
            base_url=sim.url,
            rate_limits=RateLimits(endpoints={PATH: 1000}),
            max_retries=0,
        ) as session:
            for symbol in ("BTCUSDT", "ETHUSDT", "XRPUSDT"):
                await session.set_auto_add_margin(symbol, True)
            with pytest.raises(RateLimitError) as refused:
                await session.set_auto_add_margin("SOLUSDT", True)
            assert refused.value.retry_after is not None
            # Sent at once, this call would be refused too; held, it waits for the reset.
            await session.set_auto_add_margin("SOLUSDT", True)
        assert sim.count(PATH, ret_code=10006) == 1


async def test_the_clock_sync_behind_a_long_queue_is_measured_without_the_wait() -> None:
    async with BybitSimulator(ip_limit=50, ip_window=1.0, clock_offset_ms=3_000) as sim:
        limits = RateLimits(ip_limit=50, ip_window=1.0)
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=limits
        ) as session:
            queued = [
                asyncio.ensure_future(session.request("GET", TIME, signed=False))
                for _ in range(100)
            ]
            await session.set_auto_add_margin("BTCUSDT", True)
            await asyncio.gather(*queued)
            offset = session.clock.offset_ms
        assert offset is not None
        assert abs(offset - 3_000) < 50
        assert sim.count(ret_code=10002) == 0


# -- server hints that are not slept on ----------------------------------------


@pytest.fixture
async def far_reset_server() -> AsyncIterator[str]:
    """A server whose every private answer is a 10006 with a reset ten minutes ahead."""

    async def server_time(request: web.Request) -> web.Response:
        now = time.time_ns()
        return web.json_response(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {"timeSecond": str(now // 10**9), "timeNano": str(now)},
            }
        )

    async def too_many(request: web.Request) -> web.Response:
        reset = time.time_ns() // 10**6 + 600_000
        return web.json_response(
            {"retCode": 10006, "retMsg": "Too many visits!", "result": {}},
            headers={
                "X-Bapi-Limit": "10",
                "X-Bapi-Limit-Status": "0",
                "X-Bapi-Limit-Reset-Timestamp": str(reset),
            },
        )

    app = web.Application()
    app.router.add_get(TIME, server_time)
    app.router.add_post(PATH, too_many)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_reset_ten_minutes_ahead_raises_at_once_with_retry_after(
    far_reset_server: str,
) -> None:
    async with BybitSession("k", "s", base_url=far_reset_server) as session:
        with pytest.raises(RateLimitError) as raised:
            # The bound only turns the old 600 s sleep into a failure; it measures nothing.
            await asyncio.wait_for(session.set_auto_add_margin("BTCUSDT", True), 60)
        assert raised.value.attempts == 1
        assert raised.value.retry_after is not None
        assert raised.value.retry_after > 590
        # The hint was not trusted to hold the endpoint either.
        assert isinstance(session._limiter, LocalLimiter)
        assert session._limiter.available(PATH) > 0


# -- warm start ----------------------------------------------------------------


async def test_warm_up_syncs_the_clock_so_the_first_signed_call_is_one_request(
    sim: BybitSimulator,
) -> None:
    sim.clock_offset_ms = 2_000
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        await session.warm_up(connections=3)
        assert sim.count(TIME) == 3
        assert session.clock.offset_ms is not None
        assert abs(session.clock.offset_ms - 2_000) < 500
        before = len(sim.requests)
        await session.set_auto_add_margin("BTCUSDT", True)
        assert [r.path for r in sim.requests[before:]] == [PATH]


async def test_warm_up_opens_the_connections_it_was_asked_for(sim: BybitSimulator) -> None:
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        await session.warm_up(connections=4)
        peers = set()
        for protocol in sim._runner.server.connections:  # type: ignore[union-attr]
            transport = protocol.transport
            assert transport is not None
            peers.add(transport.get_extra_info("peername"))
        assert len(peers) == 4
