"""Section 8: what observing a session costs, in client CPU per request.

Three sessions take turns against one simulator process (no server limits),
each with a client-side `LocalLimiter` whose limits are out of reach, so that
every request goes through the limiter's acquire and its wait is recorded as
in a default session.  The limiter ignores the answers' limit headers: the
simulator without limits still reports set-auto-add-margin's 10 per second as
spent, and a limiter that believed it would hold the path until each reset.

* **off**: ``BybitSession(..., stats=False)``, nothing observed;
* **stats**: the default, `session.stats()` kept;
* **stats + events**: the default plus ``on_event=`` with a callback that
  only counts, so that every event object is built.

Each sweep runs one round of each at concurrency 50, in an order that rotates
from sweep to sweep; ratios are taken within a sweep, against *off*.  The
recording itself is also timed alone (`StatsRecorder` calls for one request,
and a `SessionStats` snapshot of 10 paths with full sample windows).
"""

from __future__ import annotations

import time
from typing import Any

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, run_on, simulator_process, summary
from .throughput import SdkClient, timed_round

CONCURRENCY = 50
#: The default session's recording may cost at most this much client CPU per request.
TARGET_STATS_CPU_RATIO = 1.03

CONFIGS = ("off", "stats", "events")
LABELS = {
    "off": "stats=False",
    "stats": "stats on (the default)",
    "events": "stats on + on_event",
}


def _options(name: str) -> dict[str, Any]:
    from bybit_async import LocalLimiter, RateLimits

    class Unheld(LocalLimiter):
        def observe(
            self,
            path: str,
            remaining: int | None,
            reset_in: float | None,
            limit: int | None = None,
        ) -> None:
            pass

    limits = RateLimits(ip_limit=10**7, endpoints={SET_AUTO_ADD_MARGIN: 10**7})
    options: dict[str, Any] = {"limiter": Unheld(limits), "stats": name != "off"}
    if name == "events":
        seen = [0]

        def count(_event: object) -> None:
            seen[0] += 1

        options["on_event"] = count
    return options


async def _sweeps(config: Config) -> Json:
    rounds: dict[str, list[Json]] = {name: [] for name in CONFIGS}
    # A 3% difference needs longer rounds and more of them than the throughput
    # section's: one round's ratio ranges from 0.68 to 1.19 on two shared cores,
    # and the median of 16 sweeps still moved by 3% from run to run.
    requests = config.requests_per_round[CONCURRENCY] * 3
    sweeps = config.min_sweeps * 8
    with simulator_process() as sim:
        clients = {
            name: SdkClient(sim.url, prefix=f"OBS{name.upper()}", **_options(name))
            for name in CONFIGS
        }
        try:
            for client in clients.values():
                await timed_round(client, CONCURRENCY, 4 * CONCURRENCY, 10.0, sim)  # warm-up
            for sweep in range(sweeps):
                shift = sweep % len(CONFIGS)
                order = CONFIGS[shift:] + CONFIGS[:shift]
                for name in order:
                    result = await timed_round(
                        clients[name], CONCURRENCY, requests, config.round_time_limit, sim
                    )
                    rounds[name].append(result)
                log(
                    f"observability: sweep {sweep + 1}/{sweeps}: "
                    + ", ".join(f"{n} {rounds[n][-1]['cpu_us']:.1f}" for n in CONFIGS)
                    + " us/req"
                )
        finally:
            for client in clients.values():
                await client.close()
    out: Json = {"concurrency": CONCURRENCY, "requests_per_round": requests, "sweeps": sweeps}
    for name in CONFIGS:
        out[name] = {
            "cpu_us": summary([r["cpu_us"] for r in rounds[name]]),
            "rps": summary([r["rps"] for r in rounds[name]]),
            "errors": sum(r["errors"] for r in rounds[name]),
        }
        if name != "off":
            out[name]["cpu_ratio"] = summary(
                [
                    a["cpu_us"] / b["cpu_us"]
                    for a, b in zip(rounds[name], rounds["off"], strict=True)
                ]
            )
    return out


def _recording_cost() -> Json:
    """µs per request of the recorder's calls, and of one snapshot, timed alone."""
    from bybit_async.stats import SAMPLES, StatsRecorder

    recorder = StatsRecorder()
    calls = 200_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            recorder.waited(0.00001)
            recorder.answered(SET_AUTO_ADD_MARGIN, 200, 0, 0.0012, True, 9, 10, 1_796_486_482_960)
            recorder.call_ended(None)
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    full = StatsRecorder()
    for i in range(10):
        for _ in range(SAMPLES):
            full.answered(f"/v5/bench/p{i}", 200, 0, 0.001, True)
    snapshots = 200
    t0 = time.perf_counter()
    for _ in range(snapshots):
        full.snapshot()
    return {
        "record_us": best,
        "snapshot_us": (time.perf_counter() - t0) / snapshots * 1e6,
        "snapshot_paths": 10,
        "samples": SAMPLES,
    }


def measure_observability(config: Config) -> Json:
    """Section 8: client CPU per request with stats off, on, and on with events."""
    log(f"observability: {', '.join(CONFIGS)} at concurrency {CONCURRENCY}, interleaved")
    result = run_on("asyncio", lambda: _sweeps(config))
    result["recording"] = _recording_cost()
    return result


def observability_targets(section: Json) -> list[tuple[str, str, str, bool | None, float | None]]:
    """The section's target, as ``(name, measured, goal, ok, value)``."""
    ratio = section["stats"]["cpu_ratio"]["median"]
    off, on = section["off"]["cpu_us"]["median"], section["stats"]["cpu_us"]["median"]
    return [
        (
            "Stats on by default: client CPU per request against stats=False",
            f"{ratio:.3f}x ({on:.1f} vs {off:.1f} µs/req)",
            f"<= {TARGET_STATS_CPU_RATIO:.2f}x",
            ratio <= TARGET_STATS_CPU_RATIO,
            ratio,
        )
    ]


def _cell(stats: Json, digits: int = 1) -> str:
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def render_observability(section: Json, heading: str = "##") -> list[str]:
    """The section's Markdown: a title, notes and a table."""
    rows = []
    for name in CONFIGS:
        cell = section[name]
        ratio = "1" if name == "off" else _cell(cell["cpu_ratio"], 3)
        rows.append(
            f"| {LABELS[name]} | {_cell(cell['cpu_us'])} | {ratio} | "
            f"{_cell(cell['rps'], 0)} | {cell['errors']} |"
        )
    table = "\n".join(
        [
            "| Session | Client CPU µs/req | ÷ stats=False, per round | Requests/s | Errors |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    )
    rec = section["recording"]
    return [
        f"{heading} 8. Observability: what stats and events cost",
        f"Three sessions against one simulator process at concurrency "
        f"{section['concurrency']}, {section['requests_per_round']:,} requests per round, "
        f"{section['sweeps']} sweeps of one round each in rotating order, with a "
        "client-side limiter whose limits are out of reach and which ignores the limit "
        "headers (every request takes and records a permit; the simulator without limits "
        "reports the 10 per second as spent).  Ratios are taken within a sweep.  "
        "*on_event* is a callback that only counts, so every event is built.",
        table,
        f"The recording alone: {rec['record_us']:.2f} µs per request (the recorder's three "
        f"calls), and {rec['snapshot_us']:.0f} µs per `stats()` snapshot of "
        f"{rec['snapshot_paths']} paths with {rec['samples']:,} samples each.",
    ]
