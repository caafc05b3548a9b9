"""`RedisLimiter`: one account's rate limits shared by several processes, against a real Redis.

The redis-server runs on a free loopback port for the whole session
(`tests.redis_server`); a test that stops Redis starts its own.  The
multi-process tests run the simulator in this process, so that its request
log can be read, and each engine in its own process (`tests/redis_engine.py`).
Every test uses its own account and IP scope, so that none sees another's
permits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bybit_async import (
    ApiResponse,
    BybitSession,
    LimiterUnavailableError,
    RateLimitError,
    RateLimits,
    RedisLimiter,
)
from bybit_async.redis_limiter import account_for_api_key, redis_url_with_password
from bybit_async.testing import BybitSimulator

from .redis_fixtures import own_redis as own_redis
from .redis_fixtures import redis_server as redis_server
from .redis_server import RedisServer, free_port
from .tcp_proxy import TcpProxy

PATH = "/v5/position/set-auto-add-margin"
ENGINE = Path(__file__).resolve().parent / "redis_engine.py"


def symbols(n: int, prefix: str = "S") -> list[str]:
    return [f"{prefix}{i:03d}USDT" for i in range(n)]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the test Redis, to look at what the limiters wrote."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


# -- engines in their own processes -------------------------------------------------


async def start_engine(**config: Any) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ENGINE),
        json.dumps(config),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


async def read_until(proc: asyncio.subprocess.Process, marker: str) -> list[str]:
    """Lines of *proc*'s output up to the one that is *marker*."""
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
        if not line:
            assert proc.stderr is not None
            raise AssertionError(f"engine exited before {marker}: {await proc.stderr.read()!r}")
        if line.strip() == marker:
            return lines
        lines.append(line)


async def outcome(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


async def sweep(
    sim: BybitSimulator, processes: int, per_process: int, **config: Any
) -> list[dict[str, Any]]:
    """Run *processes* engines together, each on its own *per_process* symbols."""
    engines = [
        await start_engine(
            base_url=sim.url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            symbols=symbols(per_process, prefix=f"P{p}X"),
            barrier=True,
            **config,
        )
        for p in range(processes)
    ]
    for engine in engines:  # every one warm before any starts
        await read_until(engine, "READY")
    for engine in engines:
        assert engine.stdin is not None
        engine.stdin.write(b"go\n")
        await engine.stdin.drain()
    return [await outcome(engine) for engine in engines]


async def test_four_processes_on_one_account_stay_under_its_limit(
    redis_server: RedisServer,
) -> None:
    # Bybit's real 10 per rolling second: 200 requests take about 20 s.  The
    # benchmark (make bench) times the same sweep against one process alone.
    limit = 10
    async with BybitSimulator(endpoint_limits={PATH: limit}, instruments=None) as sim:
        results = await sweep(
            sim,
            4,
            50,
            limit=limit,
            limiter="redis",
            redis_url=redis_server.url,
            account=unique("main"),
            ip_scope=unique("ip"),
        )
        assert [r["ok"] for r in results] == [50] * 4, results
        assert sim.count(PATH) == 200
        assert sim.count(ret_code=10006) == 0
        assert sim.max_in_window(PATH, 1.0) <= limit


async def test_four_processes_with_their_own_limiters_get_10006() -> None:
    # The control: engines as above, each limited by itself alone.
    limit = 10
    async with BybitSimulator(endpoint_limits={PATH: limit}, instruments=None) as sim:
        await sweep(sim, 4, 15, limit=limit, limiter="local")
        assert sim.count(ret_code=10006) > 0


async def test_a_killed_process_gives_its_permits_back_after_the_lease(
    redis_server: RedisServer, inspect: Redis
) -> None:
    limit = 20
    account = unique("main")
    common: dict[str, Any] = {
        "limit": limit,
        "limiter": "redis",
        "redis_url": redis_server.url,
        "account": account,
        "ip_scope": unique("ip"),
    }
    async with BybitSimulator(endpoint_limits={PATH: limit}, instruments=None) as sim:
        victim = await start_engine(
            base_url=sim.url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            symbols=symbols(5, prefix="VX"),
            hold=True,
            lease=0.5,
            **common,
        )
        await read_until(victim, "HOLDING")
        # Every endpoint permit is out, taken by the victim, when it dies.
        assert await inspect.zcard(f"bybit-async:acct:{account}:ep:{PATH}") == limit
        victim.send_signal(signal.SIGKILL)
        await victim.communicate()
        assert victim.returncode == -signal.SIGKILL

        survivors = [
            await start_engine(
                base_url=sim.url,
                api_key=sim.api_key,
                api_secret=sim.api_secret,
                symbols=symbols(20, prefix=f"P{p}X"),
                **common,
            )
            for p in range(3)
        ]
        results = [await outcome(engine) for engine in survivors]
        assert [r["ok"] for r in results] == [20] * 3, results
        assert sim.count(ret_code=10006) == 0
        assert sim.max_in_window(PATH, 1.0) <= limit


# -- Redis down -------------------------------------------------------------------------


async def test_redis_stopped_mid_run_fails_closed_and_sends_nothing(
    own_redis: RedisServer,
) -> None:
    async with BybitSimulator(endpoint_limits={PATH: 5}, instruments=None) as sim:
        limiter = RedisLimiter(
            own_redis.url, account=unique("main"), limits=RateLimits(endpoints={PATH: 5})
        )
        async with (
            limiter,
            BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter) as session,
        ):
            batch = asyncio.ensure_future(session.set_auto_add_margin_many(symbols(20), True))
            await sim.wait_for_requests(6)  # the clock sync and the first window's 5
            await asyncio.to_thread(own_redis.stop)
            outcomes = await batch
        sent = [o for o in outcomes if isinstance(o, ApiResponse)]
        refused = [o for o in outcomes if isinstance(o, LimiterUnavailableError)]
        assert len(sent) == 5
        assert len(refused) == 15, outcomes
        assert sim.count(PATH) == 5
        error = refused[0]
        assert error.method == "POST"
        assert error.path == PATH
        assert "unreachable" in str(error)
        assert f"127.0.0.1:{own_redis.port}" in str(error)
        assert not limiter.redis_ok


async def test_redis_stopped_mid_run_falls_back_to_local_and_comes_back(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RateLimits(endpoints={PATH: 5})
    async with BybitSimulator(endpoint_limits={PATH: 5}, instruments=None) as sim:
        limiter = RedisLimiter(
            own_redis.url, account=unique("main"), limits=limits, fallback="local", probe_interval=0
        )
        async with (
            limiter,
            BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=limiter) as session,
        ):
            batch = asyncio.ensure_future(session.set_auto_add_margin_many(symbols(15), True))
            await sim.wait_for_requests(6)
            with caplog.at_level(logging.WARNING, logger="bybit_async"):
                await asyncio.to_thread(own_redis.stop)
                outcomes = await batch
            assert all(isinstance(o, ApiResponse) for o in outcomes), outcomes
            assert sim.count(ret_code=10006) == 0
            assert sim.max_in_window(PATH, 1.0) <= 5
            # Only the limiter's own records: asyncio's debug mode may add a
            # slow-callback warning of its own on a loaded machine.
            warnings = [
                r
                for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("bybit_async")
            ]
            assert len(warnings) == 1, warnings
            assert "unreachable" in warnings[0].getMessage()
            assert not limiter.redis_ok

            # Redis is back: the same session's next call counts in it again.
            await asyncio.to_thread(own_redis.start)
            await session.set_auto_add_margin("BACKUSDT", True)
            assert limiter.redis_ok
            assert await limiter.available(PATH) < 5
        assert sim.count(ret_code=10006) == 0


async def test_unreachable_redis_error_names_the_cause_not_the_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    async with RedisLimiter(url, account="main") as limiter:
        with pytest.raises(LimiterUnavailableError) as info:
            await limiter.acquire(PATH)
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(limiter)
        assert "ConnectionError" in str(info.value)
        # Within the probe interval the next call fails at once, without asking Redis.
        with pytest.raises(LimiterUnavailableError):
            await limiter.acquire(PATH)


# -- sharing ------------------------------------------------------------------------------


async def test_two_api_keys_with_one_account_share_one_budget(redis_server: RedisServer) -> None:
    limit = 20
    limits = RateLimits(endpoints={PATH: limit})
    account, ip_scope = unique("main"), unique("ip")
    async with BybitSimulator(endpoint_limits={PATH: limit}, instruments=None) as sim:
        sim.add_account("second-key", "second-secret")
        # Two limiters, as two processes would have, one per key.
        async with (
            RedisLimiter(
                redis_server.url, account=account, ip_scope=ip_scope, limits=limits
            ) as one,
            RedisLimiter(
                redis_server.url, account=account, ip_scope=ip_scope, limits=limits
            ) as two,
            BybitSession(sim.api_key, sim.api_secret, base_url=sim.url, limiter=one) as first,
            BybitSession("second-key", "second-secret", base_url=sim.url, limiter=two) as second,
        ):
            outcomes = await asyncio.gather(
                first.set_auto_add_margin_many(symbols(20, "A"), True),
                second.set_auto_add_margin_many(symbols(20, "B"), True),
            )
    assert all(isinstance(o, ApiResponse) for batch in outcomes for o in batch)
    # The simulator limits each key by itself: only the shared budget keeps the sum at 20.
    assert sim.max_in_window(PATH, 1.0) <= limit


async def test_default_account_is_a_hash_of_the_key_and_the_key_never_reaches_redis(
    redis_server: RedisServer, inspect: Redis
) -> None:
    api_key = f"SECRETKEY{uuid.uuid4().hex}"
    limits = RateLimits(endpoints={PATH: 3})
    ip_scope = unique("ip")
    async with BybitSimulator(instruments=None) as sim:
        sim.add_account(api_key, "s")
        async with RedisLimiter(redis_server.url, limits=limits, ip_scope=ip_scope) as one:
            async with BybitSession(api_key, "s", base_url=sim.url, limiter=one) as session:
                await session.set_auto_add_margin("BTCUSDT", True)
            assert one.account == account_for_api_key(api_key)
            # Another process with the same key shares its budget; another key does not.
            async with (
                RedisLimiter(
                    redis_server.url, api_key=api_key, limits=limits, ip_scope=ip_scope
                ) as same,
                RedisLimiter(
                    redis_server.url, api_key="other-key", limits=limits, ip_scope=ip_scope
                ) as other,
            ):
                await one.flush()
                assert await same.available(PATH) == 2
                assert await other.available(PATH) == 3
            with pytest.raises(ValueError, match="account="):
                one.bind_api_key("other-key")
    for key in await inspect.keys("*"):
        assert api_key not in key
        if await inspect.type(key) == "zset":
            members = await inspect.zrange(key, 0, -1)
        else:
            members = [await inspect.get(key) or ""]
        assert not any(api_key in m for m in members)


async def test_limit_status_zero_seen_by_one_process_holds_the_endpoint_for_all(
    redis_server: RedisServer,
) -> None:
    # A client-side endpoint limit out of reach (configured, so that the answers'
    # X-Bapi-Limit is not learned): only Bybit's answer can hold the endpoint.
    # As on Bybit, the reset header is in the future only on the 10006 itself:
    # the first process is refused once, and the second must then wait for the
    # reset instead of being refused too, which it does only if the hold is shared.
    limits = RateLimits(endpoints={PATH: 100})
    account, ip_scope = unique("main"), unique("ip")
    async with (
        BybitSimulator(endpoint_limits={PATH: 3}, instruments=None) as sim,
        RedisLimiter(redis_server.url, account=account, ip_scope=ip_scope, limits=limits) as one,
        RedisLimiter(redis_server.url, account=account, ip_scope=ip_scope, limits=limits) as two,
        BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, limiter=one, max_retries=0
        ) as first,
        BybitSession(
            sim.api_key, sim.api_secret, base_url=sim.url, limiter=two, max_retries=0
        ) as second,
    ):
        names = symbols(5)
        for symbol in names[:3]:
            await first.set_auto_add_margin(symbol, True)
        with pytest.raises(RateLimitError):
            await first.set_auto_add_margin(names[3], True)
        await one.flush()  # the hold is written in the background
        await second.set_auto_add_margin(names[4], True)
    assert sim.count(ret_code=10006) == 1
    assert sim.count(PATH, ret_code=0) == 4


# -- the permits themselves ----------------------------------------------------------------


async def test_permits_both_levels_and_unsent_release(redis_server: RedisServer) -> None:
    limits = RateLimits(ip_limit=5, endpoints={PATH: 3})
    ip_scope = unique("ip")
    async with (
        RedisLimiter(
            redis_server.url, account=unique("a"), ip_scope=ip_scope, limits=limits
        ) as one,
        RedisLimiter(
            redis_server.url, account=unique("b"), ip_scope=ip_scope, limits=limits
        ) as other_account,
        RedisLimiter(
            redis_server.url, account=unique("c"), ip_scope=unique("ip"), limits=limits
        ) as other_ip,
    ):
        permits = [await one.acquire(PATH) for _ in range(3)]
        assert await one.available(PATH) == 0
        # Another account on the same IP: its endpoint budget is whole, the IP's is not.
        assert await other_account.available(PATH) == 2
        assert await other_account.available("/v5/market/time", signed=False) == 2
        assert await other_ip.available(PATH) == 3
        for permit in permits:
            permit.release(sent=False)
            permit.release(sent=False)  # twice does nothing
        await one.flush()
        assert await one.available(PATH) == 3
        sent = await one.acquire(PATH)
        sent.release()
        await one.flush()
        # A sent permit stays out for the window after its answer.
        assert await one.available(PATH) == 2


async def test_a_waiting_call_is_admitted_when_a_permit_comes_back_unsent(
    redis_server: RedisServer,
) -> None:
    limits = RateLimits(endpoints={PATH: 1})
    async with RedisLimiter(
        redis_server.url, account=unique("a"), ip_scope=unique("ip"), limits=limits
    ) as limiter:
        first = await limiter.acquire(PATH)
        waiting = asyncio.ensure_future(limiter.acquire(PATH))
        await asyncio.sleep(0)
        assert not waiting.done()
        first.release(sent=False)
        second = await asyncio.wait_for(waiting, timeout=5)  # long before the lease
        second.release(sent=False)


async def test_a_cancelled_waiting_call_leaves_no_permit_behind(redis_server: RedisServer) -> None:
    limits = RateLimits(endpoints={PATH: 1})
    async with RedisLimiter(
        redis_server.url, account=unique("a"), ip_scope=unique("ip"), limits=limits
    ) as limiter:
        first = await limiter.acquire(PATH)
        waiting = asyncio.ensure_future(limiter.acquire(PATH))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        first.release(sent=False)
        await limiter.flush()
        assert await limiter.available(PATH) == 1


async def test_scripts_are_loaded_again_after_a_script_flush(
    redis_server: RedisServer, inspect: Redis
) -> None:
    async with RedisLimiter(
        redis_server.url, account=unique("a"), ip_scope=unique("ip")
    ) as limiter:
        (await limiter.acquire(PATH)).release(sent=False)
        await limiter.flush()
        await inspect.script_flush()
        (await limiter.acquire(PATH)).release(sent=False)
        await limiter.flush()
        assert await limiter.available(PATH) == 10


def test_import_without_redis_py_and_the_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import bybit_async\n"
        "try:\n"
        "    bybit_async.RedisLimiter('redis://127.0.0.1:6379/0', account='a')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "bybit-async[redis]" in proc.stdout


def test_a_limiter_needs_an_account_before_use() -> None:
    async def use() -> None:
        async with RedisLimiter("redis://127.0.0.1:1/0") as limiter:
            await limiter.acquire(PATH)

    with pytest.raises(RuntimeError, match="account"):
        asyncio.run(use())


async def set_flag_through_redis(redis_url: str, account: str, *options: str) -> str:
    """Run ``set-auto-add-margin BTCUSDT --on --json`` sharing *account* through *redis_url*.

    Against a simulator of its own, with no Redis password in the
    environment; returns what it printed.
    """
    async with BybitSimulator(instruments=None) as sim:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"},
            "BYBIT_API_KEY": sim.api_key,
            "BYBIT_API_SECRET": sim.api_secret,
        }
        env.pop("BYBIT_REDIS_PASSWORD", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bybit_async",
            "set-auto-add-margin",
            "BTCUSDT",
            "--on",
            "--base-url",
            sim.url,
            "--redis-url",
            redis_url,
            *options,
            "--account",
            account,
            "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_command_line_shares_the_budget_through_redis_url(
    redis_server: RedisServer, inspect: Redis
) -> None:
    account = unique("cli")
    out = await set_flag_through_redis(redis_server.url, account)
    assert json.loads(out.splitlines()[0])["symbol"] == "BTCUSDT"
    assert await inspect.exists(f"bybit-async:acct:{account}:ep:{PATH}")


# -- issue 24: cheap per request, safe when Redis or an engine stalls ---------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def script_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_one_script_call_grants_every_waiting_call_and_batches_the_releases(
    own_redis: RedisServer,
) -> None:
    limits = RateLimits(endpoints={PATH: 100})
    client = Redis.from_url(own_redis.url)
    async with RedisLimiter(
        own_redis.url, account=unique("a"), ip_scope=unique("ip"), limits=limits
    ) as limiter:
        (await limiter.acquire(PATH)).release(sent=False)  # connect, load the script
        await limiter.flush()
        before = await script_calls(client)
        permits = await asyncio.gather(*(limiter.acquire(PATH) for _ in range(50)))
        granted = await script_calls(client)
        for permit in permits:
            permit.release()
        await limiter.flush()
        released = await script_calls(client)
        assert await limiter.available(PATH) == 50
    await client.aclose()
    assert granted - before == 1  # 50 calls, one script call
    assert released - granted == 1  # 50 releases, one script call


#: Limits far out of reach: a process may keep 200 spare permits of PATH.
FAR = RateLimits(ip_limit=100_000, endpoints={PATH: 100_000})


#: Calls at once that make a budget busy enough for spare permits.
BURST = 8


def ep_key(account: str) -> str:
    return f"bybit-async:acct:{account}:ep:{PATH}"


async def burst(limiter: RedisLimiter) -> list[Any]:
    """BURST calls at once: one exchange, which asks for spare permits too."""
    return list(await asyncio.gather(*(limiter.acquire(PATH) for _ in range(BURST))))


async def test_a_budget_used_now_and_then_gets_no_spare_permits(own_redis: RedisServer) -> None:
    client = Redis.from_url(own_redis.url)
    account = unique("a")
    async with RedisLimiter(
        own_redis.url, account=account, ip_scope=unique("ip"), limits=FAR
    ) as limiter:
        for _ in range(3):
            (await limiter.acquire(PATH)).release(sent=False)
            await limiter.flush()
        assert await client.zcard(ep_key(account)) == 0
    await client.aclose()


async def test_a_budget_far_from_its_limit_serves_calls_from_spare_permits(
    own_redis: RedisServer,
) -> None:
    client = Redis.from_url(own_redis.url)
    account = unique("a")
    async with RedisLimiter(
        own_redis.url, account=account, ip_scope=unique("ip"), limits=FAR
    ) as limiter:
        first = await burst(limiter)
        # The spare permits are taken in Redis: every engine counts them.
        assert await client.zcard(ep_key(account)) == BURST + 200
        before = await script_calls(client)
        permits = [await limiter.acquire(PATH) for _ in range(99)]
        assert await script_calls(client) == before  # 99 calls, no round trip
        for permit in [*first, *permits]:
            permit.release(sent=False)
    await client.aclose()


async def test_spare_permits_only_while_the_budget_stays_half_free(own_redis: RedisServer) -> None:
    client = Redis.from_url(own_redis.url)
    account, ip = unique("a"), unique("ip")
    limits = RateLimits(ip_limit=100_000, endpoints={PATH: 100})  # 5 spare at most
    engines = [
        RedisLimiter(own_redis.url, account=account, ip_scope=ip, limits=limits) for _ in range(3)
    ]
    a, b, c = engines
    held = await burst(a)
    assert await client.zcard(ep_key(account)) == BURST + 5
    held += await asyncio.gather(*(b.acquire(PATH) for _ in range(50)))
    assert await client.zcard(ep_key(account)) == 13 + 50  # under half free: none spare
    held += await burst(c)
    assert await client.zcard(ep_key(account)) == 63 + BURST
    for permit in held:
        permit.release(sent=False)
    for engine in engines:
        await engine.aclose()
    await client.aclose()


async def test_spare_permits_left_unused_are_given_back(own_redis: RedisServer) -> None:
    client = Redis.from_url(own_redis.url)
    clock = FakeClock()
    account = unique("a")
    async with RedisLimiter(
        own_redis.url, account=account, ip_scope=unique("ip"), limits=FAR, clock=clock
    ) as limiter:
        permits = await burst(limiter)
        assert await client.zcard(ep_key(account)) == BURST + 200
        clock.now += 1.0  # a quiet second: the spare permits are past their use
        assert limiter.try_acquire(PATH) is None
        await limiter.flush()
        assert await client.zcard(ep_key(account)) == BURST  # the permits in use only
        for permit in permits:
            permit.release()
    await client.aclose()


async def test_aclose_gives_the_spare_permits_back(own_redis: RedisServer) -> None:
    client = Redis.from_url(own_redis.url)
    account = unique("a")
    limiter = RedisLimiter(own_redis.url, account=account, ip_scope=unique("ip"), limits=FAR)
    for permit in await burst(limiter):
        permit.release()
    assert await client.zcard(ep_key(account)) == BURST + 200
    await limiter.aclose()
    assert await client.zcard(ep_key(account)) == BURST  # the sent permits, cooling down
    await client.aclose()


async def test_sent_releases_wait_to_go_together_and_a_flush_sends_them(
    own_redis: RedisServer,
) -> None:
    # A sent permit comes back one hold after its answer however late its
    # release reaches Redis: releases wait (by the limiter's clock, which
    # stands still here) to share an exchange.
    client = Redis.from_url(own_redis.url)
    clock = FakeClock()
    async with RedisLimiter(
        own_redis.url, account=unique("a"), ip_scope=unique("ip"), limits=FAR, clock=clock
    ) as limiter:
        permits = [*await burst(limiter), *[await limiter.acquire(PATH) for _ in range(12)]]
        before = await script_calls(client)
        for permit in permits:
            permit.release()
            for _ in range(5):
                await asyncio.sleep(0)  # the driver's turns
        assert await script_calls(client) == before
        await limiter.flush()
        assert await script_calls(client) == before + 1
    await client.aclose()


async def test_a_permit_gone_stale_before_use_is_given_back_and_taken_again(
    redis_server: RedisServer, inspect: Redis
) -> None:
    # The process stalls between Redis granting a permit and the call using it:
    # the clock jumps past the handover as the grant comes back.
    clock = FakeClock()
    account = unique("a")
    async with TcpProxy("127.0.0.1", redis_server.port or 0) as proxy:
        limiter = RedisLimiter(
            proxy.url,
            account=account,
            ip_scope=unique("ip"),
            limits=RateLimits(endpoints={PATH: 5}),
            clock=clock,
        )
        async with limiter:
            (await limiter.acquire(PATH)).release(sent=False)  # permit 0
            await limiter.flush()

            def stall() -> None:
                proxy.on_reply = None
                clock.now += 60.0

            proxy.on_reply = stall
            permit = await limiter.acquire(PATH)  # permit 1 stale, permit 2 used
            members = await inspect.zrange(f"bybit-async:acct:{account}:ep:{PATH}", 0, -1)
            assert [m.rsplit(":", 1)[1] for m in members] == ["2"]
            permit.release(sent=False)


async def test_a_lease_shorter_than_the_session_timeout_is_refused_and_a_default_follows_it(
    redis_server: RedisServer,
) -> None:
    short = RedisLimiter(redis_server.url, account=unique("a"), lease=5)
    with pytest.raises(ValueError, match="shorter than the session's timeout"):
        BybitSession("k", "s", limiter=short, timeout=10)
    BybitSession("k", "s", limiter=short, timeout=5)  # equal is enough
    following = RedisLimiter(redis_server.url, account=unique("a"))
    BybitSession("k", "s", limiter=following, timeout=30)
    BybitSession("k", "s", limiter=following, timeout=2)
    assert following.lease == 30  # the longest timeout of the sessions it serves
    await short.aclose()
    await following.aclose()


async def test_a_restarted_redis_is_noticed_and_each_engine_keeps_to_its_own_last_window(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RateLimits(endpoints={PATH: 5})
    account, ip_scope = unique("a"), unique("ip")
    clocks = FakeClock(), FakeClock()
    one, two = (
        RedisLimiter(
            own_redis.url,
            account=account,
            ip_scope=ip_scope,
            limits=limits,
            probe_interval=0,
            clock=clock,
        )
        for clock in clocks
    )
    async with one, two:
        for limiter, n in ((one, 3), (two, 2)):
            for permit in [await limiter.acquire(PATH) for _ in range(n)]:
                permit.release()  # sent: counted for the window after the answer
            await limiter.flush()
        assert await one.available(PATH) == 0
        await asyncio.to_thread(own_redis.stop)
        await asyncio.to_thread(own_redis.start)  # empty
        with caplog.at_level(logging.WARNING, logger="bybit_async"):
            # Redis alone would allow 5 now; each engine keeps to what it sent itself.
            assert await one.available(PATH) == 0
            assert await two.available(PATH) == 0
        assert sum("came back empty" in r.getMessage() for r in caplog.records) == 2
        # Once one window has passed, the new count is all there is to go by.
        clocks[0].now += 6.0
        assert await one.available(PATH) == 5


async def test_a_permit_granted_after_the_client_gave_up_is_given_back(
    redis_server: RedisServer, inspect: Redis
) -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    account = unique("a")
    key = f"bybit-async:acct:{account}:ep:{PATH}"
    async with TcpProxy("127.0.0.1", redis_server.port or 0) as proxy:
        # No retry, so that exactly one exchange is lost; its timeout fires for
        # sure, since the proxy never forwards the answer.
        client = Redis.from_url(proxy.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
        limiter = RedisLimiter(
            client,
            account=account,
            ip_scope=unique("ip"),
            limits=RateLimits(endpoints={PATH: 5}),
            probe_interval=0,
        )
        async with limiter:
            (await limiter.acquire(PATH)).release(sent=False)
            await limiter.flush()
            proxy.holding = True
            with pytest.raises(LimiterUnavailableError, match="Timeout"):
                await limiter.acquire(PATH)
            await proxy.wait_held(1)  # Redis carried the exchange out: a permit is out
            assert await inspect.zcard(key) == 1
            proxy.holding = False
            permit = await limiter.acquire(PATH)
            permit.release(sent=False)
            await limiter.flush()
            assert await inspect.zcard(key) == 0
        await client.aclose()


async def test_aclose_ends_waiting_calls_and_leaves_no_connection(
    own_redis: RedisServer,
) -> None:
    client = Redis.from_url(own_redis.url, decode_responses=True)
    limiter = RedisLimiter(
        own_redis.url,
        account=unique("a"),
        ip_scope=unique("ip"),
        limits=RateLimits(endpoints={PATH: 1}),
    )
    held = await limiter.acquire(PATH)
    waiting = [asyncio.ensure_future(limiter.acquire(PATH)) for _ in range(20)]
    await asyncio.sleep(0)
    names = [c["name"] for c in await client.client_list()]
    assert any(n.startswith("bybit-async-") for n in names)
    await limiter.aclose()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 60)
    assert all(isinstance(o, LimiterUnavailableError) for o in outcomes), outcomes
    with pytest.raises(LimiterUnavailableError, match="closed"):
        await limiter.acquire(PATH)
    held.release()  # after close: nothing is opened for it
    await asyncio.sleep(0)
    names = [c["name"] for c in await client.client_list()]
    assert not any(n.startswith("bybit-async-") for n in names), names
    await client.aclose()


async def test_aclose_ends_calls_waiting_in_the_local_fallback(own_redis: RedisServer) -> None:
    limiter = RedisLimiter(
        own_redis.url,
        account=unique("a"),
        limits=RateLimits(endpoints={PATH: 1}),
        fallback="local",
    )
    held = await limiter.acquire(PATH)
    await limiter.flush()
    await asyncio.to_thread(own_redis.stop)
    waiting = asyncio.ensure_future(limiter.acquire(PATH))  # Redis down: the local one waits
    await asyncio.sleep(0)
    await limiter.aclose()
    with pytest.raises(LimiterUnavailableError, match="closed"):
        await waiting
    held.release()


async def test_a_learned_limit_is_used_by_every_engine_of_the_account_unless_configured(
    redis_server: RedisServer,
) -> None:
    unknown = "/v5/some/new-endpoint"
    account, ip_scope = unique("a"), unique("ip")
    async with (
        RedisLimiter(redis_server.url, account=account, ip_scope=ip_scope) as one,
        RedisLimiter(redis_server.url, account=account, ip_scope=ip_scope) as two,
        RedisLimiter(
            redis_server.url,
            account=account,
            ip_scope=ip_scope,
            limits=RateLimits(endpoints={unknown: 3}),
        ) as configured,
    ):
        assert await two.available(unknown) == 1  # unknown: one at a time until an answer
        one.observe(unknown, 40, None, limit=40)
        await one.flush()
        assert await two.available(unknown) == 40
        assert await configured.available(unknown) == 3
        forced = two.limits_in_force()[unknown]
        assert 40 in tuple(forced)
        assert "learned" in tuple(forced)
        assert "configured" in tuple(configured.limits_in_force()[unknown])


def test_redis_url_with_password_reads_the_environment_or_a_file(tmp_path: Path) -> None:
    url = "redis://10.0.0.5:6379/0"
    env = {"BYBIT_REDIS_PASSWORD": "p@ss:w/rd"}
    assert redis_url_with_password(url, env={}) == url
    with_env = redis_url_with_password(url, env=env)
    assert with_env == "redis://:p%40ss%3Aw%2Frd@10.0.0.5:6379/0"
    secret = tmp_path / "redis-password"
    secret.write_text("from-file\n")
    assert (
        redis_url_with_password("rediss://user@h:1/2", env=env, password_file=secret)
        == "rediss://user:from-file@h:1/2"
    )
    assert redis_url_with_password("redis://:inline@h/0", env=env) == "redis://:inline@h/0"
    with pytest.raises(ValueError, match="password file"):
        redis_url_with_password("redis://:inline@h/0", password_file=secret)
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty"):
        redis_url_with_password(url, password_file=tmp_path / "empty")


async def test_a_password_from_the_environment_reaches_redis(own_redis: RedisServer) -> None:
    admin = Redis.from_url(own_redis.url)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    env = {"BYBIT_REDIS_PASSWORD": "s3cret"}
    async with RedisLimiter(
        redis_url_with_password(own_redis.url, env=env), account=unique("a")
    ) as limiter:
        (await limiter.acquire(PATH)).release(sent=False)
        assert "s3cret" not in repr(limiter)
    async with RedisLimiter(own_redis.url, account=unique("a")) as without:
        with pytest.raises(LimiterUnavailableError):
            await without.acquire(PATH)


async def test_command_line_reads_the_redis_password_from_a_file(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    admin = Redis.from_url(own_redis.url)
    await admin.config_set("requirepass", "s3cret")
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret\n")
    account = unique("cli")
    await set_flag_through_redis(own_redis.url, account, "--redis-password-file", str(secret))
    await admin.execute_command("AUTH", "s3cret")
    assert await admin.exists(f"bybit-async:acct:{account}:ep:{PATH}")
    await admin.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=s3cret",
        "unix:///run/redis.sock?db=0&password=s3cret",
    ],
)
def test_a_redis_password_never_shows_in_the_url_the_limiter_names(url: str) -> None:
    from bybit_async.redis_config import _redacted

    shown = _redacted(url)
    assert "s3cret" not in shown
    assert "***" in shown
