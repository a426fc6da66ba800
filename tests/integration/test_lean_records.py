"""Ingestion over aiokafka's parsed records counts what the stock records count.

The topics are written by a transactional producer: every commit leaves a
control marker at an offset of its own, so the records' offsets have gaps,
which ``Fetched`` keeps as an explicit list, and each partition ends with a
marker, which the stored offset must pass (``kafka.partitions.Partitions.skip_markers``).
"""

from __future__ import annotations

import dataclasses
import time

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
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "stock"])
async def test_records_with_offset_gaps_are_counted_exactly(
    kafka_bootstrap: str, make_topic, lean: bool
) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(3000, now=time.time(), seed=17)
    expected = expected_of(events)
    transactions = [(events[i : i + 250], True) for i in range(0, len(events), 250)]
    await produce_transactions(kafka_bootstrap, topics, transactions)
    ends = await end_offsets(kafka_bootstrap, topics.values())
    # one marker per transaction and partition it wrote to
    assert sum(ends.values()) > len(events)

    store = MemoryStore(retention_s=7200)
    settings = dataclasses.replace(
        ingest_settings(kafka_bootstrap, topics), lean_records=lean, fetch_records=300
    )
    ingest = KafkaIngest(settings, store, BatchProcessor(Decoder(), BatchAggregator(WIDTH)))

    def caught_up() -> None:
        assert ingest.lean is lean
        # the stored offsets reached the ends, past the last commit markers
        assert not ingest.rebuilding
        assert ingest.total_lag() == 0

    await ingest_until_stored(ingest, store, ends, while_running=caught_up)
    await assert_exact(store, expected)  # type: ignore[arg-type]
