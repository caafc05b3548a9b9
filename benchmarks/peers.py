"""Section 5: the same call through other Bybit clients, when they are installed.

Neither is a dependency: each is imported only here, and a missing one is
reported as such.  Both are pointed at the same simulator process as the
session, and timed with the same harness, interleaved with the session:

* **pybit** (the official SDK, synchronous, ``requests``): its ``HTTP`` builds
  ``https://{subdomain}.{domain}.{tld}`` from ``domain``/``tld``, which cannot
  name ``http://127.0.0.1:PORT``; the URL it sends to is the ``endpoint``
  attribute, set after construction.  Being blocking, it runs in a worker
  thread, at concurrency 1 only (more would need a thread per request).
* **ccxt** (``ccxt.async_support.bybit``, aiohttp): every entry of
  ``urls['api']`` is set to the simulator's URL, its client-side throttle is
  switched off (``enableRateLimit: False``, as the session's ``rate_limits=None``)
  and the endpoint is called through its implicit API method
  ``private_post_v5_position_set_auto_add_margin``.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .common import (
    API_KEY,
    API_SECRET,
    Config,
    Json,
    SimulatorProcess,
    log,
    run_on,
    simulator_process,
    version_of,
)
from .throughput import Client, Outcome, SdkClient, pair_ratios, summarize_rounds, timed_round

HOW_POINTED = {
    "pybit": "pybit.unified_trading.HTTP(...).endpoint = simulator URL "
    "(domain/tld only build https://api.{domain}.{tld})",
    "ccxt": "ccxt.async_support.bybit({...}).urls['api'][*] = simulator URL; enableRateLimit=False",
}


class PybitClient:
    """pybit's ``HTTP.set_auto_add_margin``, called in a worker thread, one symbol."""

    name = "pybit"
    max_concurrency = 1

    def __init__(self, url: str) -> None:
        unified: Any = importlib.import_module("pybit.unified_trading")
        self._http: Any = unified.HTTP(api_key=API_KEY, api_secret=API_SECRET)
        self._http.endpoint = url
        self._flag = 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pybit")

    def prepare(self, concurrency: int, requests: int) -> object:
        """Nothing to prepare but the count: pybit stamps and signs each call itself."""
        if concurrency != 1:
            raise ValueError("pybit is measured at concurrency 1 only")
        return requests

    def _loop(self, count: int, deadline: float, outcome: Outcome) -> None:
        call = self._http.set_auto_add_margin
        perf = time.perf_counter
        for _ in range(count):
            start = perf()
            if start > deadline:
                break
            try:
                call(category="linear", symbol="PYBITUSDT", autoAddMargin=self._flag)
            except Exception:  # pybit raises its own exceptions for any retCode but 0
                outcome.errors += 1
            outcome.latencies.append(perf() - start)
            self._flag ^= 1
            outcome.done += 1

    async def run(self, plan: object, deadline: float, outcome: Outcome) -> None:
        """Run the blocking loop in the worker thread (its CPU counts: RUSAGE_SELF)."""
        assert isinstance(plan, int)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._loop, plan, deadline, outcome)

    async def close(self) -> None:
        """Close the requests session and the thread."""
        self._http.client.close()
        self._executor.shutdown()


class CcxtClient:
    """ccxt's bybit, implicit API method, one symbol per coroutine."""

    name = "ccxt"
    max_concurrency = 1_000_000

    def __init__(self, url: str) -> None:
        ccxt: Any = importlib.import_module("ccxt.async_support")
        self._exchange: Any = ccxt.bybit(
            {"apiKey": API_KEY, "secret": API_SECRET, "enableRateLimit": False}
        )
        self._exchange.urls["api"] = {name: url for name in self._exchange.urls["api"]}
        self._next: dict[int, int] = {}

    def prepare(self, concurrency: int, requests: int) -> object:
        """Symbols, first flags and shares, as for the session."""
        base, extra = divmod(requests, concurrency)
        return [(i, self._next.get(i, 1), base + (i < extra)) for i in range(concurrency)]

    async def _worker(
        self, i: int, flag: int, count: int, deadline: float, outcome: Outcome
    ) -> int:
        call = self._exchange.private_post_v5_position_set_auto_add_margin
        symbol = f"CCXT{i}USDT"
        perf = time.perf_counter
        done = 0
        for _ in range(count):
            start = perf()
            if start > deadline:
                break
            try:
                await call({"category": "linear", "symbol": symbol, "autoAddMargin": flag})
            except Exception:  # ccxt maps every failure to its own hierarchy
                outcome.errors += 1
            outcome.latencies.append(perf() - start)
            flag ^= 1
            done += 1
        outcome.done += done
        self._next[i] = flag
        return done

    async def run(self, plan: object, deadline: float, outcome: Outcome) -> None:
        """One coroutine per symbol, as for the session."""
        assert isinstance(plan, list)
        await asyncio.gather(*(self._worker(i, f, n, deadline, outcome) for i, f, n in plan))

    async def close(self) -> None:
        """Close ccxt's aiohttp session."""
        await self._exchange.close()


async def _probe(client: Client) -> str | None:
    # One request through the client: None if it worked, else why not.
    outcome = Outcome()
    try:
        await client.run(client.prepare(1, 1), time.perf_counter() + 10.0, outcome)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if outcome.errors or not outcome.done:
        return "the first request through it failed against the simulator"
    return None


async def _peers(sim: SimulatorProcess, config: Config) -> Json:
    report: Json = {"how_pointed": HOW_POINTED, "clients": {}, "by_concurrency": {}}
    peers: dict[str, Client] = {}
    for name, module, factory in (
        ("pybit", "pybit.unified_trading", PybitClient),
        ("ccxt", "ccxt.async_support", CcxtClient),
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            report["clients"][name] = {"status": "not installed"}
            log(f"peers: {name} is not installed, skipped")
            continue
        try:
            client: Client = factory(sim.url)
        except Exception as exc:
            report["clients"][name] = {"status": f"cannot be pointed at the simulator: {exc}"}
            continue
        problem = await _probe(client)
        if problem is not None:
            report["clients"][name] = {"status": f"cannot be pointed at the simulator: {problem}"}
            await client.close()
            continue
        report["clients"][name] = {"status": "measured", "version": version_of(name)}
        peers[name] = client
    try:
        for concurrency in config.peer_concurrency:
            clients: list[Client] = [SdkClient(sim.url, prefix="PEER")]
            clients += [
                c for c in peers.values() if concurrency <= getattr(c, "max_concurrency", 1)
            ]
            if len(clients) == 1:
                continue
            n = config.peer_requests_per_round
            log(
                f"peers: concurrency {concurrency}: {', '.join(c.name for c in clients)}, "
                f"{config.peer_rounds} rounds of {n}"
            )
            try:
                for client in clients:  # warm-up
                    await timed_round(client, concurrency, max(concurrency, n // 5), 10.0, sim)
                rounds: dict[str, list[Json]] = {c.name: [] for c in clients}
                for _ in range(config.peer_rounds):
                    for client in clients:
                        rounds[client.name].append(
                            await timed_round(client, concurrency, n, config.round_time_limit, sim)
                        )
            finally:
                await clients[0].close()
            cell: Json = {}
            for name, measured in rounds.items():
                cell[name] = summarize_rounds(measured)
                if name != "sdk":
                    cell[name]["vs_sdk"] = {
                        "rps": pair_ratios(measured, rounds["sdk"], "rps"),
                        "cpu_us": pair_ratios(measured, rounds["sdk"], "cpu_us"),
                    }
            report["by_concurrency"][str(concurrency)] = cell
    finally:
        for client in peers.values():
            await client.close()
    return report


def measure_peers(config: Config) -> Json:
    """Section 5: pybit and ccxt against the session, each bounded to a few thousand requests."""
    with simulator_process() as sim:
        return run_on("asyncio", lambda: _peers(sim, config))
