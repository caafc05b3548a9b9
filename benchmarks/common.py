"""What every section shares: run sizes, statistics, CPU and memory probes, the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import math
import os
import platform
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import bybit_async

T = TypeVar("T")

#: A JSON object as written to ``latest.json``.
Json = dict[str, Any]

API_KEY = "test-key"  # the simulator's default account
API_SECRET = "test-secret"
SET_AUTO_ADD_MARGIN = "/v5/position/set-auto-add-margin"

_STARTED = time.perf_counter()


@dataclass(frozen=True)
class Config:
    """How much of everything a run does; :data:`FULL` and :data:`QUICK` are the two used."""

    name: str
    #: Micro-benchmarks: rounds per variant, calls per round.
    micro_rounds: int
    signing_calls: int
    prepare_calls: int
    #: Throughput: concurrency levels and requests per round at each.  Each sweep runs one
    #: round per (level, client) against a fresh simulator; at most `sweeps` per event loop,
    #: at least `min_sweeps`, and none started once the loop has run for `loop_budget` s.
    concurrency: tuple[int, ...]
    requests_per_round: dict[int, int]
    sweeps: int
    min_sweeps: int
    loop_budget: float
    #: Event loops to run the throughput matrix on ("uvloop" is skipped when not installed).
    loops: tuple[str, ...]
    #: The long run: total requests, at this concurrency, measured in this many chunks.
    soak_requests: int
    soak_concurrency: int
    soak_chunks: int
    #: Rate limits: rounds of the 60-symbol sweep (the 200-symbol one runs once, full only).
    ratelimit_rounds: int
    #: Optional peers: requests per round and rounds, per client and concurrency.
    peer_requests_per_round: int
    peer_rounds: int
    peer_concurrency: tuple[int, ...]
    #: Upper bounds on wall time (s), so that no loop can run away.
    round_time_limit: float = 4.0
    soak_time_limit: float = 120.0

    def to_json(self) -> Json:
        """Return the configuration as a JSON object (keys of dicts become strings)."""
        data = asdict(self)
        data["requests_per_round"] = {str(k): v for k, v in self.requests_per_round.items()}
        return data


FULL = Config(
    name="full",
    micro_rounds=25,
    signing_calls=20_000,
    prepare_calls=10_000,
    concurrency=(1, 10, 50, 200, 1000),
    requests_per_round={1: 600, 10: 1_500, 50: 2_000, 200: 2_000, 1000: 3_000},
    sweeps=12,
    min_sweeps=4,
    loop_budget=50.0,
    loops=("asyncio", "uvloop"),
    soak_requests=100_000,
    soak_concurrency=50,
    soak_chunks=10,
    ratelimit_rounds=3,
    peer_requests_per_round=500,
    peer_rounds=4,
    peer_concurrency=(1, 50),
)

QUICK = Config(
    name="quick",
    micro_rounds=11,
    signing_calls=8_000,
    prepare_calls=4_000,
    concurrency=(1, 10, 50, 200, 1000),
    requests_per_round={1: 250, 10: 600, 50: 800, 200: 800, 1000: 2_000},
    sweeps=4,
    min_sweeps=2,
    loop_budget=9.0,
    loops=("asyncio", "uvloop"),
    soak_requests=10_000,
    soak_concurrency=50,
    soak_chunks=10,
    ratelimit_rounds=1,
    peer_requests_per_round=200,
    peer_rounds=2,
    peer_concurrency=(1, 50),
    soak_time_limit=30.0,
)


def log(message: str) -> None:
    """Print a progress line to stderr, so that stdout carries only the tables."""
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------


def summary(values: Sequence[float]) -> Json:
    """Median, min and max of *values*, and the values themselves."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (*q* in 0..1) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- CPU and memory ------------------------------------------------------------


def cpu_seconds() -> float:
    """User plus system CPU time of this process (all its threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of another process, from /proc; None where there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" of the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


#: How peak memory is measured on this machine; goes into the results.
PEAK_MEMORY_METHOD = (
    "peak RSS (VmHWM, reset before each round through /proc/self/clear_refs)"
    if sys.platform.startswith("linux")
    else "peak RSS (ru_maxrss, the process's peak so far: not reset between rounds)"
)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); return whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak RSS of this process in MiB: since the last :func:`reset_peak_rss` on Linux."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def rss_mib() -> float:
    """Current RSS of this process in MiB (VmRSS; the peak where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else peak_rss_mib()


# -- event loops ---------------------------------------------------------------


def loop_available(name: str) -> bool:
    """Whether event loop *name* ("asyncio" or "uvloop") can be used here."""
    if name == "asyncio":
        return True
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def run_on(loop_name: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a new event loop of kind *loop_name*.

    SIGTERM cancels it, so that every ``finally`` (closing pools, stopping the
    simulator) runs before the process exits with status 143.
    """
    if loop_name == "uvloop":
        uvloop: Any = importlib.import_module("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def wrapper() -> T:
        return await main()

    asyncio.set_event_loop(loop)
    task = loop.create_task(wrapper())
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        handled = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        handled = False
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        try:
            if handled:
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, previous)
            leftover = asyncio.all_tasks(loop)
            for pending in leftover:
                pending.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


# -- the simulator in its own process -------------------------------------------


@dataclass(frozen=True)
class SimulatorProcess:
    """A running ``python -m bybit_async.testing --no-limits``: its URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time the simulator has used so far, where the OS tells."""
        return process_cpu_seconds(self.pid)


@contextlib.contextmanager
def simulator_process(
    startup_timeout: float = 20.0, extra_args: Sequence[str] = ()
) -> Iterator[SimulatorProcess]:
    """Start the simulator without rate limits in a subprocess; always terminate it.

    It runs in its own process so that the client's CPU figures (getrusage of
    this process) contain none of the server's work.  *extra_args* go to its
    command line after the defaults.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bybit_async.testing",
            "--no-limits",
            "--any-symbol",
            "--port",
            "0",
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
        line = proc.stdout.readline().strip() if ready else ""
        prefix = "BYBIT_SIMULATOR_URL="
        if not line.startswith(prefix):
            raise RuntimeError(f"the simulator did not start: got {line!r}")
        yield SimulatorProcess(line[len(prefix) :], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- what the results say about the machine -------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def version_of(distribution: str) -> str | None:
    """The installed version of *distribution*, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> Json:
    """CPU model, cores, Python and OS of this machine."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
    }


def versions() -> Json:
    """Versions of bybit_async and of the packages that shape its figures."""
    found: Json = {"bybit_async": bybit_async.__version__}
    for name in ("aiohttp", "orjson", "uvloop", "yarl", "multidict", "tenacity", "aiolimiter"):
        found[name] = version_of(name)
    for name in ("pybit", "ccxt"):
        version = version_of(name)
        if version is not None:
            found[name] = version
    return found
