"""``store.build.open_storage``: one client for store, history and lease, closed together."""

from __future__ import annotations

import uuid

import pytest
from batch_reference import aggregate
from redis import asyncio as aioredis

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.events import RequestEvent
from stream_sentinel.model import SIGNALS
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.build import StorageSettings, open_storage
from stream_sentinel.store.history import MemoryHistory, Point, TickRecord
from stream_sentinel.store.lease import LocalLease
from stream_sentinel.store.memory import MemoryStore

T0 = 1_780_000_200
PART = PartitionId("llm.requests", 0)


def _settings(url: str | None, prefix: str) -> StorageSettings:
    return StorageSettings(
        url=url,
        prefix=prefix,
        bucket_width=60,
        counter_ttl_s=4000,
        user_ttl_s=700,
        history_keep_s=86400,
    )


def _record(at: int) -> TickRecord:
    return TickRecord(at, {name: Point(1.0, 10, "ok") for name in SIGNALS})


async def _use_every_part(url: str | None, prefix: str) -> None:
    async with open_storage(_settings(url, prefix)) as storage:
        delta = aggregate(
            BatchAggregator(60),
            [RequestEvent(event_id="e1", ts=T0 + 1, user_id="u", blocked=False)],
        )
        await storage.store.apply(PART, None, 1, delta)
        await storage.history.append(_record(T0))
        lease = storage.lease(replica_id="r1", ttl_ms=5000)
        assert await lease.acquire() > 0
        assert (await storage.store.window(T0, T0 + 60)).requests == 1
        assert [r.at for r in await storage.history.records(T0, T0 + 60)] == [T0]
        await lease.release()


async def test_without_a_url_the_parts_are_embedded() -> None:
    async with open_storage(_settings(None, "x")) as storage:
        assert isinstance(storage.store, MemoryStore)
        assert isinstance(storage.history, MemoryHistory)
        assert isinstance(storage.lease(replica_id="r", ttl_ms=1000), LocalLease)
        assert storage.read_ahead is None
    await _use_every_part(None, "x")


async def test_one_client_serves_every_part_and_is_closed_on_exit(redis_url: str) -> None:
    """Counted by name on the server: while the storage is open the store,
    history and lease hold connections of one client; after the block none
    is left (the lease once had a client of its own that was never closed)."""
    name = f"t{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{sep}client_name={name}"
    observer = aioredis.Redis.from_url(redis_url)

    async def connections() -> int:
        clients = await observer.client_list()
        return sum(1 for c in clients if c.get("name") == name)

    try:
        async with open_storage(_settings(url, name)) as storage:
            await storage.store.ping()
            assert await connections() >= 1
            lease = storage.lease(replica_id="r1", ttl_ms=5000)
            assert await lease.acquire() > 0
            await storage.history.first_start(T0)
            await lease.release()
            await storage.store.drop_all()  # the history's and lease's keys too
            left = [k async for k in observer.scan_iter(match=f"{name}:*")]
            assert left == []
        assert await connections() == 0
    finally:
        doomed = [k async for k in observer.scan_iter(match=f"{name}:*")]
        if doomed:
            await observer.delete(*doomed)
        await observer.aclose()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_every_part_works_through_the_builder(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    prefix = f"t{uuid.uuid4().hex[:10]}"
    try:
        await _use_every_part(url, prefix)
    finally:
        if url is not None:
            async with open_storage(_settings(url, prefix)) as storage:
                await storage.store.drop_all()


async def test_drop_all_keeps_the_keys_of_a_neighbouring_prefix(any_redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    neighbour = f"{prefix}-next"  # "prefix:*" must not reach it
    async with open_storage(_settings(any_redis_url, neighbour)) as other:
        async with open_storage(_settings(any_redis_url, prefix)) as mine:
            delta = aggregate(
                BatchAggregator(60),
                [RequestEvent(event_id="e", ts=T0 + 1, user_id="u", blocked=False)],
            )
            await other.store.apply(PART, None, 1, delta)
            await mine.store.apply(PART, None, 1, delta)
            await mine.history.append(_record(T0))
            await mine.store.drop_all()
            assert await mine.store.load_offset(PART) is None
            assert await mine.history.records(T0, T0 + 60) == []
            assert await other.store.load_offset(PART) == 1
        await other.store.drop_all()
        assert await other.store.load_offset(PART) is None
