"""Topics written by transactional producers.

An aborted transaction's events did not happen (a producer that aborts
sends them again in a later transaction), so they are not counted; and the
markers that close transactions move the stored offset to the partition's
end, so a quiet partition shows no lag and a rebuild finishes.
"""

from __future__ import annotations

import time
import uuid

import pytest

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
    ingest_until_stored,
    make_events,
    produce_transactions,
    reader_store,
)

pytestmark = pytest.mark.integration


async def test_aborted_transactions_are_not_counted(kafka_bootstrap: str, make_topic) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(1200, now=time.time(), seed=29)
    committed, aborted = events[:800], events[800:]
    transactions = [(committed[:400], True), (aborted, False), (committed[400:], True)]
    await produce_transactions(kafka_bootstrap, topics, transactions)
    ends = await end_offsets(kafka_bootstrap, topics.values())
    store = MemoryStore(retention_s=7200)
    processor = BatchProcessor(Decoder(), BatchAggregator(WIDTH))
    ingest = KafkaIngest(ingest_settings(kafka_bootstrap, topics), store, processor)
    await ingest_until_stored(ingest, store, ends)
    await assert_exact(store, expected_of(committed))  # type: ignore[arg-type]


async def test_a_quiet_partition_ending_in_a_marker_is_caught_up_on_redis(
    kafka_bootstrap: str, redis_url: str, make_topic
) -> None:  # type: ignore[no-untyped-def]
    """Rebuilt from nothing, on the Redis store: the rebuild ends and no lag remains."""
    topics = {"request": await make_topic(1, "req"), "response": await make_topic(1, "resp")}
    events = make_events(300, now=time.time(), seed=31)
    await produce_transactions(kafka_bootstrap, topics, [(events, True)])
    ends = await end_offsets(kafka_bootstrap, topics.values())
    assert sum(ends.values()) == len(events) + 2  # one commit marker per partition

    store = reader_store(redis_url, f"tx-{uuid.uuid4().hex[:8]}")
    processor = BatchProcessor(Decoder(), BatchAggregator(WIDTH))
    ingest = KafkaIngest(ingest_settings(kafka_bootstrap, topics), store, processor)

    def caught_up() -> None:
        assert not ingest.rebuilding
        assert ingest.total_lag() == 0

    try:
        await ingest_until_stored(ingest, store, ends, while_running=caught_up)
        await assert_exact(store, expected_of(events))
    finally:
        await store.close()
