"""Section 6: desired state, reading first and writing only what differs.

An in-process `BybitSimulator` at Bybit's real limits (10 writes and 50 reads
per rolling second per UID, 600 per 5 s per IP) holds N open isolated
positions, 5% of them with auto-add-margin off.  Two ways to make the flag on
everywhere, each on a fresh simulator and a fresh, warmed-up session:

* **ensure**: ``ensure_auto_add_margin(None, True)``: one read of the position
  list (N <= 200: one page), then a write for each position whose flag is off;
* **write all**: ``set_auto_add_margin_many`` over all N symbols, as without
  a read: most answers are "not modified", and each still costs a write.

Each wall time is set against its physical minimum at these limits: for N
requests at L per rolling window W, ``(ceil(N / L) - 1) * W`` plus one round
trip; ensure's read and writes come one after the other, so its minimum is the
read's plus the writes'.

The same two ways over N *named* symbols with no open position (**flat**):
``ensure_auto_add_margin(names, True)`` against writing all N.  The page shows
none of them, so every one is written (a flat position's write answers "not
modified" when nothing changes); a desired-state call must never be slower
than writing every position it names, beyond the one page read before the
writes.  Three rounds of each, alternating which goes first, at a constant
10 ms each way: with the jittered delay, where a spike falls among the last
writes moves a round by more than the page read costs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

from bybit_async import ApiResponse, BybitSession
from bybit_async.testing import POSITION_LIST_PATH, BybitSimulator

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, summary
from .ratelimited import (
    FIRST_CALL_DELAY,
    LIMIT,
    NOMINAL_RTT,
    SWEEP_DELAY,
    WINDOW,
    physical_minimum,
)

#: The position list's limit per rolling second and its largest page.
READ_LIMIT = 50
PAGE = 200
#: Share of positions whose flag differs from the one asked for.
CHANGING = 0.05
#: The flat comparison's network: 10 ms each way, always.
FLAT_DELAY = FIRST_CALL_DELAY
#: Rounds of each way in the flat comparison, alternating which goes first.
FLAT_ROUNDS = 3


def minimum_ensure(n: int, changing: int) -> float:
    """The least time for ensure over *n* open positions, *changing* of them to write."""
    pages = math.ceil(n / PAGE)
    reads = physical_minimum(pages, READ_LIMIT, WINDOW)
    return reads + (physical_minimum(changing, LIMIT, WINDOW) if changing else 0.0)


def _names(n: int) -> list[str]:
    return [f"DS{i:03d}USDT" for i in range(n)]


def _setup(sim: BybitSimulator, n: int, changing: int, size: int = 1) -> list[str]:
    names = _names(n)
    for i, name in enumerate(names):
        # The positions to change are spread through the list, not bunched at one end.
        off = i % (n // changing) == 0 if changing else False
        sim.set_position(name, size=size, auto_add_margin=0 if off else 1)
    return names


async def _run(n: int, changing: int, mode: str, seed: int, flat: bool = False) -> Json:
    # Flat: a constant delay, so that what differs is the page read, not where
    # a delay spike fell among the last writes.
    delay = dataclasses.replace(FLAT_DELAY if flat else SWEEP_DELAY, seed=seed)
    async with BybitSimulator(network_delay=delay, instruments=None) as sim:
        names = _setup(sim, n, changing, size=0 if flat else 1)
        async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
            # Warm, as an engine that has been running is: the clock synced, connections open.
            await session.warm_up(connections=LIMIT)
            start = len(sim.requests)
            t0 = time.perf_counter()
            if mode == "ensure":
                report = await session.ensure_auto_add_margin(names if flat else None, True)
                failures = report.failed
                changed = report.changed
            else:
                outcomes = await session.set_auto_add_margin_many(names, True)
                failures = sum(1 for o in outcomes if not isinstance(o, ApiResponse))
                changed = sum(1 for o in outcomes if isinstance(o, ApiResponse) and o.modified)
            wall = time.perf_counter() - t0
        timed = sim.requests[start:]
        return {
            "wall_s": wall,
            "reads": sum(1 for r in timed if r.path == POSITION_LIST_PATH),
            "writes": sum(1 for r in timed if r.path == SET_AUTO_ADD_MARGIN),
            "changed": changed,
            "failures": failures,
            "answers_10006": sim.count(ret_code=10006),
            "max_writes_in_1s": sim.max_in_window(SET_AUTO_ADD_MARGIN, 1.0),
            "all_on": all(sim.auto_add_margin(name) == 1 for name in names),
        }


def measure_desired(config: Config) -> Json:
    """Ensure against write-all, for N positions with 5% to change."""
    n = 200 if config.name == "full" else 60
    changing = max(1, round(n * CHANGING))
    results: Json = {
        "positions": n,
        "changing": changing,
        "limit": LIMIT,
        "read_limit": READ_LIMIT,
        "window_s": WINDOW,
        "nominal_rtt_s": NOMINAL_RTT,
        "sweep_delay": dataclasses.asdict(SWEEP_DELAY),
    }
    minimum = {"ensure": minimum_ensure(n, changing), "write_all": physical_minimum(n)}
    # Write-all takes (n / 10) s a round: once; ensure is quick: as often as the sweeps.
    rounds = {"ensure": config.ratelimit_rounds * 2 + 1, "write_all": 1}
    for mode in ("ensure", "write_all"):
        runs = []
        for i in range(rounds[mode]):
            log(f"desired state: {mode} over {n} positions, {changing} to change, round {i + 1}")
            runs.append(run_on("asyncio", lambda m=mode, s=i: _run(n, changing, m, s)))
            log(f"  {runs[-1]['wall_s']:.3f} s, {runs[-1]['writes']} writes")
        results[mode] = {
            "wall_s": summary([r["wall_s"] for r in runs]),
            "minimum_s": minimum[mode],
            "reads": max(r["reads"] for r in runs),
            "writes": max(r["writes"] for r in runs),
            "changed": min(r["changed"] for r in runs),
            "failures": sum(r["failures"] for r in runs),
            "answers_10006": sum(r["answers_10006"] for r in runs),
            "max_writes_in_1s": max(r["max_writes_in_1s"] for r in runs),
            "all_on": all(r["all_on"] for r in runs),
            "rounds": len(runs),
        }
    results["speedup"] = (
        results["write_all"]["wall_s"]["median"] / results["ensure"]["wall_s"]["median"]
    )
    results["flat"] = _measure_flat(n, changing)
    return results


def _measure_flat(n: int, changing: int) -> Json:
    """Ensure over *n* named symbols with no open position, against writing all of them.

    `FLAT_ROUNDS` pairs of rounds, the order alternating (A B, then B A), each
    pair on one seed; the medians are compared.
    """
    flat: Json = {"positions": n, "changing": changing, "delay": dataclasses.asdict(FLAT_DELAY)}
    runs: dict[str, list[Json]] = {"ensure": [], "write_all": []}
    for i in range(FLAT_ROUNDS):
        order = ("ensure", "write_all") if i % 2 == 0 else ("write_all", "ensure")
        for mode in order:
            log(
                f"desired state, flat: {mode} over {n} named symbols with nothing open, "
                f"round {i + 1}"
            )
            run = run_on("asyncio", lambda m=mode, s=i: _run(n, changing, m, s, flat=True))
            log(f"  {run['wall_s']:.3f} s, {run['reads']} reads, {run['writes']} writes")
            runs[mode].append(run)
    for mode, done in runs.items():
        flat[mode] = {
            "wall_s": statistics.median(r["wall_s"] for r in done),
            "walls_s": [r["wall_s"] for r in done],
            "reads": max(r["reads"] for r in done),
            "writes": max(r["writes"] for r in done),
            "failures": sum(r["failures"] for r in done),
            "answers_10006": sum(r["answers_10006"] for r in done),
            "all_on": all(r["all_on"] for r in done),
        }
    flat["ratio"] = flat["ensure"]["wall_s"] / flat["write_all"]["wall_s"]
    # What ensure may add: the settle coin's page, read before the writes.
    flat["allowance_s"] = 2 * FLAT_DELAY.high
    return flat
