"""Redis store: atomic, fenced, Cluster-safe counters with running window totals.

The key layout and the Lua that keeps it are in ``redis_scripts``. Beside the
partitions' keys (one hash tag each)::

    P:parts              set of "T:N" ever written, for reads
    P:{generation}       the generation marker (``Store.claim_generation``),
                         in a slot of its own like the lease's keys

``P:parts`` lives in a slot of its own, so it is never written in the same
script as a partition's keys: the script (offset fence + counters, atomic, one
slot) is what exactness rests on; the SADD beside it is idempotent and repeated
on every write, so a Redis (or one Cluster node) that came back empty lists the
partition again on its next batch. On a single node both go in one pipeline
(one round trip, no MULTI); on a Cluster the SADD is sent first on its own,
because a Cluster pipeline cannot load a script the node does not know yet.

Reads run one script per partition (``redis_scripts.POSITION``) that answers
from the partition's running totals of the window, moved there first if they
cover another one. ``prepare`` (the ``ReadAhead`` hint) moves them ahead of
the next tick, so the tick itself only reads totals. User ids are only ever
hash fields and sorted set members, never key names: they cannot change a
slot or collide.

Top users merged across partitions are exact when producers key by user id
(each user counted in one partition): every partition's first k then hold the
global first k. A user found in two partitions (producers not keyed, or a
topic's partition count changed within the window) is detected among the
candidates and the whole window is merged instead, exactly. What is not
detected: a user outside every partition's first k whose parts add up to more
than the k-th total; see docs/producers.md.

Per-tenant counts (only when a batch carries tenants) go into the
partition's outbox in the same APPLY call, and from there to the tenant
shards (``redis_tenants``), which ``top_tenants`` reads: exact whatever the
producers' keys, in two rounds of 16 calls whatever the partitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..aggregate import Delta
from ..model import TenantCounts, WindowCounts
from .base import ApplyResult, Outcome, PartitionId, StoreRefused, StoreUnavailable, top_k
from .redis_client import RedisClient, connect, refusal
from .redis_scripts import APPLY, POSITION
from .redis_tenants import Call, TenantShards, outbox

PAGE_S = 300
_COUNTERS = ("requests", "blocked", "responses", "safe", "cost_nanousd", "cost_unknown")
_SHORT = dict(zip(_COUNTERS, "rbnscu", strict=True))
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_PIPELINE_CALLS = 16
# one read of a partition's running window: start, end, keep per-user
# totals, what to answer and its argument (see redis_scripts.POSITION)
Read = tuple[int, int, bool, str, str]


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
        self._counter_ttl = counter_ttl_s
        self._user_ttl = user_ttl_s
        self._apply = client.register_script(APPLY)
        self._position = client.register_script(POSITION)
        self._tenants = TenantShards(client, prefix, self._each, counter_ttl_s, user_ttl_s)
        # per partition, the outbox entries this writer forwarded: the next
        # APPLY deletes them
        self._forwarded: dict[PartitionId, list[str]] = {}

    @classmethod
    def from_url(
        cls, url: str, *, client_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> RedisStore:
        """``client_options``: credentials and TLS files beside the URL
        (``RedisConfig.client_options``)."""
        client = connect(
            url,
            socket_timeout=5.0,
            socket_connect_timeout=3.0,
            health_check_interval=10,
            **(client_options or {}),
        )
        return cls(client, **kwargs)

    def use_apply_script(self, script: str) -> None:
        """Write with another APPLY script (``bench/apply_ab.py`` compares revisions)."""
        self._apply = self._r.register_script(script)

    @property
    def client(self) -> RedisClient:
        """The connection pool, for tests and benchmarks that inspect Redis itself.
        Production code gets its clients from ``store.build`` only."""
        return self._r

    def _tag(self, part: PartitionId) -> str:
        return f"{self._prefix}:{{{part.topic}:{part.partition}}}"

    def offset_key(self, part: PartitionId) -> str:
        return f"{self._tag(part)}:o"

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, RedisClusterException, OSError) as exc:
            problem = refusal(exc)
            if problem is not None:
                raise StoreRefused(f"redis refused the connection: {problem}") from exc
            raise _unavailable(exc) from exc

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

    async def take_over(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        # tenant counts a writer that stopped between its APPLY and its
        # forward left behind reach the shards now, not at the next batch
        pipe = self._r.pipeline(transaction=False)
        for part in parts:
            pipe.hgetall(self._outbox_key(part))
        for part, pending in zip(parts, await self._call(pipe.execute()), strict=True):
            if pending:
                flat = [x for pair in pending.items() for x in pair]
                done = await self._tenants.forward_pending(part, flat)
                await self._call(self._r.hdel(self._outbox_key(part), *done))
        return await self.load_offsets(parts)

    def _outbox_key(self, part: PartitionId) -> str:
        return f"{self._tag(part)}:tx"

    async def apply(
        self,
        part: PartitionId,
        expected_offset: int | None,
        next_offset: int,
        delta: Delta,
    ) -> ApplyResult:
        tag = self._tag(part)
        pages: dict[int, tuple[list[Any], dict[str, dict[str, int]]]] = {}
        for bucket, inc in delta.items():
            page = bucket - bucket % PAGE_S
            counters, users = pages.setdefault(page, ([], {}))
            for name in _COUNTERS:
                value = getattr(inc, name)
                if value:
                    counters += (f"{bucket}:{_SHORT[name]}", value)
            if inc.users:
                users[str(bucket)] = inc.users
        entry = outbox(delta)
        keys: list[str] = [self.offset_key(part), f"{tag}:ws", self._outbox_key(part)]
        args: list[Any] = [
            "" if expected_offset is None else str(expected_offset),
            str(next_offset),
            self._counter_ttl,
            self._user_ttl,
            f"{tag}:",
            "",  # the forwarded entries, set below
            "" if entry is None else orjson.dumps(entry),
        ]
        for page, (counters, users) in pages.items():
            keys.append(f"{tag}:c:{page}")
            args.append(len(counters) // 2)
            args += counters
            args.append(orjson.dumps(users) if users else "")
        while True:
            args[5] = " ".join(self._forwarded.get(part, ()))
            reply = await self._apply_call(part, keys, args)
            self._forwarded.pop(part, None)
            if reply[0] != 2:
                break
            # an earlier batch's tenant counts are still to be forwarded:
            # first them, then this batch (redis_tenants says why)
            done = await self._tenants.forward_pending(part, reply[2])
            self._forwarded[part] = done
        applied, stored = reply[0], reply[1]
        if applied and entry is not None:
            await self._tenants.forward(part, next_offset, entry)
            self._forwarded[part] = [str(next_offset)]
        stored_offset = None if stored is None else int(stored)
        return ApplyResult(Outcome.APPLIED if applied else Outcome.FENCED, stored_offset)

    async def _apply_call(self, part: PartitionId, keys: list[str], args: list[Any]) -> Any:
        # registered on every write (see the module docstring): a Redis that
        # restarted empty must list the partition again for readers to find it
        parts_key = f"{self._prefix}:parts"
        if isinstance(self._r, RedisCluster):
            await self._call(self._r.sadd(parts_key, str(part)))
            return await self._call(self._apply(keys=keys, args=args))
        pipe = self._r.pipeline(transaction=False)
        pipe.sadd(parts_key, str(part))
        await self._apply(keys=keys, args=args, client=pipe)
        _, reply = await self._call(pipe.execute())
        return reply

    def _generation_key(self) -> str:
        return f"{self._prefix}:{{generation}}"

    async def claim_generation(self, candidate: str) -> str:
        key = self._generation_key()
        # SET NX GET would answer in one call, but needs Redis 7; a pipeline
        # of SET NX then GET is as safe: whoever set it first, all read the winner
        pipe = self._r.pipeline(transaction=False)
        pipe.set(key, candidate, nx=True)
        pipe.get(key)
        _, held = await self._call(pipe.execute())
        if held is None:  # wiped between the two commands: ours is as good as any
            await self._call(self._r.set(key, candidate, nx=True))
            return candidate
        return held.decode() if isinstance(held, bytes) else str(held)

    async def generation(self) -> str | None:
        held = await self._call(self._r.get(self._generation_key()))
        if held is None:
            return None
        return held.decode() if isinstance(held, bytes) else str(held)

    async def registered(self) -> list[PartitionId]:
        return [PartitionId.parse(m) for m in await self._partitions()]

    async def _partitions(self) -> list[str]:
        members = await self._call(self._r.smembers(f"{self._prefix}:parts"))
        return sorted(m.decode() for m in members)

    def _position_call(self, part: str, reads: Sequence[Read]) -> Call:
        """``redis_scripts.POSITION`` on one partition, for all of ``reads``."""
        tag = f"{self._prefix}:{{{part}}}:"
        keys = [f"{tag}ws"]
        args: list[Any] = [tag, self._user_ttl]
        for start, end, users, want, arg in reads:
            keys += (f"{tag}w:{end - start}", f"{tag}wu:{end - start}")
            args += (start, end, "1" if users else "0", want, arg)
        return self._position, keys, args

    async def _per_partition(self, reads: Sequence[Read], parts: list[str]) -> list[list[Any]]:
        """Each partition's answers to ``reads``, one per read."""
        return await self._each([self._position_call(part, reads) for part in parts])

    async def _each(self, calls: Sequence[Call]) -> list[Any]:
        """Each (script, keys, args), one partition each: the replies in order."""
        if isinstance(self._r, RedisCluster):
            # concurrent calls, each routed to its slot's node: a Cluster
            # pipeline cannot load a script the node does not know yet
            replies = await asyncio.gather(*(self._call(s(keys=k, args=a)) for s, k, a in calls))
            return list(replies)
        # Redis sends a pipeline's replies when it has run all of it: a window
        # summed again from its buckets (a start, a jump) can take 100 ms per
        # partition with tenants, and 64 partitions would outlast the socket
        # timeout; pipelines of a few partitions each answer in time
        result: list[Any] = []
        for i in range(0, len(calls), _PIPELINE_CALLS):
            pipe = self._r.pipeline(transaction=False)
            for script, k, a in calls[i : i + _PIPELINE_CALLS]:
                await script(keys=k, args=a, client=pipe)
            result += await self._call(pipe.execute())
        return result

    async def prepare(self, windows: Sequence[tuple[int, int, bool]]) -> None:
        """Move every partition's running totals to these windows (start, end,
        with per-user totals) ahead of the reads that will need them."""
        wanted: dict[tuple[int, int], bool] = {}
        for start, end, users in windows:
            if end > start:
                wanted[start, end] = wanted.get((start, end), False) or users
        parts = await self._partitions()
        if parts and wanted:
            reads = [(start, end, users, "n", "") for (start, end), users in wanted.items()]
            await self._per_partition(reads, parts)
            # the tenant shards' windows too: top_tenants reads the same spans
            await self._tenants.prepare([(s, e, users) for (s, e), users in wanted.items()])

    async def window(self, start: int, end: int) -> WindowCounts:
        return (await self.windows([(start, end)]))[0]

    async def windows(self, spans: Sequence[tuple[int, int]]) -> list[WindowCounts]:
        sums = [[0] * len(_COUNTERS) for _ in spans]
        live = [i for i, (start, end) in enumerate(spans) if end > start]
        parts = await self._partitions()
        if parts and live:
            reads = [(spans[i][0], spans[i][1], False, "c", "") for i in live]
            for answers in await self._per_partition(reads, parts):
                for i, counters in zip(live, answers, strict=True):
                    for j, value in enumerate(counters):
                        if value is not None:
                            sums[i][j] += int(value)
        return [WindowCounts(**dict(zip(_COUNTERS, t, strict=True))) for t in sums]

    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        parts = await self._partitions()
        if not parts or end <= start or k <= 0:
            return []
        reads: list[Read] = [(start, end, True, "t", str(k))]
        firsts = [answers[0] for answers in await self._per_partition(reads, parts)]
        candidates: dict[str, int] = {}
        for flat in firsts:
            for i in range(0, len(flat), 2):
                user = flat[i].decode()
                if user in candidates:
                    return await self._merged(start, end, k, parts)
                candidates[user] = -int(float(flat[i + 1]))
        if not candidates:
            return []
        # each candidate must be counted in its own partition only; otherwise
        # its total here is a part, and users outside every first k may be too
        # (a partition with no user in the window cannot hold one: not asked)
        listed = orjson.dumps(list(candidates))
        with_users = [part for part, flat in zip(parts, firsts, strict=True) if flat]
        reads = [(start, end, True, "p", listed.decode())]
        found = await self._per_partition(reads, with_users)
        if sum(int(answers[0]) for answers in found) != len(candidates):
            return await self._merged(start, end, k, parts)
        return top_k(candidates, k)

    async def _merged(
        self, start: int, end: int, k: int, parts: list[str]
    ) -> list[tuple[str, int]]:
        """Every user of the window from every partition, summed: exact however
        producers partition, and as slow as the window has users."""
        totals: dict[str, int] = {}
        for answers in await self._per_partition([(start, end, True, "a", "")], parts):
            part: dict[str, int] = orjson.loads(answers[0])
            if not totals.keys().isdisjoint(part.keys()):
                for user in [u for u in part if u in totals]:
                    part[user] += totals[user]
            totals.update(part)
        return top_k(totals, k)

    async def top_tenants(
        self, short: tuple[int, int], hour: tuple[int, int], k: int, users: int
    ) -> list[TenantCounts]:
        return await self._tenants.top(short, hour, k, users)

    async def drop_all(self) -> None:
        # SCAN, not KEYS: a shared Redis must not stall for a scratch run's
        # clean-up; on a Cluster both visit every primary and split by slot
        keys = await self._call(self._scan(f"{self._prefix}:*"))
        for i in range(0, len(keys), 500):
            await self._call(self._r.delete(*keys[i : i + 500]))

    async def _scan(self, match: str) -> list[bytes]:
        return [key async for key in self._r.scan_iter(match=match, count=1000)]

    async def ping(self) -> None:
        await self._call(self._r.ping())

    async def close(self) -> None:
        await self._r.aclose()


def _unavailable(exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"redis unreachable: {type(exc).__name__}")
    if isinstance(exc, RedisClusterException):
        # raised when no node of the cluster answers (not a RedisError);
        # the type only: its message lists the nodes tried
        return StoreUnavailable(f"redis cluster: {type(exc).__name__}")
    # LOADING, BUSY, READONLY after a failover: all transient for us
    return StoreUnavailable(f"redis error: {type(exc).__name__}: {exc}")
