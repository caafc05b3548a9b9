"""Rate limits shared by several processes through Redis: `RedisLimiter`.

Bybit's per-UID limits belong to the account, not to a process.  When
several engines (processes, hosts) trade on one account, each one's
`LocalLimiter` sees only its own requests, and together they go over the
limit.  `RedisLimiter` keeps the same permits as `LocalLimiter`, but in
Redis, where every engine of the account takes them:

* for each (account, endpoint) a sorted set of permit ids, each scored by the
  time it comes back: its *lease* expiry while the request is in flight, and
  its answer's time plus the window plus `WINDOW_MARGIN` once released;
* for each IP scope (an egress IP: by default the host name) the same for
  the 600-per-5-seconds IP limit, shared by every account on that IP;
* for each (account, endpoint) the time until which the server said the
  window is used up (``X-Bapi-Limit-Status: 0``).

One Lua script takes a permit of both levels atomically, or answers how long
to wait until the earliest one comes back; another gives a permit back.  The
scripts read the time from Redis (``TIME``), never from a client, so engines
whose clocks disagree still count in one time line.  A permit whose process
died (SIGKILL, lost network) expires after its lease: *lease* (the longest a
request may be in flight) plus the window plus the margin.

Each Redis permit comes with a permit of this process's own `LocalLimiter`,
which admits at once while Redis is up (this process's requests are part of
the account's): it remembers what this process sent in the last window when
Redis goes away or comes back empty.

Waiting is not polling: a call sleeps until the earliest permit can come back
(a lower bound when that permit is still in flight: it cannot come back
sooner than one window from now), and wakes early when a permit of this
process is given back unused.  Within a process, calls to one endpoint queue
first come, first served, and only the head of the queue asks Redis.

When Redis cannot be reached, `acquire` raises `LimiterUnavailableError`
and nothing is sent (``fallback="closed"``, the default), or limits this
process alone with a `LocalLimiter` (``fallback="local"``), logging one
warning per outage.  Redis is asked again at most every *probe_interval*
seconds, and used again as soon as it answers.

Needs redis-py (``pip install "bybit-async[redis]"``), imported only when a
`RedisLimiter` is made.  Redis 5 or later (scripts replicated by effects,
so that ``TIME`` may precede writes; on 3.2 and 4 the scripts ask for it).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
import math
import socket
import uuid
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from .errors import LimiterUnavailableError
from .ratelimit import LocalLimiter, Permit, RateLimits

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_LEASE", "RedisLimiter", "account_for_api_key"]

_log = logging.getLogger("bybit_async")

#: Seconds a request may be in flight before its permit is taken as lost: the
#: session's default *timeout*.
DEFAULT_LEASE = 10.0

_INSTALL_HINT = 'RedisLimiter needs redis-py: pip install "bybit-async[redis]"'

# All times in the scripts are microseconds of Redis's clock; scores are written
# with %.0f, which prints a double's integer exactly (Lua's default, %.14g, would
# round off the last digits of a 16-digit time).

# KEYS: 1 IP permits, 2 endpoint hold, 3 endpoint permits (absent: no endpoint limit).
# ARGV: 1 permit id ('' only counts), 2 IP limit, 3 IP lease, 4 IP hold,
#       5 endpoint limit, 6 endpoint lease, 7 endpoint hold, 8 key TTL (ms).
# Returns {1, 0} granted, {0, wait} not before wait µs, {2, free} when counting.
_ACQUIRE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local free = math.huge
local function level(key, limit, hold)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))
  local n = redis.call('ZCARD', key)
  if limit - n < free then free = limit - n end
  if n >= limit then
    -- The permit whose return brings the count under the limit.  One still in
    -- flight comes back one hold after its answer, so not before now + hold.
    local nth = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    local back = math.min(tonumber(nth[2]), now + hold) - now
    if back > wait then wait = back end
  end
end
level(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[4]))
if #KEYS > 2 then level(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[7])) end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > now then
  free = 0
  if held - now > wait then wait = held - now end
end
if ARGV[1] == '' then
  if free < 0 then free = 0 end
  return {2, free}
end
if wait > 0 then return {0, math.max(1, math.ceil(wait))} end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
if #KEYS > 2 then
  redis.call('ZADD', KEYS[3], string.format('%.0f', now + tonumber(ARGV[6])), ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return {1, 0}
"""

# KEYS: 1 IP permits, 2 endpoint permits (optional).
# ARGV: 1 permit id, 2 '1' sent / '0' not sent, 3 IP hold, 4 endpoint hold, 5 key TTL (ms).
# A sent permit is (re)scored to come back one hold from now, even if its lease
# had run out meanwhile: the request may still be counted at the server.
_RELEASE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  if ARGV[2] == '1' then
    redis.call('ZADD', key, string.format('%.0f', now + tonumber(ARGV[2 + i])), ARGV[1])
    redis.call('PEXPIRE', key, ARGV[5])
  else
    redis.call('ZREM', key, ARGV[1])
  end
end
return 1
"""

# KEYS: 1 endpoint hold.  ARGV: 1 µs from now until which the endpoint is held.
_HOLD = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ahead = tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ahead > held then
  redis.call('SET', KEYS[1], string.format('%.0f', now + ahead),
             'PX', string.format('%.0f', math.ceil(ahead / 1000) + 1000))
end
return 1
"""


def account_for_api_key(api_key: str) -> str:
    """Return the account name `RedisLimiter` uses for *api_key* when none is given.

    The first 16 hex digits of the key's SHA-256: the key itself never
    reaches Redis or a log.
    """
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _redacted(url: str) -> str:
    """*url* without its password, if it has one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _describe_client(client: Any) -> str:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "?"), kwargs.get("port", "?"), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


def _check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (value >= 0 if zero_ok else value > 0) or math.isinf(value):
        raise ValueError(f"{name} must be {'zero or more' if zero_ok else 'positive'}: {value!r}")
    return float(value)


class _RedisPermit:
    __slots__ = ("_id", "_limiter", "_local", "_path")

    def __init__(self, limiter: RedisLimiter, path: str, permit_id: str, local: Permit) -> None:
        self._limiter: RedisLimiter | None = limiter
        self._path = path
        self._id = permit_id
        self._local = local

    def release(self, sent: bool = True) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            self._local.release(sent)
            limiter._release(self._path, self._id, sent)


class RedisLimiter:
    """A `Limiter` whose permits live in Redis, shared by every process of an account.

    *url_or_client* is a Redis URL (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix://``) or a ``redis.asyncio.Redis`` client;
    a client given here is not closed by `aclose`.

    *account* names the budget: every limiter with the same *account* (and
    *key_prefix*) on one Redis shares the per-endpoint permits, whatever its
    API key, so give the same name to the keys of one Bybit UID.  Without it
    the account is derived from *api_key* (see `account_for_api_key`), or
    from the key of the `BybitSession` the limiter is given to.
    *ip_scope* names the egress IP whose 600-per-5-s budget the limiter
    shares (default: this host's name); give processes behind one NAT the
    same scope.

    *limits* are the limits kept (default `RateLimits()`); *lease* is the
    longest a request can be in flight (the session's *timeout*): a permit
    its process never gives back expires *lease* plus its window plus the
    margin after it was taken.  *fallback* is what happens while Redis cannot
    be reached: ``"closed"`` raises `LimiterUnavailableError` so that
    nothing is sent, ``"local"`` limits this process alone with a
    `LocalLimiter`.  Redis is asked again at most every *probe_interval*
    seconds after a failure; each Redis command may take *redis_timeout*
    seconds (URLs only; a client keeps its own settings).

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
        key_prefix: str = "bybit-async",
        probe_interval: float = 1.0,
        redis_timeout: float = 1.0,
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
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
        lease = DEFAULT_LEASE if lease is None else _check_seconds("lease", lease)
        probe_interval = _check_seconds("probe_interval", probe_interval, zero_ok=True)
        redis_timeout = _check_seconds("redis_timeout", redis_timeout)

        self._limits = limits = RateLimits() if limits is None else limits
        if isinstance(url_or_client, str):
            self._where = _redacted(url_or_client)
            # One immediate retry on a new connection: a pooled connection may have
            # died with a Redis restart.  Both scripts are idempotent for one id.
            self._redis: Redis = Redis.from_url(
                url_or_client,
                socket_timeout=redis_timeout,
                socket_connect_timeout=redis_timeout,
                retry=Retry(NoBackoff(), 1),
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
        self._acquire_script: AsyncScript = self._redis.register_script(_ACQUIRE)
        self._release_script: AsyncScript = self._redis.register_script(_RELEASE)
        self._hold_script: AsyncScript = self._redis.register_script(_HOLD)

        self._account = account
        # The api_key-derived account, when the account was derived rather than named.
        self._derived = account is None
        if account is None and api_key is not None:
            self._account = account_for_api_key(api_key)
        self._ip_scope = ip_scope if ip_scope is not None else socket.gethostname()
        self._prefix = key_prefix
        self._fallback = fallback
        self._probe_interval = probe_interval
        self._lease = lease

        us = 1_000_000
        self._ip_hold_us = round((limits.ip_window + limits.margin) * us)
        self._ep_hold_us = round((limits.window + limits.margin) * us)
        self._ip_lease_us = round(lease * us) + self._ip_hold_us
        self._ep_lease_us = round(lease * us) + self._ep_hold_us
        longest = max(self._ip_lease_us, self._ep_lease_us)
        self._ttl_ms = str(math.ceil(longest / 1000) + 1000)

        self._token = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        # Per path: (KEYS of the acquire script, ARGV after the id, KEYS of the release script).
        self._plans: dict[tuple[str, bool], tuple[list[str], list[str], list[str], list[str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._sleepers: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # This process's own permits, taken with every Redis permit: the fallback
        # while Redis is down (fallback="local"), aware of what was sent before.
        self._local = LocalLimiter(limits)
        # Set while Redis is taken as down: why, and the loop time to ask it again.
        self._down: str | None = None
        self._probe_at = 0.0
        self._closed = False

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
    def redis_ok(self) -> bool:
        """False from a failure to reach Redis until it answers again."""
        return self._down is None

    def __repr__(self) -> str:
        """Show where Redis is (without a password) and the account."""
        return (
            f"<RedisLimiter {self._where} account={self._account!r} "
            f"ip_scope={self._ip_scope!r} fallback={self._fallback!r}>"
        )

    # -- the Limiter interface ---------------------------------------------------

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

    async def acquire(self, path: str, *, signed: bool = True) -> Permit:
        """Wait for a permit of budget *path* and of the IP limit, taken together.

        A request that is not *signed* takes an IP permit only.

        Raises `LimiterUnavailableError` when Redis cannot be reached and
        *fallback* is ``"closed"``.
        """
        if self._account is None:
            raise RuntimeError(
                "RedisLimiter has no account: pass account= or api_key=, "
                "or give it to a BybitSession"
            )
        if self._closed:
            raise RuntimeError("this RedisLimiter is closed")
        loop = asyncio.get_running_loop()
        if self._down is not None and loop.time() < self._probe_at and self._fallback == "closed":
            raise self._unavailable(path)
        if self._down is None or loop.time() >= self._probe_at:
            lock = self._locks.get(path)
            if lock is None:
                lock = self._locks[path] = asyncio.Lock()
            async with lock:
                permit_id = await self._take(path, loop, signed)
            if permit_id is not None:
                # This process's own permit too: it admits at once while Redis is
                # up (this process's use is part of the account's), and it carries
                # this process's recent requests across a switch to the fallback
                # and back, or a Redis restarted empty.
                try:
                    local = await self._local.acquire(path, signed=signed)
                except BaseException:
                    self._release(path, permit_id, sent=False)
                    raise
                return _RedisPermit(self, path, permit_id, local)
        if self._fallback == "local":
            return await self._local.acquire(path, signed=signed)
        raise self._unavailable(path)

    def _unavailable(self, path: str) -> LimiterUnavailableError:
        return LimiterUnavailableError(
            f"not sent: {self._down}; nothing is sent while the shared count is unknown",
            method="",
            path=path,
        )

    def observe(
        self, path: str, remaining: int | None, reset_in: float | None, limit: int | None = None
    ) -> None:
        """Hold *path* for every process of the account until the reported reset.

        Written to Redis in the background; a process that cannot reach Redis
        holds the endpoint in its local fallback only.  A learned *limit* is
        this process's only.
        """
        self._local.observe(path, remaining, reset_in, limit)
        if remaining == 0 and reset_in is not None and reset_in > 0 and self._account:
            ahead = round((reset_in + self._limits.margin) * 1_000_000)
            self._spawn(self._write_hold(path, ahead))

    # -- beyond the interface ----------------------------------------------------

    async def available(self, path: str) -> int:
        """Return how many requests to *path* the account could send now without waiting.

        Counts the permits in Redis of every process; raises
        `LimiterUnavailableError` when Redis cannot be reached.
        """
        if self._account is None:
            raise RuntimeError("RedisLimiter has no account")
        keys, args, _, _ = self._plan(path)
        try:
            reply = await self._acquire_script(keys=keys, args=["", *args])
        except self._errors as exc:
            raise LimiterUnavailableError(
                f"Redis at {self._where} unreachable: {self._cause(exc)}", method="", path=path
            ) from exc
        return int(cast("Sequence[int]", reply)[1])

    async def flush(self) -> None:
        """Wait until every release and hold started so far has reached Redis (or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Flush, then close the connections to Redis if this limiter opened them."""
        await self.flush()
        self._closed = True
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisLimiter:
        """Return the limiter; it connects on first use."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the limiter (`aclose`)."""
        await self.aclose()

    # -- internals -------------------------------------------------------------

    def _plan(
        self, path: str, signed: bool = True
    ) -> tuple[list[str], list[str], list[str], list[str]]:
        plan = self._plans.get((path, signed))
        if plan is None:
            limits = self._limits
            base = f"{self._prefix}:acct:{self._account}"
            ip_key = f"{self._prefix}:ip:{self._ip_scope}"
            keys = [ip_key, f"{base}:hold:{path}"]
            release_keys = [ip_key]
            limit = self._local.limit_in_force(path).limit if signed else None
            if limit is not None:
                keys.append(f"{base}:ep:{path}")
                release_keys.append(keys[-1])
            args = [
                str(limits.ip_limit),
                str(self._ip_lease_us),
                str(self._ip_hold_us),
                str(limit or 0),
                str(self._ep_lease_us),
                str(self._ep_hold_us),
                self._ttl_ms,
            ]
            release_args = [str(self._ip_hold_us), str(self._ep_hold_us), self._ttl_ms]
            plan = self._plans[(path, signed)] = (keys, args, release_keys, release_args)
        return plan

    async def _take(
        self, path: str, loop: asyncio.AbstractEventLoop, signed: bool = True
    ) -> str | None:
        """Take a permit in Redis, waiting as long as needed: its id, or None if Redis is down."""
        keys, args, _, _ = self._plan(path, signed)
        while True:
            if self._down is not None and loop.time() < self._probe_at:
                return None  # found down by a call ahead of this one
            permit_id = f"{self._token}:{next(self._ids)}"
            # In a task of its own, shielded: a cancelled call must not cut a
            # script off halfway through redis-py (which may then retry it).
            call = loop.create_task(self._acquire_script(keys=keys, args=[permit_id, *args]))
            try:
                reply = await asyncio.shield(call)
            except asyncio.CancelledError:
                # The script may still run: give back what it may take.
                self._tasks.add(call)
                call.add_done_callback(functools.partial(self._orphaned, path, permit_id))
                raise
            except self._errors as exc:
                self._went_down(exc, loop)
                return None
            if self._down is not None:
                self._came_back()
            granted, value = cast("Sequence[int]", reply)
            if granted == 1:
                return permit_id
            await self._pause(value / 1_000_000, loop)

    def _orphaned(self, path: str, permit_id: str, call: asyncio.Task[Any]) -> None:
        """The script call of a cancelled acquire is over: release whatever it took."""
        self._tasks.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: a failure here concerns no caller
        self._release(path, permit_id, sent=False)

    async def _pause(self, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        """Sleep *seconds*, or until a permit of this process is given back unused."""
        wake: asyncio.Future[None] = loop.create_future()
        self._sleepers.add(wake)
        timer = loop.call_later(seconds, _resolve, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._sleepers.discard(wake)

    def _wake_all(self) -> None:
        for wake in self._sleepers:
            _resolve(wake)

    def _release(self, path: str, permit_id: str, sent: bool) -> None:
        self._spawn(self._write_release(path, permit_id, sent))

    async def _write_release(self, path: str, permit_id: str, sent: bool) -> None:
        _, _, keys, args = self._plan(path)
        try:
            await self._release_script(keys=keys, args=[permit_id, "1" if sent else "0", *args])
        except self._errors as exc:
            # The lease takes the permit back.
            _log.debug("RedisLimiter: release of %s not written: %s", path, self._cause(exc))
            return
        if not sent:
            self._wake_all()

    async def _write_hold(self, path: str, ahead_us: int) -> None:
        keys, _, _, _ = self._plan(path)
        try:
            await self._hold_script(keys=[keys[1]], args=[str(ahead_us)])
        except self._errors as exc:
            _log.debug("RedisLimiter: hold of %s not written: %s", path, self._cause(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop any more: the lease takes the permit back
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cause(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}".replace(self._password(), "***")

    def _password(self) -> str:
        kwargs = getattr(self._redis.connection_pool, "connection_kwargs", {})
        password = kwargs.get("password")
        return password if isinstance(password, str) and password else "\0"

    def _went_down(self, exc: BaseException, loop: asyncio.AbstractEventLoop) -> None:
        first = self._down is None
        self._down = f"Redis at {self._where} unreachable: {self._cause(exc)}"
        self._probe_at = loop.time() + self._probe_interval
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
