"""Mechanisms of `RedisLimiter` that the end-to-end tests do not pin down, against a real Redis.

* Slot passing ("rolls"): with Redis far away and a budget used up, a sent
  permit's endpoint slot passes to a call of the same process that waits on
  the budget, one hold after the answer, instead of going back to Redis and
  being asked for again; at most `_MOST_ROLLS` times in a row.
* Restart trimming: the exchange that finds Redis restarted may have been
  granted more than the restart rule lets this process have; the rest goes
  back to Redis at once, for other engines to take.
* When to ask again: a refused engine far from Redis waits for all the
  permits it needs when they come back within a round trip of the first.

The limiters run on a clock the test moves by hand: a reply "takes" as long
as the test says (through `tests.tcp_proxy.TcpProxy`'s reply hook), so that
no test waits on real time.  Every test uses its own account, IP scope or key
prefix, so that none sees another's permits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from redis.asyncio import Redis

from bybit_async import LimiterUnavailableError, RateLimits, RedisLimiter
from bybit_async.redis_exchange import _MOST_ROLLS

from .redis_fixtures import redis_server as redis_server
from .redis_server import RedisServer
from .tcp_proxy import TcpProxy

PATH = "/v5/position/set-auto-add-margin"

#: Seconds each reply from Redis takes, by the limiters' clock: 100 round trips
#: (2 s) are more than the endpoint's 1 s window, so Redis counts as far away.
FAR = 0.02


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FarRedis:
    """The proxy's reply hook: each reply moves the clock by `FAR`, and once by *jump* more."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.jump = 0.0

    def __call__(self) -> None:
        self.clock.now += FAR + self.jump
        self.jump = 0.0


class WatchedLimiter(RedisLimiter):
    """Sets `handed_out` each time an exchange that asked for permits has been answered.

    And `slot_due` each time a passed slot came due (to a waiting call, or back).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed_out = asyncio.Event()
        self.slot_due = asyncio.Event()

    def _hand_out(self, reply: Any, asked: Any, sent_at: float, at: int = 2) -> None:
        super()._hand_out(reply, asked, sent_at, at)
        if asked:
            self.handed_out.set()

    def _pass_slot(self, group: Any, seq: int, due: float, rolls: int) -> None:
        super()._pass_slot(group, seq, due, rolls)
        self.slot_due.set()


class LateReplyLimiter(WatchedLimiter):
    """Holds the reply of the next call to Redis after `hold_next` is set, until `late` is set.

    The call was carried out: its reply is late, as over a slow network.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_next = False
        self.held = asyncio.Event()
        self.late = asyncio.Event()

    async def _call(self, keys: list[str], args: list[str]) -> list[Any]:
        hold, self.hold_next = self.hold_next, False
        reply = await super()._call(keys, args)
        if hold:
            self.held.set()
            await self.late.wait()
        return reply


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the test Redis (not through any proxy)."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def ended_by_close(*waiting: Awaitable[object]) -> None:
    """Each of *waiting*, a call still waiting when its limiter closed, raises for the close."""
    for call in waiting:
        with pytest.raises(LimiterUnavailableError, match="closed"):
            await call


async def script_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


# -- slot passing -------------------------------------------------------------------------


class FarOneAtATime:
    """A limiter of a budget of one per window, whose Redis is far by its clock (`FarRedis`)."""

    def __init__(self, redis_server: RedisServer) -> None:
        self.limits = RateLimits(endpoints={PATH: 1})
        self.hold = self.limits.window + self.limits.margin
        account = unique("a")
        self.ep_key = f"bybit-async:acct:{account}:ep:{PATH}"
        self.clock = FakeClock()
        self.far = FarRedis(self.clock)
        self._proxy = TcpProxy("127.0.0.1", redis_server.port or 0)
        self._account = account

    async def __aenter__(self) -> WatchedLimiter:
        await self._proxy.__aenter__()
        self._proxy.on_reply = self.far
        self.limiter = WatchedLimiter(
            self._proxy.url,
            account=self._account,
            ip_scope=unique("ip"),
            limits=self.limits,
            clock=self.clock,
        )
        return self.limiter

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.limiter.aclose()
        await self._proxy.__aexit__(*exc_info)


async def test_a_sent_permits_slot_passes_to_a_waiting_call_without_a_grant_exchange(
    redis_server: RedisServer, inspect: Redis
) -> None:
    setup = FarOneAtATime(redis_server)
    ep_key, far, hold = setup.ep_key, setup.far, setup.hold
    async with setup as limiter:
        first = await limiter.acquire(PATH)
        [first_member] = await inspect.zrange(ep_key, 0, -1)
        limiter.handed_out.clear()
        waiting = asyncio.ensure_future(limiter.acquire(PATH))
        await limiter.handed_out.wait()  # Redis found the budget used up
        assert not waiting.done()
        before = await script_calls(inspect)
        # The answer's hold passes while the exchange that follows the
        # release is out: the slot is then due for the waiting call.
        far.jump = hold
        first.release()
        limiter.handed_out.clear()
        asked = asyncio.ensure_future(limiter.handed_out.wait())
        await asyncio.wait((waiting, asked), return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        # Given back to Redis instead, the slot would have to be asked for
        # again: the waiting call would not be granted before that exchange.
        assert waiting.done(), "the waiting call asked Redis for a permit again"
        second = waiting.result()
        # One exchange in all since the release, which passed the slot.
        assert await script_calls(inspect) - before == 1
        # Redis counts the slot for the new permit now, not for the old one:
        # the endpoint's count did not change.
        [member] = await inspect.zrange(ep_key, 0, -1)
        assert member != first_member
        second.release(sent=False)


async def test_a_slot_passes_at_most_most_rolls_times_in_a_row_then_goes_back_to_redis(
    redis_server: RedisServer, inspect: Redis
) -> None:
    setup = FarOneAtATime(redis_server)
    ep_key, far, hold = setup.ep_key, setup.far, setup.hold
    async with setup as limiter:
        permit = await limiter.acquire(PATH)
        [holder] = await inspect.zrange(ep_key, 0, -1)
        limiter.handed_out.clear()
        waiting = [asyncio.ensure_future(limiter.acquire(PATH)) for _ in range(_MOST_ROLLS + 1)]
        await limiter.handed_out.wait()  # Redis found the budget used up
        for rolled in range(_MOST_ROLLS):
            await limiter.flush()  # no exchange out: the jump goes to the next one
            far.jump = hold
            permit.release()
            permit = await asyncio.wait_for(waiting[rolled], timeout=10)
            [member] = await inspect.zrange(ep_key, 0, -1)
            assert member != holder, f"roll {rolled + 1}: the slot did not pass"
            holder = member
            assert not any(w.done() for w in waiting[rolled + 1 :])
        # The slot has passed _MOST_ROLLS times in a row: this release goes
        # back to Redis, for every engine to take, though a call still waits.
        await limiter.flush()
        far.jump = hold
        permit.release()
        await limiter.flush()
        [member] = await inspect.zrange(ep_key, 0, -1)
        assert member == holder  # released, counted until one hold after its answer
        assert not waiting[-1].done()
    await ended_by_close(waiting[-1])


async def test_a_slot_passing_as_redis_restarts_keeps_to_the_restart_rule(
    redis_server: RedisServer, inspect: Redis
) -> None:
    # The slot was passed by the restarted Redis (the release that rolled it
    # went out before the restart was noticed): once the restart is known, a
    # new permit for the waiting call is one more than the rule allows.
    limits = RateLimits(endpoints={PATH: 1})
    hold = limits.window + limits.margin
    prefix, account = unique("restart"), unique("a")
    ep_key = f"{prefix}:acct:{account}:ep:{PATH}"
    clock = FakeClock()
    far = FarRedis(clock)
    async with TcpProxy("127.0.0.1", redis_server.port or 0) as proxy:
        proxy.on_reply = far
        limiter = WatchedLimiter(
            proxy.url,
            account=account,
            ip_scope=unique("ip"),
            limits=limits,
            key_prefix=prefix,
            clock=clock,
        )
        async with limiter:
            first = await limiter.acquire(PATH)
            limiter.handed_out.clear()
            waiting = asyncio.ensure_future(limiter.acquire(PATH))
            await limiter.handed_out.wait()  # Redis found the budget used up
            await inspect.delete(*await inspect.keys(f"{prefix}:*"))  # Redis restarts empty
            far.jump = hold
            first.release()  # passes the slot: the restart is not known yet
            await asyncio.wait_for(limiter.slot_due.wait(), timeout=10)
            await limiter.flush()
            # The new permit went back to Redis; the call waits for the rule to allow it.
            assert await inspect.zcard(ep_key) == 0
            assert not waiting.done()
        await ended_by_close(waiting)


# -- restart trimming ---------------------------------------------------------------------


async def send_two_then_restart(
    limiter: RedisLimiter, inspect: Redis, prefix: str, clock: FakeClock
) -> None:
    """The process's last window: two requests sent; then Redis restarts empty, 0.5 s on."""
    for permit in [await limiter.acquire(PATH) for _ in range(2)]:
        permit.release()
    await limiter.flush()
    # Every key of the prefix is gone, the epoch too.
    keys = await inspect.keys(f"{prefix}:*")
    assert f"{prefix}:epoch" in keys
    await inspect.delete(*keys)
    clock.now += 0.5  # the two sent still count for this process's windows


async def test_the_grant_that_finds_redis_restarted_keeps_only_what_the_restart_rule_allows(
    redis_server: RedisServer, inspect: Redis
) -> None:
    limits = RateLimits(endpoints={PATH: 5})
    prefix, account, ip_scope = unique("restart"), unique("a"), unique("ip")
    ep_key = f"{prefix}:acct:{account}:ep:{PATH}"
    ip_key = f"{prefix}:ip:{ip_scope}"
    clock = FakeClock()
    common: dict[str, Any] = {
        "account": account,
        "ip_scope": ip_scope,
        "limits": limits,
        "key_prefix": prefix,
    }
    limiter = WatchedLimiter(redis_server.url, clock=clock, **common)
    async with limiter:
        # This process's last window: two requests sent.
        await send_two_then_restart(limiter, inspect, prefix, clock)

        # Four calls wait: one exchange asks for four, and the empty Redis grants
        # them all.  The restart rule lets this process have no more out than
        # the two it sent, which still count: none may be used.
        limiter.handed_out.clear()
        waiting = [asyncio.ensure_future(limiter.acquire(PATH)) for _ in range(4)]
        await limiter.handed_out.wait()
        await limiter.flush()  # the permits granted beyond the rule go back
        assert not any(w.done() for w in waiting)
        assert await inspect.zcard(ep_key) == 0
        assert await inspect.zcard(ip_key) == 0
        # So another engine (one that never knew the old Redis) can take them all.
        async with RedisLimiter(redis_server.url, **common) as other:
            assert await other.available(PATH) == 5

        # Once the two have left the IP level's 5 s window (which the restart
        # rule keeps to as well), still within the new epoch's first one: two
        # more, as many as this process sent in its last window.
        clock.now += limits.ip_window - 0.3
        limiter.handed_out.clear()
        waiting.append(asyncio.ensure_future(limiter.acquire(PATH)))  # wakes the driver
        await limiter.handed_out.wait()
        assert [w.done() for w in waiting] == [True, True, False, False, False]
        assert await inspect.zcard(ep_key) == 2
        for done in waiting[:2]:
            done.result().release(sent=False)
    await ended_by_close(*waiting[2:])


async def test_after_a_restart_grants_of_several_budgets_together_keep_to_the_ip_cap(
    redis_server: RedisServer, inspect: Redis
) -> None:
    # The restart rule caps the IP level too, which every budget of the process
    # shares: one exchange asking for two budgets at once must not, together,
    # take more IP permits than the cap.
    other_path = "/v5/position/set-leverage"
    limits = RateLimits(endpoints={PATH: 5, other_path: 5})
    prefix, account, ip_scope = unique("restart"), unique("a"), unique("ip")
    ip_key = f"{prefix}:ip:{ip_scope}"
    clock = FakeClock()
    limiter = WatchedLimiter(
        redis_server.url,
        account=account,
        ip_scope=ip_scope,
        limits=limits,
        key_prefix=prefix,
        clock=clock,
    )
    async with limiter:
        # This process's last IP window: two requests sent.
        await send_two_then_restart(limiter, inspect, prefix, clock)
        assert await limiter.available(PATH) == 0  # the restart is noticed here
        # The two have left the IP window, still within the new epoch's first one:
        # two IP permits more, for both budgets together.
        clock.now += limits.ip_window - 0.3
        limiter.handed_out.clear()
        waiting = [
            asyncio.ensure_future(limiter.acquire(path))
            for path in (PATH, PATH, other_path, other_path)
        ]
        await limiter.handed_out.wait()  # one exchange asked for both budgets
        await limiter.flush()  # what was granted beyond the cap goes back
        assert [w.done() for w in waiting] == [True, True, False, False]
        assert await inspect.zcard(ip_key) == 2
        for done in waiting[:2]:
            done.result().release(sent=False)
    await ended_by_close(*waiting[2:])


async def test_a_grant_asked_before_a_restart_was_noticed_keeps_to_the_restart_rule(
    redis_server: RedisServer, inspect: Redis
) -> None:
    # An exchange reaches the restarted Redis, but another reply (here,
    # available's) shows the new epoch first: its grants are trimmed all the same.
    limits = RateLimits(endpoints={PATH: 5})
    prefix, account = unique("restart"), unique("a")
    ep_key = f"{prefix}:acct:{account}:ep:{PATH}"
    clock = FakeClock()
    limiter = LateReplyLimiter(
        redis_server.url,
        account=account,
        ip_scope=unique("ip"),
        limits=limits,
        key_prefix=prefix,
        clock=clock,
    )
    async with limiter:
        await send_two_then_restart(limiter, inspect, prefix, clock)
        limiter.hold_next = True
        limiter.handed_out.clear()
        waiting = asyncio.ensure_future(limiter.acquire(PATH))
        await limiter.held.wait()  # granted by the empty Redis; the reply is late
        assert await inspect.zcard(ep_key) == 1
        assert await limiter.available(PATH) == 0  # the restart is noticed here
        limiter.late.set()
        await limiter.handed_out.wait()
        await limiter.flush()  # the permit granted beyond the rule goes back
        assert not waiting.done()
        assert await inspect.zcard(ep_key) == 0
    await ended_by_close(waiting)


# -- when to ask again ----------------------------------------------------------------------


class ReplyWatcher(WatchedLimiter):
    """Keeps the reply of every exchange."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: list[list[Any]] = []

    async def _call(self, keys: list[str], args: list[str]) -> list[Any]:
        reply = await super()._call(keys, args)
        self.replies.append(reply)
        return reply


async def _refused_after_a_spread_of_answers(
    redis_server: RedisServer, far: bool
) -> tuple[float, float, float, float]:
    """Engine A sends the budget's 5 permits, answered 1 ms apart; B asks for 5.

    Returns B's exchange start, the waits Redis gave (first permit back, all
    five back) and B's time to ask again, all in seconds of B's clock.
    """
    limits = RateLimits(endpoints={PATH: 5})
    account, ip_scope = unique("a"), unique("ip")
    a_clock, b_clock = FakeClock(), FakeClock()
    async with (
        RedisLimiter(
            redis_server.url, account=account, ip_scope=ip_scope, limits=limits, clock=a_clock
        ) as a,
        TcpProxy("127.0.0.1", redis_server.port or 0) as proxy,
    ):
        if far:
            proxy.on_reply = FarRedis(b_clock)  # B's round trips take FAR by its clock
        b = ReplyWatcher(
            proxy.url, account=account, ip_scope=ip_scope, limits=limits, clock=b_clock
        )
        async with b:
            (await b.acquire(PATH)).release(sent=False)  # B measures its round trip
            await b.flush()
            permits = [await a.acquire(PATH) for _ in range(5)]
            for permit in permits:
                permit.release()
                a_clock.now += 0.001
            await a.flush()
            b.replies.clear()
            b.handed_out.clear()
            started = b_clock.now
            waiting = [asyncio.ensure_future(b.acquire(PATH)) for _ in range(5)]
            await asyncio.wait_for(b.handed_out.wait(), timeout=10)
            granted, first, _limit, _source, _free, every = b.replies[0][2:8]
            assert int(granted) == 0
            not_before = b._groups[PATH].not_before
            for call in waiting:
                call.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    return started, int(first) / 1e6, int(every) / 1e6, not_before


async def test_a_refused_engine_far_from_redis_asks_again_once_for_all_it_needs(
    redis_server: RedisServer,
) -> None:
    # The five come back within 4 ms, much less than a round trip to Redis: one
    # ask when all are back beats one for the first and another a round trip on.
    started, first, every, not_before = await _refused_after_a_spread_of_answers(
        redis_server, far=True
    )
    assert every > first
    assert not_before == pytest.approx(started + every, abs=1e-6)


async def test_a_refused_engine_next_to_redis_asks_again_when_the_first_is_back(
    redis_server: RedisServer,
) -> None:
    started, first, every, not_before = await _refused_after_a_spread_of_answers(
        redis_server, far=False
    )
    assert every > first
    assert not_before == pytest.approx(started + first, abs=1e-6)
