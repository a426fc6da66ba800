"""Records appended while a partition's rebuild start is looked up are counted.

A partition with no stored offset is counted again from the first record of
the lookback (``offsets_for_times``); with no such record it starts at the
end. Those are two broker queries: when the end was read after the time
lookup, records a producer appended in between fell below the start and were
skipped for good. CI saw it once, as a second consumer joined the group while
the first events were being produced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.decode import Decoder
from stream_sentinel.ingest import BatchProcessor
from stream_sentinel.kafka.source import KafkaIngest
from stream_sentinel.store.memory import MemoryStore

from .harness import (
    WIDTH,
    assert_exact,
    end_offsets,
    expected_of,
    ingest_settings,
    make_events,
    produce,
    wait_stored,
)

pytestmark = pytest.mark.integration


async def test_records_produced_during_the_rebuild_lookup_are_not_skipped(
    kafka_bootstrap: str, make_topic
) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(4000, now=time.time(), seed=11)
    expected = expected_of(events)
    store = MemoryStore(retention_s=7200)
    ingest = KafkaIngest(
        ingest_settings(kafka_bootstrap, topics),
        store,
        BatchProcessor(Decoder(), BatchAggregator(WIDTH)),
    )
    await ingest.start()

    # the topics are empty when the time lookup runs; the first half of the
    # events lands right after it answers, before the rebuild picks its start
    lookups: list[Mapping[TopicPartition, Any]] = []
    time_lookup = ingest.consumer.offsets_for_times

    async def lookup_then_produce(
        timestamps: Mapping[TopicPartition, int],
    ) -> Mapping[TopicPartition, Any]:
        found = await time_lookup(timestamps)
        if not lookups:
            await produce(kafka_bootstrap, topics, events[:2000])
        lookups.append(found)
        return found

    ingest.consumer.offsets_for_times = lookup_then_produce  # type: ignore[method-assign]
    stop = asyncio.Event()
    runner = asyncio.create_task(ingest.run(stop))
    try:
        async with asyncio.timeout(60):
            while not lookups:
                await asyncio.sleep(0.05)
        assert all(hit is None for hit in lookups[0].values()), "topics were not empty"
        await produce(kafka_bootstrap, topics, events[2000:])
        ends = await end_offsets(kafka_bootstrap, topics.values())
        await wait_stored(store, ends, timeout=120)
    finally:
        stop.set()
        await runner
        await ingest.stop()
    await assert_exact(store, expected)  # type: ignore[arg-type]
