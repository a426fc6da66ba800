"""Decode + aggregate one batch of raw records: the part live and replay share.

No I/O here. The Kafka consumer and the replay reader hand in raw bytes with
their offsets; they get back the increments to store, the dead letters to
publish, and per-reason counts for metrics.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from .aggregate import BatchAggregator, Delta
from .decode import Decoder
from .events import Event, EventType, Rejection, RequestEvent
from .store import PartitionId


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    raw: bytes

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "reason": self.reason,
                "detail": self.detail,
                "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
                "value_b64": base64.b64encode(self.raw).decode("ascii"),
            }
        )


@dataclass(slots=True)
class Processed:
    delta: Delta
    next_offset: int
    dead: list[DeadLetter] = field(default_factory=list)
    # (event type or "unknown", reason); reason "" means counted
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    max_ts: float | None = None

    @property
    def counted(self) -> int:
        return sum(n for (_, reason), n in self.outcomes.items() if not reason)


class BatchProcessor:
    def __init__(self, decoder: Decoder, aggregator: BatchAggregator) -> None:
        self._decoder = decoder
        self._aggregator = aggregator

    def process(
        self,
        part: PartitionId,
        topic_type: EventType | None,
        records: Iterable[tuple[int, bytes | None]],
        *,
        now: float | None,
        next_offset: int,
    ) -> Processed:
        """Fold ``records`` (offset, value) into one batch result.

        ``next_offset`` is the offset after the batch when it is empty; with
        records it is the last offset + 1. Nothing a record contains can make
        this raise: a record the decoder cannot take becomes a dead letter.
        """
        out = self.new_batch(next_offset)
        for offset, raw in records:
            self.feed(out, part, topic_type, offset, raw, now)
        out.delta = self._aggregator.result(out.delta)
        return out

    def new_batch(self, next_offset: int) -> Processed:
        return Processed(self._aggregator.initialize(), next_offset)

    def feed(
        self,
        out: Processed,
        part: PartitionId,
        topic_type: EventType | None,
        offset: int,
        raw: bytes | None,
        now: float | None,
    ) -> Event | None:
        """Decode one record into ``out``; the event when it was counted."""
        out.next_offset = offset + 1
        if raw is None:
            result: Event | Rejection = Rejection("empty", "message has no value (tombstone)")
        else:
            result = self._decoder.decode(raw, topic_type=topic_type, now=now)
        if isinstance(result, Rejection):
            out.outcomes[(topic_type or "unknown", result.reason)] += 1
            out.dead.append(
                DeadLetter(
                    result.reason, result.detail, part.topic, part.partition, offset, raw or b""
                )
            )
            return None
        self._aggregator.agg(out.delta, result)
        kind = "request" if isinstance(result, RequestEvent) else "response"
        out.outcomes[(kind, "")] += 1
        if out.max_ts is None or result.ts > out.max_ts:
            out.max_ts = result.ts
        return result
