"""Section 9: live positions, the private stream and the auto-add-margin guard.

Everything runs against an in-process `BybitSimulator` whose network delay is
7.5-12.5 ms each way (a 15-25 ms round trip; pushes take one way too), at
Bybit's limits (10 set-auto-add-margin writes per rolling second per UID).

* **reaction**: the guard running, positions open one at a time with the flag
  off, paced under the limit; the time from the simulator changing the
  position (and queueing its push) to the guard's write arriving at the
  simulator.  The goal is one round trip plus 10 ms at p99, the round trip
  taken at the delay's upper bound (25 ms).
* **storm**: N positions open at once with the flag off; the time until the
  last is written, against the rolling-window minimum ``(ceil(N / L) - 1) *
  W`` plus one round trip, and the 10006 answers.
* **drops**: 200 guarded positions; in each of 10 rounds 20 of them are
  turned off, half before the stream is cut and half while it is down.  Per
  round: the time from the reconnect to every flag on (the read and the
  writes after it), duplicate writes (answered "not modified") and positions
  left wrong.
* **pushes**: the stream's per-push work (parse, check, seq, hand to the
  consumer) on N ready-made push texts, with a consumer draining it, against
  ``orjson.loads`` alone on the same texts; memory sampled as it goes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import orjson

from bybit_async import BybitSession, EnsureRow
from bybit_async.events import Event, StreamConnected, StreamReconnected
from bybit_async.testing import BybitSimulator, NetworkDelay

from .common import SET_AUTO_ADD_MARGIN, Config, Json, cpu_seconds, log, rss_mib, run_on, summary

LIMIT = 10
WINDOW = 1.0
DELAY = NetworkDelay(low=0.0075, high=0.0125, seed=25)
RTT_HIGH = 0.025
RTT_NOMINAL = 0.02
#: The reaction goal: one round trip (the delay's upper bound) plus 10 ms, at p99.
REACTION_GOAL = RTT_HIGH + 0.010
STORM_GOAL = 1.08
FAST_STREAM: dict[str, Any] = {
    "ping_interval": 5.0,
    "pong_timeout": 2.0,
    "backoff_initial": 0.05,
    "backoff_max": 0.5,
    "stable_after": 0.2,
}


def storm_minimum(n: int) -> float:
    """The least time for *n* writes at LIMIT per rolling WINDOW, plus one round trip."""
    return (math.ceil(n / LIMIT) - 1) * WINDOW + RTT_NOMINAL


class _Watch:
    """on_action and on_event for a benchmark: counts, and a way to await a condition."""

    def __init__(self) -> None:
        self.rows: list[EnsureRow] = []
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    def action(self, row: EnsureRow) -> None:
        self.rows.append(row)
        self.changed.set()

    def event(self, event: Event) -> None:
        if isinstance(event, (StreamConnected, StreamReconnected)):
            self.events.append(event)
            self.changed.set()

    async def until(self, check: Callable[[], bool], limit: float = 300.0) -> None:
        async def wait() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), limit)

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)


async def _guarded(sim: BybitSimulator, watch: _Watch) -> tuple[BybitSession, asyncio.Task[None]]:
    session = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, on_event=watch.event)
    await session.warm_up(connections=LIMIT)
    task = asyncio.create_task(
        session.guard_auto_add_margin(True, on_action=watch.action, **FAST_STREAM)
    )
    await watch.until(lambda: any(isinstance(e, StreamConnected) for e in watch.events))
    return session, task


async def _stop(session: BybitSession, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await session.close()


async def _write_arrival(sim: BybitSimulator, after: int) -> float:
    """The arrival time of the first write recorded at index *after* or later."""
    while True:
        for record in sim.requests[after:]:
            if record.path == SET_AUTO_ADD_MARGIN:
                return record.at
        await sim.wait_for_requests(len(sim.requests) + 1)


async def measure_reaction(samples: int) -> Json:
    watch = _Watch()
    async with BybitSimulator(network_delay=DELAY, instruments=None) as sim:
        session, task = await _guarded(sim, watch)
        try:
            reactions: list[float] = []
            push_legs: list[float] = []
            for i in range(samples):
                start = len(sim.requests)
                t0 = time.monotonic()
                sim.set_position(f"RX{i:04d}USDT", size=1)
                arrived = await _write_arrival(sim, start)
                reactions.append(arrived - t0)
                # When the push left the simulator: its one-way delay is over by then.
                pushed = next(
                    r.at for r in sim.requests[start:] if r.method == "PUSH" and b"RX" in r.body
                )
                push_legs.append(pushed - t0)
                await watch.until(lambda n=i + 1: watch.count("changed") >= n)
                # Under the limit: no more than LIMIT - 1 writes per window.
                await asyncio.sleep(WINDOW / (LIMIT - 2))
        finally:
            await _stop(session, task)
    # From the push leaving to the write arriving: the client's work plus the write's one way.
    write_legs = [r - p for r, p in zip(reactions, push_legs, strict=True)]
    return {
        "samples": samples,
        "reaction_ms": summary([r * 1e3 for r in reactions]),
        "p99_ms": _pct(reactions, 0.99) * 1e3,
        "p50_ms": _pct(reactions, 0.5) * 1e3,
        "push_leg_p50_ms": _pct(push_legs, 0.5) * 1e3,
        "write_leg_p50_ms": _pct(write_legs, 0.5) * 1e3,
        "write_leg_p99_ms": _pct(write_legs, 0.99) * 1e3,
        "goal_ms": REACTION_GOAL * 1e3,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def measure_storm(n: int) -> Json:
    watch = _Watch()
    async with BybitSimulator(network_delay=DELAY, instruments=None) as sim:
        session, task = await _guarded(sim, watch)
        try:
            start = len(sim.requests)
            t0 = time.monotonic()
            for i in range(n):
                sim.set_position(f"ST{i:04d}USDT", size=1)
            await watch.until(lambda: watch.count("changed") >= n, limit=10 * n)
            writes = [r for r in sim.requests[start:] if r.path == SET_AUTO_ADD_MARGIN]
            last = max(r.at for r in writes)
            wall = last - t0 + RTT_NOMINAL / 2  # the answer's way back
            wrong = sum(1 for p in sim.positions() if p.size != "0" and p.auto_add_margin != 1)
        finally:
            await _stop(session, task)
    minimum = storm_minimum(n)
    return {
        "positions": n,
        "wall_s": wall,
        "minimum_s": minimum,
        "ratio": wall / minimum,
        "writes": len(writes),
        "rate_limited": sum(1 for r in writes if r.ret_code == 10006),
        "left_wrong": wrong,
        "goal_ratio": STORM_GOAL,
    }


async def measure_drops(positions: int, rounds: int, per_round: int) -> Json:
    watch = _Watch()
    async with BybitSimulator(network_delay=DELAY, instruments=None) as sim:
        names = [f"DR{i:03d}USDT" for i in range(positions)]
        for name in names:
            sim.set_position(name, size=1, auto_add_margin=1)
        session, task = await _guarded(sim, watch)

        def all_on() -> bool:
            return all(sim.auto_add_margin(name) == 1 for name in names)

        converge: list[float] = []
        downtime: list[float] = []
        rounds_s: list[float] = []
        bounds: list[float] = []
        try:
            await watch.until(lambda: watch.count("unchanged") >= positions)
            for r in range(rounds):
                # A clear window at each round's start: the limit's share is the same every round.
                await asyncio.sleep(WINDOW + 0.1)
                chosen = [names[(r * per_round + k * 7) % positions] for k in range(per_round)]
                half = per_round // 2
                t_start = time.monotonic()
                for name in chosen[:half]:
                    sim.set_position(name, auto_add_margin=0)
                reconnects = sum(isinstance(e, StreamReconnected) for e in watch.events)
                t_drop = time.monotonic()
                sim.stream.drop_all()
                for name in chosen[half:]:
                    sim.set_position(name, auto_add_margin=0)
                await watch.until(
                    lambda n=reconnects: (
                        sum(isinstance(e, StreamReconnected) for e in watch.events) > n
                    )
                )
                t_up = time.monotonic()
                await watch.until(all_on)
                t_done = time.monotonic()
                converge.append(t_done - t_up)
                downtime.append(t_up - t_drop)
                rounds_s.append(t_done - t_start)
                # The least a round can take: its writes at the limit, or the link down
                # (back-off included), then one read and one write.
                bounds.append(max(storm_minimum(per_round), (t_up - t_start) + 2 * RTT_HIGH))
            writes = [r for r in sim.requests if r.path == SET_AUTO_ADD_MARGIN]
            duplicates = sum(1 for r in writes if r.ret_code == 10001)
            wrong = sum(0 if sim.auto_add_margin(name) == 1 else 1 for name in names)
        finally:
            await _stop(session, task)
    ratios = [t / b for t, b in zip(rounds_s, bounds, strict=True)]
    return {
        "positions": positions,
        "rounds": rounds,
        "changed_per_round": per_round,
        "writes": len(writes),
        "duplicates": duplicates,
        "left_wrong": wrong,
        "converge_ms": summary([c * 1e3 for c in converge]),
        "downtime_ms": summary([d * 1e3 for d in downtime]),
        "round_ms": summary([t * 1e3 for t in rounds_s]),
        "round_over_bound": summary(ratios),
        "backoff_max_s": FAST_STREAM["backoff_max"],
    }


async def measure_pushes(n: int) -> Json:
    from bybit_async.stream import PositionStream

    symbols = 1000
    texts = [
        orjson.dumps(
            {
                "topic": "position.linear",
                "id": f"p{i}",
                "creationTime": 1,
                "data": [
                    {
                        "symbol": f"PU{i % symbols:04d}USDT",
                        "positionIdx": 0,
                        "side": "Buy",
                        "size": str(1 + i % 7),
                        "tradeMode": 1,
                        "autoAddMargin": i % 2,
                        "positionStatus": "Normal",
                        "leverage": "10",
                        "seq": 10 + i,
                        "category": "linear",
                    }
                ],
            }
        )
        for i in range(min(n, 100_000))
    ]
    # orjson alone.
    t0 = cpu_seconds()
    for i in range(n):
        orjson.loads(texts[i % len(texts)])
    parse = (cpu_seconds() - t0) / n

    async with BybitSimulator() as sim:
        session = BybitSession(sim.api_key, sim.api_secret, base_url=sim.url)
        stream = PositionStream(session, snapshot=False)  # fed directly: no socket
        stream._attach()
        stream._task = asyncio.ensure_future(asyncio.sleep(0))
        consumed = 0
        memory: list[float] = []
        rss_before = rss_mib()
        t0 = cpu_seconds()
        batch = 1000
        for start in range(0, n, batch):
            for i in range(start, min(n, start + batch)):
                stream._on_message(texts[i % len(texts)])
            while stream._pending:
                await stream.__anext__()
                consumed += 1
            if start % (n // 10 or 1) == 0:
                memory.append(rss_mib())
        per_push = (cpu_seconds() - t0) / n
        rss_after = rss_mib()
        await session.close()
    return {
        "pushes": n,
        "distinct_positions": symbols,
        "consumed": consumed,
        "orjson_us": parse * 1e6,
        "stream_us": per_push * 1e6,
        "ratio": per_push / parse,
        "rss_mib_samples": memory,
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "held_after": len(stream._pending) + len(stream._seqs),
        "stats_messages": session.stats().stream_messages,
    }


def measure_stream(config: Config) -> Json:
    """Run the section; quick mode uses fewer samples and positions."""
    quick = config.name == "quick"
    out: Json = {
        "delay": {"low": DELAY.low, "high": DELAY.high},
        "limit": LIMIT,
        "machine_note": "shared 2-core machine with other jobs running: figures are noisy",
    }
    log("stream: reaction")
    out["reaction"] = run_on("asyncio", lambda: measure_reaction(50 if quick else 300))
    n = 200 if quick else 1000
    log(f"stream: storm of {n} openings (at least {storm_minimum(n):.0f} s)")
    out["storm"] = run_on("asyncio", lambda: measure_storm(n))
    log("stream: 10 drops")
    out["drops"] = run_on("asyncio", lambda: measure_drops(200, 10, 20))
    pushes = 100_000 if quick else 1_000_000
    log(f"stream: {pushes} pushes")
    out["pushes"] = run_on("asyncio", lambda: measure_pushes(pushes))
    return out


def stream_targets(stream: Json) -> list[tuple[str, str, str, bool | None, float | None]]:
    """The issue's goals for this section: (name, measured, goal, pass, value)."""
    out: list[tuple[str, str, str, bool | None, float | None]] = []
    reaction = stream.get("reaction")
    if reaction:
        p99 = reaction["p99_ms"]
        out.append(
            (
                "Push to write arrival, p99",
                f"{p99:.1f} ms (p50 {reaction['p50_ms']:.1f} ms)",
                f"<= {reaction['goal_ms']:.0f} ms (one round trip + 10 ms)",
                p99 <= reaction["goal_ms"],
                p99,
            )
        )
    storm = stream.get("storm")
    if storm:
        ok = storm["ratio"] <= STORM_GOAL and storm["rate_limited"] == 0 and not storm["left_wrong"]
        out.append(
            (
                f"{storm['positions']} openings at once",
                f"{storm['ratio']:.3f}x the minimum, {storm['rate_limited']} x 10006, "
                f"{storm['left_wrong']} left wrong",
                f"<= {STORM_GOAL}x, 0 x 10006, all written",
                ok,
                storm["ratio"],
            )
        )
    drops = stream.get("drops")
    if drops:
        ok = drops["duplicates"] == 0 and drops["left_wrong"] == 0
        out.append(
            (
                f"Stream dropped {drops['rounds']} times",
                f"{drops['duplicates']} duplicate writes, {drops['left_wrong']} left wrong; "
                f"converged {drops['converge_ms']['median']:.0f} ms after reconnect (median), "
                f"rounds {drops['round_over_bound']['max']:.2f}x their bound at most",
                "0 duplicates, 0 left wrong",
                ok,
                float(drops["duplicates"]),
            )
        )
    pushes = stream.get("pushes")
    if pushes:
        samples = pushes["rss_mib_samples"]
        flat = max(samples) - min(samples) < 1.0 if samples else None
        out.append(
            (
                f"{pushes['pushes']:,} pushes",
                f"{pushes['stream_us']:.2f} µs per push, {pushes['ratio']:.1f}x orjson alone; "
                f"RSS {min(samples):.1f}-{max(samples):.1f} MiB over the run",
                "memory flat; CPU reported",
                flat,
                pushes["ratio"],
            )
        )
    return out


def render_stream(stream: Json, heading: str = "##") -> list[str]:
    """The section's heading, description and table, as Markdown parts."""
    delay = stream["delay"]
    rows = []
    reaction = stream.get("reaction")
    if reaction:
        rows.append(
            f"| push to write arrival ({reaction['samples']} positions, one at a time) "
            f"| p50 {reaction['p50_ms']:.1f} ms, p99 {reaction['p99_ms']:.1f} ms; of which "
            f"the push's way {reaction.get('push_leg_p50_ms', 0):.1f} ms (p50), then the "
            f"client's work and the write's way {reaction.get('write_leg_p50_ms', 0):.1f} ms "
            f"(p50), {reaction.get('write_leg_p99_ms', 0):.1f} ms (p99; its way alone is "
            f"{DELAY.low * 1e3:.1f}-{DELAY.high * 1e3:.1f} ms) "
            f"| <= {reaction['goal_ms']:.0f} ms p99 |"
        )
    storm = stream.get("storm")
    if storm:
        rows.append(
            f"| {storm['positions']:,} openings at once | {storm['wall_s']:.2f} s = "
            f"{storm['ratio']:.3f}x the minimum {storm['minimum_s']:.2f} s; "
            f"{storm['writes']} writes, {storm['rate_limited']} x 10006, "
            f"{storm['left_wrong']} left wrong | <= {STORM_GOAL}x, 0 x 10006 |"
        )
    drops = stream.get("drops")
    if drops:
        rows.append(
            f"| stream dropped {drops['rounds']} times, {drops['changed_per_round']} changes "
            f"each over {drops['positions']} positions | {drops['duplicates']} duplicate "
            f"writes, {drops['left_wrong']} left wrong; link down "
            f"{drops['downtime_ms']['median']:.0f} ms, all correct "
            f"{drops['converge_ms']['median']:.0f} ms (max {drops['converge_ms']['max']:.0f}) "
            f"after reconnect; rounds {drops['round_over_bound']['median']:.2f}x "
            f"(max {drops['round_over_bound']['max']:.2f}x) their bound | 0 duplicates, "
            "0 wrong |"
        )
    pushes = stream.get("pushes")
    if pushes:
        samples = pushes["rss_mib_samples"]
        rows.append(
            f"| {pushes['pushes']:,} pushes over {pushes['distinct_positions']:,} positions "
            f"| {pushes['stream_us']:.2f} µs per push vs {pushes['orjson_us']:.2f} µs for "
            f"orjson.loads alone ({pushes['ratio']:.1f}x); RSS {min(samples):.1f}-"
            f"{max(samples):.1f} MiB while it ran | memory flat |"
        )
    return [
        f"{heading} 9. Live positions: the stream and the guard",
        f"In-process simulator, {delay['low'] * 1e3:.1f}-{delay['high'] * 1e3:.1f} ms each "
        f"way (pushes too), {stream['limit']} writes per rolling second.  "
        "A round's bound (drops) is the larger of its writes' rolling-window minimum and "
        "the time the link was down plus one read and one write (25 ms each).  "
        f"{stream['machine_note']}.",
        "| measure | measured | goal |\n|---|---|---|\n" + "\n".join(rows),
    ]
