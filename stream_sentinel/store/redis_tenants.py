"""Per-tenant counts in Redis: the tenant shards, and how counts reach them.

The shards' layout and Lua are in ``redis_tenant_scripts``. A batch's tenant
counts reach them in two steps, exactly once:

1. ``redis_scripts.APPLY`` stores them in the partition's outbox (``T:tx``,
   field = the batch's next offset) in the same atomic script as the
   partition's counters and offset fence: they are written iff the batch is.
2. The writer then forwards them to the shards of their tenants. Each shard
   keeps, per partition, the last offset it took (``S:f``) and ignores
   anything at or below it, so a forward sent twice (a retry, two writers
   during a rebalance, a flush after a crash) counts once.

That fence only holds if a partition's entries reach a shard in offset order.
APPLY guarantees it: it refuses to write a batch while an earlier entry is
still in the outbox, and hands the pending entries back instead; the writer
forwards them, then names them as done in its next APPLY, which deletes them.
Whoever writes a partition next (this writer after a failed forward, another
after a crash or a rebalance) forwards what is left first. A newly assigned
partition's entries are also forwarded when a writer takes it over
(``Store.take_over``), so counts a crashed writer left behind do not wait
for the partition's next batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from ..aggregate import Delta
from ..model import TenantCounts, WindowCounts
from .base import PartitionId, top_k
from .redis_client import RedisClient
from .redis_tenant_scripts import FORWARD, WINDOWS

# enough shards that a Cluster spreads them, few enough that a tick's two
# rounds stay one small call each; changing it re-homes every tenant
SHARDS = 16
# one script call: the registered script, its keys and its arguments
Call = tuple[Any, list[str], list[Any]]
# runs the calls together (one round trip on a single node): replies in order
Run = Callable[[Sequence[Call]], Awaitable[list[Any]]]
# a batch's tenant counts: {"<bucket>": [[tenant, hash, r, b, n, s, c, u, users]]}
Outbox = dict[str, list[list[Any]]]


def tenant_hash(tenant: str) -> str:
    """The fixed-length stand-in for a tenant in a key name (never the name itself)."""
    raw = tenant.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def shard_of(hashed: str) -> int:
    return int(hashed, 16) % SHARDS


def outbox(delta: Delta) -> Outbox | None:
    """A batch's tenant counts as the outbox holds them, or None without any."""
    by_bucket: Outbox = {}
    for bucket, inc in delta.items():
        if not inc.tenants:
            continue
        rows = by_bucket[str(bucket)] = []
        for name, part in inc.tenants.items():
            counters = (
                part.requests,
                part.blocked,
                part.responses,
                part.safe,
                part.cost_nanousd,
                part.cost_unknown,
            )
            rows.append([name, tenant_hash(name), *map(str, counters), part.users])
    return by_bucket or None


def by_shard(entry: Outbox) -> dict[int, bytes]:
    """An outbox entry split into the FORWARD argument of each shard it touches."""
    split: dict[int, Outbox] = {}
    for bucket, rows in entry.items():
        for row in rows:
            split.setdefault(shard_of(row[1]), {}).setdefault(bucket, []).append(row)
    return {shard: orjson.dumps(part) for shard, part in split.items()}


class TenantShards:
    """The tenant shards of one store prefix: forwarding into them, and reading."""

    def __init__(
        self, client: RedisClient, prefix: str, run: Run, counter_ttl_s: int, user_ttl_s: int
    ) -> None:
        self._prefix = prefix
        self._run = run
        self._ttls = (counter_ttl_s, user_ttl_s)
        self._forward = client.register_script(FORWARD)
        self._windows = client.register_script(WINDOWS)
        # whether this store has read tenants: only then are their windows
        # worth moving ahead (a deployment without tenants keeps no shard keys)
        self._reading = False

    def _tag(self, shard: int) -> str:
        # "~" cannot be in a Kafka topic name: no partition's tag can be this
        return f"{self._prefix}:{{~tenants:{shard}}}:"

    async def forward(self, part: PartitionId, offset: int, entry: Outbox) -> None:
        """Add a partition's outbox entry to its shards (fenced: idempotent)."""
        calls: list[Call] = []
        for shard, argument in by_shard(entry).items():
            tag = self._tag(shard)
            keys = [f"{tag}f", f"{tag}b", f"{tag}ws"]
            calls.append((self._forward, keys, [tag, str(part), offset, *self._ttls, argument]))
        await self._run(calls)

    async def forward_pending(self, part: PartitionId, flat: Sequence[bytes]) -> list[str]:
        """Forward a partition's pending entries (HGETALL's flat reply), oldest
        first; the offsets forwarded, for the outbox to delete."""
        entries = sorted((int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2))
        for offset, raw in entries:
            await self.forward(part, offset, orjson.loads(raw))
        return [str(offset) for offset, _ in entries]

    def _windows_call(
        self,
        shard: int,
        spans: Sequence[tuple[int, int, bool]],
        want: str,
        arg: int | str = "",
        tenants: bytes | None = None,
    ) -> Call:
        """``WINDOWS`` on one shard: move to ``spans``, then answer ``want``."""
        tag = self._tag(shard)
        argv: list[Any] = [tag, self._ttls[1], want, arg, len(spans)]
        for start, end, users in spans:
            argv += (start, end, "1" if users else "0")
        if tenants is not None:
            argv.append(tenants)
        return self._windows, [f"{tag}ws", f"{tag}b"], argv

    async def prepare(self, spans: Sequence[tuple[int, int, bool]]) -> None:
        """Move every shard's running windows to these (start, end, users)."""
        if spans and self._reading:
            await self._run([self._windows_call(s, spans, "n") for s in range(SHARDS)])

    async def top(
        self, short: tuple[int, int], hour: tuple[int, int], k: int, users: int
    ) -> list[TenantCounts]:
        """``Store.top_tenants``: two rounds of one call per shard."""
        if k <= 0 or short[1] <= short[0]:
            return []
        self._reading = True
        ranking = [(*short, True)]
        calls = [self._windows_call(s, ranking, "r", k) for s in range(SHARDS)]
        firsts: dict[str, int] = {}
        for flat in await self._run(calls):
            for i in range(0, len(flat), 2):
                firsts[flat[i].decode()] = -int(float(flat[i + 1]))
        chosen = [(t, n) for t, n in top_k(firsts, k) if n > 0]
        if not chosen:
            return []
        asked: dict[int, list[list[str]]] = {}
        for tenant, _ in chosen:
            hashed = tenant_hash(tenant)
            asked.setdefault(shard_of(hashed), []).append([tenant, hashed])
        spans = [(*short, True), (*hour, False)]
        calls = [
            self._windows_call(shard, spans, "d", users, orjson.dumps(tenants))
            for shard, tenants in asked.items()
        ]
        found: dict[str, TenantCounts] = {}
        for tenants, answers in zip(asked.values(), await self._run(calls), strict=True):
            for (tenant, _), (in_short, in_hour, heaviest) in zip(tenants, answers, strict=True):
                found[tenant] = TenantCounts(
                    tenant,
                    _counts(in_short),
                    _counts(in_hour),
                    tuple(
                        (heaviest[i].decode(), -int(float(heaviest[i + 1])))
                        for i in range(0, len(heaviest), 2)
                    ),
                )
        return [found[tenant] for tenant, _ in chosen]


def _counts(values: Sequence[bytes | None]) -> WindowCounts:
    return WindowCounts(*(0 if v is None else int(v) for v in values))
