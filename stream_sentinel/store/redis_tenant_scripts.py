"""The Lua that reads one partition's users of chosen tenants (``redis_tenants``).

A tenant's users in a bucket are the sorted set ``T:tu:<bucket>:<h>`` (see
``redis_scripts`` for the layout). They are read for the few tenants a tick
evaluates only, so they keep no running totals: the window's buckets are
found in the global counter pages (every bucket holding a tenant's event holds
a global counter too: a few dozen fields, not a probe of every second) and
each tenant's sets are summed in C into a scratch key of the same slot, which
is deleted before the script returns.
"""

from __future__ import annotations

# KEYS[1] = T:tq (the scratch key, also the partition's slot).
# ARGV: prefix T, start, end, what to answer, then one JSON list per tenant
# hash [h, argument]:
#   "t", n     per tenant: {first n (user, -requests, ...), how many users};
#   "s", json  per tenant: the totals (-requests) of a JSON list of users;
#   "a"        per tenant: every user, flat (user, -requests, ...).
TENANT_USERS = """
local call, tonumber, sub, unpack = redis.call, tonumber, string.sub, unpack
local prefix, lo, hi, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local scratch = KEYS[1]
local buckets = {}
local page = lo - (lo % 300)
while page < hi do
  local seen = {}
  for _, field in ipairs(call('HKEYS', prefix .. 'c:' .. page)) do
    local bucket = sub(field, 1, -3)
    local b = tonumber(bucket)
    if b >= lo and b < hi and not seen[b] then
      seen[b] = true
      buckets[#buckets + 1] = bucket
    end
  end
  page = page + 300
end
local out = {}
for _, asked in ipairs(cjson.decode(ARGV[5])) do
  local keys = {}
  for _, bucket in ipairs(buckets) do
    keys[#keys + 1] = prefix .. 'tu:' .. bucket .. ':' .. asked[1]
  end
  call('DEL', scratch)
  if #keys > 0 then
    call('ZUNIONSTORE', scratch, #keys, unpack(keys))
    -- deleted below; the TTL is for a script that fails in between
    call('EXPIRE', scratch, 60)
  end
  if want == 't' then
    local n = tonumber(asked[2])
    out[#out + 1] = {call('ZRANGE', scratch, 0, n - 1, 'WITHSCORES'), call('ZCARD', scratch)}
  elseif want == 's' then
    local users, got = asked[2], {}
    for i = 1, #users, 1000 do
      local part = call('ZMSCORE', scratch, unpack(users, i, math.min(i + 999, #users)))
      for j = 1, #part do got[#got + 1] = part[j] end
    end
    out[#out + 1] = got
  else
    out[#out + 1] = call('ZRANGE', scratch, 0, -1, 'WITHSCORES')
  end
end
call('DEL', scratch)
return out
"""
