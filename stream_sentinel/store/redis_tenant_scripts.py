"""The Lua of the tenant shards (``redis_tenants``): forward, and windows.

Tenant counts are kept by tenant, not by partition: a tenant's requests are
spread over every partition (producers key by user id), so ranking them where
they were written means merging every partition at every tick. Instead each
tenant lives in one of ``SHARDS`` shards (by the hash of its name), one hash
tag each (``S`` = the shard's key prefix up to and including the tag)::

    S:f             hash "<topic>:<partition>" -> the last offset forwarded
                    from that partition (no TTL: it is the fence)
    S:b             sorted set of the buckets held (member = score = start)
    S:tc:<bucket>   hash "<counter>:<tenant>" -> int (the six counters)
    S:tr:<bucket>   sorted set tenant -> -requests in that bucket
    S:th:<bucket>   set of the hashes of the tenants with users in it
    S:tu:<bucket>:<h>  sorted set user_id -> -requests of the tenant whose
                    name hashes to <h> (blake2b, 8 bytes hex) in that bucket
    S:ws            set of window lengths that have running totals
    S:w:<length>    hash: a, z = the window [a, z) the totals cover; k = "1"
                    when per-tenant request and user totals are kept too
    S:wc:<length>   hash "<counter>:<tenant>" -> int over [a, z)
    S:wr:<length>   sorted set tenant -> -requests over [a, z)
    S:wh:<length>   set of the hashes with a user total set over [a, z)
    S:wu:<length>:<h>  sorted set user_id -> -requests of that tenant over [a, z)

A tick asks each shard for its first k tenants of the running window (one
ZRANGE), takes the first k of those (shards hold disjoint tenants, so that
is exact), then asks the chosen tenants' shards for their counters and
first users (HMGET and ZRANGE). Both rounds are one call per shard, whatever
the number of partitions or tenants; ``prepare`` moves the windows ahead of
the tick, as it does the partitions'.

Counts reach a shard from the partition's outbox (``redis_scripts.APPLY``
writes it in the same atomic script as the partition's counters and offset),
fenced per partition by offset: see ``redis_tenants``.
"""

from __future__ import annotations

from .redis_scripts import REPOSITION

# KEYS[1] = S:f, KEYS[2] = S:b, KEYS[3] = S:ws.
# ARGV: prefix S, partition, offset, counter ttl, user ttl, then one JSON
# object {"<bucket>": [[tenant, its hash, r, b, n, s, c, u, {"<user_id>":
# requests}]]} with the counters as decimal strings (cjson's numbers are
# doubles; a cost sum must stay exact). Adds to the buckets and to every
# running window holding them. Returns 1 when applied, 0 when this
# partition's offset was already forwarded here.
FORWARD = """
local call, tonumber = redis.call, tonumber
local prefix, part, offset = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl_c, ttl_u = tonumber(ARGV[4]), tonumber(ARGV[5])
local done = call('HGET', KEYS[1], part)
if done and tonumber(done) >= offset then return 0 end
-- the running windows: {length, a, z, with users}
local wins = {}
for _, len in ipairs(call('SMEMBERS', KEYS[3])) do
  local st = call('HMGET', prefix .. 'w:' .. len, 'a', 'z', 'k')
  if st[1] then wins[#wins + 1] = {len, tonumber(st[1]), tonumber(st[2]), st[3] == '1'} end
end
local names = {'r', 'b', 'n', 's', 'c', 'u'}
local newest = nil
for bucket, list in pairs(cjson.decode(ARGV[6])) do
  local b = tonumber(bucket)
  if newest == nil or b > newest then newest = b end
  call('ZADD', KEYS[2], b, bucket)
  local into = {}
  for _, w in ipairs(wins) do
    if b >= w[2] and b < w[3] then into[#into + 1] = w end
  end
  local ckey, rkey = prefix .. 'tc:' .. bucket, prefix .. 'tr:' .. bucket
  local hkey = prefix .. 'th:' .. bucket
  local ranked = false
  for _, t in ipairs(list) do
    local name, h = t[1], t[2]
    for i = 1, 6 do
      local v = t[i + 2]
      if v ~= '0' then
        local field = names[i] .. ':' .. name
        call('HINCRBY', ckey, field, v)
        for _, w in ipairs(into) do call('HINCRBY', prefix .. 'wc:' .. w[1], field, v) end
      end
    end
    if t[3] ~= '0' then
      ranked = true
      call('ZINCRBY', rkey, '-' .. t[3], name)
      local ukey = prefix .. 'tu:' .. bucket .. ':' .. h
      for user, count in pairs(t[9]) do call('ZINCRBY', ukey, -count, user) end
      call('EXPIRE', ukey, ttl_u)
      call('SADD', hkey, h)
      for _, w in ipairs(into) do
        if w[4] then
          call('ZINCRBY', prefix .. 'wr:' .. w[1], '-' .. t[3], name)
          local wu = prefix .. 'wu:' .. w[1] .. ':' .. h
          for user, count in pairs(t[9]) do call('ZINCRBY', wu, -count, user) end
          call('EXPIRE', wu, ttl_u)
          call('SADD', prefix .. 'wh:' .. w[1], h)
        end
      end
    end
  end
  call('EXPIRE', ckey, ttl_c)
  if ranked then call('EXPIRE', rkey, ttl_u); call('EXPIRE', hkey, ttl_u) end
end
if newest then
  -- buckets whose counters have expired are no longer listed
  call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (newest - ttl_c))
  call('EXPIRE', KEYS[2], ttl_c)
end
call('HSET', KEYS[1], part, ARGV[3])
return 1
"""

# Moves a shard's running windows, then answers from their totals.
# KEYS[1] = S:ws, KEYS[2] = S:b.
# ARGV: prefix S, window ttl, what to answer, its argument, how many
# windows, then per window: start, end, users ("1": keep per-tenant request
# and user totals). What to answer:
#   "n"          nothing (a prepare);
#   "r", k       the first k tenants by requests of the first window, flat
#                (tenant, -requests);
#   "d", n, json for each [tenant, its hash] of the JSON list: {its six
#                counters over the first window, over the second (decimal
#                strings or false), its first n users of the first window,
#                flat (user, -requests)}.
# Moves by redis_scripts.REPOSITION, as the partitions' windows do.
# Counters are summed in Lua in two limbs of 9 digits (exact past 2^53), and
# added to the totals once per field, not once per bucket and field.
WINDOWS = (
    """
local call, tonumber, sub, unpack = redis.call, tonumber, string.sub, unpack
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
"""
    + REPOSITION
    + """
local function key(kind, len) return prefix .. kind .. ':' .. len end
local function add(acc, fields, sign)
  for i = 1, #fields, 2 do
    local f, v, s = fields[i], fields[i + 1], sign
    if sub(v, 1, 1) == '-' then v = sub(v, 2); s = -s end
    local a = acc[f]
    if not a then a = {0, 0}; acc[f] = a end
    if #v <= 9 then
      a[2] = a[2] + s * tonumber(v)
    else
      a[2] = a[2] + s * tonumber(sub(v, -9))
      a[1] = a[1] + s * tonumber(sub(v, 1, -10))
    end
  end
end
local function flush(acc, dest)
  for f, a in pairs(acc) do
    local n = nil
    if a[1] ~= 0 then n = call('HINCRBY', dest, f, string.format('%.0f', a[1]) .. '000000000') end
    if a[2] ~= 0 then n = call('HINCRBY', dest, f, string.format('%.0f', a[2])) end
    if n == 0 then call('HDEL', dest, f) end
  end
end
-- dest += sign x the sets, dropping what reaches 0 (counts are negated)
local function union(dest, sets, sign)
  local args = {dest, #sets + 1, dest}
  for _, set in ipairs(sets) do args[#args + 1] = set end
  args[#args + 1] = 'WEIGHTS'
  args[#args + 1] = 1
  for _ = 1, #sets do args[#args + 1] = sign end
  call('ZUNIONSTORE', unpack(args))
  call('ZREMRANGEBYSCORE', dest, 0, '+inf')
end
-- the buckets starting in [lo, hi) into (sign 1) or out of (-1) a window
local function move(len, lo, hi, sign, users)
  if hi <= lo then return end
  local held = call('ZRANGEBYSCORE', KEYS[2], lo, '(' .. hi)
  if #held == 0 then return end
  local acc = {}
  for _, bucket in ipairs(held) do add(acc, call('HGETALL', prefix .. 'tc:' .. bucket), sign) end
  flush(acc, key('wc', len))
  if not users then return end
  local ranks, per = {}, {}
  for _, bucket in ipairs(held) do
    ranks[#ranks + 1] = prefix .. 'tr:' .. bucket
    for _, h in ipairs(call('SMEMBERS', prefix .. 'th:' .. bucket)) do
      local sets = per[h]
      if not sets then sets = {}; per[h] = sets end
      sets[#sets + 1] = prefix .. 'tu:' .. bucket .. ':' .. h
    end
  end
  union(key('wr', len), ranks, sign)
  local hashes = key('wh', len)
  for h, sets in pairs(per) do
    local wu = key('wu', len) .. ':' .. h
    union(wu, sets, sign)
    if call('EXISTS', wu) == 1 then
      call('SADD', hashes, h)
      call('EXPIRE', wu, ttl)
    else
      call('SREM', hashes, h)
    end
  end
end
local function clear(len)
  local hashes = key('wh', len)
  for _, h in ipairs(call('SMEMBERS', hashes)) do call('DEL', key('wu', len) .. ':' .. h) end
  call('DEL', hashes, key('wc', len), key('wr', len))
end
local function position(start, stop, want_users)
  local len = stop - start
  local function shift(lo, hi, sign, users) move(len, lo, hi, sign, users) end
  local function empty() clear(len) end
  reposition(key('w', len), start, stop, want_users, shift, empty)
  for _, kind in ipairs({'w', 'wc', 'wr', 'wh'}) do call('EXPIRE', key(kind, len), ttl) end
  return len
end
local lens = {}
for w = 1, tonumber(ARGV[5]) do
  local i = 6 + (w - 1) * 3
  lens[w] = position(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2] == '1')
end
local want = ARGV[3]
if want == 'r' then
  return call('ZRANGE', key('wr', lens[1]), 0, tonumber(ARGV[4]) - 1, 'WITHSCORES')
elseif want == 'd' then
  local n, asked = tonumber(ARGV[4]), cjson.decode(ARGV[6 + 3 * tonumber(ARGV[5])])
  local out = {}
  for i, t in ipairs(asked) do
    local fields = {}
    for _, c in ipairs({'r', 'b', 'n', 's', 'c', 'u'}) do fields[#fields + 1] = c .. ':' .. t[1] end
    local users = {}
    if n > 0 then
      users = call('ZRANGE', key('wu', lens[1]) .. ':' .. t[2], 0, n - 1, 'WITHSCORES')
    end
    out[i] = {call('HMGET', key('wc', lens[1]), unpack(fields)),
      call('HMGET', key('wc', lens[2]), unpack(fields)), users}
  end
  return out
end
return 0
"""
)
