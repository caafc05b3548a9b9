"""Rate limits shared by several processes through Redis: `RedisLimiter`.

Bybit's per-UID limits belong to the account, not to a process.  When
several engines (processes, hosts) trade on one account, each one's
`LocalLimiter` sees only its own requests, and together they go over the
limit.  `RedisLimiter` keeps the same permits as `LocalLimiter`, but in
Redis, where every engine of the account takes them:

* for each (account, budget key) a sorted set of permit ids, each scored by
  the time it comes back: its *lease* expiry while the request is in flight,
  and its answer's time plus the window plus `WINDOW_MARGIN` once released;
* for each IP scope (an egress IP: by default the host name) the same for
  the 600-per-5-seconds IP limit, shared by every account on that IP;
* for each (account, budget key) the time until which the server said the
  window is used up (``X-Bapi-Limit-Status: 0``), and the limit the server
  stated in ``X-Bapi-Limit`` (a *learned* limit, used by every engine of the
  account unless the limit is configured in `RateLimits.endpoints`).

**One round trip for the calls that go together.**  A process talks to
Redis through one *exchange* at a time (`bybit_async.redis_exchange`, with
the script of `bybit_async.redis_scripts`): every release, hold and learned
limit since the last exchange, and for each budget key as many permits as
this process has calls waiting on it, in one script call.  While an
exchange is in flight, what comes up meanwhile waits for the next one, so
the cost per request falls as the load rises, and Redis far away costs one
round trip per batch, not per call.  The script reads the time from Redis
(``TIME``), so engines whose clocks disagree still count in one time line.

**Spare permits where the budget is far from its limit.**  A process whose
calls want a budget often (8 calls since its last ask) also asks for spare
permits of it, at most 1/20 of the budget's limit and of the IP's (none
below a limit of 20; at most 200), which later calls take without a round
trip.  Redis grants them only while each level stays at least half free
after the grant, and they count there like any permit taken, so that no
engine can overshoot; a spare permit left unused for 0.25 s, or when Redis
is lost or the limiter closed, is given back.  A sent permit's release of
such a budget waits up to 5 ms to share an exchange with others: it comes
back one hold after its answer however late its release arrives, so the
wait changes no count.

**A permit is checked before it is used.**  A permit must start its request
within *handover* seconds of the exchange that took it; a call whose
process stalled longer (a SIGSTOP, a VM pause, a blocking callback) gives
it back and takes a new one, since Redis may have given its place to
another engine meanwhile.  Redis keeps a permit its process never gives back
for *handover* plus *lease* (the longest a request may be in flight) plus the
window and the margin.  *lease* follows the session's *timeout*, and a lease
shorter than the timeout is refused.

**Restarts.**  Every exchange reads an *epoch* that the first exchange to
find Redis empty writes.  An engine that sees the epoch change (Redis came
back empty, was flushed, or is another server) keeps, until one window of
the new epoch has passed, to what it sent itself in the last window: the
engines together then send no more than they did before, which was within
the limit.

When Redis cannot be reached, `acquire` raises `LimiterUnavailableError`
and nothing is sent (``fallback="closed"``, the default), or limits this
process alone with its own `LocalLimiter` (``fallback="local"``), which
takes a permit with every Redis permit and so knows what this process sent
before.  Redis is asked again at most every *probe_interval* seconds.  An
exchange that failed (a timeout, say) may still have been carried out: the
permits it asked for are given back with the next exchange that succeeds.

Needs redis-py (``pip install "bybit-async[redis]"``), imported only when a
`RedisLimiter` is made.  Redis 5 or later.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from .endpoint_limits import ENDPOINT_LIMITS
from .errors import LimiterUnavailableError
from .ratelimit import IpBudget, LimitInForce, LimitSource, LocalLimiter, Permit, RateLimits
from .redis_config import (
    PASSWORD_ENV,
    _check_seconds,
    _describe_client,
    _redacted,
    account_for_api_key,
    redis_url_with_password,
)
from .redis_exchange import (
    _MOST_IN_FLIGHT,
    _MOST_PENDING,
    _MOST_ROLLS,
    _US,
    _ExchangeDriver,
    _Group,
)
from .redis_scripts import EXCHANGE

if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = [
    "DEFAULT_HANDOVER",
    "DEFAULT_LEASE",
    "PASSWORD_ENV",
    "RedisLimiter",
    "account_for_api_key",
    "redis_url_with_password",
]

_log = logging.getLogger("bybit_async")

#: Seconds a request may be in flight before its permit is taken as lost, when
#: no session states its *timeout*: the session's default *timeout*.
DEFAULT_LEASE = 10.0

#: Seconds within which a permit must start its request after the exchange
#: that took it; a call held up longer takes a new permit.
DEFAULT_HANDOVER = 2.0

_INSTALL_HINT = 'RedisLimiter needs redis-py: pip install "bybit-async[redis]"'


class _RedisPermit:
    __slots__ = ("_group", "_limiter", "_local", "_rolls", "_seq")

    def __init__(
        self, limiter: RedisLimiter, group: _Group, seq: int, local: Permit, rolls: int
    ) -> None:
        self._limiter: RedisLimiter | None = limiter
        self._group = group
        self._seq = seq
        self._local = local
        self._rolls = rolls

    def release(self, sent: bool = True) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            self._local.release(sent)
            limiter._give_back(self._group, self._seq, sent, self._rolls)


_SOURCES: dict[str, LimitSource] = {
    "c": "configured",
    "t": "table",
    "l": "learned",
    "u": "unknown",
}


class RedisLimiter(_ExchangeDriver):
    """A `Limiter` whose permits live in Redis, shared by every process of an account.

    *url_or_client* is a Redis URL (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix://``; see `redis_url_with_password` to keep
    the password off command lines) or a ``redis.asyncio.Redis`` client; a
    client given here is not closed by `aclose`.

    *account* names the budget: every limiter with the same *account* (and
    *key_prefix*) on one Redis shares the per-endpoint permits and learned
    limits, whatever its API key, so give the same name to the keys of one
    Bybit UID.  Without it the account is derived from *api_key* (see
    `account_for_api_key`), or from the key of the `BybitSession` the limiter
    is given to.  *ip_scope* names the egress IP whose 600-per-5-s budget the
    limiter shares (default: this host's name); give processes behind one NAT
    the same scope.

    *limits* are the limits kept (default `RateLimits()`).  *lease* is the
    longest a request can be in flight: by default the *timeout* of the
    session the limiter is given to (the longest of them), and a *lease*
    shorter than a session's timeout raises `ValueError` there.  *handover*
    is the longest a permit may wait between the exchange that took it and
    its request's start (see the module's notes).  *fallback* is what happens
    while Redis cannot be reached: ``"closed"`` raises
    `LimiterUnavailableError` so that nothing is sent, ``"local"`` limits
    this process alone with a `LocalLimiter`.  Redis is asked again at most
    every *probe_interval* seconds after a failure; each Redis command may
    take *redis_timeout* seconds (URLs only; a client keeps its own
    settings).  *clock* is the monotonic clock permits are checked with.

    Use it from one event loop, and close it (`aclose`, or ``async with``)
    when done: the session does not, since several sessions may share it.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        account: str | None = None,
        api_key: str | None = None,
        limits: RateLimits | None = None,
        ip_scope: str | None = None,
        fallback: Literal["closed", "local"] = "closed",
        lease: float | None = None,
        handover: float = DEFAULT_HANDOVER,
        key_prefix: str = "bybit-async",
        probe_interval: float = 1.0,
        redis_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import NoScriptError, RedisError
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        if fallback not in ("closed", "local"):
            raise ValueError(f"fallback must be 'closed' or 'local', got {fallback!r}")
        for name, text in (
            ("account", account),
            ("ip_scope", ip_scope),
            ("key_prefix", key_prefix),
        ):
            if text is not None and (not isinstance(text, str) or not text or text != text.strip()):
                raise ValueError(f"{name} must be a non-empty str without surrounding spaces")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty str")
        self._lease_given = lease is not None
        # The longest session timeout bound so far (the lease, unless given).
        self._bound: float | None = None
        lease = DEFAULT_LEASE if lease is None else _check_seconds("lease", lease)
        handover = _check_seconds("handover", handover)
        probe_interval = _check_seconds("probe_interval", probe_interval, zero_ok=True)
        redis_timeout = _check_seconds("redis_timeout", redis_timeout)

        self._limits = limits = RateLimits() if limits is None else limits
        self._token = uuid.uuid4().hex[:12]
        if isinstance(url_or_client, str):
            self._where = _redacted(url_or_client)
            # One immediate retry on a new connection: a pooled connection may have
            # died with a Redis restart.  An exchange carried out twice takes the
            # same permit ids and gives back the same ones: no more than once.
            self._redis: Redis = Redis.from_url(
                url_or_client,
                socket_timeout=redis_timeout,
                socket_connect_timeout=redis_timeout,
                retry=Retry(NoBackoff(), 1),
                client_name=f"bybit-async-{self._token}",
            )
            self._owns_client = True
        elif isinstance(url_or_client, Redis):
            self._where = _describe_client(url_or_client)
            self._redis = url_or_client
            self._owns_client = False
        else:
            raise TypeError(
                "url_or_client must be a Redis URL or a redis.asyncio.Redis, "
                f"got {type(url_or_client).__name__}"
            )
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._no_script: type[BaseException] = NoScriptError

        self._account = account
        # The api_key-derived account, when the account was derived rather than named.
        self._derived = account is None
        if account is None and api_key is not None:
            self._account = account_for_api_key(api_key)
        self._ip_scope = ip_scope if ip_scope is not None else socket.gethostname()
        self._prefix = key_prefix
        self._fallback = fallback
        self._probe_interval = probe_interval
        self._handover = handover
        self._clock = clock
        self._ip_key = f"{key_prefix}:ip:{self._ip_scope}"
        self._epoch_key = f"{key_prefix}:epoch"
        self._ip_hold = limits.ip_window + limits.margin
        self._set_lease(lease)

        self._init_exchanges()
        self._fallback_waits: set[asyncio.Future[Any]] = set()
        # This process's own permits, taken with every Redis permit: the fallback
        # while Redis is down (fallback="local"), aware of what was sent before.
        self._local = LocalLimiter(limits, clock=clock)
        # Set while Redis is taken as down: why, and the clock time to ask it again.
        self._down: str | None = None
        self._probe_at = 0.0
        self._closed = False

    def _set_lease(self, lease: float) -> None:
        self._lease = lease
        self._ip_lease_us = round((self._handover + lease + self._ip_hold) * _US)
        self._ttl_ms = str(math.ceil(self._ip_lease_us / 1000) + 60_000)
        for group in getattr(self, "_groups", {}).values():
            self._plan(group)

    # -- properties ----------------------------------------------------------

    @property
    def limits(self) -> RateLimits:
        """The limits this limiter enforces."""
        return self._limits

    @property
    def account(self) -> str | None:
        """The account whose budget the permits count against (None until known)."""
        return self._account

    @property
    def ip_scope(self) -> str:
        """The name of the egress IP whose budget the IP permits count against."""
        return self._ip_scope

    @property
    def lease(self) -> float:
        """Seconds a request may be in flight before its permit is taken as lost."""
        return self._lease

    @property
    def redis_ok(self) -> bool:
        """False from a failure to reach Redis until it answers again."""
        return self._down is None

    def __repr__(self) -> str:
        """Show where Redis is (without a password) and the account."""
        return (
            f"<RedisLimiter {self._where} account={self._account!r} "
            f"ip_scope={self._ip_scope!r} fallback={self._fallback!r}>"
        )

    # -- hooks the session calls ------------------------------------------------

    def bind_api_key(self, api_key: str) -> None:
        """Take the account from *api_key* unless one was given; `BybitSession` calls this.

        Raises `ValueError` when the limiter already counts for another key's
        account: keys of one UID must name their shared account with *account*.
        """
        if not self._derived:
            return
        derived = account_for_api_key(api_key)
        if self._account is None:
            self._account = derived
        elif self._account != derived:
            raise ValueError(
                "this RedisLimiter already counts for another API key's account; give "
                "account= to share one budget between keys of one UID, or use one "
                "RedisLimiter per key"
            )

    def bind_timeout(self, timeout: float) -> None:
        """Fit the lease to a session's *timeout* (s); `BybitSession` calls this.

        Without *lease* given, the lease follows the longest timeout bound;
        a *lease* given shorter than *timeout* raises `ValueError`: a request
        could then still arrive at Bybit after its permit came back.
        """
        timeout = _check_seconds("timeout", timeout)
        if self._lease_given:
            if timeout > self._lease:
                raise ValueError(
                    f"RedisLimiter lease ({self._lease:g} s) is shorter than the session's "
                    f"timeout ({timeout:g} s): give lease >= timeout, or leave lease out to "
                    "follow the timeout"
                )
            return
        longest = timeout if self._bound is None else max(self._bound, timeout)
        self._bound = longest
        self._set_lease(longest)

    def share_ip(self, budget: IpBudget) -> None:
        """Count this process's own IP permits in *budget*, the process's shared IP budget.

        The Redis IP budget (*ip_scope*) is shared across processes as before;
        this is the fallback's and the restart rule's count.
        """
        self._local.share_ip(budget)

    # -- the Limiter interface ---------------------------------------------------

    async def acquire(self, path: str, *, signed: bool = True) -> Permit:
        """Wait for a permit of *path*'s budget and of the IP limit, taken together.

        *path* is a budget key; *signed* false takes an IP permit only (a
        public request).  Raises `LimiterUnavailableError` when Redis cannot
        be reached and *fallback* is ``"closed"``, or when the limiter is
        closed, also while the call waits.
        """
        if self._closed:
            raise self._closed_error(path)
        if self._account is None:
            raise RuntimeError(
                "RedisLimiter has no account: pass account= or api_key=, "
                "or give it to a BybitSession"
            )
        permit = self.try_acquire(path, signed)
        if permit is not None:
            return permit
        loop = asyncio.get_running_loop()
        group = self._group(path, signed)
        group.wants += 1
        front = False
        while True:
            if self._down is not None and self._clock() < self._probe_at:
                return await self._fall_back(path, signed)
            waiter: asyncio.Future[tuple[int, float, int] | None] = loop.create_future()
            if front:
                group.waiters.appendleft(waiter)
            else:
                group.waiters.append(waiter)
            self._kick()
            try:
                grant = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    granted = waiter.result()
                    if granted is not None:  # granted as the caller was cancelled
                        self._give_back(group, granted[0], sent=False)
                raise
            if grant is None:  # Redis is down
                return await self._fall_back(path, signed)
            seq, usable_until, rolls = grant
            # This process's own permit too: it admits at once while Redis is up
            # (this process's use is part of the account's), and it carries this
            # process's recent requests across a switch to the fallback and back.
            try:
                local = await self._local_acquire(path, signed)
            except BaseException:
                self._give_back(group, seq, sent=False)
                raise
            if self._clock() <= usable_until:
                return _RedisPermit(self, group, seq, local, rolls)
            # Held up past the handover (a stalled process): Redis may have given
            # this permit's place to another engine.  Take a new one, first in line.
            local.release(sent=False)
            self._give_back(group, seq, sent=False)
            front = True
            _log.debug("RedisLimiter: a permit of %s went stale before use; taking another", path)

    def try_acquire(self, path: str, signed: bool = True) -> Permit | None:
        """Return one of this process's spare permits of *path*'s budget, or None.

        Redis grants a process spare permits of a budget that is at least
        half free (see the class docstring); a call takes one without a
        round trip.  None when there is none to use now: `acquire` asks Redis.
        """
        group = self._groups.get(path if signed else "")
        if group is None or not group.spare or group.waiters or self._down is not None:
            return None
        spare = group.spare
        now = self._clock()
        if spare[0][1] < now:
            self._drop_spare(group, now)
            self._kick()
            if not spare:
                return None
        local = self._local.try_acquire(path, signed)
        if local is None:
            return None
        seq = spare.popleft()[0]
        group.wants += 1
        self._restart.taken(group)
        if len(spare) <= self._spare_size(group) // 2:
            self._kick()
        return _RedisPermit(self, group, seq, local, 0)

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        """Take in an answer's limit headers for *path*'s budget, for every engine of the account.

        ``remaining == 0`` holds the budget until the reset; *limit* (the
        answer's ``X-Bapi-Limit``) becomes the account's limit for the budget
        from the next request on, unless configured in `RateLimits.endpoints`.
        Written to Redis with the next exchange.
        """
        self._local_observe(path, remaining, reset_in, limit)
        if self._account is None or self._closed:
            return
        if remaining == 0 and reset_in is not None and reset_in > 0:
            ahead = round((reset_in + self._limits.margin) * _US)
            holds = self._outbox.holds
            if ahead > holds.get(path, 0):
                holds[path] = ahead
                self._kick()
        if limit is not None and limit > 0:
            group = self._group(path, True)
            if group.source != "c" and (group.limit != limit or group.source != "l"):
                group.limit, group.source = limit, "l"
                self._outbox.learned[path] = limit
                self._kick()

    def limits_in_force(self) -> dict[str, LimitInForce]:
        """Return the limit now of every budget this limiter has used, by key.

        A learned limit is the account's, learned by any engine through Redis.
        """
        return {
            g.key: LimitInForce(g.limit, g.window, _SOURCES[g.source])
            for g in self._groups.values()
            if g.signed
        }

    # -- beyond the interface ----------------------------------------------------

    async def available(self, path: str, *, signed: bool = True) -> int:
        """Return how many requests to *path* the account could send now without waiting.

        Counts the permits in Redis of every process (and, after a restart,
        this process's own cap); raises `LimiterUnavailableError` when Redis
        cannot be reached or the limiter is closed.
        """
        if self._closed:
            raise self._closed_error(path)
        if self._account is None:
            raise RuntimeError("RedisLimiter has no account")
        group = self._group(path, signed)
        keys, args = self._header()
        self._add_grant(keys, args, group, 0, 0)
        try:
            reply = await self._call(keys, args)
        except self._errors as exc:
            raise LimiterUnavailableError(
                f"Redis at {self._where} unreachable: {self._cause(exc)}", method="", path=path
            ) from exc
        self._check_epoch(reply)
        self._learn(group, reply[4], reply[5])
        free = int(reply[6])
        return max(0, min(free, self._restart.allowed(group, self._clock())))

    async def warm_up(self) -> None:
        """Connect to Redis and load the script ahead of the first call.

        Opens the connections exchanges use, so that the first calls wait for
        no connection handshake (a few round trips each when Redis is far
        away).  Raises `LimiterUnavailableError` when Redis cannot be reached.
        """
        if self._closed:
            raise self._closed_error("")
        execute: Callable[..., Awaitable[Any]] = self._redis.execute_command
        try:
            await asyncio.gather(
                *(execute("SCRIPT", "LOAD", EXCHANGE) for _ in range(_MOST_IN_FLIGHT))
            )
        except self._errors as exc:
            raise LimiterUnavailableError(
                f"Redis at {self._where} unreachable: {self._cause(exc)}", method="", path=""
            ) from exc
        self._loaded = True

    async def flush(self) -> None:
        """Wait until every release, hold and learned limit so far has reached Redis (or failed)."""
        for _ in range(3):  # what is pending now goes with the next exchange, or the one after
            if not (self._in_flight or self._pending()) or self._driver is None:
                return
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flushed.append(future)
            self._kick()
            await future

    async def aclose(self) -> None:
        """End waiting calls, write what is pending, then close the connections if owned.

        Calls still waiting, and later ones, raise `LimiterUnavailableError`.
        Nothing connects to Redis after this returns.
        """
        if self._closed:
            return
        self._closed = True
        now = self._clock()
        for group in self._groups.values():
            self._drop_spare(group, now, stale_only=False)
            waiters, group.waiters = group.waiters, deque()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(self._closed_error(group.key))
        for future in list(self._fallback_waits):
            if not future.done():
                future.set_result(None)
        driver = self._driver
        if driver is not None:
            self._kick()
            try:
                await asyncio.shield(driver)
            except asyncio.CancelledError:
                driver.cancel()
                raise
        if self._exchanges:
            await asyncio.gather(*self._exchanges, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisLimiter:
        """Return the limiter; it connects on first use."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the limiter (`aclose`)."""
        await self.aclose()

    # -- internals: the calls' side ----------------------------------------------

    def _closed_error(self, path: str) -> LimiterUnavailableError:
        return LimiterUnavailableError("not sent: the RedisLimiter is closed", method="", path=path)

    def _unavailable(self, path: str) -> LimiterUnavailableError:
        return LimiterUnavailableError(
            f"not sent: {self._down}; nothing is sent while the shared count is unknown",
            method="",
            path=path,
        )

    async def _local_acquire(self, path: str, signed: bool) -> Permit:
        permit = self._local.try_acquire(path, signed)
        if permit is not None:
            return permit
        return await self._local.acquire(path, signed=signed)

    def _local_observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None
    ) -> None:
        self._local.observe(path, remaining, reset_in, limit)

    async def _fall_back(self, path: str, signed: bool) -> Permit:
        if self._fallback != "local":
            raise self._unavailable(path)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._local_acquire(path, signed))
        closing: asyncio.Future[None] = loop.create_future()
        self._fallback_waits.add(closing)
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._fallback_waits.discard(closing)
            if not task.done():
                task.cancel()
        if closing.done() and not task.done():
            raise self._closed_error(path)
        return task.result()

    def _group(self, path: str, signed: bool) -> _Group:
        name = path if signed else ""
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group(path if signed else "", signed)
            if signed:
                limit, window, source = self._limit_for(path)
                group.limit, group.window, group.source = limit, window, source
                base = f"{self._prefix}:acct:{self._account}"
                group.ep_key = f"{base}:ep:{path}"
                group.hold_key = f"{base}:hold:{path}"
                self._restart.add_budget(path, window + self._limits.margin)
            self._plan(group)
        return group

    def _plan(self, group: _Group) -> None:
        if group.signed:
            hold = group.window + self._limits.margin
            group.ep_hold = hold
            group.ep_hold_us = str(round(hold * _US))
            group.ep_lease_us = str(round((self._handover + self._lease + hold) * _US))

    def _limit_for(self, key: str) -> tuple[int, float, str]:
        """The limit of budget key *key* before any answer: (limit, window, source)."""
        configured = self._limits.configured(key)
        if configured is not None:
            return configured.limit, configured.window, "c"
        table = ENDPOINT_LIMITS.get(key)
        if table is not None:
            return table.limit, table.window, "t"
        return 1, self._limits.window, "u"

    def _give_back(self, group: _Group, seq: int, sent: bool, rolls: int = _MOST_ROLLS) -> None:
        now = self._clock()
        self._restart.returned(group, sent, now)
        if self._closed and self._driver is None:
            return  # nothing connects any more: the lease takes it back
        if (
            sent
            and rolls < _MOST_ROLLS
            and group.signed
            and not self._closed
            and self._down is None
            and not self._restart.caps
            and group.short
            and self._round_trip * 100 > group.window
            and group.live() - group.asked - group.rolling > 0
        ):
            # A call of this process waits on this budget: keep the slot, for it, from
            # one hold after this answer (see _roll).
            new = self._next_id
            self._next_id += 1
            group.rolling += 1
            self._outbox.rolls.append((group, seq, new, now, rolls + 1))
            self._kick()
            return
        outbox = self._outbox
        releases = outbox.releases
        first = not releases
        releases.append((group, seq, sent, now))
        if len(releases) > _MOST_PENDING:
            del releases[: len(releases) - _MOST_PENDING]
        if not sent or group.short or not self._spare_size(group):
            # At once: room may have come back, or the budget is short or small
            # (where others' waits, computed from what Redis holds, are tight).
            outbox.urgent = True
            if not sent:
                for other in self._groups.values():
                    other.not_before = 0.0
        elif not first:
            return  # the first release pending has the driver's attention already
        self._kick()
