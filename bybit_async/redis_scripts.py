"""The Lua script behind `bybit_async.redis_limiter.RedisLimiter`: one call per exchange.

A process sends Redis one *exchange* at a time: every release, hold, learned
limit and request for permits that came up since the last one, as typed
records in ARGV, applied in order in one atomic script call.  So a batch of
calls that go together costs one round trip, however many they are.

All times are microseconds of Redis's clock (``TIME``), never a client's, so
that engines whose clocks disagree count in one time line.  Scores are
written with ``%.0f``, which prints a double's integer exactly (Lua's default,
``%.14g``, would round off the last digits of a 16-digit time).

KEYS[1] is the *epoch* key: an id and the time it was written, set by the
first exchange that finds it missing.  A Redis restarted empty, flushed, or
another server answers with another epoch, which is how an engine learns
that the counts it relied on are gone.

ARGV: 1 a new epoch id (used only if there is none), 2 key TTL (ms),
3 IP limit, 4 IP lease, 5 IP hold, 6 permit id prefix; then records:

* ``r ipk epk sent ephold list``: release the permits in *list*, pairs of
  ``seq ago`` separated by spaces: each rescored to come back one hold after
  its answer, *ago* µs before now, if *sent* is ``1`` (even if its lease ran
  out: the request may still be counted at the server), removed otherwise;
* ``x ipk epk first count``: remove permits *first* .. *first + count - 1*,
  which an exchange whose answer never arrived may have granted;
* ``n ipk holdk epk old new ephold eplease limit ago``: permit *old* was
  sent (its answer *ago* µs before now) and a call of the same process waits:
  *old*'s IP permit is released, and its endpoint slot passes to permit *new*,
  which the process uses one hold after that answer, with a new IP permit.
  Refused (and *old* released) when the endpoint is held, the IP level is
  full or the endpoint is over *limit*;
* ``h holdk ahead``: hold the endpoint for every process until *ahead* from now;
* ``l hashk field limit``: the account's learned limit for budget key *field*;
* ``g ipk holdk epk hashk field limit source eplease ephold wanted first spare``:
  grant up to *wanted* permits, ids *first* onwards, of the IP level and (if
  *epk* is not 0) the endpoint level.  *source* is ``c`` (configured: wins),
  ``t`` (table: a learned limit wins) or ``u`` (unknown: 1 until learned).
  The last *spare* of the *wanted* are for calls to come: granted only when
  all the others are, and only while each level stays at least half free
  after the grant, so that spare permits never stand in another engine's way
  when a budget runs short.

Key arguments are 1-based indexes into KEYS (0: none).  Returns the epoch,
its age, then 1 or 0 for each ``n`` record (renewed or not), then for each
``g`` record: granted, wait (µs until a permit can come back, when fewer
than the permits not spare were granted), the limit in force, its source,
the permits still free after the grant, and the wait until as many are
free as were not granted.
"""

from __future__ import annotations

__all__ = ["EXCHANGE"]

#: The one script: see the module docstring for its records.
EXCHANGE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.0f', x) end
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1] .. ':' .. fmt(now)
  redis.call('SET', KEYS[1], epoch)
end
local born = tonumber(string.match(epoch, ':(%d+)$')) or now
local ttl = ARGV[2]
local ip_limit = tonumber(ARGV[3])
local ip_lease = tonumber(ARGV[4])
local ip_hold = tonumber(ARGV[5])
local token = ARGV[6]
local out = {epoch, fmt(math.max(0, now - born))}
local cleaned = {}
local function count(key)
  if not cleaned[key] then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
    cleaned[key] = true
  end
  return redis.call('ZCARD', key)
end
-- Microseconds until *k* more permits of *key* are free under *limit*; one still
-- in flight comes back one hold after its answer, so not before now + hold.
local function back(key, limit, hold, k)
  local n = redis.call('ZCARD', key)
  local j = math.min(n, n - limit + k)
  if j <= 0 then return 0 end
  local nth = redis.call('ZRANGE', key, j - 1, j - 1, 'WITHSCORES')
  return math.min(tonumber(nth[2]), now + hold) - now
end
local function put(key, member, sent, hold)
  if sent then
    redis.call('ZADD', key, fmt(now + hold), member)
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('ZREM', key, member)
  end
end
-- Many members in few calls, in slices that keep within Lua's stack.
local function zadd(key, pairs)
  for s = 1, #pairs, 1000 do
    redis.call('ZADD', key, unpack(pairs, s, math.min(s + 999, #pairs)))
  end
  redis.call('PEXPIRE', key, ttl)
end
local function zrem(key, members)
  for s = 1, #members, 1000 do
    redis.call('ZREM', key, unpack(members, s, math.min(s + 999, #members)))
  end
end
local i = 7
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'r' then
    local ipk = KEYS[tonumber(ARGV[i + 1])]
    local ek = tonumber(ARGV[i + 2])
    local sent = ARGV[i + 3] == '1'
    local ep_hold = tonumber(ARGV[i + 4])
    local ip_pairs, ep_pairs, members = {}, {}, {}
    for seq, ago in string.gmatch(ARGV[i + 5], '(%d+) (%d+)') do
      local member = token .. ':' .. seq
      if sent then
        ago = tonumber(ago)
        ip_pairs[#ip_pairs + 1] = fmt(now + ip_hold - ago)
        ip_pairs[#ip_pairs + 1] = member
        ep_pairs[#ep_pairs + 1] = fmt(now + ep_hold - ago)
        ep_pairs[#ep_pairs + 1] = member
      else
        members[#members + 1] = member
      end
    end
    if sent then
      if #ip_pairs > 0 then
        zadd(ipk, ip_pairs)
        if ek > 0 then zadd(KEYS[ek], ep_pairs) end
      end
    else
      zrem(ipk, members)
      if ek > 0 then zrem(KEYS[ek], members) end
    end
    i = i + 6
  elseif kind == 'x' then
    local ek = tonumber(ARGV[i + 2])
    local first = tonumber(ARGV[i + 3])
    for s = first, first + tonumber(ARGV[i + 4]) - 1 do
      local member = token .. ':' .. s
      redis.call('ZREM', KEYS[tonumber(ARGV[i + 1])], member)
      if ek > 0 then redis.call('ZREM', KEYS[ek], member) end
    end
    i = i + 5
  elseif kind == 'n' then
    local ipk = KEYS[tonumber(ARGV[i + 1])]
    local hk = tonumber(ARGV[i + 2])
    local epk = KEYS[tonumber(ARGV[i + 3])]
    local old = token .. ':' .. ARGV[i + 4]
    local new = token .. ':' .. ARGV[i + 5]
    local ep_hold = tonumber(ARGV[i + 6])
    local ep_lease = tonumber(ARGV[i + 7])
    local ago = tonumber(ARGV[i + 9])
    put(ipk, old, true, ip_hold - ago)
    local held = 0
    if hk > 0 then held = tonumber(redis.call('GET', KEYS[hk]) or '0') end
    local renewed = 0
    if held <= now and count(ipk) < ip_limit and count(epk) <= tonumber(ARGV[i + 8]) then
      -- The slot passes from old to new: the endpoint count does not change.
      redis.call('ZREM', epk, old)
      redis.call('ZADD', epk, fmt(now - ago + ep_hold + ep_lease), new)
      redis.call('ZADD', ipk, fmt(now - ago + ep_hold + ip_lease), new)
      redis.call('PEXPIRE', epk, ttl)
      renewed = 1
    else
      put(epk, old, true, ep_hold - ago)
    end
    out[#out + 1] = renewed
    i = i + 10
  elseif kind == 'h' then
    local ahead = tonumber(ARGV[i + 2])
    local key = KEYS[tonumber(ARGV[i + 1])]
    local held = tonumber(redis.call('GET', key) or '0')
    if now + ahead > held then
      redis.call('SET', key, fmt(now + ahead), 'PX', fmt(math.ceil(ahead / 1000) + 1000))
    end
    i = i + 3
  elseif kind == 'l' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
    redis.call('PEXPIRE', key, 7 * 86400 * 1000)
    i = i + 4
  else -- 'g'
    local ipk = KEYS[tonumber(ARGV[i + 1])]
    local hk = tonumber(ARGV[i + 2])
    local ek = tonumber(ARGV[i + 3])
    local limit = tonumber(ARGV[i + 6])
    local source = ARGV[i + 7]
    local ep_lease = tonumber(ARGV[i + 8])
    local ep_hold = tonumber(ARGV[i + 9])
    local wanted = tonumber(ARGV[i + 10])
    local first = tonumber(ARGV[i + 11])
    local spare = tonumber(ARGV[i + 12])
    local need = wanted - spare
    local free = ip_limit - count(ipk)
    local epk = nil
    if ek > 0 then
      epk = KEYS[ek]
      if source ~= 'c' then
        local learned = redis.call('HGET', KEYS[tonumber(ARGV[i + 4])], ARGV[i + 5])
        if learned then
          limit = tonumber(learned)
          source = 'l'
        end
      end
      free = math.min(free, limit - count(epk))
    end
    local wait = 0
    if hk > 0 then
      local held = tonumber(redis.call('GET', KEYS[hk]) or '0')
      if held > now then
        free = 0
        wait = held - now
      end
    end
    local granted = math.max(0, math.min(need, free))
    if spare > 0 and granted == need then
      local room = math.min(free, ip_limit - math.floor(ip_limit / 2) - count(ipk)) - granted
      if epk then room = math.min(room, limit - math.floor(limit / 2) - count(epk) - granted) end
      granted = granted + math.max(0, math.min(spare, room))
    end
    if granted > 0 then
      local ip_args, ep_args = {}, {}
      for s = first, first + granted - 1 do
        local member = token .. ':' .. s
        ip_args[#ip_args + 1] = fmt(now + ip_lease)
        ip_args[#ip_args + 1] = member
        ep_args[#ep_args + 1] = fmt(now + ep_lease)
        ep_args[#ep_args + 1] = member
      end
      redis.call('ZADD', ipk, unpack(ip_args))
      redis.call('PEXPIRE', ipk, ttl)
      if epk then
        redis.call('ZADD', epk, unpack(ep_args))
        redis.call('PEXPIRE', epk, ttl)
      end
    end
    local all = wait
    if granted < need and wait == 0 then
      local short = need - granted
      wait = back(ipk, ip_limit, ip_hold, 1)
      all = back(ipk, ip_limit, ip_hold, short)
      if epk then
        wait = math.max(wait, back(epk, limit, ep_hold, 1))
        all = math.max(all, back(epk, limit, ep_hold, short))
      end
      wait = math.max(1, math.ceil(wait))
      all = math.max(wait, math.ceil(all))
    end
    out[#out + 1] = granted
    out[#out + 1] = fmt(wait)
    out[#out + 1] = ek > 0 and limit or 0
    out[#out + 1] = source
    out[#out + 1] = math.max(0, free - granted)
    out[#out + 1] = fmt(all)
    i = i + 13
  end
end
return out
"""
