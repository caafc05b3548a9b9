"""The exchange behind `bybit_async.redis_limiter.RedisLimiter`: one script call per batch.

A process talks to Redis through one *exchange* at a time: every release,
hold and learned limit since the last exchange, and for each budget key as
many permits as this process has calls waiting on it, go in one call of the
script in `bybit_async.redis_scripts`.  This module holds what waits to go
(the outbox) and what gathers it (the driver), the exchanges in flight, the
hand-off of granted permits to the waiting calls (and of renewed slots, one
hold after their answer; and of spare permits, to calls to come), the epoch
each reply names and the restart rule that follows a change of it, and the
state while Redis cannot be reached.  `RedisLimiter` builds on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .endpoint_limits import ENDPOINT_LIMITS
from .ratelimit import RateLimits
from .redis_scripts import EXCHANGE

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__: list[str] = []

_log = logging.getLogger("bybit_async")

#: Most permits asked for one budget key in one exchange (Lua's stack limits
#: the arguments of one ZADD).
_MOST_PER_GROUP = 1000

#: Most windows in a row a process keeps an endpoint permit for its own calls
#: before it goes back to Redis for every engine to take.
_MOST_ROLLS = 3

#: Most exchanges in flight at once: while they are, what comes up waits for
#: the next, which then carries more.
_MOST_IN_FLIGHT = 2

#: Most releases kept while Redis cannot be reached; older ones are dropped,
#: and their permits come back when their lease ends.
_MOST_PENDING = 100_000

#: Most spare permits a process keeps of one budget, and the share of the
#: budget's limit (and of the IP's) they may be at most: 1/20.  A budget with
#: a limit under 20 keeps none.
_MOST_SPARE = 200
_SPARE_SHARE = 20

#: Seconds a sent permit's release may wait to go with others.  A sent permit
#: comes back one hold (a window, at least a second) after its answer however
#: late its release reaches Redis, so a few milliseconds change no count;
#: they let one exchange carry the releases of many requests.
_RELEASE_DELAY = 0.005

#: Seconds a spare permit stays usable after the exchange that took it (at
#: most the handover): one left unused is given back, so that a process that
#: went quiet does not keep permits another engine could use.
_SPARE_LIFE = 0.25

#: Calls that must have wanted a budget since its last ask before spare
#: permits of it are asked for: a budget used now and then (a clock sync, a
#: slow loop) would only hold them, and cost an exchange to give them back.
_SPARE_AFTER = 8

_US = 1_000_000


class _Own:
    """This process's own permits of one level: the basis of the restart rule."""

    __slots__ = ("cooling", "hold", "in_flight")

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.in_flight = 0
        self.cooling: deque[float] = deque()

    def used(self, now: float) -> int:
        cooling = self.cooling
        while cooling and cooling[0] <= now:
            cooling.popleft()
        return self.in_flight + len(cooling)


class _RestartRule:
    """This process's own permits by level ("" the IP), and the caps a restart puts on them.

    An engine that sees Redis's epoch change keeps, until one window of the
    new epoch has passed, to what it sent itself in the last window: the
    engines together then send no more than they did before.
    """

    __slots__ = ("caps", "epoch", "new_cap_until", "own", "window")

    def __init__(self, ip_hold: float, window: float) -> None:
        self.own: dict[str, _Own] = {"": _Own(ip_hold)}
        self.epoch: str | None = None
        # After a restart: per level, the most this process may have out until
        # the clock time given.
        self.caps: dict[str, tuple[int, float]] = {}
        # Until when a budget this process had not used is capped (at none).
        self.new_cap_until = 0.0
        # A budget's window plus the margin: how long the caps of a restart hold.
        self.window = window

    def add_budget(self, key: str, hold: float) -> None:
        """Count this process's permits of budget *key*, each out until *hold* s after release."""
        self.own[key] = _Own(hold)

    def _levels(self, group: _Group) -> tuple[_Own, ...]:
        own = self.own
        return (own[""], own[group.key]) if group.signed else (own[""],)

    def taken(self, group: _Group) -> None:
        """Count a permit of *group* handed to a call."""
        for own in self._levels(group):
            own.in_flight += 1

    def returned(self, group: _Group, sent: bool, now: float) -> None:
        """Count a permit of *group* given back: out for a hold more if *sent*."""
        for own in self._levels(group):
            own.in_flight -= 1
            if sent:
                own.cooling.append(now + own.hold)

    def epoch_seen(self, epoch: str, age: float, now: float) -> bool:
        """Note a reply's *epoch*, *age* s old; True if it changed (Redis restarted or replaced)."""
        if epoch == self.epoch:
            return False
        known, self.epoch = self.epoch, epoch
        if known is None:
            return False
        self.caps = {
            level: (own.used(now), now + own.hold - age) for level, own in self.own.items()
        }
        # A budget this process had not used: nothing of its own to keep to.
        self.new_cap_until = now + self.window - age
        return True

    def allowed(self, group: _Group, now: float) -> int:
        """How many more permits this process may take for *group* under the restart rule."""
        caps = self.caps
        if not caps:
            return _MOST_PER_GROUP
        allowed = _MOST_PER_GROUP
        levels = ("", group.key) if group.signed else ("",)
        for level in levels:
            most, until = caps.get(level, (0, self.new_cap_until))
            if now >= until:
                caps.pop(level, None)
                continue
            allowed = min(allowed, most - self.own[level].used(now))
        if all(now >= until for _, until in caps.values()) and now >= self.new_cap_until:
            caps.clear()
        return max(0, allowed)

    def restricted_until(self, group: _Group, now: float) -> float:
        """When *group* may next be allowed a permit under the restart rule."""
        times: list[float] = []
        levels = ("", group.key) if group.signed else ("",)
        for level in levels:
            times.append(self.caps.get(level, (0, self.new_cap_until))[1])
            own = self.own[level]
            if own.cooling:
                times.append(own.cooling[0])
        return min((t for t in times if t > now), default=now)


class _Group:
    """The calls of this process waiting on one budget key (or on the IP alone)."""

    __slots__ = (
        "asked",
        "ep_hold",
        "ep_hold_us",
        "ep_key",
        "ep_lease_us",
        "hold_key",
        "key",
        "limit",
        "not_before",
        "rolling",
        "short",
        "signed",
        "source",
        "spare",
        "waiters",
        "wants",
        "window",
    )

    def __init__(self, key: str, signed: bool) -> None:
        self.key = key
        self.signed = signed
        self.waiters: deque[asyncio.Future[tuple[int, float, int] | None]] = deque()
        # Clock time before which Redis is not asked again for this group.
        self.not_before = 0.0
        # Permits asked for in exchanges still in flight.
        self.asked = 0
        # Slots of this process's own sent permits being passed to waiting calls.
        self.rolling = 0
        # Whether Redis last granted fewer permits than asked: the budget is used up.
        self.short = False
        # Permits granted beyond the calls that waited, for calls to come:
        # (id, clock time by which its request must start), oldest first.
        self.spare: deque[tuple[int, float]] = deque()
        # Calls that wanted a permit since spare ones were last asked for.
        self.wants = 0
        self.limit = 0
        self.window = 1.0
        self.source = "n"
        self.ep_key = ""
        self.hold_key = ""
        self.ep_hold = 0.0
        self.ep_hold_us = "0"
        self.ep_lease_us = "0"

    def live(self) -> int:
        waiters = self.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        return sum(1 for w in waiters if not w.done())


class _Outbox:
    """What waits to reach Redis with the next exchange, and how it is written there.

    Releases (group, id, sent, answer time), permits an exchange may have
    granted after its caller gave up (group, first id, count), slots passing
    to a new permit of this process (group, old id, new id, answer time,
    rolls of the new one), holds (key -> µs ahead) and learned limits.
    """

    __slots__ = ("holds", "learned", "releases", "rolls", "takebacks", "urgent")

    def __init__(self) -> None:
        self.releases: list[tuple[_Group, int, bool, float]] = []
        self.takebacks: list[tuple[_Group, int, int]] = []
        self.rolls: list[tuple[_Group, int, int, float, int]] = []
        self.holds: dict[str, int] = {}
        self.learned: dict[str, int] = {}
        # Whether a release should reach Redis at once (a permit not sent
        # comes back at once; see _RELEASE_DELAY for the others).
        self.urgent = False

    def __bool__(self) -> bool:
        return bool(self.releases or self.takebacks or self.rolls or self.holds or self.learned)

    def releases_may_wait(self, now: float) -> bool:
        """Whether it holds only releases, none urgent, the oldest younger than its delay."""
        return bool(
            self.releases
            and not self.urgent
            and not (self.takebacks or self.rolls or self.holds or self.learned)
            and now < self.releases[0][3] + _RELEASE_DELAY
        )

    def put_back(self, failed: _Outbox, asked: list[tuple[_Group, int, int, int]]) -> None:
        """Take back what an exchange that failed carried, and what it may have granted.

        The exchange may have been carried out: what it granted is given back,
        and what it wrote is written again, with the next one.
        """
        self.takebacks.extend(failed.takebacks)
        self.takebacks.extend((g, first, n) for g, n, first, _ in asked)
        self.releases[:0] = failed.releases
        self.urgent = True
        for group, old, new, at, _ in failed.rolls:
            group.rolling -= 1
            self.releases.append((group, old, True, at))
            self.takebacks.append((group, new, 1))
        for path, ahead in failed.holds.items():
            if ahead > self.holds.get(path, 0):
                self.holds[path] = ahead
        for path, limit in failed.learned.items():
            self.learned.setdefault(path, limit)

    def write(
        self,
        keys: list[str],
        args: list[str],
        ip_key: str,
        hold_key: Callable[[str], str],
        learned_key: str,
        now: float,
    ) -> None:
        """Add its records to an exchange's *keys* and *args* (see `bybit_async.redis_scripts`).

        *hold_key* gives a budget key's hold key; *now* is this process's
        clock as the exchange starts.
        """
        index: dict[str, str] = {}

        def key(name: str) -> str:
            found = index.get(name)
            if found is None:
                keys.append(name)
                found = index[name] = str(len(keys))
            return found

        ipk = key(ip_key) if self.releases or self.takebacks or self.rolls else "0"
        # A permit comes back one hold after its answer: Redis's now less the time
        # since the answer, by this process's clock, is no earlier than that.
        batches: dict[tuple[_Group, bool], list[int]] = {}
        for group, seq, sent, at in self.releases:
            batch = batches.get((group, sent))
            if batch is None:
                batch = batches[group, sent] = []
            batch += (seq, max(0, round((now - at) * _US)))
        for (group, sent), batch in batches.items():
            args.extend(
                (
                    "r",
                    ipk,
                    key(group.ep_key) if group.signed else "0",
                    "1" if sent else "0",
                    group.ep_hold_us,
                    " ".join(map(str, batch)),
                )
            )
        for group, first, count in self.takebacks:
            args.extend(
                ("x", ipk, key(group.ep_key) if group.signed else "0", str(first), str(count))
            )
        for group, old, new, at, _ in self.rolls:
            args.extend(
                (
                    "n",
                    ipk,
                    key(group.hold_key),
                    key(group.ep_key),
                    str(old),
                    str(new),
                    group.ep_hold_us,
                    group.ep_lease_us,
                    str(group.limit),
                    str(max(0, round((now - at) * _US))),
                )
            )
        for path, ahead in self.holds.items():
            args.extend(("h", key(hold_key(path)), str(ahead)))
        for path, limit in self.learned.items():
            args.extend(("l", key(learned_key), path, str(limit)))


class _ExchangeDriver:
    """The exchange side of `RedisLimiter`: pending records, exchanges, hand-off, restarts.

    `RedisLimiter` sets the configuration attributes below and calls
    `_init_exchanges`; it supplies `_group` and `_local_observe`.
    """

    # Set by RedisLimiter: configuration and the connection.
    _limits: RateLimits
    _clock: Callable[[], float]
    _handover: float
    _probe_interval: float
    _fallback: str
    _prefix: str
    _account: str | None
    _token: str
    _ttl_ms: str
    _ip_key: str
    _epoch_key: str
    _ip_hold: float
    _ip_lease_us: int
    _redis: Redis
    _where: str
    _errors: tuple[type[BaseException], ...]
    _no_script: type[BaseException]
    _down: str | None
    _probe_at: float
    _closed: bool

    def _init_exchanges(self) -> None:
        self._sha = hashlib.sha1(EXCHANGE.encode()).hexdigest()
        self._loaded = False
        # Seconds an exchange takes, smoothed: a slot passes locally (see _roll)
        # only when Redis is far enough away for its round trips to matter.
        self._round_trip = 0.0

        self._groups: dict[str, _Group] = {}
        # Waiting to reach Redis with the next exchange.
        self._outbox = _Outbox()
        self._next_id = 0
        self._restart = _RestartRule(self._ip_hold, self._limits.window + self._limits.margin)
        self._driver: asyncio.Task[None] | None = None
        self._waker: asyncio.Future[None] | None = None
        self._in_flight = 0
        self._exchanges: set[asyncio.Task[None]] = set()
        self._flushed: list[asyncio.Future[None]] = []

    def _group(self, path: str, signed: bool) -> _Group:
        raise NotImplementedError

    def _local_observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None
    ) -> None:
        raise NotImplementedError

    def _kick(self) -> None:
        """Have the driver run an exchange on the next turn of the loop."""
        waker = self._waker
        if waker is not None:
            if not waker.done():
                waker.set_result(None)
            return
        if self._driver is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._driver = loop.create_task(self._drive())

    def _pending(self) -> bool:
        return bool(self._outbox)

    def _header(self) -> tuple[list[str], list[str]]:
        keys = [self._epoch_key]
        args = [
            self._token,
            self._ttl_ms,
            str(self._limits.ip_limit),
            str(self._ip_lease_us),
            str(round(self._ip_hold * _US)),
            self._token,
        ]
        return keys, args

    def _add_grant(
        self,
        keys: list[str],
        args: list[str],
        group: _Group,
        wanted: int,
        first: int,
        spare: int = 0,
    ) -> None:
        keys.append(self._ip_key)
        ipk = str(len(keys))
        if group.signed:
            keys.extend((group.hold_key, group.ep_key, self._learned_key()))
            n = len(keys)
            hk, ek, lk = str(n - 2), str(n - 1), str(n)
        else:
            hk = ek = lk = "0"
        args.extend(
            (
                "g",
                ipk,
                hk,
                ek,
                lk,
                group.key,
                str(group.limit if group.source in ("c", "t") else self._start_limit(group)),
                group.source if group.source in ("c", "t") else "u",
                group.ep_lease_us,
                group.ep_hold_us,
                str(wanted),
                str(first),
                str(spare),
            )
        )

    def _start_limit(self, group: _Group) -> int:
        # A learned or unknown limit: Redis's learned value wins; without one, the
        # table's (if the key was in the table) or 1 for a key nobody knows.
        table = ENDPOINT_LIMITS.get(group.key)
        return table.limit if table is not None else 1

    def _spare_size(self, group: _Group) -> int:
        """How many spare permits of *group* this process may keep (0: none)."""
        most = min(_MOST_SPARE, self._limits.ip_limit // _SPARE_SHARE)
        if group.signed:
            if group.source == "u":
                return 0
            most = min(most, group.limit // _SPARE_SHARE)
        return most

    def _learned_key(self) -> str:
        return f"{self._prefix}:acct:{self._account}:limits"

    async def _call(self, keys: list[str], args: list[str]) -> list[Any]:
        execute: Callable[..., Awaitable[Sequence[Any]]] = self._redis.execute_command
        if not self._loaded:  # the first call sends the script itself: one round trip
            reply = await execute("EVAL", EXCHANGE, len(keys), *keys, *args)
            self._loaded = True
            return list(reply)
        try:
            reply = await execute("EVALSHA", self._sha, len(keys), *keys, *args)
        except self._no_script:  # Redis restarted or flushed its scripts
            reply = await execute("EVAL", EXCHANGE, len(keys), *keys, *args)
        return list(reply)

    def _check_epoch(self, reply: Sequence[Any]) -> bool:
        """Note the epoch the reply names; True if it changed (Redis restarted or replaced)."""
        epoch = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if not self._restart.epoch_seen(epoch, int(reply[1]) / _US, self._clock()):
            return False
        _log.warning(
            "RedisLimiter: Redis at %s came back empty or is another server; this process "
            "keeps to what it sent itself for one window",
            self._where,
        )
        return True

    def _learn(self, group: _Group, limit: Any, source: Any) -> None:
        if not group.signed:
            return
        source = source.decode() if isinstance(source, bytes) else str(source)
        limit = int(limit)
        if source == "l" and (group.source != "l" or group.limit != limit):
            group.limit, group.source = limit, "l"
            self._local_observe(group.key, None, None, limit)

    async def _drive(self) -> None:
        """Start exchanges while there is anything to send, at most `_MOST_IN_FLIGHT` at once."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = self._clock()
                if self._in_flight >= _MOST_IN_FLIGHT:
                    await self._sleep(loop, None)  # an exchange ending kicks
                    continue
                if self._down is not None and (
                    now < self._probe_at or not any(g.live() for g in self._groups.values())
                ):
                    # Down: only a call that waits asks Redis again (after the probe
                    # interval); what is pending goes with it.
                    self._fail_waiters(None)
                    if self._closed and not self._in_flight:
                        return
                    self._wake_flushers()
                    await self._sleep(loop, max(0.0, self._probe_at - now) or None)
                    continue
                grants, next_at = self._asks(now)
                outbox = self._outbox
                if (
                    not grants
                    and not (self._flushed or self._closed)
                    and outbox.releases_may_wait(now)
                ):
                    # Only sent permits' releases: they go with the next exchange, or
                    # once the oldest has waited _RELEASE_DELAY.
                    wake = outbox.releases[0][3] + _RELEASE_DELAY
                    if next_at is not None:
                        wake = min(wake, next_at)
                    await self._sleep(loop, wake - now)
                    continue
                keys, args = self._header()
                self._outbox = _Outbox()
                outbox.write(
                    keys,
                    args,
                    self._ip_key,
                    lambda path: self._group(path, True).hold_key,
                    self._learned_key(),
                    self._clock(),
                )
                asked: list[tuple[_Group, int, int, int]] = []
                for group, wanted, spare in grants:
                    first = self._next_id
                    self._next_id += wanted
                    group.asked += wanted
                    if spare:
                        group.wants = 0
                    self._add_grant(keys, args, group, wanted, first, spare)
                    asked.append((group, wanted, first, spare))
                if len(args) == 6:  # nothing to send
                    if not self._in_flight:
                        self._wake_flushers()
                        if self._closed:
                            return
                    await self._sleep(loop, None if next_at is None else next_at - now)
                    continue
                self._in_flight += 1
                exchange = self._exchange(keys, args, outbox, asked)
                task = loop.create_task(exchange)
                self._exchanges.add(task)
                task.add_done_callback(self._exchanges.discard)
        finally:
            self._driver = None
            self._waker = None
            self._wake_flushers()

    def _asks(self, now: float) -> tuple[list[tuple[_Group, int, int]], float | None]:
        """What to ask Redis for now: (group, permits, of which spare) each; and when to look again.

        Calls waiting ask for one permit each.  A budget that `_SPARE_AFTER`
        calls wanted since its last ask, with half its spare permits or fewer
        left, asks for the rest as spare, unless the restart rule holds this
        process.
        """
        grants: list[tuple[_Group, int, int]] = []
        next_at: float | None = None
        if self._closed:
            return grants, next_at
        for group in self._groups.values():
            if group.spare:
                expires = group.spare[0][1]
                if expires < now:
                    self._drop_spare(group, now)
                elif next_at is None or expires < next_at:
                    next_at = expires
            need = max(0, group.live() - group.asked - group.rolling) if group.waiters else 0
            spare = 0
            busy = group.wants >= _SPARE_AFTER
            if busy and not group.asked and not group.short and not self._restart.caps:
                size = self._spare_size(group)
                if len(group.spare) <= size // 2:
                    spare = size - len(group.spare)
            if need + spare <= 0:
                continue
            if group.not_before > now:
                next_at = min(next_at or group.not_before, group.not_before)
                continue
            wanted = min(need + spare, self._restart.allowed(group, now) - group.asked)
            if wanted <= 0:
                at = self._restart.restricted_until(group, now)
                if at > now:
                    next_at = min(next_at or at, at)
                continue
            grants.append((group, wanted, max(0, wanted - need)))
        return grants, next_at

    def _drop_spare(self, group: _Group, now: float, *, stale_only: bool = True) -> None:
        """Give back *group*'s spare permits that are past use (all of them if not *stale_only*)."""
        spare = group.spare
        kept = [entry for entry in spare if entry[1] >= now] if stale_only else []
        if len(kept) == len(spare):
            return
        keep = {seq for seq, _ in kept}
        outbox = self._outbox
        outbox.releases.extend((group, seq, False, now) for seq, _ in spare if seq not in keep)
        outbox.urgent = True
        spare.clear()
        spare.extend(kept)

    async def _exchange(
        self,
        keys: list[str],
        args: list[str],
        outbox: _Outbox,
        asked: list[tuple[_Group, int, int, int]],
    ) -> None:
        """Send one exchange, which carries *outbox*, and hand out what it granted."""
        sent_at = self._clock()
        try:
            reply = await self._call(keys, args)
        except self._errors as exc:
            self._went_down(exc)
            self._outbox.put_back(outbox, asked)
            for group, wanted, _, _ in asked:
                group.asked -= wanted
            self._fail_waiters(None)
            return
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._wake_flushers()
            if self._driver is not None:
                self._kick()
        for group, wanted, _, _ in asked:
            group.asked -= wanted
        took = self._clock() - sent_at
        self._round_trip = took if not self._round_trip else 0.8 * self._round_trip + 0.2 * took
        if self._down is not None:
            self._came_back()
        try:
            self._roll(reply, outbox.rolls)
            self._hand_out(reply, asked, sent_at, 2 + len(outbox.rolls))
        except Exception as exc:  # a reply it cannot read: no call may wait on it forever
            _log.exception("RedisLimiter: unexpected reply from Redis at %s", self._where)
            self._went_down(exc)
            self._fail_waiters(None)

    def _hand_out(
        self,
        reply: list[Any],
        asked: list[tuple[_Group, int, int, int]],
        sent_at: float,
        at: int = 2,
    ) -> None:
        if self._check_epoch(reply):
            # Granted by the Redis that was: the new one does not count them.
            for group in self._groups.values():
                group.spare.clear()
        usable_until = sent_at + self._handover
        spare_until = sent_at + min(self._handover, _SPARE_LIFE)
        now = self._clock()
        for group, wanted, first, spare in asked:
            granted, wait_us = int(reply[at]), int(reply[at + 1])
            self._learn(group, reply[at + 2], reply[at + 3])
            all_us = int(reply[at + 5])
            at += 6
            if self._restart.caps:
                # Granted by a Redis that forgot the last window: no more than the
                # restart rule allows; the rest go back.  Checked here, not only when
                # asking: an exchange asked before the restart was known, and the
                # other budgets of this one (sharing the IP cap), count too.
                keep = min(granted, self._restart.allowed(group, now))
                if keep < granted:
                    self._outbox.takebacks.append((group, first + keep, granted - keep))
                    granted = keep
            group.short = granted < wanted - spare
            if wait_us > 0:
                # From the exchange's start: it reached Redis no sooner, so the
                # next ask reaches it no sooner than the permit comes back.  When
                # the rest come back within a round trip of the first, one ask
                # then for all of them beats one now and another a round trip on.
                if (all_us - wait_us) / _US <= self._round_trip:
                    wait_us = all_us
                group.not_before = sent_at + wait_us / _US
            waiters = group.waiters
            seq = first
            end = first + granted
            while seq < end:
                while waiters and waiters[0].done():
                    waiters.popleft()
                if not waiters:
                    break
                self._restart.taken(group)
                waiters.popleft().set_result((seq, usable_until, 0))
                seq += 1
            if seq < end:  # for calls to come, or callers gone meanwhile
                # None kept under the restart rule: a spare permit skips _allowed.
                room = 0 if self._restart.caps else self._spare_size(group) - len(group.spare)
                kept = min(end - seq, room)
                group.spare.extend((n, spare_until) for n in range(seq, seq + max(0, kept)))
                seq += max(0, kept)
            if seq < end:
                self._outbox.takebacks.append((group, seq, end - seq))

    def _roll(self, reply: list[Any], rolls: list[tuple[_Group, int, int, float, int]]) -> None:
        """Pass each renewed slot to a waiting call one hold after its answer."""
        loop = asyncio.get_running_loop()
        for i, (group, _old, new, at, count) in enumerate(rolls):
            if not int(reply[2 + i]):  # refused: released as any sent permit
                group.rolling -= 1
                continue
            # This process's own clock: the answer came at *at*, so a request sent
            # one hold later cannot share a rolling window with it.
            due = at + group.ep_hold
            loop.call_later(max(0.0, due - self._clock()), self._pass_slot, group, new, due, count)
        if rolls:
            self._kick()

    def _pass_slot(self, group: _Group, seq: int, due: float, rolls: int) -> None:
        group.rolling -= 1
        waiters = group.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        now = self._clock()
        if (
            not waiters
            or self._closed
            or (self._restart.caps and self._restart.allowed(group, now) <= 0)
        ):
            # No call to pass it to, or Redis restarted since the slot was passed
            # and the restart rule allows this process no permit more: it goes back.
            self._outbox.releases.append((group, seq, False, now))
            self._outbox.urgent = True
            self._kick()
            return
        self._restart.taken(group)
        waiters.popleft().set_result((seq, due + self._handover, rolls))

    def _fail_waiters(self, result: None) -> None:
        for group in self._groups.values():
            waiters, group.waiters = group.waiters, deque()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, seconds: float | None) -> None:
        """Sleep *seconds* (None: until kicked), or until `_kick`."""
        waker = self._waker = loop.create_future()
        timer = None if seconds is None else loop.call_later(max(0.0, seconds), _resolve, waker)
        try:
            await waker
        finally:
            if timer is not None:
                timer.cancel()
            self._waker = None

    def _wake_flushers(self) -> None:
        flushed, self._flushed = self._flushed, []
        for future in flushed:
            _resolve(future)

    def _cause(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}".replace(self._password(), "***")

    def _password(self) -> str:
        kwargs = getattr(self._redis.connection_pool, "connection_kwargs", {})
        password = kwargs.get("password")
        return password if isinstance(password, str) and password else "\0"

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        for group in self._groups.values():
            if group.spare:
                self._drop_spare(group, now, stale_only=False)
        first = self._down is None
        self._down = f"Redis at {self._where} unreachable: {self._cause(exc)}"
        self._probe_at = self._clock() + self._probe_interval
        if first:
            then = (
                "limiting this process alone until it answers"
                if self._fallback == "local"
                else "requests fail until it answers"
            )
            _log.warning("RedisLimiter: %s; %s", self._down, then)

    def _came_back(self) -> None:
        self._down = None
        _log.info("RedisLimiter: Redis at %s answers again; permits shared again", self._where)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
