"""Limits as the account has them: the whole table, learned limits, unknown paths, one IP budget.

Unit tests run the limiter on an injected clock; the end-to-end tests run
against the simulator and assert what it counted, never how long anything
took.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

from bybit_async import (
    BybitAPIError,
    BybitSession,
    ForbiddenError,
    LocalLimiter,
    RateLimits,
    SessionHaltedError,
)
from bybit_async.endpoint_limits import (
    CATEGORY_KEYS,
    ENDPOINT_LIMITS,
    EndpointLimit,
    budget_key,
    table_rows,
)
from bybit_async.ratelimit import IpBudget, LimitInForce
from bybit_async.testing import BybitSimulator, Fault

from .hostile import HostileServer, envelope
from .test_ratelimit import FakeClock, done_without_waiting

PATH = "/v5/position/set-auto-add-margin"
ORDER = "/v5/order/create"
UNKNOWN = "/v5/made/up"


def symbols(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


# -- the table -------------------------------------------------------------------


def test_the_table_has_every_section_and_the_trade_lines_apart() -> None:
    sections = {row.section for row in table_rows()}
    assert sections == {
        "Trade",
        "Position",
        "Account",
        "Asset",
        "User",
        "Spot Margin Trade",
        "Spread Trading",
        "RFQ",
        "Institutional Loan",
    }
    assert ENDPOINT_LIMITS[PATH] == EndpointLimit(10, 1.0, False)
    assert ENDPOINT_LIMITS["/v5/position/list"].limit == 50
    assert ENDPOINT_LIMITS[f"{ORDER}:linear+inverse"] == EndpointLimit(10, 1.0, True)
    assert ENDPOINT_LIMITS[f"{ORDER}:spot"].limit == 20
    assert ENDPOINT_LIMITS["/v5/order/cancel-all:option"].limit == 1
    # Per minute, as the asset table gives some.
    assert ENDPOINT_LIMITS["/v5/asset/transfer/inter-transfer"] == EndpointLimit(60, 60.0)
    assert ORDER not in ENDPOINT_LIMITS  # only per business line


@pytest.mark.parametrize(
    ("path", "category", "key"),
    [
        (ORDER, "linear", f"{ORDER}:linear+inverse"),
        (ORDER, "inverse", f"{ORDER}:linear+inverse"),
        (ORDER, "spot", f"{ORDER}:spot"),
        (ORDER, "option", f"{ORDER}:option"),
        (ORDER, "bogus", f"{ORDER}:bogus"),
        (ORDER, None, f"{ORDER}:None"),
        (PATH, "linear", PATH),
        (UNKNOWN, "spot", UNKNOWN),
    ],
)
def test_budget_keys(path: str, category: str | None, key: str) -> None:
    assert budget_key(path, category) == key


def test_every_key_of_a_line_endpoint_is_in_the_table() -> None:
    for path, keys in CATEGORY_KEYS.items():
        for key in keys.values():
            assert key in ENDPOINT_LIMITS, (path, key)


@pytest.mark.parametrize(
    ("endpoints", "error"),
    [
        ({PATH: 0}, ValueError),
        ({PATH: 2.5}, TypeError),
        ({PATH: EndpointLimit(0)}, ValueError),
        ({PATH: EndpointLimit(5, 0.0)}, ValueError),
        ({"set-auto-add-margin": 5}, ValueError),
        ([(PATH, 5)], TypeError),
    ],
)
def test_bad_overrides_raise_before_any_io(endpoints: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        RateLimits(endpoints=endpoints)


# -- learned limits, on an injected clock ------------------------------------------


def test_a_learned_limit_raises_the_budget_from_the_next_request() -> None:
    clock = FakeClock()
    lim = LocalLimiter(RateLimits(), clock=clock)
    key = f"{ORDER}:linear+inverse"
    assert lim.limit_in_force(key) == LimitInForce(10, 1.0, "table")
    permits = [done_without_waiting(lim.acquire(key)) for _ in range(10)]
    assert lim.available(key) == 0
    lim.observe(key, 50, None, 60)  # a VIP account's answer
    assert lim.limit_in_force(key) == LimitInForce(60, 1.0, "learned")
    assert lim.available(key) == 50
    for permit in permits:
        permit.release()


def test_a_shrinking_limit_keeps_permits_out_and_admits_no_more_than_the_new_one() -> None:
    clock = FakeClock()
    lim = LocalLimiter(RateLimits(), clock=clock)
    permits = [done_without_waiting(lim.acquire(PATH)) for _ in range(8)]
    lim.observe(PATH, 0, None, 5)
    assert lim.limit_in_force(PATH).source == "learned"
    assert lim.available(PATH) == 0
    for permit in permits:
        permit.release()
    assert lim.available(PATH) == 0  # eight still count in this window
    clock.now += 1.02
    assert lim.available(PATH) == 5


def test_a_configured_limit_wins_over_the_header() -> None:
    lim = LocalLimiter(RateLimits(endpoints={PATH: 3}), clock=FakeClock())
    lim.observe(PATH, 99, None, 100)
    assert lim.limit_in_force(PATH) == LimitInForce(3, 1.0, "configured")
    assert lim.available(PATH) == 3


def test_a_path_override_covers_all_its_business_lines() -> None:
    lim = LocalLimiter(RateLimits(endpoints={ORDER: 7}), clock=FakeClock())
    assert lim.limit_in_force(f"{ORDER}:spot") == LimitInForce(7, 1.0, "configured")
    assert lim.limit_in_force(f"{ORDER}:linear+inverse").limit == 7


async def test_an_unknown_budget_allows_one_request_until_its_limit_is_stated() -> None:
    clock = FakeClock()
    lim = LocalLimiter(RateLimits(), clock=clock)
    first = done_without_waiting(lim.acquire(UNKNOWN))
    assert lim.limit_in_force(UNKNOWN).source == "unknown"
    second = asyncio.ensure_future(lim.acquire(UNKNOWN))
    await asyncio.sleep(0)
    assert not second.done()
    # The answer arrives: its permit goes back, then its header is read.
    first.release()
    lim.observe(UNKNOWN, 2, None, 3)
    await asyncio.sleep(0)
    assert second.done()
    assert lim.limit_in_force(UNKNOWN) == LimitInForce(3, 1.0, "learned")
    # The first still counts in its window: one more may go, not three.
    assert lim.available(UNKNOWN) == 1
    second.result().release()


def test_a_permit_in_flight_when_the_limit_is_stated_counts_once() -> None:
    clock = FakeClock()
    lim = LocalLimiter(RateLimits(), clock=clock)
    first = done_without_waiting(lim.acquire(UNKNOWN))
    lim.observe(UNKNOWN, 2, None, 3)  # stated while the first is still out
    assert lim.available(UNKNOWN) == 2
    first.release()  # from in flight to cooling: no more room, no less
    assert lim.available(UNKNOWN) == 2
    clock.now += 1.02
    assert lim.available(UNKNOWN) == 3


async def test_an_unknown_budget_never_shares_another_paths_budget() -> None:
    lim = LocalLimiter(RateLimits(), clock=FakeClock())
    held = [done_without_waiting(lim.acquire(PATH)) for _ in range(10)]
    assert lim.available(PATH) == 0
    other = done_without_waiting(lim.acquire(UNKNOWN))
    assert lim.available("/v5/made/other") == 1
    for permit in [*held, other]:
        permit.release()


async def test_an_unsigned_request_takes_an_ip_permit_only() -> None:
    lim = LocalLimiter(RateLimits(ip_limit=3), clock=FakeClock())
    permits = [done_without_waiting(lim.acquire(UNKNOWN, signed=False)) for _ in range(3)]
    assert lim.available(UNKNOWN, signed=False) == 0
    assert "/v5/made/up" not in lim.limits_in_force()
    for permit in permits:
        permit.release(sent=False)


# -- learned limits, end to end -----------------------------------------------------


async def test_a_lower_limit_in_the_answers_is_kept_from_the_next_request() -> None:
    async with BybitSimulator(endpoint_limits={PATH: 3}, instruments=None) as sim:
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0
        ) as session:
            await session.set_auto_add_margin("S0000USDT", True)
            outcomes = await session.set_auto_add_margin_many(symbols(10)[1:], True)
            assert session.stats().limits[PATH] == LimitInForce(3, 1.0, "learned")
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(PATH, ret_code=10006) == 0
        assert sim.max_in_window(PATH, 1.0) <= 3


async def test_stats_show_where_each_limit_came_from() -> None:
    async with BybitSimulator(endpoint_limits={PATH: 12}, instruments=None) as sim:
        async with BybitSession(
            sim.api_key,
            sim.api_secret,
            base_url=sim.url,
            rate_limits=RateLimits(endpoints={"/v5/position/list": 40}),
        ) as session:
            await session.set_auto_add_margin("S0000USDT", True)
            await session.get_positions(symbol="S0000USDT")
            limits = session.stats().limits
            plain = session.stats().as_dict()["limits"]
        assert limits[PATH].source == "learned"
        assert limits["/v5/position/list"] == LimitInForce(40, 1.0, "configured")
        assert plain[PATH] == {"limit": 12, "window": 1.0, "source": "learned"}


@pytest.mark.parametrize("header", ["abc", "0", "100001", "-5", "9" * 25])
async def test_a_broken_limit_header_is_ignored_and_the_limit_stays(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return envelope(**{"X-Bapi-Limit": header, "X-Bapi-Limit-Status": "5"})

    server = HostileServer()
    server.handler = handler
    await server.start()
    try:
        async with BybitSession("k", "s", base_url=server.url, max_retries=0) as session:
            with caplog.at_level(logging.DEBUG, logger="bybit_async"):
                await session.set_auto_add_margin("BTCUSDT", True)
            assert session.stats().limits[PATH] == LimitInForce(10, 1.0, "table")
    finally:
        await server.stop()
    assert "X-Bapi-Limit" in caplog.text


# -- one IP budget per process ---------------------------------------------------------


async def test_sessions_of_one_egress_share_the_ip_permits() -> None:
    # Three accounts, 6 requests each, against an IP limit of 6 per second:
    # alone, each session would send its 6 at once and the IP would be banned.
    async with BybitSimulator(
        ip_limit=6, ip_window=1.0, endpoint_limits={}, instruments=None
    ) as sim:
        keys = [("k1", "s1"), ("k2", "s2"), ("k3", "s3")]
        for key, secret in keys:
            sim.add_account(key, secret)
        limits = RateLimits(ip_limit=6, ip_window=1.0, endpoints={PATH: 100})
        sessions = [
            BybitSession(key, secret, base_url=sim.url, rate_limits=limits, max_retries=0)
            for key, secret in keys
        ]
        try:
            results = await asyncio.gather(
                *(s.set_auto_add_margin_many(symbols(5), True) for s in sessions)
            )
            budgets = {id(s._limiter.ip) for s in sessions}  # type: ignore[union-attr]
        finally:
            for session in sessions:
                await session.close()
        assert len(budgets) == 1
        assert all(getattr(o, "ret_code", None) == 0 for r in results for o in r)
        assert sim.count(status=403) == 0
        assert sim.max_in_window(None, 1.0) <= 6


async def test_a_limiter_on_a_clock_of_its_own_keeps_an_ip_budget_of_its_own() -> None:
    # The process's budget is timed with time.monotonic: permits stamped on
    # another clock would be counted back at the wrong times there.
    clock = FakeClock()
    limiter = LocalLimiter(RateLimits(), clock=clock)
    own = limiter.ip
    async with (
        BybitSimulator(instruments=None) as sim,
        BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter) as session,
    ):
        await session.set_auto_add_margin("S0000USDT", True)
        assert limiter.ip is own
        assert own.free() == own.limit - 2  # the clock sync and the call


async def test_another_egress_gets_a_budget_of_its_own() -> None:
    async with BybitSimulator(instruments=None) as sim:
        one = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url)
        same = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url)
        other = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, egress="eth1")
        proxied = BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, proxy="http://127.0.0.1:1"
        )
        try:
            for session in (one, same, other):
                await session.get_server_time()
            budgets = [s._limiter.ip for s in (one, same, other)]  # type: ignore[union-attr]
        finally:
            for session in (one, same, other, proxied):
                await session.close()
        assert budgets[0] is budgets[1]
        assert budgets[2] is not budgets[0]
        assert isinstance(budgets[0], IpBudget)
        assert other.egress == "eth1"
        assert proxied.egress != one.egress


async def test_a_403_seen_by_one_session_stops_every_session_of_the_egress() -> None:
    async with BybitSimulator(instruments=None) as sim:
        sim.add_account("k2", "s2")
        first = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0)
        second = BybitSession("k2", "s2", base_url=sim.url, max_retries=0)
        elsewhere = BybitSession("k2", "s2", base_url=sim.url, egress="other", max_retries=0)
        try:
            await second.set_auto_add_margin("S0001USDT", True)
            await elsewhere.set_auto_add_margin("S0002USDT", True)
            sim.inject(Fault.http_status(403), path=PATH)
            with pytest.raises(ForbiddenError):
                await first.set_auto_add_margin("S0000USDT", True)
            sent = sim.count(PATH)
            with pytest.raises(SessionHaltedError):
                await second.set_auto_add_margin("S0003USDT", True)
            assert sim.count(PATH) == sent  # nothing left while halted
            await elsewhere.set_auto_add_margin("S0004USDT", False)
            assert sim.count(PATH) == sent + 1
            second.resume()  # resumes every session of the egress
            await first.set_auto_add_margin("S0005USDT", True)
        finally:
            for session in (first, second, elsewhere):
                await session.close()


async def test_a_session_that_starts_during_a_ban_is_halted_from_its_first_call() -> None:
    async with BybitSimulator(instruments=None) as sim:
        first = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0)
        try:
            sim.inject(Fault.http_status(403), path=PATH)
            with pytest.raises(ForbiddenError):
                await first.set_auto_add_margin("S0000USDT", True)
            sent = len(sim.requests)
            async with BybitSession(
                sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0
            ) as late:
                with pytest.raises(SessionHaltedError):
                    await late.set_auto_add_margin("S0001USDT", True)
            assert len(sim.requests) == sent
        finally:
            await first.close()


async def test_calls_queued_in_other_sessions_are_not_sent_after_a_403() -> None:
    async with BybitSimulator(instruments=None) as sim:
        sim.add_account("k2", "s2")
        limits = RateLimits(endpoints={PATH: 1})
        first = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0)
        second = BybitSession("k2", "s2", base_url=sim.url, rate_limits=limits, max_retries=0)
        try:
            await second.set_auto_add_margin("S0000USDT", True)
            # Queued behind the first call's permit (1 per second) while the
            # other session's request is on its way.
            queued = asyncio.ensure_future(second.set_auto_add_margin_many(symbols(4), True))
            sent = sim.count(PATH)
            sim.inject(Fault.http_status(403), path=PATH)
            with pytest.raises(ForbiddenError):
                await first.set_auto_add_margin("S0009USDT", True)
            outcomes = await queued
        finally:
            await first.close()
            await second.close()
        assert all(isinstance(o, SessionHaltedError) for o in outcomes)
        assert sim.count(PATH) == sent + 1  # the 403 only


# -- end to end, with per-account limits on the simulator ----------------------------


def order(symbol: str, category: str = "linear") -> dict[str, str]:
    return {
        "category": category,
        "symbol": symbol,
        "side": "Buy",
        "orderType": "Market",
        "qty": "0.001",
    }


async def test_an_account_with_a_raised_limit_gets_it_without_configuration() -> None:
    # A VIP account: 40 orders per second on linear, where the table says 10.
    async with BybitSimulator(instruments=None) as sim:
        sim.set_limit(f"{ORDER}:linear+inverse", 40)
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0
        ) as session:
            await session.request("POST", ORDER, order("BTCUSDT"))
            key = f"{ORDER}:linear+inverse"
            assert session.stats().limits[key] == LimitInForce(40, 1.0, "learned")
            await asyncio.gather(
                *(session.request("POST", ORDER, order("BTCUSDT")) for _ in range(39))
            )
            # Spot is a budget of its own, still at the table's 20.
            await session.request("POST", ORDER, order("BTCUSDT", "spot"))
            assert session.stats().limits[f"{ORDER}:spot"].limit == 20
        assert sim.count(ORDER, ret_code=10006) == 0
        # 40 in one window: the raised limit was used, not the table's 10.
        assert sim.max_in_window(ORDER, 1.0) >= 40


async def test_an_unknown_endpoint_goes_one_at_a_time_then_at_its_stated_limit() -> None:
    async with BybitSimulator(instruments=None) as sim:
        sim.add_route("GET", UNKNOWN, {"list": []})
        sim.set_limit(UNKNOWN, 3)
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, max_retries=0
        ) as session:
            outcomes = await asyncio.gather(
                *(session.request("GET", UNKNOWN, {"n": i}) for i in range(9)),
                return_exceptions=True,
            )
            assert session.stats().limits[UNKNOWN] == LimitInForce(3, 1.0, "learned")
        assert all(getattr(o, "ret_code", None) == 0 for o in outcomes)
        assert sim.count(UNKNOWN, ret_code=10006) == 0
        assert sim.max_in_window(UNKNOWN, 1.0) <= 3


async def test_a_permit_to_be_had_at_once_is_taken_without_waiting_in_the_limiter() -> None:
    class Counting(LocalLimiter):
        queued = 0

        async def acquire(self, path: str, *, signed: bool = True) -> Any:
            Counting.queued += 1
            return await super().acquire(path, signed=signed)

    async with BybitSimulator(instruments=None) as sim:
        limiter = Counting(RateLimits(endpoints={PATH: 2}))
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter
        ) as session:
            await session.set_auto_add_margin_many(symbols(2), True)
            assert Counting.queued == 0  # the clock sync and both writes at once
            await session.set_auto_add_margin("S0009USDT", True)
            assert Counting.queued == 1  # the third waits for a permit to come back
            assert session.stats().limiter_wait.count == 4


async def test_a_session_gives_each_permit_back_once_however_its_attempt_ends() -> None:
    # The session takes LocalLimiter's permits without a permit object and
    # releases each exactly once: a release missed leaves a permit in flight
    # for good, one made twice gives back a permit that was never taken.
    held = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["symbol"] == "HELD":
            held.set()
            await asyncio.Event().wait()  # until the call is cancelled
        return envelope(10001 if body["symbol"] == "BAD" else 0)

    server = HostileServer()
    server.handler = handler
    await server.start()
    clock = FakeClock()  # nothing cools down while the test runs
    limiter = LocalLimiter(
        RateLimits(ip_limit=50, endpoints={PATH: 5}), clock=clock, ip=IpBudget(50, clock=clock)
    )
    try:
        async with BybitSession(
            "k", "s", base_url=server.url, limiter=limiter, max_retries=0
        ) as session:
            await session.set_auto_add_margin("OK", True)  # answered
            with pytest.raises(BybitAPIError):
                await session.set_auto_add_margin("BAD", True)  # answered with an error
            call = asyncio.ensure_future(session.set_auto_add_margin("HELD", True))
            await held.wait()
            call.cancel()  # cancelled after it was sent
            with pytest.raises(asyncio.CancelledError):
                await call
            endpoint = limiter._endpoints[PATH]
            assert endpoint.in_flight == 0
            assert limiter._ip.in_flight == 0
            assert limiter.available(PATH) == 5 - 3  # three sent, all still cooling
    finally:
        await server.stop()


class OldProtocolLimiter:
    """A custom limiter written for 0.2's protocol: its observe takes no limit."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, float | None]] = []

    async def acquire(self, path: str, *, signed: bool = True) -> Any:
        return self

    def release(self, sent: bool = True) -> None:
        pass

    def observe(self, path: str, remaining: int | None, reset_in: float | None) -> None:
        self.seen.append((path, remaining, reset_in))


async def test_a_limiter_of_the_older_protocol_is_told_the_headers_without_the_limit(
    sim: BybitSimulator,
) -> None:
    limiter = OldProtocolLimiter()
    async with BybitSession(
        sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter
    ) as session:
        response = await session.set_auto_add_margin("BTCUSDT", True)
    assert response.limit is not None  # the answer stated its limit ...
    assert [path for path, _, _ in limiter.seen] == [PATH]  # ... and nothing broke
    assert limiter.seen[0][1] == response.limit_status
