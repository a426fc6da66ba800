"""Whole-batch decoding in C for the common case; ``decode.Decoder`` stays the rule.

Decoding one message in Python (``Decoder.decode``: orjson, then field checks)
costs several microseconds, more than aiokafka spends fetching it. Here a
batch of one partition is decoded by msgspec into typed rows, validation
included, with no Python code per message for the common shapes. The rows
accept exactly what ``Decoder`` accepts, with the same values:

- extra fields (the contract allows them; producers add trace ids, regions,
  client objects): msgspec skips them, checking their syntax but not two
  things orjson refuses, invalid UTF-8 and numbers that overflow a double.
  So a batch that is all ASCII and holds no exponent of three digits or run
  of 200 digits (cheap byte searches) is taken as decoded; otherwise each
  message that could hide one is parsed by orjson too before its row stands.
- a string ``ts`` is parsed by the decoder's own RFC 3339 parser (with the
  minutes a stream shares cached), so its value is the decoder's.
- anything the rows refuse (``12.0`` as a count, a missing ``type`` in a log,
  a tombstone, an oversized message...) is None, and the caller runs
  ``Decoder`` on that record, so rejection reasons and dead letters come from
  one place.

``tests/row_reference.py`` (used by the decoder's corpus and boundary tests)
checks that a row is only ever taken where ``Decoder`` accepts the message,
with the same values; ``tests/test_process_rows.py`` and
``tests/test_ingest_log.py`` check that batches count what the per-record
path counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import compress, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated

import msgspec
import orjson
from msgspec import Meta

from .contract import MAX_COST_USD, safe_from_score
from .decode import MAX_EVENT_ID, MAX_TENANT, MAX_TOKENS, MAX_USER_ID, Decoder
from .events import EventType
from .timestamps import Rfc3339Parser

EventId = Annotated[str, Meta(min_length=1, max_length=MAX_EVENT_ID)]
UserId = Annotated[str, Meta(min_length=1, max_length=MAX_USER_ID)]
Tenant = Annotated[str, Meta(min_length=1, max_length=MAX_TENANT)]
Timestamp = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]
if TYPE_CHECKING:
    # what readers of a row see: ``RowDecoder`` replaces a string before it
    # hands the row out
    TsField = float
else:
    TsField = Timestamp | str  # what msgspec decodes


class RequestRow(
    msgspec.Struct, tag="request", tag_field="type", forbid_unknown_fields=True, gc=False
):
    """A request event's contract fields; attribute names as ``RequestEvent``.

    A string ``ts`` is replaced by its Unix seconds before anyone reads the row.
    """

    event_id: EventId
    ts: TsField
    user_id: UserId
    blocked: bool
    model: str | None = None
    block_reason: str | None = None
    prompt_tokens: Count | None = None
    tenant: Tenant | None = None


class ResponseRow(
    msgspec.Struct, tag="response", tag_field="type", forbid_unknown_fields=True, gc=False
):
    """A response event's contract fields; ``safe`` and ``ts`` are resolved by ``RowDecoder``."""

    event_id: EventId
    ts: TsField
    user_id: UserId
    safe: bool | None = None
    safety_score: Annotated[float, Meta(ge=0, le=1)] | None = None
    model: str | None = None
    request_id: str | None = None
    cost_usd: Annotated[float, Meta(ge=0, le=MAX_COST_USD)] | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    tenant: Tenant | None = None


# The same rows with extra fields allowed (and skipped): a batch with none is
# decoded by the strict rows, which need no check of what msgspec skipped.
class _RequestWithExtras(RequestRow, tag="request", forbid_unknown_fields=False):
    pass


class _ResponseWithExtras(ResponseRow, tag="response", forbid_unknown_fields=False):
    pass


REQUEST_ROWS = frozenset((RequestRow, _RequestWithExtras))
RESPONSE_ROWS = frozenset((ResponseRow, _ResponseWithExtras))
_TEXT = {str}
_SAFE = attrgetter("safe")
_TS = attrgetter("ts")
_NUMBER_SHAPES = bytes.maketrans(b"123456789E", b"000000000e")
# a double overflows past 1.8e308: with an exponent of at most 2 digits that
# needs 210 digits before the point; without one, 309
_LONG_DIGITS = b"0" * 200
_EXPONENT = b"0e000"  # a digit, e, three digits: signs dropped
# what may stand before a value (b"" at the start of the block)
_BEFORE_A_VALUE = (b"", b":", b",", b"[", b" ", b"\t", b"\r", b"\n", b"\0")
# orjson refuses nesting deeper than this; msgspec's limit when it skips a
# field depends on the caller's stack. Deeper needs this many openers, and
# twice as many bytes with the closers.
_MAX_DEPTH = 1024
_NESTABLE_BYTES = 2 * _MAX_DEPTH
# what a row may fail with: msgspec's errors, a tombstone (None) in a decode,
# and the recursion limit on deep nesting
_REFUSED = (msgspec.DecodeError, TypeError, RecursionError, UnicodeDecodeError)

Row = RequestRow | ResponseRow


class RowDecoder:
    """Decodes the messages of one topic (or the lines of a log) into rows;
    None for each one ``Decoder`` must decide."""

    __slots__ = ("_decoder", "_lax", "_strict", "_ts_parser")

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self._ts_parser = Rfc3339Parser()
        # ``type`` is the tag: a topic's decoder takes a missing one (the
        # topic implies it, as ``Decoder`` says); a log line needs it
        self._strict: dict[EventType | None, msgspec.json.Decoder[Row]] = {
            "request": msgspec.json.Decoder(RequestRow),
            "response": msgspec.json.Decoder(ResponseRow),
            None: msgspec.json.Decoder(RequestRow | ResponseRow),
        }
        self._lax: dict[EventType | None, msgspec.json.Decoder[Row]] = {
            "request": msgspec.json.Decoder(_RequestWithExtras),
            "response": msgspec.json.Decoder(_ResponseWithExtras),
            None: msgspec.json.Decoder(_RequestWithExtras | _ResponseWithExtras),
        }

    @property
    def decoder(self) -> Decoder:
        """The per-record decoder whose settings (limits, threshold, ts window) the rows follow."""
        return self._decoder

    def rows(
        self, values: Sequence[bytes | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Each value as a row with ``safe`` and ``ts`` resolved, or None where
        ``Decoder`` must decide. No ts range check: that depends on the caller's clock.

        A clean batch is decoded in one C loop (contract fields only: no
        check of skipped fields needed); a batch with a refused value is
        decoded again value by value to find which.
        """
        limit = self._decoder.max_bytes
        try:
            sized = bool(values) and max(map(len, values)) <= limit  # type: ignore[arg-type]
        except TypeError:  # a tombstone
            sized = False
        if sized:
            for decoders, vet in ((self._strict, False), (self._lax, True)):
                try:
                    rows: list[Row | None] = list(map(decoders[topic_type].decode, values))  # type: ignore[arg-type]
                except _REFUSED:
                    continue
                return self._settle(rows, values, vet=vet)
        decode = self._lax[topic_type].decode
        rows = []
        for value in values:
            try:
                rows.append(decode(value) if value is not None and len(value) <= limit else None)
            except _REFUSED:
                rows.append(None)
        return self._settle(rows, values, vet=True)

    def _settle(
        self, rows: list[Row | None], values: Sequence[bytes | None], *, vet: bool
    ) -> list[Row | None]:
        """Rows the decoder would take with these values; None for the others.
        ``vet``: msgspec may have skipped fields, which orjson must accept too."""
        if vet:
            _vet_skipped(rows, values)
        stamps: list[object] = list(map(_TS, filter(None, rows)))
        kinds = set(map(type, stamps))
        if kinds == _TEXT and len(stamps) == len(rows):  # every ts a string: loggers' shape
            parsed = self._ts_parser.parse_many(stamps)  # type: ignore[arg-type]
            if None not in parsed:
                deque(map(setattr, rows, repeat("ts"), parsed), maxlen=0)
            else:
                self._parse_ts(rows)
        elif str in kinds:
            self._parse_ts(rows)
        return self._resolve_safe(rows)

    def _parse_ts(self, rows: list[Row | None]) -> None:
        """Replace each string ts by its Unix seconds; None for a row whose ts
        is no RFC 3339 date-time (``bad_ts`` is the decoder's to say)."""
        stamps: list[object] = [None if row is None else row.ts for row in rows]
        places = [at for at, ts in enumerate(stamps) if type(ts) is str]
        texts: list[str] = [stamps[at] for at in places]  # type: ignore[misc]
        for at, ts in zip(places, self._ts_parser.parse_many(texts), strict=True):
            row = rows[at]
            if ts is None:
                rows[at] = None
            else:
                row.ts = ts  # type: ignore[union-attr]

    def _resolve_safe(self, rows: list[Row | None]) -> list[Row | None]:
        """Resolve ``safe`` from the score; None for a row with neither."""
        threshold = self._decoder.safety_threshold
        responses: list[ResponseRow] = list(
            compress(rows, map(RESPONSE_ROWS.__contains__, map(type, rows)))  # type: ignore[arg-type]
        )
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


def _vet_skipped(rows: list[Row | None], values: Sequence[bytes | None]) -> None:
    """None for each row whose message orjson refuses (``not_json``) although
    msgspec took it: invalid UTF-8, an overflowing number or nesting deeper
    than orjson's limit in a skipped field."""
    places = [at for at, row in enumerate(rows) if row is not None]
    if not places:
        return
    taken: list[bytes] = [values[at] for at in places]  # type: ignore[misc]
    not_utf8, not_json = _suspects(taken)
    for i in not_utf8:
        try:
            taken[i].decode()
        except UnicodeDecodeError:
            rows[places[i]] = None
    for i in not_json:
        try:
            orjson.loads(taken[i])
        except orjson.JSONDecodeError:
            rows[places[i]] = None


def _suspects(lines: list[bytes]) -> tuple[list[int], set[int]]:
    """Indexes of the lines that could hide invalid UTF-8, and of those that
    could hide an overflowing number or deep nesting.

    Byte searches over the whole block: digits read as 0 and signs dropped, a
    number that overflows shows as an exponent of 3+ digits (``0e000``) or a
    run of 200+ digits. An exponent inside a string (a hex id) is not
    preceded (past its digits and dot) by what can precede a value, and is
    passed over.
    """
    # NUL cannot stand in a line msgspec took (JSON has no raw control
    # characters in strings, nor outside them): it marks where lines end
    block = b"\0".join(lines)
    not_utf8 = [] if block.isascii() else [i for i, ln in enumerate(lines) if not ln.isascii()]
    not_json: set[int] = set()
    if max(map(len, lines)) >= _NESTABLE_BYTES:
        not_json.update(i for i, line in enumerate(lines) if _may_nest_too_deep(line))
    shapes = block.translate(_NUMBER_SHAPES, b"+-")
    pieces = shapes.split(_EXPONENT)
    line = 0
    for piece in pieces[:-1]:  # each ends where an exponent starts
        line += piece.count(b"\0")
        if piece.rstrip(b"0.")[-1:] in _BEFORE_A_VALUE:
            not_json.add(line)
    if _LONG_DIGITS in shapes:
        not_json.update(
            i for i, ln in enumerate(lines) if _LONG_DIGITS in ln.translate(_NUMBER_SHAPES)
        )
    return not_utf8, not_json


def _may_nest_too_deep(line: bytes) -> bool:
    return len(line) >= _NESTABLE_BYTES and line.count(b"[") + line.count(b"{") >= _MAX_DEPTH
