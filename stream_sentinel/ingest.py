"""Decode + aggregate one batch of raw records: the part live and replay share.

No I/O here. The Kafka consumer and the replay reader hand in raw bytes with
their offsets; they get back the increments to store, the dead letters to
publish, and per-reason counts for metrics.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import orjson

from .aggregate import BatchAggregator, Delta
from .decode import Decoder
from .decode_rows import RequestRow, ResponseRow, RowDecoder
from .events import Event, EventType, Rejection, RequestEvent
from .store.base import PartitionId

# outcome keys of counted events
_COUNTED_REQUEST = ("request", "")
_COUNTED_RESPONSE = ("response", "")
_TS = attrgetter("ts")
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
    __slots__ = ("_aggregator", "_decoder", "_rows")

    def __init__(self, decoder: Decoder, aggregator: BatchAggregator) -> None:
        self._decoder = decoder
        self._aggregator = aggregator
        self._rows = RowDecoder(decoder)

    @property
    def rows(self) -> RowDecoder:
        return self._rows

    @property
    def aggregator(self) -> BatchAggregator:
        return self._aggregator

    def process_values(
        self,
        topic_type: EventType | None,
        values: Sequence[bytes | None],
        *,
        now: float | None,
        next_offset: int,
    ) -> Processed | None:
        """``process`` for a batch whose every message is a well-formed contract
        event (the common case), decoded and folded without Python per message.

        None: some message needs the per-record path (``process``), which
        alone decides rejections; nothing of the batch has been counted then.
        """
        out = self.new_batch(next_offset)
        if topic_type == "request":
            requests = self._rows.requests(values, now)
            if requests is None:
                return None
            self.fold_rows(out, requests, ())
            out.max_ts = max(map(_TS, requests))
        elif topic_type == "response":
            responses = self._rows.responses(values, now)
            if responses is None:
                return None
            self.fold_rows(out, (), responses)
            out.max_ts = max(map(_TS, responses))
        else:
            return None
        out.delta = self._aggregator.result(out.delta)
        return out

    def fold_rows(
        self, out: Processed, requests: Sequence[RequestRow], responses: Sequence[ResponseRow]
    ) -> None:
        """Count decoded rows into ``out``; its max ts is the caller's to set."""
        if requests:
            self._aggregator.agg_requests(out.delta, requests)
            out.outcomes[_COUNTED_REQUEST] += len(requests)
        if responses:
            self._aggregator.agg_responses(out.delta, responses)
            out.outcomes[_COUNTED_RESPONSE] += len(responses)

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
        self._run(out, part, topic_type, iter(records), now, False, 0, math.inf)
        out.delta = self._aggregator.result(out.delta)
        return out

    def feed_log(
        self,
        out: Processed,
        part: PartitionId,
        lines: Iterator[tuple[int, bytes]],
        *,
        lateness: float,
        until: float,
    ) -> bool:
        """Feed (offset, line) pairs of a recorded log into ``out``, in event time.

        A log is its own clock: each line's ts range check runs against the
        largest ts counted before it (``out.max_ts``, which the caller carries
        from batch to batch). Stops right after counting an event that moves
        the watermark (largest ts - ``lateness``) to ``until`` or past, and
        returns True; ``lines`` then resumes after it. False: ``lines`` ran out.
        """
        return self._run(out, part, None, lines, None, True, lateness, until)

    def _run(
        self,
        out: Processed,
        part: PartitionId,
        topic_type: EventType | None,
        records: Iterator[tuple[int, bytes | None]],
        now: float | None,
        log_clock: bool,
        lateness: float,
        until: float,
    ) -> bool:
        """``feed`` for many records, with the per-record work kept in locals.

        ``log_clock``: ``now`` is the largest ts counted so far. The counted
        tallies reach ``out`` once, at the end, rather than once per event.
        """
        decode, agg, delta = self._decoder.decode, self._aggregator.agg, out.delta
        max_ts = out.max_ts
        requests = responses = 0
        offset = out.next_offset - 1
        stopped = False
        for offset, raw in records:
            if log_clock:
                now = max_ts
            if raw is None:
                result: Event | Rejection = _TOMBSTONE
            else:
                result = decode(raw, topic_type=topic_type, now=now)
            if isinstance(result, Rejection):
                self._reject(out, part, topic_type, offset, raw, result)
                continue
            agg(delta, result)
            if isinstance(result, RequestEvent):
                requests += 1
            else:
                responses += 1
            ts = result.ts
            if max_ts is None or ts > max_ts:
                max_ts = ts
                if ts - lateness >= until:
                    stopped = True
                    break
        out.next_offset = offset + 1
        out.max_ts = max_ts
        if requests:
            out.outcomes[_COUNTED_REQUEST] += requests
        if responses:
            out.outcomes[_COUNTED_RESPONSE] += responses
        return stopped

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
            result: Event | Rejection = _TOMBSTONE
        else:
            result = self._decoder.decode(raw, topic_type=topic_type, now=now)
        if isinstance(result, Rejection):
            self._reject(out, part, topic_type, offset, raw, result)
            return None
        self._aggregator.agg(out.delta, result)
        out.outcomes[
            _COUNTED_REQUEST if isinstance(result, RequestEvent) else _COUNTED_RESPONSE
        ] += 1
        ts = result.ts
        if out.max_ts is None or ts > out.max_ts:
            out.max_ts = ts
        return result

    @staticmethod
    def _reject(
        out: Processed,
        part: PartitionId,
        topic_type: EventType | None,
        offset: int,
        raw: bytes | None,
        why: Rejection,
    ) -> None:
        out.outcomes[(topic_type or "unknown", why.reason)] += 1
        out.dead.append(
            DeadLetter(why.reason, why.detail, part.topic, part.partition, offset, raw or b"")
        )
