"""Section 4: rate limits as Bybit counts them, the permit limiter beside 0.1's token bucket.

Every measure runs twice in one process, once with the session's
`LocalLimiter` (rolling-window permits) and once with
`benchmarks.legacy_limiter.TokenBucketLimiter` (bybit_async 0.1's aiolimiter
buckets), against an in-process `BybitSimulator` that enforces Bybit's real
limits and adds network delay, so that each figure is a same-run ratio:

* **sweeps**: ``set_auto_add_margin_many`` over 60 and 200 symbols at the real
  10 per rolling second, against the physical minimum
  ``(ceil(N / L) - 1) * W`` plus one round trip;
* **burst**: the limiter wait of the k-th of 10 calls made at once on an idle
  limiter, and how far apart the 10 arrive at the simulator;
* **mixed load**: 60 writes behind 600 queued reads, at the real IP and
  endpoint limits: 10006 answers and the most writes in any rolling second;
* **first call**: the latency of the first signed call on a new session, with
  and without ``warm_up``, against a simulator adding 20 ms per round trip;
* **limiter CPU**: acquire plus release, per request, with nothing to wait for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable

from bybit_async import ApiResponse, BybitSession, Limiter, LocalLimiter, RateLimits
from bybit_async.testing import BybitSimulator, NetworkDelay

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, summary
from .legacy_limiter import TokenBucketLimiter

TIME = "/v5/market/time"
LIMIT = 10
WINDOW = 1.0
#: One-way delay of the sweeps: 5-15 ms each way (a 20 ms round trip on average),
#: with an occasional 50 ms spike, so that jitter is part of every sweep.
SWEEP_DELAY = NetworkDelay(low=0.005, high=0.015, spike_probability=0.02, spike=0.05)
NOMINAL_RTT = 0.02
#: The first-call measure: exactly 10 ms each way.
FIRST_CALL_DELAY = NetworkDelay(low=0.01, high=0.01)

LIMITERS: dict[str, Callable[[], Limiter]] = {
    "permits": lambda: LocalLimiter(RateLimits()),
    "token bucket (0.1)": lambda: TokenBucketLimiter(RateLimits()),
}


def physical_minimum(n: int, limit: int = LIMIT, window: float = WINDOW) -> float:
    """The least time for *n* requests at *limit* per rolling *window*, plus one round trip."""
    return (math.ceil(n / limit) - 1) * window + NOMINAL_RTT


def _session(sim: BybitSimulator, limiter: Limiter) -> BybitSession:
    return BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter)


async def _sweep(n: int, make: Callable[[], Limiter], seed: int) -> Json:
    delay = dataclasses.replace(SWEEP_DELAY, seed=seed)
    async with BybitSimulator(network_delay=delay, instruments=None) as sim:
        async with _session(sim, make()) as session:
            names = [f"SW{i}USDT" for i in range(n)]
            t0 = time.perf_counter()
            outcomes = await session.set_auto_add_margin_many(names, True)
            wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
            "failures": sum(1 for o in outcomes if not isinstance(o, ApiResponse)),
        }


async def _burst(make: Callable[[], Limiter]) -> Json:
    """Limiter waits of 10 calls at once, then arrival spread of 10 calls through a session."""
    limiter = make()
    t0 = time.perf_counter()
    waits: list[float] = []

    async def one() -> None:
        await limiter.acquire(SET_AUTO_ADD_MARGIN)
        waits.append((time.perf_counter() - t0) * 1e3)

    await asyncio.gather(*(one() for _ in range(LIMIT)))
    # Two calls one after the other, each awaited, on a fresh idle limiter.
    limiter = make()
    (await limiter.acquire(SET_AUTO_ADD_MARGIN)).release()
    t1 = time.perf_counter()
    (await limiter.acquire(SET_AUTO_ADD_MARGIN)).release()
    second = (time.perf_counter() - t1) * 1e3

    async with BybitSimulator(instruments=None) as sim:
        async with _session(sim, make()) as session:
            await session.warm_up(connections=LIMIT)
            start = len(sim.requests)
            await session.set_auto_add_margin_many([f"B{i}USDT" for i in range(LIMIT)], True)
        arrivals = [r.at for r in sim.requests[start:] if r.path == SET_AUTO_ADD_MARGIN]
    return {
        "wait_ms_by_k": sorted(waits),
        "second_call_wait_ms": second,
        "arrival_spread_ms": (max(arrivals) - min(arrivals)) * 1e3,
    }


async def _mixed(make: Callable[[], Limiter], reads: int, writes: int) -> Json:
    async with BybitSimulator(
        network_delay=NetworkDelay(low=0.0, high=0.005, seed=5), instruments=None
    ) as sim:
        async with _session(sim, make()) as session:
            # Synced first, as an engine that has been running is: otherwise the
            # first write's clock sync queues behind the reads and holds the writes.
            await session.warm_up()
            t0 = time.perf_counter()
            queued = [
                asyncio.ensure_future(session.request("GET", TIME, signed=False))
                for _ in range(reads)
            ]
            names = [f"MX{i}USDT" for i in range(writes)]
            outcomes = await session.set_auto_add_margin_many(names, True)
            read_outcomes = await asyncio.gather(*queued, return_exceptions=True)
            wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
            "answers_403": sim.count(status=403),
            "failures": sum(1 for o in outcomes if not isinstance(o, ApiResponse))
            + sum(1 for o in read_outcomes if isinstance(o, BaseException)),
        }


async def _first_call(warm: bool) -> float:
    async with (
        BybitSimulator(network_delay=FIRST_CALL_DELAY, instruments=None) as sim,
        _session(sim, LocalLimiter()) as session,
    ):
        if warm:
            await session.warm_up()
        t0 = time.perf_counter()
        await session.set_auto_add_margin("FCUSDT", True)
        return time.perf_counter() - t0


async def _limiter_cpu(make: Callable[[], Limiter], calls: int) -> float:
    limiter = make()
    cpu0 = time.process_time()
    for _ in range(calls):
        (await limiter.acquire(SET_AUTO_ADD_MARGIN)).release()
    return (time.process_time() - cpu0) / calls * 1e6


def _unbounded() -> RateLimits:
    return RateLimits(ip_limit=10**9, endpoints={SET_AUTO_ADD_MARGIN: 10**9})


CPU_LIMITERS: dict[str, Callable[[], Limiter]] = {
    "permits": lambda: LocalLimiter(_unbounded()),
    "token bucket (0.1)": lambda: TokenBucketLimiter(_unbounded()),
}


def measure_rate_limited(config: Config) -> Json:
    """Every measure of this section, for both limiters."""
    sizes = (60, 200) if config.name == "full" else (60,)
    sweeps: Json = {}
    for n in sizes:
        sweeps[str(n)] = {"minimum_s": physical_minimum(n)}
        rounds = config.ratelimit_rounds if n <= 60 else 1
        for name, make in LIMITERS.items():
            results = []
            for i in range(rounds):
                log(f"rate limits: sweep of {n} at {LIMIT}/s, {name}, round {i + 1}/{rounds}")
                results.append(run_on("asyncio", lambda n=n, m=make, s=i: _sweep(n, m, s)))
                log(
                    f"  {results[-1]['wall_s']:.2f} s, max {results[-1]['max_in_1s']} in 1 s, "
                    f"{results[-1]['answers_10006']} x 10006"
                )
            sweeps[str(n)][name] = {
                "wall_s": summary([r["wall_s"] for r in results]),
                "max_in_1s": max(r["max_in_1s"] for r in results),
                "answers_10006": sum(r["answers_10006"] for r in results),
                "failures": sum(r["failures"] for r in results),
                "rounds": len(results),
            }
    log("rate limits: bursts of 10")
    burst = {name: run_on("asyncio", lambda m=make: _burst(m)) for name, make in LIMITERS.items()}
    log("rate limits: 60 writes behind 600 reads at the real limits")
    mixed = {
        name: run_on("asyncio", lambda m=make: _mixed(m, 600, 60))
        for name, make in LIMITERS.items()
    }
    for name, m in mixed.items():
        log(f"  {name}: {m['answers_10006']} x 10006, max {m['max_in_1s']} in 1 s")
    log("rate limits: first call, cold and after warm_up, 20 ms round trip")
    first: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(config.ratelimit_rounds * 2 + 1):
        first["cold"].append(run_on("asyncio", lambda: _first_call(False)))
        first["warm"].append(run_on("asyncio", lambda: _first_call(True)))
    log("rate limits: limiter CPU per request")
    calls = 50_000 if config.name == "full" else 10_000
    cpu: dict[str, list[float]] = {name: [] for name in CPU_LIMITERS}
    for _ in range(config.ratelimit_rounds * 2 + 1):
        for name, make in CPU_LIMITERS.items():
            cpu[name].append(run_on("asyncio", lambda m=make: _limiter_cpu(m, calls)))
    return {
        "limit": LIMIT,
        "window_s": WINDOW,
        "nominal_rtt_s": NOMINAL_RTT,
        "sweep_delay": dataclasses.asdict(SWEEP_DELAY),
        "sweeps": sweeps,
        "burst": burst,
        "mixed": mixed,
        "first_call_s": {k: summary(v) for k, v in first.items()},
        "first_call_rtt_s": FIRST_CALL_DELAY.low + FIRST_CALL_DELAY.high,
        "limiter_cpu_us": {k: summary(v) for k, v in cpu.items()},
        "limiter_cpu_calls": calls,
    }
