"""Events and stats (issue 13): they agree with what the simulator saw, and hold no secret."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from bybit_async import (
    AttemptAnswered,
    AttemptFailed,
    BybitSession,
    CallEnded,
    ClockSynced,
    ConnectionDroppedError,
    Event,
    ForbiddenError,
    LimiterWaited,
    Percentiles,
    RateLimits,
    RetryScheduled,
    SessionClosed,
    SessionClosedError,
    SessionHalted,
    SessionHaltedError,
    SessionResumed,
)
from bybit_async.events import LIMITER_WAIT_REPORTED, reason_of
from bybit_async.stats import SAMPLES, StatsRecorder
from bybit_async.testing import BybitSimulator, Fault

from .conftest import MakeSession

PATH = "/v5/position/set-auto-add-margin"
TIME = "/v5/market/time"
SYMBOLS = ["BTCUSDT", "SOLUSDT", "DOGEUSDT", "ADAUSDT"]


def _collect() -> tuple[list[Event], Any]:
    events: list[Event] = []
    return events, events.append


def _of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_events_and_stats_agree_with_the_simulator_under_faults(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.ret_code(10006), path=PATH, times=2)
    sim.inject(Fault.http_status(503), path=PATH)
    sim.inject(Fault.drop(after_execution=False), path=PATH)
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None, max_retries=4)

    for symbol in SYMBOLS:
        await session.set_auto_add_margin(symbol, True)

    stats = session.stats()
    answered = [r for r in sim.requests if r.status]
    # The simulator's counts, by path, status and retCode.
    assert stats.requests == len(sim.requests)
    assert stats.paths[PATH].requests == sim.count(PATH)
    assert stats.paths[TIME].requests == sim.count(TIME) == 1
    assert dict(stats.paths[PATH].by_status) == Counter(
        r.status for r in answered if r.path == PATH
    )
    assert dict(stats.paths[PATH].by_ret_code) == Counter(
        r.ret_code for r in answered if r.path == PATH and r.ret_code is not None
    )
    assert stats.rate_limited == sim.count(ret_code=10006) == 2
    assert dict(stats.paths[PATH].failures) == {"ConnectionDroppedError": 1}
    assert stats.paths[PATH].errors == 4
    assert stats.errors == 4
    # One retry per injected fault, by its reason.
    expected = {"retCode 10006": 2, "HTTP 503": 1, "ConnectionDroppedError": 1}
    assert dict(stats.retries) == expected
    assert stats.retried == 4
    assert Counter(e.reason for e in _of(events, RetryScheduled)) == expected
    # Every call ended well; the one that met the faults took five attempts.
    assert stats.calls == len(SYMBOLS)
    assert dict(stats.calls_failed) == {}
    ended = _of(events, CallEnded)
    assert [(e.path, e.reason) for e in ended] == [(PATH, None)] * len(SYMBOLS)
    assert [e.attempts for e in ended] == [5, 1, 1, 1]
    # One event per attempt: answered ones and the dropped one.
    assert len(_of(events, AttemptAnswered)) == len(answered)
    (failed,) = _of(events, AttemptFailed)
    assert (failed.path, failed.attempt, failed.reason) == (PATH, 4, "ConnectionDroppedError")
    assert [e.attempt for e in _of(events, AttemptAnswered) if e.path == PATH][:4] == [1, 2, 3, 5]
    assert all(e.latency > 0 for e in _of(events, AttemptAnswered))
    assert stats.paths[PATH].latency.count == len([r for r in answered if r.path == PATH])


async def test_rate_limit_rejections_by_the_simulators_own_limit_are_counted(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.endpoint_limits[PATH] = 3
    events, on_event = _collect()
    # No client-side limiter: the server's limit is what stops the burst.
    session = make_session(on_event=on_event, rate_limits=None)
    await session.warm_up()
    outcomes = await session.set_auto_add_margin_many([*SYMBOLS, "XRPUSDT", "LINKUSDT"], True)

    stats = session.stats()
    rejected = sim.count(PATH, ret_code=10006)
    assert rejected >= 3
    assert stats.rate_limited == rejected
    assert stats.paths[PATH].by_ret_code[10006] == rejected
    assert stats.retries["retCode 10006"] == rejected
    # The last answer's limit headers are kept: this path's limit is 3.
    limit = stats.paths[PATH].limit
    assert limit is not None
    assert limit.limit == 3
    assert 0 <= limit.remaining <= 3
    assert sum(1 for e in _of(events, AttemptAnswered) if e.ret_code == 10006) == rejected
    failed = sum(isinstance(o, Exception) for o in outcomes)
    assert sum(stats.calls_failed.values()) == failed
    assert stats.calls == 1 + len(outcomes)


async def test_limiter_waits_are_recorded_and_reported(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    events, on_event = _collect()
    limits = RateLimits(endpoints={PATH: 2}, window=0.05, margin=0.0)
    session = make_session(on_event=on_event, rate_limits=limits)
    await session.warm_up()
    await session.set_auto_add_margin_many([*SYMBOLS, "XRPUSDT", "LINKUSDT"], True)

    stats = session.stats()
    # Every request took a permit: the warm-up's and the six writes.
    assert stats.limiter_wait.count == len(sim.requests) == 7
    # Two permits per window: four of the six writes waited for one to come back.
    waited = [e for e in _of(events, LimiterWaited) if e.path == PATH]
    assert len(waited) >= 4
    assert all(e.seconds >= LIMITER_WAIT_REPORTED for e in waited)
    assert stats.limiter_wait.total >= sum(e.seconds for e in waited)
    assert stats.limiter_wait.max >= max(e.seconds for e in waited)


async def test_a_sync_shared_by_many_calls_is_one_clock_event(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.clock_offset_ms = 4000
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None)
    await session.set_auto_add_margin_many(SYMBOLS, True)

    (synced,) = _of(events, ClockSynced)
    assert sim.count(TIME) == 1
    assert synced.offset_ms == session.clock.offset_ms
    assert 3000 < synced.offset_ms < 5000
    stats = session.stats()
    assert (stats.clock_syncs, stats.clock_offset_ms) == (1, session.clock.offset_ms)
    assert stats.clock_round_trip_ms == synced.round_trip_ms


async def test_a_timestamp_rejection_resyncs_and_says_so(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None)
    await session.warm_up()
    sim.inject(Fault.ret_code(10002), path=PATH)
    await session.set_auto_add_margin("BTCUSDT", True)

    assert [e.reason for e in _of(events, RetryScheduled)] == ["retCode 10002"]
    assert len(_of(events, ClockSynced)) == sim.count(TIME) == 2
    assert session.stats().clock_syncs == 2


async def test_halt_and_resume_are_events_and_in_stats(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None, ban_cooldown=60.0)
    sim.inject(Fault.http_status(403), path=PATH)
    with pytest.raises(ForbiddenError):
        await session.set_auto_add_margin("BTCUSDT", True)
    (halted,) = _of(events, SessionHalted)
    assert (halted.reason, halted.cooldown) == ("HTTP 403", 60.0)
    stats = session.stats()
    assert (stats.halted, stats.halts, dict(stats.calls_failed)) == (True, 1, {"HTTP 403": 1})
    with pytest.raises(SessionHaltedError):
        await session.set_auto_add_margin("BTCUSDT", True)
    assert session.stats().calls_failed["SessionHaltedError"] == 1

    session.resume()
    (resumed,) = _of(events, SessionResumed)
    assert resumed.early
    assert not session.stats().halted
    await session.set_auto_add_margin("BTCUSDT", True)
    session.resume()  # not halted: no event
    assert len(_of(events, SessionResumed)) == 1


async def test_close_reports_the_calls_it_ended(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None)
    await session.warm_up()
    sim.inject(Fault.stall(), path=PATH, times=3)
    calls = [asyncio.ensure_future(session.set_auto_add_margin(s, True)) for s in SYMBOLS[:3]]
    await sim.wait_for_requests(1 + 3)
    await session.close()
    for call in calls:
        with pytest.raises(SessionClosedError):
            await call
    (closed,) = _of(events, SessionClosed)
    assert closed.calls_ended == 3
    assert [e.reason for e in _of(events, CallEnded) if e.path == PATH] == [
        "SessionClosedError"
    ] * 3
    await session.close()  # a second close is no second event
    assert len(_of(events, SessionClosed)) == 1


async def test_a_callback_that_raises_does_not_break_the_call(
    sim: BybitSimulator, make_session: MakeSession, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        seen.append(event)
        raise ValueError("dashboard down")

    session = make_session(on_event=broken, rate_limits=None)
    with caplog.at_level(logging.DEBUG, logger="bybit_async"):
        resp = await session.set_auto_add_margin("BTCUSDT", True)
        await session.set_auto_add_margin("SOLUSDT", True)
    assert resp.ret_code == 0
    assert sim.auto_add_margin("SOLUSDT") == 1
    assert seen, "the callback was never called"
    assert session.stats().callback_errors == len(seen)
    # Logged every time, with the traceback only the first time.
    raised = [r for r in caplog.records if "on_event raised ValueError" in r.getMessage()]
    assert len(raised) == len(seen)
    assert [bool(r.exc_info) for r in raised] == [True] + [False] * (len(seen) - 1)


async def test_no_event_or_stat_holds_a_secret_or_signature(
    make_session: MakeSession,
) -> None:
    async with BybitSimulator(api_key="KEY-abcdef-123456", api_secret="SECRET-xyz-987") as sim:
        sim.inject(Fault.ret_code(10006), path=PATH)
        sim.inject(Fault.drop(), path=PATH)
        events, on_event = _collect()
        session = make_session(
            base_url=sim.url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            on_event=on_event,
            rate_limits=None,
        )
        await session.set_auto_add_margin("BTCUSDT", True)
        await session.close()
        text = "\n".join(repr(e) for e in events)
        text += orjson.dumps(session.stats().as_dict()).decode() + repr(session.stats())
        signatures = [r.signature for r in sim.requests if r.signature]
    assert signatures
    assert events
    for secret in ("KEY-abcdef-123456", "SECRET-xyz-987", *signatures):
        assert secret not in text


async def test_stats_can_be_turned_off(sim: BybitSimulator, make_session: MakeSession) -> None:
    events, on_event = _collect()
    session = make_session(stats=False, on_event=on_event, rate_limits=None)
    await session.set_auto_add_margin("BTCUSDT", True)
    with pytest.raises(RuntimeError, match="stats=False"):
        session.stats()
    assert len(_of(events, CallEnded)) == 1


async def test_stats_as_dict_is_plain_json(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session(rate_limits=None)
    await session.set_auto_add_margin("BTCUSDT", True)
    data = orjson.loads(orjson.dumps(session.stats().as_dict()))
    row = data["paths"][PATH]
    assert row["by_ret_code"] == {"0": 1}
    assert row["by_status"] == {"200": 1}
    assert row["limit"]["limit"] == 10
    assert 0 <= row["limit"]["used"] <= 1
    assert set(row["latency"]) == {"count", "total", "max", "p50", "p90", "p99"}
    assert (data["calls"], data["requests"], data["retried"]) == (1, 2, 0)


async def test_trace_configs_reach_aiohttp(sim: BybitSimulator, make_session: MakeSession) -> None:
    starts: list[str] = []

    async def on_request_start(
        _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        starts.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    session = make_session(trace_configs=[trace], rate_limits=None)
    await session.set_auto_add_margin("BTCUSDT", True)
    assert starts == [r.path for r in sim.requests] == [TIME, PATH]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"on_event": "print"}, TypeError),
        ({"stats": 1}, TypeError),
        ({"trace_configs": [object()]}, TypeError),
    ],
)
def test_bad_observability_options_raise_before_any_io(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        BybitSession("key", "secret", **options)


def test_reasons_name_the_class_of_failure() -> None:
    from bybit_async import RateLimitError, ServerError

    assert reason_of(RateLimitError(10006, "Too many visits!", method="POST", path=PATH)) == (
        "retCode 10006"
    )
    assert reason_of(ServerError(503, "", method="POST", path=PATH)) == "HTTP 503"
    assert reason_of(ConnectionDroppedError("x", method="POST", path=PATH)) == (
        "ConnectionDroppedError"
    )


def test_percentiles_are_nearest_rank_over_recent_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert Percentiles.of(100, sum(values), values) == Percentiles(
        100, 5050.0, 100.0, 50.0, 90.0, 99.0
    )
    assert Percentiles.of(0, 0.0, []) == Percentiles(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    recorder = StatsRecorder(wall=lambda: 0.0)
    for v in range(SAMPLES + 10):
        recorder.waited(float(v))
    wait = recorder.snapshot().limiter_wait
    assert wait.count == SAMPLES + 10
    # Percentiles follow the last SAMPLES waits; the count and total are over all.
    assert wait.total == sum(range(SAMPLES + 10))
    assert wait.p50 == 10 + SAMPLES // 2 - 1


async def test_a_call_its_caller_cancels_is_counted_as_cancelled(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    events, on_event = _collect()
    session = make_session(on_event=on_event, rate_limits=None)
    await session.warm_up()
    sim.inject(Fault.stall(), path=PATH)
    call = asyncio.ensure_future(session.set_auto_add_margin("BTCUSDT", True))
    await sim.wait_for_requests(2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert dict(session.stats().calls_failed) == {"cancelled": 1}
    (ended,) = [e for e in _of(events, CallEnded) if e.path == PATH]
    # The stalled attempt reached the server: it counts.
    assert (ended.reason, ended.attempts) == ("cancelled", 1)


async def test_retry_policy_reports_each_retry_with_the_wait_it_sleeps() -> None:
    from bybit_async import RateLimitError
    from bybit_async.retry import RetryPolicy

    slept: list[float] = []
    reported: list[tuple[str, int, float]] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def nothing(_error: object, _rule: object) -> None:
        return None

    async def attempt(number: int) -> str:
        if number < 3:
            error = RateLimitError(10006, "Too many visits!", method="POST", path=PATH)
            error.retry_after = 0.5
            raise error
        return "done"

    policy = RetryPolicy(3, sleep=sleep)
    result = await policy.call(
        attempt,
        idempotent=True,
        before_retry=nothing,
        on_retry=lambda e, n, wait: reported.append((reason_of(e), n, wait)),
    )
    assert result == "done"
    assert [(r, n) for r, n, _ in reported] == [("retCode 10006", 1), ("retCode 10006", 2)]
    assert [w for _, _, w in reported] == slept
    assert all(w >= 0.5 for w in slept)
