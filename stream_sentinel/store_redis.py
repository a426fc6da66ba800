"""Redis store: atomic, fenced, Cluster-safe counters.

Key layout (``P`` = key prefix, ``T:N`` = topic-partition, the hash tag, so
every key a write touches lives in one slot)::

    P:{T:N}:o            next offset to consume (no TTL: it is the fence)
    P:{T:N}:c:<page>     hash "<bucket>:<counter>" -> int
    P:{T:N}:u:<page>     hash "<bucket>|<user_id>" -> requests
    P:parts              set of "T:N" ever written, for reads

``P:parts`` lives in a slot of its own, so it is never written in the same
script as a partition's keys: the script (offset fence + counters, atomic, one
slot) is what exactness rests on; the SADD beside it is idempotent and repeated
on every write, so a Redis (or one Cluster node) that came back empty lists the
partition again on its next batch. On a single node both go in one pipeline
(one round trip, no MULTI); on a Cluster the SADD is sent first on its own,
because a Cluster pipeline cannot load a script the node does not know yet.

Buckets are grouped into 300 s pages so that a 1-hour read is a dozen
HGETALLs per partition rather than one per bucket. User ids are only ever
hash fields, never key names: they cannot change a slot or collide.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .aggregate import Delta
from .model import WindowCounts
from .redis_client import RedisClient, connect
from .store import ApplyResult, Outcome, PartitionId, StoreUnavailable, top_k

PAGE_S = 300
_COUNTERS = ("requests", "blocked", "responses", "safe", "cost_nanousd", "cost_unknown")
_SHORT = dict(zip(_COUNTERS, "rbnscu", strict=True))

# KEYS[1] = offset key, then pairs (counter page, user page).
# ARGV: expected offset ("" = none), next offset, counter ttl, user ttl, then per
# pair: n, n x (field, increment), then the page's users as one JSON object
# {"<bucket>": {"<user_id>": requests}} ("" = none). One argument for all the
# users of a page: redis-py encodes each argument in Python, and a batch can
# name thousands of users; orjson and cjson handle any user id text, newlines
# and quotes included.
_APPLY_LUA = """
local stored = redis.call('GET', KEYS[1])
local expected = ARGV[1]
if (stored == false and expected ~= '') or (stored ~= false and stored ~= expected) then
  return {0, stored}
end
local ttl_c = tonumber(ARGV[3])
local ttl_u = tonumber(ARGV[4])
local a = 5
for k = 2, #KEYS, 2 do
  local n = tonumber(ARGV[a]); a = a + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1]); a = a + 2
  end
  if n > 0 then redis.call('EXPIRE', KEYS[k], ttl_c) end
  local users = ARGV[a]; a = a + 1
  if users ~= '' then
    for bucket, counts in pairs(cjson.decode(users)) do
      for user, count in pairs(counts) do
        redis.call('HINCRBY', KEYS[k + 1], bucket .. '|' .. user, count)
      end
    end
    redis.call('EXPIRE', KEYS[k + 1], ttl_u)
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
"""

# Reads run one script per partition over that partition's pages (one hash
# slot: Cluster-safe), so Redis sums in place and only totals cross the
# wire. KEYS = the partition's pages of the window, ARGV = start, end (buckets
# in [start, end) count; a page holds 5 buckets, so whether a bucket is in is
# decided once per bucket, not per field). redis-py parses replies in pure
# Python, about a microsecond an element, so what a script returns must be
# small. Lua does ~1 us of work per field read: globals are made locals.

# Counter totals as 6 (high, low) pairs of integers: Lua numbers are doubles,
# exact only to 2^53, while a counter may reach 2^63; each value is split at
# 10^9 from its decimal text, so both halves stay far below 2^53 when summed.
_WINDOW_LUA = """
local sub, tonumber, call = string.sub, tonumber, redis.call
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = {SLOTS}
local inside = {}
local out = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
for _, key in ipairs(KEYS) do
  local page = call('HGETALL', key)
  for i = 1, #page, 2 do
    local field = page[i]
    local bucket = sub(field, 1, -3)
    local ok = inside[bucket]
    if ok == nil then
      local b = tonumber(bucket)
      ok = b >= start and b < stop
      inside[bucket] = ok
    end
    if ok then
      local j = slot[sub(field, -1)]
      local text = page[i + 1]
      local sign = 1
      if sub(text, 1, 1) == '-' then sign = -1; text = sub(text, 2) end
      local n = #text
      if n > 9 then
        out[j] = out[j] + sign * tonumber(sub(text, 1, n - 9))
        out[j + 1] = out[j + 1] + sign * tonumber(sub(text, n - 8))
      else
        out[j + 1] = out[j + 1] + sign * tonumber(text)
      end
    end
  end
end
return out
""".replace("SLOTS", ", ".join(f"{c} = {2 * i + 1}" for i, c in enumerate(_SHORT.values())))
_SPLIT = 10**9

# Requests per user over the window, as one JSON object {"<user_id>": n}:
# one bulk string that orjson parses in C, instead of two reply elements per
# user. User ids are fields written by _APPLY_LUA from orjson text, so valid
# UTF-8, which cjson passes through and escapes as JSON needs. cjson writes
# numbers with 14 significant digits: exact for any request count of a
# 5-minute window.
_USERS_LUA = """
local find, sub, tonumber, call = string.find, string.sub, tonumber, redis.call
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
local inside = {}
local totals = {}
for _, key in ipairs(KEYS) do
  local page = call('HGETALL', key)
  for i = 1, #page, 2 do
    local field = page[i]
    local bar = find(field, '|', 1, true)
    local bucket = sub(field, 1, bar - 1)
    local ok = inside[bucket]
    if ok == nil then
      local b = tonumber(bucket)
      ok = b >= start and b < stop
      inside[bucket] = ok
    end
    if ok then
      local user = sub(field, bar + 1)
      totals[user] = (totals[user] or 0) + tonumber(page[i + 1])
    end
  end
end
-- an empty Lua table is encoded as {} (an object): fine for an empty window
return cjson.encode(totals)
"""

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStore:
    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        bucket_width: int,
        counter_ttl_s: int,
        user_ttl_s: int,
    ) -> None:
        if PAGE_S % bucket_width:
            raise ValueError(f"bucket width {bucket_width} must divide {PAGE_S}")
        self._r = client
        self._prefix = prefix
        self._width = bucket_width
        self._counter_ttl = counter_ttl_s
        self._user_ttl = user_ttl_s
        self._apply = client.register_script(_APPLY_LUA)
        self._window_sums = client.register_script(_WINDOW_LUA)
        self._user_sums = client.register_script(_USERS_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        client = connect(
            url, socket_timeout=5.0, socket_connect_timeout=3.0, health_check_interval=10
        )
        return cls(client, **kwargs)

    @property
    def client(self) -> RedisClient:
        """The connection pool, for other keys of this deployment (baseline history)."""
        return self._r

    @property
    def prefix(self) -> str:
        return self._prefix

    def _tag(self, part: PartitionId) -> str:
        return f"{self._prefix}:{{{part.topic}:{part.partition}}}"

    def offset_key(self, part: PartitionId) -> str:
        return f"{self._tag(part)}:o"

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis unreachable: {type(exc).__name__}") from exc
        except RedisClusterException as exc:
            # raised when no node of the cluster answers (not a RedisError);
            # the type only: its message lists the nodes tried
            raise StoreUnavailable(f"redis cluster: {type(exc).__name__}") from exc
        except RedisError as exc:
            # LOADING, BUSY, READONLY after a failover: all transient for us
            raise StoreUnavailable(f"redis error: {type(exc).__name__}: {exc}") from exc

    async def load_offset(self, part: PartitionId) -> int | None:
        return (await self.load_offsets([part]))[part]

    async def load_offsets(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        if not parts:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for part in parts:
            pipe.get(self.offset_key(part))
        values = await self._call(pipe.execute())
        return {p: None if v is None else int(v) for p, v in zip(parts, values, strict=True)}

    async def apply(
        self,
        part: PartitionId,
        expected_offset: int | None,
        next_offset: int,
        delta: Delta,
    ) -> ApplyResult:
        tag = self._tag(part)
        pages: dict[int, tuple[list[Any], dict[str, Counter[str]]]] = {}
        for bucket, inc in delta.items():
            page = bucket - bucket % PAGE_S
            counters, users = pages.setdefault(page, ([], {}))
            for name in _COUNTERS:
                value = getattr(inc, name)
                if value:
                    counters += (f"{bucket}:{_SHORT[name]}", value)
            if inc.users:
                users[str(bucket)] = inc.users
        keys: list[str] = [self.offset_key(part)]
        args: list[Any] = [
            "" if expected_offset is None else str(expected_offset),
            str(next_offset),
            self._counter_ttl,
            self._user_ttl,
        ]
        for page, (counters, users) in pages.items():
            keys += (f"{tag}:c:{page}", f"{tag}:u:{page}")
            args.append(len(counters) // 2)
            args += counters
            args.append(orjson.dumps(users) if users else "")
        # registered on every write (see the module docstring): a Redis that
        # restarted empty must list the partition again for readers to find it
        parts_key = f"{self._prefix}:parts"
        if isinstance(self._r, RedisCluster):
            await self._call(self._r.sadd(parts_key, str(part)))
            applied, stored = await self._call(self._apply(keys=keys, args=args))
        else:
            pipe = self._r.pipeline(transaction=False)
            pipe.sadd(parts_key, str(part))
            await self._apply(keys=keys, args=args, client=pipe)
            _, (applied, stored) = await self._call(pipe.execute())
        stored_offset = None if stored is None else int(stored)
        return ApplyResult(Outcome.APPLIED if applied else Outcome.FENCED, stored_offset)

    async def _partitions(self) -> list[str]:
        members = await self._call(self._r.smembers(f"{self._prefix}:parts"))
        return sorted(m.decode() for m in members)

    async def _per_partition(
        self, script: AsyncScript, kind: str, start: int, end: int
    ) -> list[Any]:
        """``script`` run once per partition on that partition's pages of
        ``[start, end)``: each call's keys share one slot."""
        parts = await self._partitions()
        if not parts or end <= start:
            return []
        first = start - start % PAGE_S
        pages = range(first, end, PAGE_S)
        calls = [[f"{self._prefix}:{{{part}}}:{kind}:{page}" for page in pages] for part in parts]
        if isinstance(self._r, RedisCluster):
            # concurrent calls, each routed to its slot's node: a Cluster
            # pipeline cannot load a script its node does not know yet
            replies = await asyncio.gather(
                *(self._call(script(keys=keys, args=[start, end])) for keys in calls)
            )
            return list(replies)
        pipe = self._r.pipeline(transaction=False)
        for keys in calls:
            await script(keys=keys, args=[start, end], client=pipe)
        result: list[Any] = await self._call(pipe.execute())
        return result

    async def window(self, start: int, end: int) -> WindowCounts:
        sums = [0] * len(_COUNTERS)
        for reply in await self._per_partition(self._window_sums, "c", start, end):
            for i in range(len(_COUNTERS)):
                sums[i] += int(reply[2 * i]) * _SPLIT + int(reply[2 * i + 1])
        return WindowCounts(**dict(zip(_COUNTERS, sums, strict=True)))

    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        replies = await self._per_partition(self._user_sums, "u", start, end)
        totals: dict[str, int] = {}
        for reply in replies:
            part: dict[str, int] = orjson.loads(reply)
            if not totals.keys().isdisjoint(part.keys()):
                # a user counted in two partitions (producers not keyed by user
                # id, or a topic's partition count changed within the window)
                for user in [u for u in part if u in totals]:
                    part[user] += totals[user]
            totals.update(part)
        return top_k(totals, k)

    async def ping(self) -> None:
        await self._call(self._r.ping())

    async def close(self) -> None:
        await self._r.aclose()
