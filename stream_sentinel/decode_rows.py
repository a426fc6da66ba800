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
  ``type`` in a log, a tombstone, an oversized message...) is None, and the
  caller runs ``Decoder`` on that record, so rejection reasons and dead
  letters come from one place.

``tests/row_reference.py`` (used by the decoder's corpus and boundary tests)
checks that a row is only ever taken where ``Decoder`` accepts the message,
with the same values; ``tests/test_process_rows.py`` and
``tests/test_ingest_log.py`` check that batches count what the per-record
path counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated

import msgspec
from msgspec import Meta

from .contract import MAX_COST_USD, safe_from_score
from .decode import MAX_EVENT_ID, MAX_TOKENS, MAX_USER_ID, Decoder
from .events import EventType

EventId = Annotated[str, Meta(min_length=1, max_length=MAX_EVENT_ID)]
UserId = Annotated[str, Meta(min_length=1, max_length=MAX_USER_ID)]
Timestamp = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]


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


_SAFE = attrgetter("safe")
# what a row may fail with: msgspec's errors, a tombstone (None) in len(),
# and the recursion limit on deep nesting
_REFUSED = (msgspec.DecodeError, TypeError, RecursionError, UnicodeDecodeError)

Row = RequestRow | ResponseRow


class RowDecoder:
    """Decodes the messages of one topic (or the lines of a log) into rows;
    None for each one ``Decoder`` must decide."""

    __slots__ = ("_decoder", "_decoders")

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        # ``type`` is the tag: a topic's decoder takes a missing one (the
        # topic implies it, as ``Decoder`` says); a log line needs it
        self._decoders: dict[EventType | None, msgspec.json.Decoder[Row]] = {
            "request": msgspec.json.Decoder(RequestRow),
            "response": msgspec.json.Decoder(ResponseRow),
            None: msgspec.json.Decoder(RequestRow | ResponseRow),
        }

    @property
    def decoder(self) -> Decoder:
        """The per-record decoder whose settings (limits, threshold, ts window) the rows follow."""
        return self._decoder

    def rows(
        self, values: Sequence[bytes | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Each value as a row with ``safe`` resolved, or None where ``Decoder``
        must decide. No ts range check: that depends on the caller's clock.

        A clean batch is decoded in one C loop; a batch with a refused value
        is decoded again value by value to find which.
        """
        decode = self._decoders[topic_type].decode
        limit = self._decoder.max_bytes
        try:
            if values and max(map(len, values)) <= limit:  # type: ignore[arg-type]
                return self._resolve_safe(list(map(decode, values)))  # type: ignore[arg-type]
        except _REFUSED:
            pass
        rows: list[Row | None] = []
        for value in values:
            try:
                rows.append(decode(value) if value is not None and len(value) <= limit else None)
            except _REFUSED:
                rows.append(None)
        return self._resolve_safe(rows)

    def _resolve_safe(self, rows: list[Row | None]) -> list[Row | None]:
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
                row.safe = safe_from_score(row.safety_score, threshold)
            at += 1
        if refused:
            return [None if id(row) in refused else row for row in rows]
        return rows
