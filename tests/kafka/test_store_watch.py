"""The leader's look at the store before a tick: a lost state is found once,
and always reaches a tick as "rebuilding", however fast the replicas recount.

The store is the embedded one (``drop_all`` is its wipe); the consumer is a
stand-in answering the three questions the watch asks Kafka.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from stream_sentinel.health import Health
from stream_sentinel.kafka.partitions import part_of
from stream_sentinel.kafka.store_watch import StoreWatch
from stream_sentinel.store.base import StoreUnavailable
from stream_sentinel.store.memory import MemoryStore

TOPIC = "requests"
TPS = [TopicPartition(TOPIC, p) for p in range(2)]
END = 10


class Consumer:
    """What the watch asks Kafka: partitions, end offsets, the group's commits."""

    def __init__(self, committed: int | None) -> None:
        self.committed_offset = committed
        self.joined = asyncio.Event()  # the coordinator answers after the join
        self.joined.set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in TPS} if topic == TOPIC else set()

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, END)

    async def committed(self, tp: TopicPartition) -> int | None:
        await self.joined.wait()
        return self.committed_offset


async def counted(store: MemoryStore, upto: int = END) -> None:
    """Every partition counted up to ``upto``, as the replicas would."""
    for tp in TPS:
        stored = (await store.load_offsets([part_of(tp)]))[part_of(tp)]
        await store.apply(part_of(tp), stored, upto, {})


async def watching(store: MemoryStore, committed: int | None, *, first: bool = False) -> StoreWatch:
    """A replica starting; ``first``: the first one on this store (it writes the marker)."""
    if not first:
        await store.claim_generation("an-earlier-replica")
    watch = StoreWatch(store, [TOPIC], stall_after_s=60.0, clock=lambda: 0.0)
    watch.consumer = Consumer(committed)  # type: ignore[assignment]
    await watch.claim()
    return watch


async def test_a_first_start_is_no_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=None, first=True)
    assert await watch.check() is False
    await counted(store)
    assert await watch.check() is False
    assert watch.losses == 0 and not watch.rebuilding


async def test_a_first_start_is_unsure_while_kafka_does_not_answer() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END, first=True)
    consumer = watch.consumer
    watch.consumer = None  # not connected yet: no partitions, no answer
    assert await watch.check() is False and watch.rebuilding
    watch.consumer = consumer  # then Kafka tells: the group had counted before
    assert await watch.check() is True and watch.losses == 1


async def test_a_wipe_is_one_loss_found_at_the_next_check() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END)
    await counted(store)
    assert await watch.check() is False
    await store.drop_all()
    assert await watch.check() is True
    assert watch.rebuilding
    # the marker this replica wrote after the wipe is no second loss
    for _ in range(3):
        assert await watch.check() is False
    assert watch.losses == 1 and watch.rebuilding
    await counted(store)
    assert await watch.check() is False
    assert not watch.rebuilding


async def test_a_wipe_recounted_before_the_check_still_reads_as_a_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END)
    await counted(store)
    await store.drop_all()
    await counted(store)  # the replicas noticed first and recounted everything
    assert await watch.check() is True
    assert not watch.rebuilding  # nothing left to recount ...
    assert await watch.check() is False  # ... and the loss was told once


async def test_a_loss_found_by_a_check_that_then_failed_reaches_the_next_check() -> None:
    class Flaky(MemoryStore):
        fail_loads = 0

        async def load_offsets(self, parts):  # type: ignore[no-untyped-def]
            if self.fail_loads:
                self.fail_loads -= 1
                raise StoreUnavailable("ConnectionError")
            return await super().load_offsets(parts)

    store = Flaky(3600)
    watch = await watching(store, committed=END)
    await counted(store)
    await store.drop_all()
    store.fail_loads = 1
    try:
        await watch.check()
    except StoreUnavailable:
        pass
    else:
        raise AssertionError("the check should have failed on its reads")
    await counted(store)
    assert await watch.check() is True
    assert watch.losses == 1


async def test_a_replica_started_on_a_wiped_store_finds_the_loss_in_kafka() -> None:
    store = MemoryStore(3600)
    # started after a wipe while no replica ran: it wrote the marker
    watch = await watching(store, committed=END, first=True)
    assert await watch.check() is True
    assert watch.losses == 1


async def test_health_reports_rebuilding_in_the_tick_that_learns_of_a_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END)
    ingest = SimpleNamespace(
        store_ok=True,
        rebuilding=False,
        last_progress=1e18,
        total_lag=lambda: 0,
        dead_letters=SimpleNamespace(reason=None),
        check_now=False,
    )
    health = Health(watch, ingest, stall_after_s=60.0)  # type: ignore[arg-type]
    await counted(store)
    assert await health.reason() is None
    await store.drop_all()
    await counted(store)
    assert await health.reason() == "rebuilding"
    assert ingest.check_now is True
    assert await health.reason() is None


async def test_a_first_start_settles_at_start_up_as_no_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=None, first=True)
    await watch.start_settling()
    assert await watch.check() is False
    assert watch.losses == 0 and not watch.rebuilding


async def test_a_replica_started_on_a_wiped_store_learns_of_the_loss_at_start_up() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END, first=True)
    consumer = watch.consumer
    assert isinstance(consumer, Consumer)
    consumer.joined.clear()  # the group is still joining: Kafka answers nothing yet
    settling = watch.start_settling()
    assert await watch.check() is False and watch.rebuilding  # unsure meanwhile
    consumer.joined.set()
    await settling
    await counted(store)  # the replicas recounted everything before the tick looked
    assert await watch.check() is True and watch.losses == 1


async def test_without_the_start_up_answer_our_own_commits_are_no_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END, first=True)  # our ingest committed END ...
    await counted(store)  # ... after the store held END
    assert await watch.check() is False and watch.losses == 0
    assert not watch.rebuilding


async def test_without_the_start_up_answer_commits_past_the_store_are_a_loss() -> None:
    store = MemoryStore(3600)
    watch = await watching(store, committed=END, first=True)
    await counted(store, upto=END - 3)
    assert await watch.check() is True and watch.losses == 1
