"""The embedded in-memory store: single process, no Redis needed."""

from __future__ import annotations

from collections.abc import Sequence

from ..aggregate import BucketDelta, Delta, TenantDelta
from ..model import TenantCounts, WindowCounts
from .base import ApplyResult, Outcome, PartitionId, top_k


class MemoryStore:
    """Buckets merged across partitions; offsets per partition.

    Memory stays bounded: buckets older than ``retention_s`` behind the newest
    bucket seen are dropped, mirroring the Redis store's TTLs but in event
    time, which is what replay runs on.
    """

    def __init__(self, retention_s: int) -> None:
        self._retention_s = retention_s
        self._offsets: dict[PartitionId, int] = {}
        self._buckets: dict[int, BucketDelta] = {}
        self._newest = 0
        self._oldest_kept = 0
        self._generation: str | None = None

    async def load_offset(self, part: PartitionId) -> int | None:
        return self._offsets.get(part)

    async def load_offsets(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        return {p: self._offsets.get(p) for p in parts}

    async def take_over(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        return await self.load_offsets(parts)  # every write is whole here

    async def apply(
        self,
        part: PartitionId,
        expected_offset: int | None,
        next_offset: int,
        delta: Delta,
    ) -> ApplyResult:
        stored = self._offsets.get(part)
        if stored != expected_offset:
            return ApplyResult(Outcome.FENCED, stored)
        for start, inc in delta.items():
            bucket = self._buckets.get(start)
            if bucket is None:
                bucket = self._buckets[start] = BucketDelta()
            bucket.merge(inc)
            if start > self._newest:
                self._newest = start
        self._offsets[part] = next_offset
        self._expire()
        return ApplyResult(Outcome.APPLIED, next_offset)

    def _expire(self) -> None:
        horizon = self._newest - self._retention_s
        if horizon <= self._oldest_kept:
            return
        for start in [s for s in self._buckets if s < horizon]:
            del self._buckets[start]
        self._oldest_kept = horizon

    def _in(self, start: int, end: int) -> list[BucketDelta]:
        return [b for s, b in self._buckets.items() if start <= s < end]

    async def window(self, start: int, end: int) -> WindowCounts:
        total = BucketDelta()
        for bucket in self._in(start, end):
            total.requests += bucket.requests
            total.blocked += bucket.blocked
            total.responses += bucket.responses
            total.safe += bucket.safe
            total.cost_nanousd += bucket.cost_nanousd
            total.cost_unknown += bucket.cost_unknown
        return total.counts()

    async def windows(self, spans: Sequence[tuple[int, int]]) -> list[WindowCounts]:
        return [await self.window(start, end) for start, end in spans]

    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        buckets = self._in(start, end)
        if not buckets:
            return []
        # plain dict arithmetic: Counter.update is the slow part of a replay tick
        totals = dict(buckets[0].users)
        get = totals.get
        for bucket in buckets[1:]:
            for user, n in bucket.users.items():
                totals[user] = get(user, 0) + n
        return top_k(totals, k)

    async def top_tenants(
        self, short: tuple[int, int], hour: tuple[int, int], k: int, users: int
    ) -> list[TenantCounts]:
        requests: dict[str, int] = {}
        for bucket in self._in(*short):
            for tenant, part in bucket.tenants.items():
                requests[tenant] = requests.get(tenant, 0) + part.requests
        chosen = [t for t, n in top_k(requests, k) if n > 0]
        found = []
        for tenant in chosen:
            in_short = _tenant_total(self._in(*short), tenant)
            in_hour = _tenant_total(self._in(*hour), tenant)
            found.append(
                TenantCounts(
                    tenant,
                    in_short.counts(),
                    in_hour.counts(),
                    tuple(top_k(dict(in_short.users), users)),
                )
            )
        return found

    async def drop_all(self) -> None:
        self._offsets.clear()
        self._buckets.clear()
        self._newest = self._oldest_kept = 0
        self._generation = None  # as the Redis store's SCAN of the prefix drops its marker

    async def claim_generation(self, candidate: str) -> str:
        if self._generation is None:
            self._generation = candidate
        return self._generation

    async def generation(self) -> str | None:
        return self._generation

    async def registered(self) -> list[PartitionId]:
        return sorted(self._offsets)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def bucket_count(self) -> int:
        return len(self._buckets)


def _tenant_total(buckets: Sequence[BucketDelta], tenant: str) -> TenantDelta:
    total = TenantDelta()
    for bucket in buckets:
        part = bucket.tenants.get(tenant)
        if part is not None:
            total.merge(part)
    return total
