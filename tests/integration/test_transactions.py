"""Topics written by transactional producers.

An aborted transaction's events did not happen (a producer that aborts
sends them again in a later transaction), so they are not counted; and the
markers that close transactions move the stored offset to the partition's
end, so a quiet partition shows no lag and a rebuild finishes.
"""

from __future__ import annotations

import asyncio
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
    reader_store,
    wait_stored,
)

pytestmark = pytest.mark.integration


async def send_all(
    producer: AIOKafkaProducer, topics: Mapping[str, str], events: list[dict[str, object]]
) -> None:
    for event in events:
        await producer.send(
            topics[str(event["type"])], orjson.dumps(event), key=str(event["user_id"]).encode()
        )


async def test_aborted_transactions_are_not_counted(kafka_bootstrap: str, make_topic) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(1200, now=time.time(), seed=29)
    committed, aborted = events[:800], events[800:]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await send_all(producer, topics, committed[:400])
        await producer.begin_transaction()
        await send_all(producer, topics, aborted)
        await producer.abort_transaction()
        async with producer.transaction():
            await send_all(producer, topics, committed[400:])
    finally:
        await producer.stop()
    ends = await end_offsets(kafka_bootstrap, topics.values())

    store = MemoryStore(retention_s=7200)
    ingest = KafkaIngest(
        ingest_settings(kafka_bootstrap, topics),
        store,
        BatchProcessor(Decoder(), BatchAggregator(WIDTH)),
    )
    stop = asyncio.Event()
    await ingest.start()
    runner = asyncio.create_task(ingest.run(stop))
    try:
        await wait_stored(store, ends, timeout=120)
    finally:
        stop.set()
        await runner
        await ingest.stop()
    await assert_exact(store, expected_of(committed))  # type: ignore[arg-type]


async def test_a_quiet_partition_ending_in_a_marker_is_caught_up_on_redis(
    kafka_bootstrap: str, redis_url: str, make_topic
) -> None:  # type: ignore[no-untyped-def]
    """Rebuilt from nothing, on the Redis store: the rebuild ends and no lag remains."""
    topics = {"request": await make_topic(1, "req"), "response": await make_topic(1, "resp")}
    events = make_events(300, now=time.time(), seed=31)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await send_all(producer, topics, events)
    finally:
        await producer.stop()
    ends = await end_offsets(kafka_bootstrap, topics.values())
    assert sum(ends.values()) == len(events) + 2  # one commit marker per partition

    store = reader_store(redis_url, f"tx-{uuid.uuid4().hex[:8]}")
    ingest = KafkaIngest(
        ingest_settings(kafka_bootstrap, topics),
        store,
        BatchProcessor(Decoder(), BatchAggregator(WIDTH)),
    )
    stop = asyncio.Event()
    await ingest.start()
    runner = asyncio.create_task(ingest.run(stop))
    try:
        await wait_stored(store, ends, timeout=120)
        assert not ingest.rebuilding
        assert ingest.total_lag() == 0
    finally:
        stop.set()
        await runner
        await ingest.stop()
    try:
        await assert_exact(store, expected_of(events))
    finally:
        await store.close()
