"""The store seam: what the consumer writes and the evaluator reads.

Two implementations pass the same contract tests (tests/store/test_store_contract.py):
``MemoryStore`` (the embedded default, single process) and ``RedisStore``.
``store.build.open_storage`` makes one from the settings and closes it; nothing
above ``store/`` picks or constructs one itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..aggregate import Delta
from ..model import TenantCounts, WindowCounts


@dataclass(frozen=True, slots=True, order=True)
class PartitionId:
    """A source partition: a Kafka topic-partition, or a replayed file."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}"

    @classmethod
    def parse(cls, text: str) -> PartitionId:
        """The inverse of ``str``; Kafka topic names cannot hold ``:``."""
        topic, _, partition = text.rpartition(":")
        return cls(topic, int(partition))


class Outcome(Enum):
    APPLIED = "applied"
    # the stored offset is not what the writer expected: another writer (a
    # replayed batch, a consumer that lost the partition in a rebalance, a
    # wiped store) got there first; the writer must reload and seek
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: Outcome
    stored_offset: int | None  # the offset in the store after the call


class StoreUnavailable(Exception):
    """The store cannot be reached; nothing was written. Retry later."""


class StoreRefused(StoreUnavailable):
    """The server refuses this client for good (credentials, TLS, ACL): at start-up,
    a reason to exit rather than wait; later, retried like any outage."""


class Store(Protocol):
    async def load_offset(self, part: PartitionId) -> int | None:
        """Next offset to consume for ``part``, or None when nothing is stored."""

    async def load_offsets(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        """Batch form of :meth:`load_offset`, one round trip."""

    async def take_over(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        """:meth:`load_offsets` for a writer just given ``parts``, after
        finishing what an earlier writer of them left half done (Redis: tenant
        counts written but not yet forwarded to their shards)."""

    async def apply(
        self,
        part: PartitionId,
        expected_offset: int | None,
        next_offset: int,
        delta: Delta,
    ) -> ApplyResult:
        """Atomically add ``delta`` and move the offset to ``next_offset``.

        Applied only when the stored offset equals ``expected_offset`` (None:
        nothing stored). This fence makes a replayed or stale batch a no-op.
        """

    async def window(self, start: int, end: int) -> WindowCounts:
        """Exact sums over buckets in ``[start, end)``, all partitions merged."""

    async def windows(self, spans: Sequence[tuple[int, int]]) -> list[WindowCounts]:
        """:meth:`window` for each ``(start, end)``, read together."""

    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        """The ``k`` users with most requests in ``[start, end)``, exact, ties by user id."""

    async def top_tenants(
        self, short: tuple[int, int], hour: tuple[int, int], k: int, users: int
    ) -> list[TenantCounts]:
        """The ``k`` tenants with most requests in ``short`` (ties by tenant),
        most first, each with its exact counts over ``short`` and ``hour`` and
        its ``users`` heaviest users in ``short`` (``top_k`` order). Only
        events that carried a tenant, counted while tenants were on."""

    async def drop_all(self) -> None:
        """Delete everything stored under this store's namespace: counters and
        offsets, and in Redis every key of its prefix (the history and lease
        beside them too). A scratch run's clean-up (``replay --redis``)."""

    async def claim_generation(self, candidate: str) -> str:
        """The store's generation marker, set to ``candidate`` when absent.

        Written at a deployment's first start. A marker that later reads
        absent or different means the store lost its state (a Redis restarted
        without persistence, a failover that lost writes): never "no traffic".
        """

    async def generation(self) -> str | None:
        """The generation marker as held; None when absent."""

    async def registered(self) -> list[PartitionId]:
        """The partitions the store holds counts or offsets for (any writer)."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be reached."""


class ReadAhead(Protocol):
    """A store's speed hint, for stores that keep running window totals (Redis).

    Reads are exact without it; the live tick loop calls it right after a
    tick so the totals move to the next tick's windows off that tick's path.
    """

    async def prepare(self, windows: Sequence[tuple[int, int, bool]]) -> None:
        """Get ready to read these windows: (start, end, top users too)."""


def top_k(totals: dict[str, int], k: int) -> list[tuple[str, int]]:
    """Deterministic top-k: count descending, then id (user or tenant) ascending."""
    if k <= 0 or not totals:
        return []
    if len(totals) > k:
        # sort only the users that can make the cut, not every user of the window
        cut = heapq.nlargest(k, totals.values())[-1]
        totals = {u: n for u, n in totals.items() if n >= cut}
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:k]
