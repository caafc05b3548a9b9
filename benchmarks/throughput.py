"""Section 3: requests per second and client CPU per request against the simulator.

The simulator (``python -m bybit_async.testing --no-limits``) runs in its own
process; the clients run in this one, so that ``getrusage`` of this process is
the client's CPU alone.  Two clients are compared:

* **sdk**: ``BybitSession(..., rate_limits=None).set_auto_add_margin``;
* **raw**: one pooled ``aiohttp.ClientSession`` posting the same bodies, signed
  with ``hmac.new`` before the round starts, reading the body and parsing the
  JSON envelope as the session does.

Both use ``TCPConnector(limit=100)`` (the session's default ``max_connections``)
and a 10 s total timeout (the session's default).  *concurrency* is the number
of coroutines, each owning one symbol and looping over its share of the
round's requests, flipping the flag every time so that every answer is
retCode 0.  The raw client keeps ``X-BAPI-RECV-WINDOW: 5000`` like the session
and is re-signed between rounds; a round is cut at ``round_time_limit`` seconds,
well inside that window.

The matrix runs in sweeps: each sweep starts a fresh simulator (its request log
grows with every request and would slow it down over a long run) and fresh
clients, then runs, at every concurrency level in turn, one round of the sdk
and one of raw aiohttp (A B, or B A every other sweep).  Medians are over sweeps.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import hmac
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from bybit_async import BybitError, BybitSession

from .common import (
    API_KEY,
    API_SECRET,
    PEAK_MEMORY_METHOD,
    SET_AUTO_ADD_MARGIN,
    Config,
    Json,
    SimulatorProcess,
    cpu_seconds,
    log,
    loop_available,
    peak_rss_mib,
    percentile,
    reset_peak_rss,
    rss_mib,
    run_on,
    simulator_process,
    summary,
)

#: The session's defaults, given to the raw client too.
POOL_LIMIT = 100
TIMEOUT_S = 10.0
RECV_WINDOW = 5000


@dataclass
class Outcome:
    """What one round's workers did."""

    done: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class Client(Protocol):
    """A client that the harness can time: prepare a round untimed, then run it."""

    name: str

    def prepare(self, concurrency: int, requests: int) -> object:
        """Return everything the round needs that must not be timed."""
        ...

    async def run(self, plan: object, deadline: float, outcome: Outcome) -> None:
        """Send the round's requests, stopping at *deadline* (perf_counter)."""
        ...

    async def close(self) -> None:
        """Release the connection pool."""
        ...


def _shares(concurrency: int, requests: int) -> list[int]:
    # Each coroutine's share of the round: as equal as integers allow.
    base, extra = divmod(requests, concurrency)
    return [base + (1 if i < extra else 0) for i in range(concurrency)]


class SdkClient:
    """``BybitSession.set_auto_add_margin``, one symbol per coroutine."""

    name = "sdk"

    def __init__(self, url: str, prefix: str = "SDK", **options: Any) -> None:
        options.setdefault("rate_limits", None)
        self.session = BybitSession(API_KEY, API_SECRET, base_url=url, **options)
        self._prefix = prefix
        # The flag each symbol is sent next: the opposite of what the simulator holds.
        self._next: dict[int, bool] = {}

    def prepare(self, concurrency: int, requests: int) -> object:
        """Symbols, first flags and shares of the round."""
        return [
            (f"{self._prefix}{i}USDT", self._next.get(i, True), share)
            for i, share in enumerate(_shares(concurrency, requests))
        ]

    async def run(self, plan: object, deadline: float, outcome: Outcome) -> None:
        """Run one coroutine per symbol until its share is done or *deadline* passes."""
        assert isinstance(plan, list)
        done = await asyncio.gather(
            *(self._worker(symbol, flag, n, deadline, outcome) for symbol, flag, n in plan)
        )
        for i, ((_, flag, _), count) in enumerate(zip(plan, done, strict=True)):
            self._next[i] = flag if count % 2 == 0 else not flag

    async def _worker(
        self, symbol: str, flag: bool, count: int, deadline: float, outcome: Outcome
    ) -> int:
        call = self.session.set_auto_add_margin
        latencies = outcome.latencies
        perf = time.perf_counter
        done = 0
        for _ in range(count):
            start = perf()
            if start > deadline:
                break
            try:
                await call(symbol, flag)
            except BybitError:
                outcome.errors += 1
            latencies.append(perf() - start)
            flag = not flag
            done += 1
        outcome.done += done
        return done

    async def close(self) -> None:
        """Close the session."""
        await self.session.close()


class RawClient:
    """Plain aiohttp: the same requests, signed before the round, through one pool."""

    name = "raw"

    def __init__(self, url: str, prefix: str = "RAW") -> None:
        self._url = URL(url + SET_AUTO_ADD_MARGIN, encoded=True)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        )
        self._prefix = prefix
        self._secret = API_SECRET.encode()
        self._key_window = f"{API_KEY}{RECV_WINDOW}".encode()
        self._next: dict[int, bool] = {}
        self._bodies: dict[tuple[int, bool], bytes] = {}

    def _body(self, i: int, flag: bool) -> bytes:
        body = self._bodies.get((i, flag))
        if body is None:
            params = {"category": "linear", "symbol": f"{self._prefix}{i}USDT"}
            body = self._bodies[i, flag] = orjson.dumps({**params, "autoAddMargin": int(flag)})
        return body

    def prepare(self, concurrency: int, requests: int) -> object:
        """Sign every request of the round now, with one fresh timestamp."""
        timestamp = str(time.time_ns() // 1_000_000)
        prefix = timestamp.encode() + self._key_window
        plan: list[tuple[int, bool, list[tuple[bytes, dict[str, str]]]]] = []
        for i, share in enumerate(_shares(concurrency, requests)):
            first = flag = self._next.get(i, True)
            signed = []
            for _ in range(share):
                body = self._body(i, flag)
                signature = hmac.new(self._secret, prefix + body, hashlib.sha256).hexdigest()
                headers = {
                    "Content-Type": "application/json",
                    "X-BAPI-API-KEY": API_KEY,
                    "X-BAPI-RECV-WINDOW": str(RECV_WINDOW),
                    "X-BAPI-SIGN-TYPE": "2",
                    "X-BAPI-TIMESTAMP": timestamp,
                    "X-BAPI-SIGN": signature,
                }
                signed.append((body, headers))
                flag = not flag
            plan.append((i, first, signed))
        return plan

    async def run(self, plan: object, deadline: float, outcome: Outcome) -> None:
        """Post every coroutine's signed requests until done or *deadline* passes."""
        assert isinstance(plan, list)
        done = await asyncio.gather(
            *(self._worker(requests, deadline, outcome) for _, _, requests in plan)
        )
        for (i, first, _), count in zip(plan, done, strict=True):
            self._next[i] = first if count % 2 == 0 else not first

    async def _worker(
        self, requests: list[tuple[bytes, dict[str, str]]], deadline: float, outcome: Outcome
    ) -> int:
        post = self._http.post
        url = self._url
        loads = orjson.loads
        latencies = outcome.latencies
        perf = time.perf_counter
        done = 0
        for body, headers in requests:
            start = perf()
            if start > deadline:
                break
            try:
                async with post(url, data=body, headers=headers) as resp:
                    data = await resp.read()
                    status = resp.status
                envelope = loads(data)
                if status != 200 or envelope["retCode"] != 0:
                    outcome.errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
                outcome.errors += 1
            latencies.append(perf() - start)
            done += 1
        outcome.done += done
        return done

    async def close(self) -> None:
        """Close the pool."""
        await self._http.close()


async def timed_round(
    client: Client,
    concurrency: int,
    requests: int,
    time_limit: float,
    sim: SimulatorProcess | None,
) -> Json:
    """Prepare, then time one round of *client*: throughput, CPU, latency, peak memory."""
    plan = client.prepare(concurrency, requests)
    # Collect now, so that one client's garbage is not collected on the other's clock.
    gc.collect()
    reset_peak_rss()
    outcome = Outcome()
    sim_cpu0 = sim.cpu_seconds() if sim is not None else None
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    await client.run(plan, t0 + time_limit, outcome)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    sim_cpu1 = sim.cpu_seconds() if sim is not None else None
    peak = peak_rss_mib()
    done = max(outcome.done, 1)
    latencies = sorted(outcome.latencies)
    return {
        "requests": outcome.done,
        "errors": outcome.errors,
        "truncated": outcome.done < requests,
        "wall_s": wall,
        "rps": outcome.done / wall,
        "cpu_us": cpu / done * 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "peak_rss_mib": peak,
        "sim_cpu_us": (
            (sim_cpu1 - sim_cpu0) / done * 1e6
            if sim_cpu0 is not None and sim_cpu1 is not None
            else None
        ),
    }


def summarize_rounds(rounds: list[Json]) -> Json:
    """Medians over a client's rounds, and the rounds themselves."""
    sim_cpu = [r["sim_cpu_us"] for r in rounds if r["sim_cpu_us"] is not None]
    return {
        "rps": summary([r["rps"] for r in rounds]),
        "cpu_us": summary([r["cpu_us"] for r in rounds]),
        "p50_ms": summary([r["p50_ms"] for r in rounds]),
        "p99_ms": summary([r["p99_ms"] for r in rounds]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rounds),
        "sim_cpu_us": summary(sim_cpu),
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "truncated_rounds": sum(1 for r in rounds if r["truncated"]),
        "rounds": rounds,
    }


def pair_ratios(a: list[Json], b: list[Json], key: str) -> Json:
    """Ratios a/b of *key*, round by round: adjacent rounds saw the same machine."""
    return summary([x[key] / y[key] for x, y in zip(a, b, strict=True) if y[key]])


async def traced_round(client: Client, concurrency: int, requests: int, time_limit: float) -> float:
    """Run one untimed round under tracemalloc; return the peak of new allocations in MiB.

    Untimed because tracing slows every allocation down several fold.  The
    preparation is traced too: the raw client's pre-signed requests are memory
    it needs for the round, as the session's are built during it.
    """
    gc.collect()
    tracemalloc.start()
    try:
        plan = client.prepare(concurrency, requests)
        await client.run(plan, time.perf_counter() + time_limit, Outcome())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / (1024 * 1024)


async def _sweep(
    sim: SimulatorProcess, config: Config, order: list[int], sdk_first: bool, trace: bool
) -> tuple[dict[int, dict[str, Json]], dict[int, dict[str, float]]]:
    """One round per (concurrency, client) against *sim*, at each level in *order*."""
    clients: list[Client] = [SdkClient(sim.url), RawClient(sim.url)]
    if not sdk_first:
        # Every other sweep runs raw aiohttp first, so that going first or second in a
        # pair (after a restart, after the other client's garbage) favours neither.
        clients.reverse()
    limit = config.round_time_limit
    rounds: dict[int, dict[str, Json]] = {}
    traced: dict[int, dict[str, float]] = {}
    try:
        for client in clients:
            # Untimed: fills the pool, syncs the session's clock, warms caches.
            await timed_round(client, POOL_LIMIT, 4 * POOL_LIMIT, limit, sim)
        for concurrency in order:
            requests = config.requests_per_round[concurrency]
            if trace:
                traced[concurrency] = {
                    client.name: await traced_round(
                        client, concurrency, max(concurrency, requests // 2), limit
                    )
                    for client in clients
                }
            rounds[concurrency] = {
                client.name: await timed_round(client, concurrency, requests, limit, sim)
                for client in clients
            }
    finally:
        for client in clients:
            await client.close()
    return rounds, traced


async def _matrix(config: Config, loop_name: str) -> Json:
    levels = list(config.concurrency)
    per_level: dict[int, dict[str, list[Json]]] = {c: {"sdk": [], "raw": []} for c in levels}
    traced: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    for sweep in range(config.sweeps):
        if sweep >= config.min_sweeps and time.perf_counter() - started > config.loop_budget:
            break
        # Rotate the order of the levels, so that none always runs first after a restart.
        shift = sweep % len(levels)
        order = levels[shift:] + levels[:shift]
        with simulator_process() as sim:
            rounds, sweep_traced = await _sweep(
                sim, config, order, sdk_first=sweep % 2 == 0, trace=sweep == 0
            )
        traced.update(sweep_traced)
        for concurrency, by_client in rounds.items():
            for name, result in by_client.items():
                per_level[concurrency][name].append(result)
        log(
            f"throughput: {loop_name} sweep {sweep + 1}: "
            + ", ".join(
                f"c={c} {rounds[c]['sdk']['cpu_us']:.0f}/{rounds[c]['raw']['cpu_us']:.0f} us"
                for c in levels
            )
        )
    cells: Json = {}
    for concurrency in levels:
        sdk_rounds, raw_rounds = per_level[concurrency]["sdk"], per_level[concurrency]["raw"]
        sdk, raw = summarize_rounds(sdk_rounds), summarize_rounds(raw_rounds)
        sdk["traced_peak_mib"] = traced.get(concurrency, {}).get("sdk")
        raw["traced_peak_mib"] = traced.get(concurrency, {}).get("raw")
        cells[str(concurrency)] = {
            "concurrency": concurrency,
            "requests_per_round": config.requests_per_round[concurrency],
            "sdk": sdk,
            "raw": raw,
            "ratio": {
                "rps": pair_ratios(sdk_rounds, raw_rounds, "rps"),
                "cpu_us": pair_ratios(sdk_rounds, raw_rounds, "cpu_us"),
            },
        }
    return cells


def measure_throughput(config: Config) -> Json:
    """Section 3: the sdk/raw matrix over event loops and concurrency levels.

    Every sweep starts a fresh simulator and fresh clients and runs one round of
    each client at every level, so that slow drift of the machine spreads over
    all levels alike instead of landing on whichever level ran at the time.
    """
    loops: Json = {}
    skipped: list[str] = []
    for loop_name in config.loops:
        if not loop_available(loop_name):
            skipped.append(loop_name)
            log(f"throughput: {loop_name} is not installed, skipped")
            continue
        log(
            f"throughput: {loop_name}: up to {config.sweeps} sweeps over concurrency "
            f"{', '.join(map(str, config.concurrency))} (client CPU us/req, sdk/raw)"
        )
        loops[loop_name] = run_on(loop_name, functools.partial(_matrix, config, loop_name))
    return {
        "memory_method": PEAK_MEMORY_METHOD,
        "traced_memory_method": "tracemalloc peak of new allocations during one untimed round "
        "of half the round's requests in the first sweep, preparation (raw: signing) included",
        "pool_limit": POOL_LIMIT,
        "recv_window_raw": RECV_WINDOW,
        "loops": loops,
        "skipped_loops": skipped,
    }


async def _soak(sim: SimulatorProcess, config: Config) -> Json:
    client = SdkClient(sim.url, prefix="SOAK")
    chunk = config.soak_requests // config.soak_chunks
    deadline = time.perf_counter() + config.soak_time_limit
    checkpoints: list[Json] = []
    try:
        await timed_round(client, config.soak_concurrency, 1_000, 10.0, sim)  # warm-up
        for i in range(config.soak_chunks):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            result = await timed_round(
                client, config.soak_concurrency, chunk, min(left, config.soak_time_limit), sim
            )
            # Count what stays alive, not garbage that a later collection would free.
            gc.collect()
            checkpoints.append(
                {
                    "after_requests": (i + 1) * chunk,
                    "rss_mib": rss_mib(),
                    "gc_objects": len(gc.get_objects()),
                    "rps": result["rps"],
                    "cpu_us": result["cpu_us"],
                    "p99_ms": result["p99_ms"],
                    "errors": result["errors"],
                    "truncated": result["truncated"],
                }
            )
    finally:
        await client.close()
    if not checkpoints:
        raise RuntimeError("the soak run did not finish a single chunk in its time limit")
    first, last = checkpoints[0], checkpoints[-1]
    return {
        "requests": last["after_requests"],
        "planned_requests": config.soak_requests,
        "concurrency": config.soak_concurrency,
        "memory_method": "current RSS (VmRSS) and gc-tracked objects after gc.collect()",
        "checkpoints": checkpoints,
        "rss_at_10pct_mib": first["rss_mib"],
        "rss_at_end_mib": last["rss_mib"],
        "rss_growth_mib": last["rss_mib"] - first["rss_mib"],
        "objects_at_10pct": first["gc_objects"],
        "objects_at_end": last["gc_objects"],
        "objects_growth": last["gc_objects"] - first["gc_objects"],
        "errors": sum(c["errors"] for c in checkpoints),
        "complete": len(checkpoints) == config.soak_chunks and not last["truncated"],
    }


def measure_soak(config: Config) -> Json:
    """Section 3, long run: the session's memory at 10% of the requests and at the end."""
    log(
        f"soak: {config.soak_requests} requests at concurrency {config.soak_concurrency} "
        f"in {config.soak_chunks} chunks"
    )
    with simulator_process() as sim:
        result = run_on("asyncio", lambda: _soak(sim, config))
    log(
        f"  RSS {result['rss_at_10pct_mib']:.1f} -> {result['rss_at_end_mib']:.1f} MiB, "
        f"objects {result['objects_at_10pct']} -> {result['objects_at_end']}"
    )
    return result
