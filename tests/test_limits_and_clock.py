"""Rate limits under concurrency, and the server clock."""

from __future__ import annotations

import pytest

from bybit_async import BybitSession, RateLimits
from bybit_async.testing import BybitSimulator

from .conftest import MakeSession, ticking_clock

PATH = "/v5/position/set-auto-add-margin"
TIME = "/v5/market/time"


def symbols(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


async def test_200_symbols_stay_under_the_endpoint_limit() -> None:
    # The limit raised to 100/s to keep the test short.  A bucket with a burst
    # of 100 would let about 190 into the first second.
    async with BybitSimulator(endpoint_limits={PATH: 100}, instruments=None) as sim:
        limits = RateLimits(endpoints={PATH: 100})
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=limits
        ) as session:
            outcomes = await session.set_auto_add_margin_many(symbols(200), True)
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(ret_code=10006) == 0
        assert sim.count(PATH) == 200
        assert sim.max_in_window(PATH, 1.0) <= 100


async def test_ip_limit_kept_across_endpoints() -> None:
    # No endpoint limit on the server, one out of reach on the client: only
    # the IP permits (100 per second here) hold.
    async with BybitSimulator(
        endpoint_limits={}, ip_limit=100, ip_window=1.0, instruments=None
    ) as sim:
        limits = RateLimits(ip_limit=100, ip_window=1.0, endpoints={PATH: 10_000})
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=limits
        ) as session:
            outcomes = await session.set_auto_add_margin_many(symbols(150), True)
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(status=403) == 0
        assert sim.max_in_window(None, 1.0) <= 100


async def test_default_limits_keep_endpoint_under_10_per_second() -> None:
    async with BybitSimulator(instruments=None) as sim:
        async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
            outcomes = await session.set_auto_add_margin_many(symbols(12), True)
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(ret_code=10006) == 0
        assert sim.max_in_window(PATH, 1.0) <= 10


async def test_without_client_limits_the_server_limit_bites_and_10006_is_retried() -> None:
    async with BybitSimulator(endpoint_limits={PATH: 5}, instruments=None) as sim:
        async with BybitSession(
            sim.api_key,
            sim.api_secret,
            base_url=sim.url,
            rate_limits=None,
            max_retries=5,
            backoff_initial=0.001,
            backoff_max=0.01,
        ) as session:
            outcomes = await session.set_auto_add_margin_many(symbols(8), True)
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(ret_code=10006) >= 3  # 8 at once against 5/s
        assert sim.max_in_window(PATH, 1.0) >= 8  # rejected ones arrived too


async def test_server_limit_status_zero_pauses_the_endpoint() -> None:
    # The client's own limit for this path is configured out of reach (a
    # configured limit wins over the one the answers state), so only
    # the X-Bapi-Limit-Status / Reset headers can pace it.  As on Bybit, the
    # reset header is in the future only on the 10006 itself, so the call
    # after status 0 may be refused once; it is retried after that reset.
    async with BybitSimulator(endpoint_limits={PATH: 3}, instruments=None) as sim:
        async with BybitSession(
            sim.api_key,
            sim.api_secret,
            base_url=sim.url,
            rate_limits=RateLimits(endpoints={PATH: 10_000}),
            max_retries=1,
        ) as session:
            for symbol in symbols(7):
                await session.set_auto_add_margin(symbol, True)
        assert sim.count(PATH, ret_code=0) == 7
        assert sim.count(PATH) == 7 + sim.count(ret_code=10006)


@pytest.mark.parametrize("offset_ms", [3_000, -3_000, 60_000, -60_000])
async def test_skewed_server_clock_works_from_first_call(
    sim: BybitSimulator, make_session: MakeSession, offset_ms: int
) -> None:
    sim.clock_offset_ms = offset_ms
    session = make_session()
    await session.set_auto_add_margin("BTCUSDT", True)
    await session.set_auto_add_margin("ETHUSDT", True)
    assert sim.count(ret_code=10002) == 0
    assert sim.count(TIME) == 1
    assert sim.count(PATH) == 2
    assert session.clock.offset_ms is not None
    assert abs(session.clock.offset_ms - offset_ms) < 1_000


@pytest.mark.parametrize("jump_ms", [-2_000, 8_000])
async def test_clock_jump_recovers_by_resync(
    sim: BybitSimulator, make_session: MakeSession, jump_ms: int
) -> None:
    session = make_session()
    await session.set_auto_add_margin("BTCUSDT", True)
    sim.clock_offset_ms = jump_ms
    resp = await session.set_auto_add_margin("ETHUSDT", True)
    assert resp.attempts == 2
    assert sim.count(ret_code=10002) == 1
    assert sim.count(TIME) == 2


async def test_concurrent_10002_share_one_resync() -> None:
    async with BybitSimulator(endpoint_limits={PATH: 1000}, instruments=None) as sim:
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=None, max_retries=1
        ) as session:
            await session.set_auto_add_margin("BTCUSDT", True)
            sim.clock_offset_ms = -2_000
            outcomes = await session.set_auto_add_margin_many(symbols(20), True)
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(ret_code=10002) == 20
        assert sim.count(TIME) == 2


async def test_first_calls_share_one_sync(sim: BybitSimulator, make_session: MakeSession) -> None:
    await make_session(rate_limits=None).set_auto_add_margin_many(symbols(30), True)
    assert sim.count(TIME) == 1


async def test_injected_clock_is_used(sim: BybitSimulator) -> None:
    clock = ticking_clock()
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, clock=clock) as s:
        await s.set_auto_add_margin("BTCUSDT", True)
    assert s.clock is clock
    assert clock.generation == 1


class RecordingPermit:
    def __init__(self, limiter: RecordingLimiter, path: str) -> None:
        self.limiter = limiter
        self.path = path

    def release(self, sent: bool = True) -> None:
        self.limiter.released.append((self.path, sent))


class RecordingLimiter:
    """A stand-in for a limiter shared between processes."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.released: list[tuple[str, bool]] = []
        self.observed: list[tuple[str, int | None]] = []

    async def acquire(self, path: str, *, signed: bool = True) -> RecordingPermit:
        self.acquired.append(path)
        return RecordingPermit(self, path)

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        self.observed.append((path, remaining))


async def test_custom_limiter_replaces_the_local_one() -> None:
    async with BybitSimulator(endpoint_limits={PATH: 2}, instruments=None) as sim:
        limiter = RecordingLimiter()
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter, max_retries=0
        ) as session:
            await session.set_auto_add_margin("BTCUSDT", True)
            await session.set_auto_add_margin("ETHUSDT", True)
        # Every request, the clock sync included, asks the limiter first and
        # gives its permit back once answered.
        assert limiter.acquired == [TIME, PATH, PATH]
        assert limiter.released == [(TIME, True), (PATH, True), (PATH, True)]
        assert limiter.observed == [(PATH, 1), (PATH, 0)]


class WarmingLimiter(RecordingLimiter):
    """A limiter with connections to open ahead of the first call, as `RedisLimiter`."""

    async def warm_up(self) -> None:
        # Before the clock's samples take their permits.
        self.acquired.append("warm_up")


async def test_session_warm_up_warms_the_limiter_up_first(sim: BybitSimulator) -> None:
    limiter = WarmingLimiter()
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter) as s:
        await s.warm_up(connections=2)
    assert limiter.acquired == ["warm_up", TIME, TIME]
