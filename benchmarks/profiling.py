"""``python -m benchmarks --profile``: where the session's CPU goes at concurrency 50.

cProfile around the same loop that section 3 times (the session alone, against
the simulator in its own process), printed twice: every function by own time,
then bybit_async's functions only.  cProfile slows the loop down several fold
and weighs many small calls more than few large ones, so read the order of
the entries rather than their absolute times.  It also misses some functions
that dataclasses generate (``ApiResponse.__init__``); a sampling profiler such
as py-spy, pointed at ``python -m benchmarks --profile``, shows those and
gives line numbers.
"""

from __future__ import annotations

import cProfile
import io
import pstats

from .common import SimulatorProcess, log, run_on, simulator_process
from .throughput import SdkClient, timed_round

PROFILE_CONCURRENCY = 50


async def _profiled(sim: SimulatorProcess, requests: int) -> pstats.Stats:
    client = SdkClient(sim.url, prefix="PROF")
    try:
        await timed_round(client, PROFILE_CONCURRENCY, 2_000, 10.0, sim)  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await timed_round(client, PROFILE_CONCURRENCY, requests, 60.0, sim)
        finally:
            profiler.disable()
    finally:
        await client.close()
    return pstats.Stats(profiler)


def profile_session(requests: int = 20_000, top: int = 30) -> str:
    """Profile *requests* session calls at concurrency 50; return the two listings."""
    log(f"profile: {requests} requests at concurrency {PROFILE_CONCURRENCY} under cProfile")
    with simulator_process() as sim:
        stats = run_on("asyncio", lambda: _profiled(sim, requests))
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime")
    out.write(f"== All functions by own time, top {top} ==\n")
    stats.print_stats(top)
    out.write("== bybit_async only, by own time ==\n")
    stats.print_stats(r"bybit_async[/\\]")
    out.write("== bybit_async only, by cumulative time ==\n")
    stats.sort_stats("cumulative")
    stats.print_stats(r"bybit_async[/\\]")
    return out.getvalue()
