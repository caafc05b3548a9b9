"""Section 4: 300 symbols through ``set_auto_add_margin_many`` under a 100/s endpoint limit.

The simulator runs in this process (its CPU does not matter here, only time)
and enforces the limit; the session keeps under it with
``RateLimits(endpoints={path: 100})``.  Every round uses a fresh simulator and
session, so that no round inherits the previous one's window.  The wall time
includes the session's first clock sync (one ``GET /v5/market/time``).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

from bybit_async import ApiResponse, BybitSession, LocalLimiter, RateLimits
from bybit_async.testing import BybitSimulator

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, summary


async def _one_round(symbols: int, per_second: int) -> Json:
    async with BybitSimulator(
        endpoint_limits={SET_AUTO_ADD_MARGIN: per_second}, instruments=None
    ) as sim:
        limits = RateLimits(endpoints={SET_AUTO_ADD_MARGIN: per_second})
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, rate_limits=limits
        ) as session:
            names = [f"RL{i}USDT" for i in range(symbols)]
            t0 = time.perf_counter()
            outcomes = await session.set_auto_add_margin_many(names, True)
            wall = time.perf_counter() - t0
        failures = [o for o in outcomes if not isinstance(o, ApiResponse)]
        arrivals = sorted(r.at for r in sim.requests if r.path == SET_AUTO_ADD_MARGIN)
        gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(arrivals)]
        return {
            "wall_s": wall,
            "ideal_s": symbols / per_second,
            "max_in_1s_window": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
            "requests_sent": sim.count(SET_AUTO_ADD_MARGIN),
            "failures": len(failures),
            "failure_kinds": sorted({type(f).__name__ for f in failures}),
            "gap_ms": statistics.median(gaps) if gaps else None,
        }


async def _limiter_alone(symbols: int, per_second: int) -> Json:
    """The session's limiter with nothing else: *symbols* acquisitions at once, no network.

    Tells the limiter's own pacing apart from the requests': what it adds to its
    designed schedule is the event loop's timers waking late.
    """
    limiter = LocalLimiter(RateLimits(endpoints={SET_AUTO_ADD_MARGIN: per_second}))
    admitted: list[float] = []

    async def one() -> None:
        await limiter.acquire(SET_AUTO_ADD_MARGIN)
        admitted.append(time.perf_counter())

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(symbols)))
    wall = time.perf_counter() - t0
    gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(admitted)]
    return {"wall_s": wall, "gap_ms": statistics.median(gaps) if gaps else None}


def measure_rate_limited(config: Config) -> Json:
    """Run :func:`_one_round` ``config.ratelimit_rounds`` times; median wall time, worst window."""
    symbols, per_second = config.ratelimit_symbols, config.ratelimit_per_second
    rounds: list[Json] = []
    for i in range(config.ratelimit_rounds):
        log(f"rate-limited: round {i + 1}/{config.ratelimit_rounds}: {symbols} at {per_second}/s")
        rounds.append(run_on("asyncio", lambda: _one_round(symbols, per_second)))
        log(
            f"  {rounds[-1]['wall_s']:.3f} s, max {rounds[-1]['max_in_1s_window']} in 1 s, "
            f"{rounds[-1]['answers_10006']} x 10006"
        )
    log(f"rate-limited: the limiter alone, {symbols} acquisitions, no network")
    alone = run_on("asyncio", lambda: _limiter_alone(symbols, per_second))
    # What the session's bucket needs by design: its capacity at once, then its
    # refill rate, before any lateness of the event loop's timers.
    bucket = RateLimits(endpoints={SET_AUTO_ADD_MARGIN: per_second}).bucket(per_second, 1.0)
    rate = bucket.max_rate / bucket.time_period
    return {
        "symbols": symbols,
        "limiter_pace_s": (symbols - bucket.max_rate) / rate,
        "limit_per_second": per_second,
        "ideal_s": symbols / per_second,
        "wall_s": summary([r["wall_s"] for r in rounds]),
        "max_in_1s_window": max(r["max_in_1s_window"] for r in rounds),
        "answers_10006": sum(r["answers_10006"] for r in rounds),
        "failures": sum(r["failures"] for r in rounds),
        "gap_ms": summary([r["gap_ms"] for r in rounds if r["gap_ms"] is not None]),
        "rounds": rounds,
        "limiter_alone": alone,
    }
