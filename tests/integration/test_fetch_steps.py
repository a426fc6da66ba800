"""Records are taken in steps of ``fetch_records`` and written in batches of
at most ``max_records``: steps add up to a batch, and no batch is larger."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import pytest

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.decode import Decoder
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.kafka.source import KafkaIngest
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.memory import MemoryStore

from .harness import (
    WIDTH,
    assert_exact,
    end_offsets,
    expected_of,
    ingest_settings,
    ingest_until_stored,
    make_events,
    produce,
)

pytestmark = pytest.mark.integration


class Sizes:
    """IngestObserver keeping the size of every batch written."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None:
        self.sizes.append(processed.counted)

    def store_error(self, op: str) -> None:
        pass

    def lag(self, part: PartitionId, lag: int) -> None:
        pass

    def assignment_changed(
        self, assigned: Sequence[PartitionId], revoked: Sequence[PartitionId]
    ) -> None:
        pass


@pytest.mark.parametrize(("max_records", "fetch_records"), [(70, 30), (20, 30)])
async def test_steps_add_up_to_batches_no_larger_than_the_maximum(
    kafka_bootstrap: str, make_topic, max_records: int, fetch_records: int
) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(1, "req"), "response": await make_topic(1, "resp")}
    events = make_events(1500, now=time.time(), seed=23)
    expected = expected_of(events)
    await produce(kafka_bootstrap, topics, events)
    ends = await end_offsets(kafka_bootstrap, topics.values())
    store = MemoryStore(retention_s=7200)
    sizes = Sizes()
    settings = dataclasses.replace(
        ingest_settings(kafka_bootstrap, topics),
        max_records=max_records,
        fetch_records=fetch_records,
    )
    ingest = KafkaIngest(
        settings, store, BatchProcessor(Decoder(), BatchAggregator(WIDTH)), observer=sizes
    )
    await ingest_until_stored(ingest, store, ends)
    await assert_exact(store, expected)  # type: ignore[arg-type]
    assert sum(sizes.sizes) == len(events)
    assert max(sizes.sizes) <= max_records
    if fetch_records < max_records:
        assert max(sizes.sizes) > fetch_records  # several steps made one batch
