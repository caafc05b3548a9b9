"""Section 10: limits as the account has them (issue 22).

Everything but the CPU measure runs against an in-process `BybitSimulator`
that enforces the limits, with 7.5-12.5 ms of network delay each way (a
15-25 ms round trip), and a client that is given no configuration: a
default `BybitSession`, which learns each account's limits from the
answers' ``X-Bapi-Limit``.  Each time is set against its physical minimum,
``(ceil(N / L) - 1) * W`` plus one round trip (20 ms), in the same run; the
wall times include the first call's clock sync, as a new session's do.

* **VIP**: the account's limit on order create (linear) is 60/s, six times
  the published 10; N orders at once through ``session.request``.
* **PRO**: 200/s on order create; here the IP's 600 per 5 s binds first, so
  the minimum is the IP's.  The session is warmed up (clock synced) and the
  IP window let clear first: a cold start's clock sync takes one of the first
  window's 600 permits, which pushes the last order into a fourth per-UID
  second of the last window, a minimum of 16 s rather than 15.
* **lower**: set-auto-add-margin answering with a limit of 5/s, below the
  table's 10: 10006 answers to requests that arrived after the client had
  its first answer, and the time against the minimum at 5/s.
* **unknown**: a path the table lacks (a fixture route) limited to 3/s for
  the account, N calls at once.
* **fleet**: 50 sessions for 50 accounts in one process, each setting
  auto-add-margin on its own symbols, at the real IP limit: 403 answers, the
  most requests at the server in any 5 s, the time against the IP minimum
  for every request the server saw (clock syncs included).
* **halt**: the same 50 sessions sending steadily; one of them is answered
  403 (an injected fault).  Sends by the other sessions (counted as aiohttp
  starts them) from the halt until the ban ends, and, at the server, their
  requests signed in that time.
* **CPU**: client CPU per request at concurrency 50 against the simulator in
  its own process (limits not enforced, and its reported limit raised to
  100,000 so that no answer holds the path), with the default limiter whose
  limits are raised out of reach, against ``rate_limits=None``; rounds
  interleaved, median of the per-round ratios.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bybit_async import (
    ApiResponse,
    BybitError,
    BybitSession,
    RateLimits,
    SessionHaltedError,
)
from bybit_async.endpoint_limits import ENDPOINT_LIMITS, budget_key
from bybit_async.events import AttemptAnswered, Event, SessionHalted
from bybit_async.ratelimit import Limiter
from bybit_async.testing import BybitSimulator, Fault, NetworkDelay

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, simulator_process, summary
from .throughput import SdkClient, timed_round

ORDER_CREATE = "/v5/order/create"
ORDER_KEY = budget_key(ORDER_CREATE, "linear")
#: A path Bybit's table does not list, answered by a fixture route.
UNKNOWN = "/v5/bench/unlisted"
DELAY = NetworkDelay(low=0.0075, high=0.0125)
RTT = 0.02
IP_LIMIT = 600
IP_WINDOW = 5.0
#: The simulator's IP ban in this section: short, so that a miss cannot stall the run.
SIM_BAN_S = 3.0
#: The session's cool-off after the injected 403.
HALT_COOLDOWN_S = 2.0
#: The fleet's sessions open this many connections each before the clock starts,
#: WARM_BATCH sessions at a time.
FLEET_CONNECTIONS = 10
WARM_BATCH = 5
CPU_CONCURRENCY = 50
#: What the CPU measure's simulator reports as set-auto-add-margin's limit.
CPU_SIM_LIMIT = 100_000

GOAL_VIP = 1.08
GOAL_PRO = 1.08
GOAL_LOWER = 1.1
GOAL_FLEET = 1.1
GOAL_CPU = 1.02


def minimum(n: int, limit: int, window: float = 1.0) -> float:
    """The least time for *n* requests at *limit* per rolling *window*, plus one round trip."""
    return (math.ceil(n / limit) - 1) * window + RTT


def ip_minimum(total: int, orders: int, account_limit: int) -> float:
    """The least time for *total* requests, *orders* of them at *account_limit*/s, at the IP limit.

    Full IP windows first; the orders left after them go at the account's
    limit (1,200 at 200/s: 600 in the first 5 s, then 200 a second from 5 s,
    the last at 7 s).  The requests that are not orders (a clock sync) come
    first, in the first window.
    """
    windows = math.ceil(total / IP_LIMIT) - 1
    left = total - windows * IP_LIMIT if windows else orders
    return windows * IP_WINDOW + (math.ceil(left / account_limit) - 1) + RTT


def _delay(seed: int) -> NetworkDelay:
    return dataclasses.replace(DELAY, seed=seed)


def _failures(outcomes: list[Any]) -> int:
    return sum(1 for o in outcomes if not isinstance(o, ApiResponse))


def _in_force(session: BybitSession, key: str) -> str:
    limit = session.stats().limits.get(key)
    return "none" if limit is None else f"{limit.limit} per {limit.window:g} s ({limit.source})"


async def measure_orders(n: int, account_limit: int, seed: int, *, warm: bool = False) -> Json:
    """*n* linear orders at once from an account allowed *account_limit* per second.

    *warm*: the clock is synced and the IP window let clear before the clock
    starts, so that the orders have the IP's permits to themselves.
    """
    async with BybitSimulator(
        network_delay=_delay(seed), instruments=None, ip_ban_seconds=SIM_BAN_S
    ) as sim:
        sim.set_limit(ORDER_KEY, account_limit)
        async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
            body = {
                "category": "linear",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Market",
                "qty": "0.001",
            }
            if warm:
                await session.warm_up()
                await asyncio.sleep(IP_WINDOW + 0.2)
            start = len(sim.requests)
            t0 = time.perf_counter()
            outcomes = await asyncio.gather(
                *(
                    session.request("POST", ORDER_CREATE, {**body, "orderLinkId": f"b{i}"})
                    for i in range(n)
                ),
                return_exceptions=True,
            )
            wall = time.perf_counter() - t0
            in_force = _in_force(session, ORDER_KEY)
        total = len(sim.requests) - start
        per_uid = minimum(n, account_limit)
        per_ip = ip_minimum(total, n, account_limit)
        floor = max(per_uid, per_ip)
        return {
            "orders": n,
            "warm": warm,
            "account_limit": account_limit,
            "wall_s": wall,
            "minimum_s": floor,
            "binding": "IP" if per_ip >= per_uid else "per-UID",
            "ratio": wall / floor,
            "answers_10006": sim.count(ORDER_CREATE, ret_code=10006),
            "answers_403": sim.count(status=403),
            "max_in_1s": sim.max_in_window(ORDER_CREATE, 1.0),
            "max_in_5s": sim.max_in_window(None, IP_WINDOW),
            "requests": total,
            "failures": _failures(outcomes),
            "in_force": in_force,
        }


async def measure_lower(n: int, stated: int, seed: int) -> Json:
    """set-auto-add-margin over *n* symbols from an account whose answers state *stated*/s."""
    # (monotonic time answered, seconds the exchange took, retCode) of every write's
    # attempt, from the session's events: when each attempt was sent, on the client's
    # clock, whatever the loop's lag in recording arrivals at the simulator.
    answers: list[tuple[float, float, int | None]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, AttemptAnswered) and event.path == SET_AUTO_ADD_MARGIN:
            answers.append((time.monotonic(), event.latency, event.ret_code))

    async with BybitSimulator(
        network_delay=_delay(seed), instruments=None, ip_ban_seconds=SIM_BAN_S
    ) as sim:
        sim.set_limit(SET_AUTO_ADD_MARGIN, stated)
        async with BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, on_event=on_event
        ) as session:
            names = [f"LW{i}USDT" for i in range(n)]
            t0 = time.perf_counter()
            outcomes = await session.set_auto_add_margin_many(names, True)
            wall = time.perf_counter() - t0
            in_force = _in_force(session, SET_AUTO_ADD_MARGIN)
        writes = [r for r in sim.requests if r.path == SET_AUTO_ADD_MARGIN]
        first_answer = min(t for t, _, _ in answers)
        refused_after = sum(
            1 for t, took, code in answers if code == 10006 and t - took > first_answer
        )
        floor = minimum(n, stated)
        return {
            "symbols": n,
            "table_limit": ENDPOINT_LIMITS[SET_AUTO_ADD_MARGIN].limit,
            "stated_limit": stated,
            "wall_s": wall,
            "minimum_s": floor,
            "ratio": wall / floor,
            "writes": len(writes),
            "answers_10006": sum(1 for r in writes if r.ret_code == 10006),
            "answers_10006_after_first": refused_after,
            "max_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            "failures": _failures(outcomes),
            "in_force": in_force,
        }


async def measure_unknown(n: int, account_limit: int, seed: int) -> Json:
    """*n* calls at once to a path the table lacks, limited to *account_limit*/s."""
    if UNKNOWN in ENDPOINT_LIMITS:
        raise RuntimeError(f"{UNKNOWN} is in the table: pick another path")
    async with BybitSimulator(
        network_delay=_delay(seed), instruments=None, ip_ban_seconds=SIM_BAN_S
    ) as sim:
        sim.add_route("GET", UNKNOWN, {"list": []})
        sim.set_limit(UNKNOWN, account_limit)
        async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
            t0 = time.perf_counter()
            outcomes = await asyncio.gather(
                *(session.request("GET", UNKNOWN, {"n": i}) for i in range(n)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - t0
            in_force = _in_force(session, UNKNOWN)
        calls = [r for r in sim.requests if r.path == UNKNOWN]
        floor = minimum(n, account_limit)
        return {
            "calls": n,
            "account_limit": account_limit,
            "wall_s": wall,
            "minimum_s": floor,
            "ratio": wall / floor,
            "sent": len(calls),
            "answers_10006": sum(1 for r in calls if r.ret_code == 10006),
            "max_in_1s": sim.max_in_window(UNKNOWN, 1.0),
            "failures": _failures(outcomes),
            "in_force": in_force,
        }


def _accounts(sim: BybitSimulator, n: int) -> list[tuple[str, str]]:
    keys = [(f"bench-key-{i:02d}", f"bench-secret-{i:02d}") for i in range(n)]
    for key, secret in keys:
        sim.add_account(key, secret)
    return keys


async def measure_fleet(
    sessions: int,
    symbols: int,
    seed: int,
    limiter_for: Callable[[str], Limiter] | None = None,
) -> Json:
    """*sessions* accounts in one process, each over *symbols* symbols, at the real IP limit.

    *limiter_for*, given an API key, makes that session's limiter (such as a
    `RedisLimiter`); by default each session has its own `LocalLimiter`.
    """
    async with BybitSimulator(
        network_delay=_delay(seed), instruments=None, ip_ban_seconds=SIM_BAN_S
    ) as sim:
        keys = _accounts(sim, sessions)
        clients = [
            BybitSession(k, s, base_url=sim.url)
            if limiter_for is None
            else BybitSession(k, s, base_url=sim.url, limiter=limiter_for(k))
            for k, s in keys
        ]
        try:
            # Connections first, a few sessions at a time: 500 connects at once overflow
            # the simulator's listen backlog (128), and the dropped SYNs come back a
            # second later, which is the loopback's doing, not the limiter's.  Then the
            # IP window is let clear, so that the timed part starts with all 600 permits.
            for i in range(0, sessions, WARM_BATCH):
                await asyncio.gather(
                    *(c.warm_up(connections=FLEET_CONNECTIONS) for c in clients[i : i + WARM_BATCH])
                )
            await asyncio.sleep(IP_WINDOW + 0.2)
            start = len(sim.requests)
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    c.set_auto_add_margin_many([f"F{i}S{j}USDT" for j in range(symbols)], True)
                    for i, c in enumerate(clients)
                )
            )
            wall = time.perf_counter() - t0
        finally:
            for client in clients:
                await client.close()
        total = len(sim.requests) - start
        floor = minimum(total, IP_LIMIT, IP_WINDOW)
        return {
            "sessions": sessions,
            "warm_up_requests": start,
            "symbols": symbols,
            "requests": total,
            "wall_s": wall,
            "minimum_s": floor,
            "ratio": wall / floor,
            "answers_403": sim.count(status=403),
            "answers_10006": sim.count(ret_code=10006),
            "max_in_5s": sim.max_in_window(None, IP_WINDOW),
            "failures": sum(_failures(list(r)) for r in results),
        }


async def measure_halt(sessions: int, seed: int) -> Json:
    """One of *sessions* sessions answered 403: who sends before the ban ends."""
    async with BybitSimulator(
        network_delay=_delay(seed), instruments=None, ip_ban_seconds=SIM_BAN_S
    ) as sim:
        keys = _accounts(sim, sessions)
        sends: list[list[float]] = [[] for _ in keys]
        halts: list[float] = []
        halts_ms: list[float] = []
        halted = asyncio.Event()

        def tracer(index: int) -> aiohttp.TraceConfig:
            async def started(*_: object) -> None:
                sends[index].append(time.monotonic())

            trace = aiohttp.TraceConfig()
            trace.on_request_start.append(started)
            return trace

        def on_event(event: Event) -> None:
            if isinstance(event, SessionHalted):
                halts.append(time.monotonic())
                halts_ms.append(time.time() * 1000)
                halted.set()

        clients = [
            BybitSession(
                k,
                s,
                base_url=sim.url,
                ban_cooldown=HALT_COOLDOWN_S,
                trace_configs=[tracer(i)],
                on_event=on_event,
            )
            for i, (k, s) in enumerate(keys)
        ]
        stop = asyncio.Event()

        async def worker(index: int, client: BybitSession) -> None:
            flag = True
            k = 0
            while not stop.is_set():
                try:
                    await client.set_auto_add_margin(f"H{index}S{k % 20}USDT", flag)
                except SessionHaltedError as error:
                    # As an engine would: wait out the halt, then go on.
                    await asyncio.sleep(error.resume_in)
                except BybitError:
                    pass
                flag = not flag
                k += 1

        tasks = [asyncio.create_task(worker(i, c)) for i, c in enumerate(clients)]
        # The halt's warning is this measure's expected outcome, not news for the console.
        logger = logging.getLogger("bybit_async")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            await asyncio.sleep(0.3)
            sim.inject(Fault.http_status(403, "access too frequent"), path=SET_AUTO_ADD_MARGIN)
            await asyncio.wait_for(halted.wait(), 30.0)
            halted_at = halts[0]
            ban_ends = halted_at + HALT_COOLDOWN_S
            await asyncio.sleep(max(0.0, ban_ends - time.monotonic()) + 0.5)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.close()
            logger.setLevel(level)
        banned = [r for r in sim.requests if r.status == 403]
        banned_key = banned[0].api_key if banned else None
        index = next((i for i, (k, _) in enumerate(keys) if k == banned_key), -1)
        during = [sum(1 for t in times if halted_at < t < ban_ends) for times in sends]
        others = sum(n for i, n in enumerate(during) if i != index)
        # At the server: requests from the others signed (X-BAPI-TIMESTAMP) during the
        # halt, give or take the clock's offset error (at most a round trip).
        halt_ms = halts_ms[0]
        slack_ms = 2 * DELAY.high * 1000
        signed_late = sum(
            1
            for r in sim.requests
            if r.api_key not in (None, banned_key)
            and r.timestamp is not None
            and halt_ms + slack_ms < r.timestamp < halt_ms + HALT_COOLDOWN_S * 1000
        )
        after = sum(1 for times in sends for t in times if t >= ban_ends)
        return {
            "sessions": sessions,
            "cooldown_s": HALT_COOLDOWN_S,
            "sessions_halted": len(halts),
            "sent_by_others_during_halt": others,
            "sent_by_banned_during_halt": during[index] if index >= 0 else None,
            "signed_by_others_during_halt": signed_late,
            "sent_before_halt": sum(1 for times in sends for t in times if t <= halted_at),
            "sent_after_ban": after,
            "answers_403": len(banned),
        }


# -- client CPU ------------------------------------------------------------------

CPU_CONFIGS: dict[str, Callable[[], RateLimits | None]] = {
    "off": lambda: None,
    "on": lambda: RateLimits(ip_limit=10**9, endpoints={SET_AUTO_ADD_MARGIN: 10**9}),
}
CPU_LABELS = {
    "off": "rate_limits=None",
    "on": "default limiter, limits out of reach",
}


async def _cpu_sweeps(requests: int, sweeps: int) -> Json:
    rounds: dict[str, list[Json]] = {name: [] for name in CPU_CONFIGS}
    args = ["--endpoint-limit", f"{SET_AUTO_ADD_MARGIN}={CPU_SIM_LIMIT}"]
    with simulator_process(extra_args=args) as sim:
        clients = {
            name: SdkClient(sim.url, prefix=f"LIM{name.upper()}", rate_limits=make())
            for name, make in CPU_CONFIGS.items()
        }
        try:
            for client in clients.values():
                await timed_round(client, CPU_CONCURRENCY, 4 * CPU_CONCURRENCY, 10.0, sim)
            names = list(CPU_CONFIGS)
            for sweep in range(sweeps):
                order = names if sweep % 2 == 0 else names[::-1]
                for name in order:
                    rounds[name].append(
                        await timed_round(clients[name], CPU_CONCURRENCY, requests, 10.0, sim)
                    )
                if (sweep + 1) % 4 == 0:
                    log(
                        f"limits: CPU sweep {sweep + 1}/{sweeps}: "
                        + ", ".join(f"{n} {rounds[n][-1]['cpu_us']:.1f}" for n in names)
                        + " us/req"
                    )
        finally:
            for client in clients.values():
                await client.close()
    ratios = [a["cpu_us"] / b["cpu_us"] for a, b in zip(rounds["on"], rounds["off"], strict=True)]
    out: Json = {
        "concurrency": CPU_CONCURRENCY,
        "requests_per_round": requests,
        "sweeps": sweeps,
        "sim_limit": CPU_SIM_LIMIT,
        "ratio": summary(ratios),
    }
    for name in CPU_CONFIGS:
        out[name] = {
            "cpu_us": summary([r["cpu_us"] for r in rounds[name]]),
            "rps": summary([r["rps"] for r in rounds[name]]),
            "errors": sum(r["errors"] for r in rounds[name]),
        }
    return out


# -- the section -------------------------------------------------------------------


def measure_limits(config: Config) -> Json:
    """Run the section; quick mode uses fewer requests and CPU rounds."""
    quick = config.name == "quick"
    out: Json = {
        "delay": {"low": DELAY.low, "high": DELAY.high},
        "rtt_s": RTT,
        "ip_limit": IP_LIMIT,
        "ip_window_s": IP_WINDOW,
        "machine_note": "shared 2-core machine with other jobs running: figures are noisy",
    }
    vip_n = 240 if quick else 600
    log(f"limits: VIP-like account, {vip_n} orders at 60/s")
    out["vip"] = run_on("asyncio", lambda: measure_orders(vip_n, 60, 1))
    pro_n = 1_200 if quick else 2_000
    log(f"limits: PRO-like account, {pro_n} orders at 200/s (the IP binds)")
    out["pro"] = run_on("asyncio", lambda: measure_orders(pro_n, 200, 2, warm=True))
    lower_n = 50 if quick else 100
    log(f"limits: set-auto-add-margin stating 5/s, {lower_n} symbols")
    out["lower"] = run_on("asyncio", lambda: measure_lower(lower_n, 5, 3))
    unknown_n = 15 if quick else 30
    log(f"limits: a path the table lacks at 3/s, {unknown_n} calls at once")
    out["unknown"] = run_on("asyncio", lambda: measure_unknown(unknown_n, 3, 4))
    symbols = 20 if quick else 100
    log(f"limits: 50 sessions x {symbols} symbols at the real IP limit")
    out["fleet"] = run_on("asyncio", lambda: measure_fleet(50, symbols, 5))
    log("limits: a 403 for one of 50 sessions")
    out["halt"] = run_on("asyncio", lambda: measure_halt(50, 6))
    requests = 2_000 if quick else 4_000
    sweeps = 8 if quick else 100
    log(f"limits: client CPU, limiter on vs off, {sweeps} sweeps of {requests} requests")
    out["cpu"] = run_on("asyncio", lambda: _cpu_sweeps(requests, sweeps))
    for name in ("vip", "pro", "lower", "unknown", "fleet"):
        part = out[name]
        log(f"  {name}: {part['wall_s']:.2f} s = {part['ratio']:.3f}x the minimum")
    return out


Target = tuple[str, str, str, bool | None, float | None]


def limits_targets(section: Json) -> list[Target]:
    """The issue's goals for this section: (name, measured, goal, pass, value)."""
    out: list[Target] = []
    vip = section.get("vip")
    if vip:
        out.append(
            (
                f"VIP-like account ({vip['account_limit']}/s on order create), "
                f"{vip['orders']:,} orders, no client configuration",
                f"{vip['ratio']:.3f}x the minimum ({vip['wall_s']:.2f} vs "
                f"{vip['minimum_s']:.2f} s), {vip['answers_10006']} x 10006",
                f"<= {GOAL_VIP}x, 0 x 10006",
                vip["ratio"] <= GOAL_VIP and vip["answers_10006"] == 0,
                vip["ratio"],
            )
        )
    pro = section.get("pro")
    if pro:
        out.append(
            (
                f"PRO-like account ({pro['account_limit']}/s), {pro['orders']:,} orders: "
                "the IP binds",
                f"{pro['ratio']:.3f}x the IP minimum ({pro['wall_s']:.2f} vs "
                f"{pro['minimum_s']:.2f} s), {pro['answers_10006']} x 10006, "
                f"{pro['answers_403']} x 403",
                f"<= {GOAL_PRO}x, 0 x 10006, 0 x 403",
                pro["ratio"] <= GOAL_PRO and pro["answers_10006"] == 0 and pro["answers_403"] == 0,
                pro["ratio"],
            )
        )
    lower = section.get("lower")
    if lower:
        out.append(
            (
                f"set-auto-add-margin stating {lower['stated_limit']}/s, "
                f"{lower['symbols']} symbols",
                f"{lower['answers_10006_after_first']} x 10006 after the first answer "
                f"({lower['answers_10006']} in all); {lower['ratio']:.3f}x the minimum",
                f"0 after the first answer, <= {GOAL_LOWER}x",
                lower["answers_10006_after_first"] == 0 and lower["ratio"] <= GOAL_LOWER,
                lower["ratio"],
            )
        )
    unknown = section.get("unknown")
    if unknown:
        out.append(
            (
                f"A path the table lacks, {unknown['account_limit']}/s, "
                f"{unknown['calls']} calls at once",
                f"{unknown['answers_10006']} x 10006; {unknown['ratio']:.3f}x the minimum",
                "0 x 10006",
                unknown["answers_10006"] == 0,
                float(unknown["answers_10006"]),
            )
        )
    fleet = section.get("fleet")
    if fleet:
        out.append(
            (
                f"{fleet['sessions']} sessions x {fleet['symbols']} symbols in one process",
                f"{fleet['answers_403']} x 403, {fleet['max_in_5s']} at the server in any 5 s, "
                f"{fleet['ratio']:.3f}x the IP minimum",
                f"0 x 403, <= {section['ip_limit']} in any 5 s, <= {GOAL_FLEET}x",
                fleet["answers_403"] == 0
                and fleet["max_in_5s"] <= section["ip_limit"]
                and fleet["ratio"] <= GOAL_FLEET,
                fleet["ratio"],
            )
        )
    halt = section.get("halt")
    if halt:
        out.append(
            (
                f"A 403 seen by one of {halt['sessions']} sessions",
                f"{halt['sent_by_others_during_halt']} sent by the others until the ban ended "
                f"({halt['sessions_halted']} sessions halted)",
                "0",
                halt["sent_by_others_during_halt"] == 0
                and halt["sessions_halted"] == halt["sessions"],
                float(halt["sent_by_others_during_halt"]),
            )
        )
    cpu = section.get("cpu")
    if cpu:
        ratio = cpu["ratio"]["median"]
        out.append(
            (
                "Client CPU per request at concurrency 50, limiter on vs rate_limits=None",
                f"{ratio:.3f}x ({cpu['on']['cpu_us']['median']:.1f} vs "
                f"{cpu['off']['cpu_us']['median']:.1f} µs/req), median of per-round ratios",
                f"<= {GOAL_CPU}x",
                ratio <= GOAL_CPU,
                ratio,
            )
        )
    return out


def _time_cell(part: Json) -> str:
    return f"{part['wall_s']:.2f} s = {part['ratio']:.3f}x the minimum {part['minimum_s']:.2f} s"


def render_limits(section: Json, heading: str = "##") -> list[str]:
    """The section's heading, description and table, as Markdown parts."""
    delay = section["delay"]
    rows = []
    vip = section.get("vip")
    if vip:
        rows.append(
            f"| VIP-like: {vip['account_limit']}/s on order create (linear), "
            f"{vip['orders']:,} orders at once | {_time_cell(vip)}; {vip['answers_10006']} x "
            f"10006, most in any 1 s {vip['max_in_1s']}; limit in force after: "
            f"{vip['in_force']} | <= {GOAL_VIP}x, 0 x 10006 |"
        )
    pro = section.get("pro")
    if pro:
        rows.append(
            f"| PRO-like: {pro['account_limit']}/s, {pro['orders']:,} orders at once "
            f"| {_time_cell(pro)} (the {pro['binding']}'s, {pro['requests']:,} requests); "
            f"{pro['answers_10006']} x 10006, {pro['answers_403']} x 403, most in any 5 s "
            f"{pro['max_in_5s']}; limit in force after: {pro['in_force']} "
            f"| <= {GOAL_PRO}x, 0 x 10006, 0 x 403 |"
        )
    lower = section.get("lower")
    if lower:
        rows.append(
            f"| set-auto-add-margin stating {lower['stated_limit']}/s (table: "
            f"{lower['table_limit']}), {lower['symbols']} symbols | {_time_cell(lower)}; "
            f"{lower['answers_10006_after_first']} x 10006 after the first answer, "
            f"{lower['answers_10006']} in all (the first burst at the table's limit); "
            f"limit in force after: {lower['in_force']} | 0 after the first answer, "
            f"<= {GOAL_LOWER}x |"
        )
    unknown = section.get("unknown")
    if unknown:
        rows.append(
            f"| `GET {UNKNOWN}` (not in the table), {unknown['account_limit']}/s, "
            f"{unknown['calls']} calls at once | {_time_cell(unknown)}; "
            f"{unknown['answers_10006']} x 10006, most in any 1 s {unknown['max_in_1s']}; "
            f"limit in force after: {unknown['in_force']} | 0 x 10006 |"
        )
    fleet = section.get("fleet")
    if fleet:
        rows.append(
            f"| {fleet['sessions']} sessions (accounts) x {fleet['symbols']} symbols, one "
            f"process | {_time_cell(fleet)} (the IP's, {fleet['requests']:,} requests); "
            f"{fleet['answers_403']} x 403, {fleet['answers_10006']} x 10006, "
            f"{fleet['max_in_5s']} at the server in any 5 s | 0 x 403, <= "
            f"{section['ip_limit']} in any 5 s, <= {GOAL_FLEET}x |"
        )
    halt = section.get("halt")
    if halt:
        rows.append(
            f"| a 403 for one of {halt['sessions']} sessions, {halt['cooldown_s']:g} s "
            f"cool-off | {halt['sessions_halted']} sessions halted; sent until the ban ended: "
            f"{halt['sent_by_others_during_halt']} by the others, "
            f"{halt['sent_by_banned_during_halt']} by the one banned; at the server, "
            f"{halt['signed_by_others_during_halt']} from the others signed during it; "
            f"{halt['sent_before_halt']:,} sent "
            f"before, {halt['sent_after_ban']:,} after | 0 |"
        )
    cpu = section.get("cpu")
    if cpu:
        rows.append(
            f"| client CPU per request at concurrency {cpu['concurrency']}: "
            f"{CPU_LABELS['on']} vs {CPU_LABELS['off']} | {cpu['ratio']['median']:.3f}x "
            f"(rounds {cpu['ratio']['min']:.3f}-{cpu['ratio']['max']:.3f}); "
            f"{cpu['on']['cpu_us']['median']:.1f} vs {cpu['off']['cpu_us']['median']:.1f} "
            f"µs/req, {cpu['on']['rps']['median']:,.0f} vs {cpu['off']['rps']['median']:,.0f} "
            f"req/s; {cpu['sweeps']} sweeps of {cpu['requests_per_round']:,} requests "
            f"| <= {GOAL_CPU}x |"
        )
    return [
        f"{heading} 10. Limits as the account has them",
        f"In-process simulator enforcing per-account limits and the IP's "
        f"{section['ip_limit']} per {section['ip_window_s']:g} s, "
        f"{delay['low'] * 1e3:.1f}-{delay['high'] * 1e3:.1f} ms each way; the client is a "
        "default `BybitSession` with nothing configured, so it learns each limit from "
        "`X-Bapi-Limit`.  The minimum for N requests at L per rolling window W is "
        f"(ceil(N/L) - 1) x W plus one round trip ({section['rtt_s'] * 1e3:.0f} ms); where "
        "both apply, the larger of the per-UID and the IP one.  Wall times include the first "
        "clock sync, but PRO-like's (its session is warmed up and the IP window let clear "
        "first: a cold start's sync would take one of the 600 permits and push the last "
        "order into a fourth second of the last window).  The CPU row runs against the "
        "simulator in its own process, limits not enforced.  " + section.get("machine_note", ""),
        "\n".join(["| measure | measured | goal |", "|---|---|---|", *rows]),
    ]
