"""The Lua scripts of the Redis store, and why each is shaped the way it is.

Every script touches the keys of one topic-partition only (one hash tag, so
one slot: Cluster-safe), and Redis runs a script atomically: the offset fence,
the bucket counters and the running window totals of a partition can never
be seen half-written.

Per partition (``T`` = the key prefix up to and including the hash tag)::

    T:o             next offset to consume (no TTL: it is the fence)
    T:c:<page>      hash "<bucket>:<counter>" -> int, 300 s of buckets per page
    T:u:<bucket>    sorted set user_id -> -requests in that bucket
    T:ws            set of window lengths that have running totals
    T:w:<length>    hash: a, z = the window [a, z) the totals cover; k = "1"
                    when per-user totals are kept too; r b n s c u = counters
    T:wu:<length>   sorted set user_id -> -requests over [a, z)

With tenants (only written when a batch carries any; ``redis_tenants``)::

    T:tx            hash "<next offset>" -> the batch's tenant counts (JSON),
                    the outbox the tenant shards are fed from

User counts are negated so that ``ZRANGE 0 k-1`` lists the most requests
first and breaks ties by user id ascending (byte order, which is code point
order for UTF-8): the order ``store.top_k`` gives.

The running totals are what makes a tick cheap: a reader reads a window's
totals and its top users from ``T:w`` / ``T:wu`` instead of summing every
bucket of every user at every tick. The apply script adds each batch to the
totals of every window that contains the batch's bucket; a reader moves a
window (``_POSITION``), by adding the buckets that entered and subtracting
those that left, or by summing it again from the buckets when it moved far
or backwards. A bucket is subtracted with what it holds at that moment, which
is what was added for it (its content when it entered plus every batch
applied while it was inside), so the totals stay exact.
"""

from __future__ import annotations

# KEYS[1] = offset key, KEYS[2] = window registry (T:ws), KEYS[3] = the
# tenant outbox (T:tx), then one counter page key per page of the batch.
# ARGV: expected offset ("" = none), next offset, counter ttl, user ttl,
# partition key prefix T (for bucket and window keys, all in the same slot),
# the outbox entries already forwarded (offsets, space-separated: deleted
# first), the batch's tenant counts for the outbox ("" = none), then per
# page: n, n x (field, increment), then the page's users as one JSON object
# {"<bucket>": {"<user_id>": requests}} ("" = none). One argument for all the
# users of a page: redis-py encodes each argument in Python, and a batch can
# name thousands of users; orjson and cjson handle any user id.
# Returns {1, next} when applied, {0, stored offset} when fenced, and
# {2, stored offset, pending entries flat} when the outbox still holds an
# entry not forwarded: nothing is written then (redis_tenants says why).
APPLY = """
local call, sub, tonumber = redis.call, string.sub, tonumber
for done in string.gmatch(ARGV[6], '%S+') do call('HDEL', KEYS[3], done) end
local stored = call('GET', KEYS[1])
local expected = ARGV[1]
if (stored == false and expected ~= '') or (stored ~= false and stored ~= expected) then
  return {0, stored}
end
if call('EXISTS', KEYS[3]) == 1 then return {2, stored, call('HGETALL', KEYS[3])} end
local ttl_c, ttl_u, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
-- the running windows of this partition: {totals key, a, z, user totals key or false}
local wins = {}
for _, len in ipairs(call('SMEMBERS', KEYS[2])) do
  local key = prefix .. 'w:' .. len
  local st = call('HMGET', key, 'a', 'z', 'k')
  if st[1] then
    local user_key = st[3] == '1' and (prefix .. 'wu:' .. len)
    wins[#wins + 1] = {key, tonumber(st[1]), tonumber(st[2]), user_key}
  end
end
local touched = {}
local a = 8
for k = 4, #KEYS do
  local n = tonumber(ARGV[a]); a = a + 1
  for _ = 1, n do
    local field, inc = ARGV[a], ARGV[a + 1]; a = a + 2
    call('HINCRBY', KEYS[k], field, inc)
    if #wins > 0 then
      local b = tonumber(sub(field, 1, -3))
      for _, w in ipairs(wins) do
        if b >= w[2] and b < w[3] then call('HINCRBY', w[1], sub(field, -1), inc) end
      end
    end
  end
  if n > 0 then call('EXPIRE', KEYS[k], ttl_c) end
  local users = ARGV[a]; a = a + 1
  if users ~= '' then
    for bucket, counts in pairs(cjson.decode(users)) do
      local b = tonumber(bucket)
      local into = {}
      for _, w in ipairs(wins) do
        if w[4] and b >= w[2] and b < w[3] then into[#into + 1] = w[4]; touched[w[4]] = true end
      end
      local key = prefix .. 'u:' .. bucket
      for user, count in pairs(counts) do
        call('ZINCRBY', key, -count, user)
        for _, wk in ipairs(into) do call('ZINCRBY', wk, -count, user) end
      end
      call('EXPIRE', key, ttl_u)
    end
  end
end
if ARGV[7] ~= '' then
  call('HSET', KEYS[3], ARGV[2], ARGV[7])
  call('EXPIRE', KEYS[3], ttl_c)
end
-- a total created here (its window was empty) gets the TTL a reader would
-- give it, so it cannot outlive its window's bounds for ever
for wk in pairs(touched) do
  if call('TTL', wk) < 0 then call('EXPIRE', wk, ttl_u) end
end
call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
"""

# How a running window, described by the hash wkey (a, z = [a, z) covered;
# k = "1" when per-user totals are kept), gets to [start, stop): forward by
# at most 120 s in place (shift out the buckets that left, shift in those
# that entered); anything else (no state yet, a jump, a move backwards,
# per-user totals asked of a window that kept none) from nothing (clear,
# then shift in the whole window): the buckets that would be subtracted may
# have expired by then, and subtracting nothing would leave their counts in
# the totals. A bucket shifted out takes with it what it holds then, which
# is what was added for it while it was inside, so the totals stay exact.
# Needs the locals call and ttl, and KEYS[1] = the set of window lengths.
# Shared by the partitions' windows (POSITION) and the tenant shards'
# (redis_tenant_scripts.WINDOWS); returns whether per-user totals are kept.
REPOSITION = """
local function reposition(wkey, start, stop, want_users, shift, clear)
  local st = call('HMGET', wkey, 'a', 'z', 'k')
  local a, z = tonumber(st[1]), tonumber(st[2])
  local users = want_users or st[3] == '1'
  if a ~= start or z ~= stop or (users and st[3] ~= '1') then
    local in_place = a ~= nil and (st[3] == '1') == users
      and start >= a and start - a <= 120 and stop >= z and stop - z <= 120
    if in_place then
      -- both windows have the same length; short ones may not overlap
      shift(a, math.min(start, z), -1, users)
      shift(math.max(z, start), stop, 1, users)
    else
      clear()
      shift(start, stop, 1, users)
    end
    call('HSET', wkey, 'a', start, 'z', stop, 'k', users and '1' or '0')
    call('SADD', KEYS[1], stop - start)
    call('EXPIRE', KEYS[1], ttl)
  end
  return users
end
"""

# Moves one partition's running windows, then answers from their totals.
# KEYS[1] = T:ws, then per window T:w:<length>, T:wu:<length>.
# ARGV: prefix T, state ttl, then per window: start, end, users ("1": keep
# per-user totals), what to answer, its argument ("" when none):
#   "c"          the 6 counters (r b n s c u) as decimal strings;
#   "t", k       the first k of the user totals, flat (user, -requests, ...);
#   "a"          every user total as one JSON object {"<user_id>": requests};
#   "p", json    how many of the users in a JSON list have a total here;
#   "n"          nothing (a prepare).
# Returns one answer per window. Several windows per call because a tick
# reads several: the fixed cost of a call, on both sides, is most of a read.
# Buckets are found by their start second, not by a bucket width: whatever
# width wrote them (a reader of another config, a changed tick) is read.
# Windows move by REPOSITION.
POSITION = (
    """
local call, tonumber, sub, unpack = redis.call, tonumber, string.sub, unpack
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
"""
    + REPOSITION
    + """
local wkey, ukey
-- the counters of buckets starting in [lo, hi), from the 300 s pages holding them
local function counters(lo, hi, sign)
  local page = lo - (lo % 300)
  while page < hi do
    local fields = call('HGETALL', prefix .. 'c:' .. page)
    for i = 1, #fields, 2 do
      local bucket = sub(fields[i], 1, -3)
      local b = tonumber(bucket)
      if b >= lo and b < hi then
        local v = fields[i + 1]
        if sign < 0 then v = '-' .. v end
        call('HINCRBY', wkey, sub(fields[i], -1), v)
      end
    end
    page = page + 300
  end
end
-- the user counts of buckets starting in [lo, hi) into dest, a union in C;
-- a second with no bucket is an empty set to ZUNIONSTORE
local function user_counts(lo, hi, sign, dest)
  local s = lo
  while s < hi do
    local keys = {dest}
    while s < hi and #keys <= 1000 do
      keys[#keys + 1] = prefix .. 'u:' .. s
      s = s + 1
    end
    local args = {dest, #keys}
    for _, key in ipairs(keys) do args[#args + 1] = key end
    args[#args + 1] = 'WEIGHTS'
    args[#args + 1] = 1
    for _ = 2, #keys do args[#args + 1] = sign end
    call('ZUNIONSTORE', unpack(args))
  end
end
local function shift(lo, hi, sign, users)
  counters(lo, hi, sign)
  if users then
    user_counts(lo, hi, sign, ukey)
    if sign < 0 then call('ZREMRANGEBYSCORE', ukey, 0, '+inf') end
  end
end
local function position(start, stop, want_users)
  local function clear() call('DEL', wkey, ukey) end
  local users = reposition(wkey, start, stop, want_users, shift, clear)
  call('EXPIRE', wkey, ttl)
  if users then call('EXPIRE', ukey, ttl) end
end
local function answer(want, arg)
  if want == 'c' then
    return call('HMGET', wkey, 'r', 'b', 'n', 's', 'c', 'u')
  elseif want == 't' then
    return call('ZRANGE', ukey, 0, tonumber(arg) - 1, 'WITHSCORES')
  elseif want == 'a' then
    local flat = call('ZRANGE', ukey, 0, -1, 'WITHSCORES')
    local totals = {}
    for i = 1, #flat, 2 do totals[flat[i]] = -tonumber(flat[i + 1]) end
    -- an empty Lua table is encoded as {} (an object): fine for an empty window
    return cjson.encode(totals)
  elseif want == 'p' then
    if call('EXISTS', ukey) == 0 then return 0 end
    local n = 0
    for _, score in ipairs(call('ZMSCORE', ukey, unpack(cjson.decode(arg)))) do
      if score then n = n + 1 end
    end
    return n
  end
  return 0
end
local out = {}
local i = 3
for w = 2, #KEYS, 2 do
  wkey, ukey = KEYS[w], KEYS[w + 1]
  position(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2] == '1')
  out[#out + 1] = answer(ARGV[i + 3], ARGV[i + 4])
  i = i + 5
end
return out
"""
)
