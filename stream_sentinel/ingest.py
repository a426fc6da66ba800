"""Decode + aggregate one batch of raw records: the part live and replay share.

No I/O here. The Kafka consumer and the replay reader hand in raw bytes with
their offsets; they get back the increments to store, the dead letters to
publish, and per-reason counts for metrics.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter, not_

import orjson

from .aggregate import BatchAggregator, Delta
from .decode import Decoder
from .decode_rows import Instances, RequestRow, ResponseRow, RowDecoder
from .events import Event, EventType, Rejection, RequestEvent, ResponseEvent
from .store.base import PartitionId

# outcome keys of counted events
_COUNTED_REQUEST = ("request", "")
_COUNTED_RESPONSE = ("response", "")
_TS = attrgetter("ts")
# what ``count`` takes: decoded events and rows, of either type
Counted = RequestEvent | ResponseEvent | RequestRow | ResponseRow
# subclasses too: rows naming a topic's extra fields (decode_extras) are RequestRows
_REQUESTS = (RequestEvent, RequestRow)
_TOMBSTONE = Rejection("empty", "message has no value (tombstone)")
# A dead letter keeps at most this much of the value. Base64 adds a third, and a
# value near the broker's message.max.bytes (1 MiB) kept whole would make a DLQ
# record the broker refuses: its publish would fail for ever and block the partition.
MAX_DEAD_LETTER_VALUE = 256 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    raw: bytes

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "reason": self.reason,
            "detail": self.detail,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "value_b64": base64.b64encode(self.raw[:MAX_DEAD_LETTER_VALUE]).decode("ascii"),
        }
        if len(self.raw) > MAX_DEAD_LETTER_VALUE:
            doc["value_truncated"] = True
            doc["value_bytes"] = len(self.raw)
        return orjson.dumps(doc)


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
    """Decodes and counts batches: ``process`` for a Kafka partition's batch,
    ``ingest_log.feed_chunk`` for a recorded log (which uses ``decide`` and
    ``count`` here for the lines the rows leave to the decoder)."""

    __slots__ = ("_aggregator", "_decoder", "_requests", "_rows")

    def __init__(self, decoder: Decoder, aggregator: BatchAggregator) -> None:
        self._decoder = decoder
        self._aggregator = aggregator
        self._rows = RowDecoder(decoder)
        self._requests = Instances(_REQUESTS)

    @property
    def rows(self) -> RowDecoder:
        return self._rows

    def process(
        self,
        *,
        part: PartitionId,
        topic_type: EventType | None,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        now: float | None,
    ) -> Processed:
        """Fold one partition's records (``offsets[i]``, ``values[i]``; at least
        one) into one batch result, their ts checked against ``now``.

        Nothing a record contains can make this raise: a record the decoder
        cannot take becomes a dead letter.
        """
        out = Processed({}, offsets[-1] + 1)
        rows = self._rows.rows(values, topic_type)
        window = self._decoder.window
        if None not in rows:
            tss: list[float] = list(map(_TS, rows))
            if now is None or window.admits_all(tss, now):
                # the common case: no Python per record
                if topic_type == "request":
                    self.count_typed(out, rows, ())  # type: ignore[arg-type]
                elif topic_type == "response":
                    self.count_typed(out, (), rows)  # type: ignore[arg-type]
                else:
                    self.count(out, rows)  # type: ignore[arg-type]
                out.max_ts = max(tss)
                return out
        counted: list[Counted] = []
        for offset, value, row in zip(offsets, values, rows, strict=True):
            if row is not None and (now is None or window.admits(row.ts, now)):
                counted.append(row)
                continue
            event = self.decide(out, part, topic_type, offset, value, now)
            if event is not None:
                counted.append(event)
        self.count(out, counted)
        if counted:
            out.max_ts = max(map(_TS, counted))
        return out

    def decide(
        self,
        out: Processed,
        part: PartitionId,
        topic_type: EventType | None,
        offset: int,
        raw: bytes | None,
        now: float | None,
    ) -> Event | None:
        """The decoder's answer on one record the rows left to it: the event,
        or None with the rejection recorded in ``out``."""
        if raw is None:
            result: Event | Rejection = _TOMBSTONE
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
        return result

    def count(self, out: Processed, counted: Sequence[Counted]) -> None:
        """Count decoded events or rows of either type into ``out``; its max ts
        is the caller's to set."""
        is_request = self._requests.of(counted)
        requests: list[RequestEvent | RequestRow] = list(compress(counted, is_request))  # type: ignore[arg-type]
        responses: list[ResponseEvent | ResponseRow] = (
            [] if len(requests) == len(counted) else list(compress(counted, map(not_, is_request)))  # type: ignore[arg-type]
        )
        self.count_typed(out, requests, responses)

    def count_typed(
        self,
        out: Processed,
        requests: Sequence[RequestEvent | RequestRow],
        responses: Sequence[ResponseEvent | ResponseRow],
    ) -> None:
        if requests:
            self._aggregator.count_requests(out.delta, requests)
            out.outcomes[_COUNTED_REQUEST] += len(requests)
        if responses:
            self._aggregator.count_responses(out.delta, responses)
            out.outcomes[_COUNTED_RESPONSE] += len(responses)
