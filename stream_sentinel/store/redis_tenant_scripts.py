"""The Lua of the tenant shards (``redis_tenants``): forward, rank, detail.

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
    S:tu:<bucket>:<h>  sorted set user_id -> -requests of the tenant whose
                    name hashes to <h> (blake2b, 8 bytes hex) in that bucket
    S:tq, S:tk      scratch keys, deleted before a script returns

A tick asks each shard for its first k tenants of the window (a union of a
few bucket sets, in C), takes the first k of those (shards hold disjoint
tenants, so that is exact), then asks the chosen tenants' shards for their
counters and users. Both rounds are one call per shard, whatever the number
of partitions or tenants.

Counts reach a shard from the partition's outbox (``redis_scripts.APPLY``
writes it in the same atomic script as the partition's counters and offset),
fenced per partition by offset: see ``redis_tenants``.
"""

from __future__ import annotations

# the union of many sorted sets into dest, in slices (unpack has a limit)
_UNION = """
local function union(dest, keys)
  call('DEL', dest)
  for i = 1, #keys, 1000 do
    local args = {dest, 0}
    if i > 1 then args[#args + 1] = dest end
    for j = i, math.min(i + 999, #keys) do args[#args + 1] = keys[j] end
    args[2] = #args - 2
    call('ZUNIONSTORE', unpack(args))
  end
end
local function buckets(lo, hi)
  return call('ZRANGEBYSCORE', KEYS[2], lo, '(' .. hi)
end
"""

# KEYS[1] = S:f, KEYS[2] = S:b.
# ARGV: prefix S, partition, offset, counter ttl, user ttl, then one JSON
# object {"<bucket>": [[tenant, its hash, r, b, n, s, c, u, {"<user_id>":
# requests}]]} with the counters as decimal strings (cjson's numbers are
# doubles; a cost sum must stay exact). Returns 1 when applied, 0 when this
# partition's offset was already forwarded here.
FORWARD = """
local call, tonumber = redis.call, tonumber
local prefix, part, offset = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl_c, ttl_u = tonumber(ARGV[4]), tonumber(ARGV[5])
local done = call('HGET', KEYS[1], part)
if done and tonumber(done) >= offset then return 0 end
local names = {'r', 'b', 'n', 's', 'c', 'u'}
local newest = nil
for bucket, list in pairs(cjson.decode(ARGV[6])) do
  local b = tonumber(bucket)
  if newest == nil or b > newest then newest = b end
  call('ZADD', KEYS[2], b, bucket)
  local ckey, rkey = prefix .. 'tc:' .. bucket, prefix .. 'tr:' .. bucket
  local ranked = false
  for _, t in ipairs(list) do
    local name = t[1]
    for i = 1, 6 do
      local v = t[i + 2]
      if v ~= '0' then call('HINCRBY', ckey, names[i] .. ':' .. name, v) end
    end
    if t[3] ~= '0' then
      ranked = true
      call('ZINCRBY', rkey, '-' .. t[3], name)
      local ukey = prefix .. 'tu:' .. bucket .. ':' .. t[2]
      for user, count in pairs(t[9]) do call('ZINCRBY', ukey, -count, user) end
      call('EXPIRE', ukey, ttl_u)
    end
  end
  call('EXPIRE', ckey, ttl_c)
  if ranked then call('EXPIRE', rkey, ttl_u) end
end
if newest then
  -- buckets whose counters have expired are no longer listed
  call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (newest - ttl_c))
  call('EXPIRE', KEYS[2], ttl_c)
end
call('HSET', KEYS[1], part, ARGV[3])
return 1
"""

# KEYS[1] = S:tq (scratch), KEYS[2] = S:b.
# ARGV: prefix S, start, end, k. Returns the shard's first k tenants by
# requests over the buckets starting in [start, end), flat (tenant, -requests).
RANK = (
    """
local call, tonumber, unpack = redis.call, tonumber, unpack
"""
    + _UNION
    + """
local prefix = ARGV[1]
local keys = {}
for _, bucket in ipairs(buckets(ARGV[2], ARGV[3])) do
  keys[#keys + 1] = prefix .. 'tr:' .. bucket
end
if #keys == 0 then return {} end
union(KEYS[1], keys)
local first = call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1, 'WITHSCORES')
call('DEL', KEYS[1])
return first
"""
)

# KEYS[1] = S:tq (scratch), KEYS[2] = S:b, KEYS[3] = S:tk (scratch).
# ARGV: prefix S, short start, short end, long start, long end, n, then a
# JSON list of [tenant, its hash]. Returns, per tenant, {its six counters
# over the short window, over the long one (decimal strings or false), its
# first n users of the short window flat (user, -requests)}. Counters are
# summed by HINCRBY (64-bit integers) in a scratch hash: exact past 2^53.
DETAIL = (
    """
local call, tonumber, unpack = redis.call, tonumber, unpack
"""
    + _UNION
    + """
local prefix, n = ARGV[1], tonumber(ARGV[6])
local asked = cjson.decode(ARGV[7])
local fields = {}
for _, t in ipairs(asked) do
  for _, c in ipairs({'r', 'b', 'n', 's', 'c', 'u'}) do fields[#fields + 1] = c .. ':' .. t[1] end
end
local function counters(lo, hi)
  call('DEL', KEYS[3])
  for _, bucket in ipairs(buckets(lo, hi)) do
    local got = call('HMGET', prefix .. 'tc:' .. bucket, unpack(fields))
    for i = 1, #fields do
      if got[i] then call('HINCRBY', KEYS[3], fields[i], got[i]) end
    end
  end
  local sums = call('HMGET', KEYS[3], unpack(fields))
  call('DEL', KEYS[3])
  return sums
end
local short = counters(ARGV[2], ARGV[3])
local long = counters(ARGV[4], ARGV[5])
local in_short = buckets(ARGV[2], ARGV[3])
local out = {}
for i, t in ipairs(asked) do
  local users = {}
  if n > 0 and #in_short > 0 then
    local keys = {}
    for _, bucket in ipairs(in_short) do
      keys[#keys + 1] = prefix .. 'tu:' .. bucket .. ':' .. t[2]
    end
    union(KEYS[1], keys)
    users = call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
    call('DEL', KEYS[1])
  end
  local base = (i - 1) * 6
  out[i] = {{unpack(short, base + 1, base + 6)}, {unpack(long, base + 1, base + 6)}, users}
end
return out
"""
)
