"""The one-record-at-a-time path the batch loops replace: the tests' reference.

``feed_one`` decodes one record with ``Decoder`` alone (no rows) and counts
it on its own; ``aggregate`` counts events one by one. Batches, row runs and
log chunks must give exactly what these give.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream_sentinel.aggregate import BatchAggregator, Delta
from stream_sentinel.events import Event, EventType, RequestEvent
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.store.base import PartitionId


def aggregate(aggregator: BatchAggregator, events: Iterable[Event]) -> Delta:
    delta: Delta = {}
    for event in events:
        if isinstance(event, RequestEvent):
            aggregator.count_requests(delta, [event])
        else:
            aggregator.count_responses(delta, [event])
    return delta


def feed_one(
    proc: BatchProcessor,
    out: Processed,
    part: PartitionId,
    topic_type: EventType | None,
    offset: int,
    raw: bytes | None,
    now: float | None,
) -> Event | None:
    """Decode one record into ``out``; the event when it was counted."""
    out.next_offset = offset + 1
    event = proc.decide(out, part, topic_type, offset, raw, now)
    if event is None:
        return None
    proc.count(out, [event])
    if out.max_ts is None or event.ts > out.max_ts:
        out.max_ts = event.ts
    return event
