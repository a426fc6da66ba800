"""A round that fails with an unexpected error is fetched and counted again.

aiokafka's position moves past whatever ``getmany`` returned. If a round's
records were dropped on an error (a bug, say) and the next round written,
the offset fence would not notice the gap: it only compares the stored
offset. The loop seeks back to what the store holds instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.decode import Decoder
from stream_sentinel.events import EventType
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


class FailsOnce(BatchProcessor):
    """The real processor, except that its first batch raises."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        super().__init__(Decoder(), BatchAggregator(WIDTH))
        self.failed = False

    def process(
        self,
        *,
        part: PartitionId,
        topic_type: EventType | None,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        now: float | None,
    ) -> Processed:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in one round")
        return super().process(
            part=part, topic_type=topic_type, offsets=offsets, values=values, now=now
        )


async def test_a_failed_round_is_counted_again_not_skipped(
    kafka_bootstrap: str, make_topic
) -> None:  # type: ignore[no-untyped-def]
    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    events = make_events(4000, now=time.time(), seed=3)
    expected = expected_of(events)
    await produce(kafka_bootstrap, topics, events)
    ends = await end_offsets(kafka_bootstrap, topics.values())
    store = MemoryStore(retention_s=7200)
    processor = FailsOnce()
    ingest = KafkaIngest(ingest_settings(kafka_bootstrap, topics), store, processor)
    await ingest_until_stored(ingest, store, ends)
    assert processor.failed
    await assert_exact(store, expected)  # type: ignore[arg-type]
