"""Ingestion over aiokafka's parsed records counts what the stock records count.

The topics are written by a transactional producer: every commit leaves a
control marker at an offset of its own, so the records' offsets have gaps,
which ``Fetched`` keeps as an explicit list, and each partition ends with a
marker, which the stored offset must pass (``KafkaIngest._skip_markers``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Mapping

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.decode import Decoder
from stream_sentinel.ingest import BatchProcessor
from stream_sentinel.source_kafka import KafkaIngest
from stream_sentinel.store_memory import MemoryStore

from .harness import (
    WIDTH,
    assert_exact,
    end_offsets,
    expected_of,
    ingest_settings,
    make_events,
    wait_stored,
)

pytestmark = pytest.mark.integration


async def produce_in_transactions(
    bootstrap: str, topics: Mapping[str, str], events: list[dict[str, object]], per_txn: int
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        for i in range(0, len(events), per_txn):
            async with producer.transaction():
                for event in events[i : i + per_txn]:
                    await producer.send(
                        topics[str(event["type"])],
                        orjson.dumps(event),
                        key=str(event["user_id"]).encode(),
                    )
    finally:
        await producer.stop()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "stock"])
async def test_records_with_offset_gaps_are_counted_exactly(
    kafka_bootstrap: str, make_topic, lean: bool
) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(3000, now=time.time(), seed=17)
    expected = expected_of(events)
    await produce_in_transactions(kafka_bootstrap, topics, events, per_txn=250)
    ends = await end_offsets(kafka_bootstrap, topics.values())
    # one marker per transaction and partition it wrote to
    assert sum(ends.values()) > len(events)

    store = MemoryStore(retention_s=7200)
    settings = dataclasses.replace(
        ingest_settings(kafka_bootstrap, topics), lean_records=lean, fetch_records=300
    )
    ingest = KafkaIngest(settings, store, BatchProcessor(Decoder(), BatchAggregator(WIDTH)))
    stop = asyncio.Event()
    await ingest.start()
    assert ingest.lean is lean
    runner = asyncio.create_task(ingest.run(stop))
    try:
        # the stored offsets reach the ends, past the last commit markers
        await wait_stored(store, ends, timeout=120)
        assert not ingest.rebuilding
        assert ingest.total_lag() == 0
    finally:
        stop.set()
        await runner
        await ingest.stop()
    await assert_exact(store, expected)  # type: ignore[arg-type]
