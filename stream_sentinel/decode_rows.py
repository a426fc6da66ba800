"""Whole-batch decoding in C for the common case; ``decode.Decoder`` stays the rule.

Decoding one message in Python (``Decoder.decode``: orjson, then field checks)
costs several microseconds, more than aiokafka spends fetching it. Here a
batch of one partition is decoded by msgspec into typed rows, validation
included, with no Python code per message. The rows accept exactly what
``Decoder`` accepts, for messages that carry only contract fields:

- ``forbid_unknown_fields``: msgspec skips an unknown field without checking
  it (invalid UTF-8 or a number that overflows a double would pass, where the
  decoder says ``not_json``), so a message with extra fields is not taken
  here. Extra fields are allowed by the contract; they cost the per-record path.
- anything the rows refuse (a string ``ts``, ``12.0`` as a count, a missing
  ``type``, a tombstone, an oversized or out-of-range message...) makes the
  whole batch return None, and the caller runs ``Decoder`` on each record, so
  rejection reasons and dead letters come from one place.

``tests/test_process_rows.py`` checks on generated batches, and
``tests/test_decode_corpus.py`` on the decoder's corpus, that a batch taken
here counts exactly what the per-record path counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated

import msgspec
from msgspec import Meta

from .decode import MAX_COST_USD, MAX_EVENT_ID, MAX_TOKENS, MAX_USER_ID, Decoder

EventId = Annotated[str, Meta(min_length=1, max_length=MAX_EVENT_ID)]
UserId = Annotated[str, Meta(min_length=1, max_length=MAX_USER_ID)]
Timestamp = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]


# ``type`` is the tag: a RequestRow decoder refuses another type and takes a
# missing one (the topic implies it, as ``Decoder`` says); the union of both,
# for a log, needs it.
class RequestRow(
    msgspec.Struct, tag="request", tag_field="type", forbid_unknown_fields=True, gc=False
):
    """A request event with contract fields only; attribute names as ``RequestEvent``."""

    event_id: EventId
    ts: Timestamp
    user_id: UserId
    blocked: bool
    model: str | None = None
    block_reason: str | None = None
    prompt_tokens: Count | None = None


class ResponseRow(
    msgspec.Struct, tag="response", tag_field="type", forbid_unknown_fields=True, gc=False
):
    """A response event with contract fields only; ``safe`` is resolved by ``RowDecoder``."""

    event_id: EventId
    ts: Timestamp
    user_id: UserId
    safe: bool | None = None
    safety_score: Annotated[float, Meta(ge=0, le=1)] | None = None
    model: str | None = None
    request_id: str | None = None
    cost_usd: Annotated[float, Meta(ge=0, le=MAX_COST_USD)] | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None


_TS = attrgetter("ts")
_SAFE = attrgetter("safe")
# what a row may fail with: msgspec's errors, a tombstone (None) in a join or
# len(), and the recursion limit on deep nesting
_REFUSED = (msgspec.DecodeError, TypeError, RecursionError, UnicodeDecodeError)


class RowDecoder:
    """Decodes a batch of one topic into rows, or None if any message needs ``Decoder``."""

    __slots__ = ("_any", "_decoder", "_requests", "_responses")

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self._requests = msgspec.json.Decoder(RequestRow)
        self._responses = msgspec.json.Decoder(ResponseRow)
        self._any = msgspec.json.Decoder(RequestRow | ResponseRow)

    @property
    def decoder(self) -> Decoder:
        """The per-record decoder whose settings (limits, threshold) the rows follow."""
        return self._decoder

    def requests(
        self, values: Sequence[bytes | None], now: float | None
    ) -> list[RequestRow] | None:
        if not self._sized(values):
            return None
        try:
            rows = list(map(self._requests.decode, values))  # type: ignore[arg-type]
        except _REFUSED:
            return None
        return rows if self._in_range(rows, now) else None

    def responses(
        self, values: Sequence[bytes | None], now: float | None
    ) -> list[ResponseRow] | None:
        if not self._sized(values):
            return None
        try:
            rows = list(map(self._responses.decode, values))  # type: ignore[arg-type]
        except _REFUSED:
            return None
        if None in map(_SAFE, rows):
            threshold = self._decoder.safety_threshold
            for row in rows:
                if row.safe is None:
                    if row.safety_score is None:
                        return None  # missing:safe is the per-record path's to say
                    row.safe = row.safety_score >= threshold
        return rows if self._in_range(rows, now) else None

    def log_rows(self, lines: Sequence[bytes]) -> list[RequestRow | ResponseRow | None]:
        """Each line of a log as a row, or None where ``Decoder`` must decide.

        No ts range check: in a log it depends on the lines before (the
        caller's job). A clean block is decoded in one C loop; a block with a
        refused line is decoded again line by line to find which.
        """
        decode = self._any.decode
        if lines and max(map(len, lines)) <= self._decoder.max_bytes:
            try:
                rows: list[RequestRow | ResponseRow | None] = list(map(decode, lines))
            except _REFUSED:
                pass
            else:
                return self._resolve_safe(rows)
        rows = []
        limit = self._decoder.max_bytes
        for line in lines:
            try:
                rows.append(decode(line) if len(line) <= limit else None)
            except _REFUSED:
                rows.append(None)
        return self._resolve_safe(rows)

    def _resolve_safe(
        self, rows: list[RequestRow | ResponseRow | None]
    ) -> list[RequestRow | ResponseRow | None]:
        """Resolve ``safe`` from the score; None for a row with neither."""
        threshold = self._decoder.safety_threshold
        responses = [row for row in rows if type(row) is ResponseRow]
        safes = list(map(_SAFE, responses))
        refused: set[int] = set()
        at = 0
        while True:  # list.index finds the few unresolved rows in C
            try:
                at = safes.index(None, at)
            except ValueError:
                break
            row = responses[at]
            if row.safety_score is None:
                refused.add(id(row))  # missing:safe is the decoder's to say
            else:
                row.safe = row.safety_score >= threshold
            at += 1
        if refused:
            return [None if id(row) in refused else row for row in rows]
        return rows

    def _sized(self, values: Sequence[bytes | None]) -> bool:
        try:
            return bool(values) and max(map(len, values)) <= self._decoder.max_bytes  # type: ignore[arg-type]
        except TypeError:  # a tombstone
            return False

    def _in_range(
        self, rows: Sequence[RequestRow] | Sequence[ResponseRow], now: float | None
    ) -> bool:
        if now is None:
            return True
        tss: list[float] = list(map(_TS, rows))
        decoder = self._decoder
        return min(tss) >= now - decoder.retention_s and max(tss) <= now + decoder.max_future_s
