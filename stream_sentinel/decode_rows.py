"""Whole-batch decoding in C for the common case; ``decode.Decoder`` stays the rule.

Decoding one message in Python (``Decoder.decode``: orjson, then field checks)
costs several microseconds, more than aiokafka spends fetching it. Here a
batch of one partition is decoded by msgspec into typed rows, validation
included, with no Python code per message for the common shapes. The rows
accept exactly what ``Decoder`` accepts, with the same values:

- extra fields (the contract allows them; producers add trace ids, regions,
  client objects): a topic's rows name the extra fields its messages have
  shown and decode them too, with types msgspec checks as orjson does
  (``decode_extras``). A message with a field not yet named is decoded
  alone by rows that skip unknown fields, and orjson parses it before its
  row stands (and names its fields for the next ones).
- rows that skip unknown fields check their syntax but not three things
  orjson refuses: invalid UTF-8, numbers that overflow a double, deep
  nesting. Where a batch has too many messages the named rows refuse, the
  rest is decoded by those rows, and only the messages that could hide one
  (cheap byte searches over the block) are parsed by orjson too.
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

import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated

import msgspec
import orjson
from msgspec import Meta

from .contract import MAX_COST_USD, safe_from_score
from .decode import MAX_EVENT_ID, MAX_TENANT, MAX_TOKENS, MAX_USER_ID, Decoder
from .decode_extras import ExtraFields
from .decode_vet import vet_skipped
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


# The same rows with extra fields allowed (and skipped): for the messages the
# rows naming a topic's extra fields refuse, which then need a check of what
# msgspec skipped.
class _RequestWithExtras(RequestRow, tag="request", forbid_unknown_fields=False):
    pass


class _ResponseWithExtras(ResponseRow, tag="response", forbid_unknown_fields=False):
    pass


_SAFE = attrgetter("safe")
_TS = attrgetter("ts")
# what a row may fail with: msgspec's errors, a tombstone (None) in a decode,
# and the recursion limit on deep nesting
_REFUSED = (msgspec.DecodeError, TypeError, RecursionError, UnicodeDecodeError)
# messages of a batch the named rows may refuse before the rest of it goes to
# the rows that skip unknown fields: each costs a decode and an orjson parse
_MOST_REFUSED = 8
_MOST_TYPES = 64

Row = RequestRow | ResponseRow


class RowDecoder:
    """Decodes the messages of one topic (or the lines of a log) into rows;
    None for each one ``Decoder`` must decide."""

    __slots__ = ("_decoder", "_extras", "_lax", "_responses", "_strict", "_ts_parser")

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
        self._responses = Instances(ResponseRow)
        self._extras = {
            topic: ExtraFields(topic, RequestRow, ResponseRow)
            for topic in ("request", "response", None)
        }

    @property
    def decoder(self) -> Decoder:
        """The per-record decoder whose settings (limits, threshold, ts window) the rows follow."""
        return self._decoder

    def extra_fields(self, topic_type: EventType | None) -> ExtraFields:
        """The extra fields learned from ``topic_type``'s messages (None: a log's)."""
        return self._extras[topic_type]

    def rows(
        self, values: Sequence[bytes | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Each value as a row with ``safe`` and ``ts`` resolved, or None where
        ``Decoder`` must decide. No ts range check: that depends on the caller's clock.

        The batch is decoded in one C loop by rows with the contract's
        fields and the extra fields the topic has shown (``ExtraFields``;
        contract fields only until one has). A batch with a message they
        refuse is decoded again by ``_resumed``.
        """
        limit = self._decoder.max_bytes
        try:
            fits = max(map(len, values), default=0) <= limit  # type: ignore[arg-type]
        except TypeError:  # a tombstone: refused by the rows like any bad message
            fits = max(map(len, filter(None, values)), default=0) <= limit
        if not fits:
            return self._settle(self._skipping(values, topic_type), topic_type)
        named = self._extras[topic_type].decoder or self._strict[topic_type]
        try:
            rows: list[Row | None] = list(map(named.decode, values))  # type: ignore[arg-type]
        except _REFUSED:
            rows = self._resumed(values, topic_type)
        return self._settle(rows, topic_type)

    def _resumed(
        self, values: Sequence[bytes | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Rows of a batch with a message the named rows refuse: their C loop
        resumed after each one, which is decoded alone (checked and learned
        from by orjson: ``_alone``). Past a few such messages the rest goes
        to rows that skip unknown fields (``_skipping``)."""
        extras = self._extras[topic_type]
        strict = self._strict[topic_type]
        lax = self._lax[topic_type].decode
        rows: list[Row | None] = []
        n = len(values)
        for _ in range(_MOST_REFUSED):
            named = extras.decoder or strict
            # list.extend keeps what it appended before the decoder raised
            # (tests/test_decode_extras.py checks it): the refused message is
            # the next one
            with contextlib.suppress(*_REFUSED):
                rows.extend(map(named.decode, values[len(rows) :]))  # type: ignore[arg-type]
            if len(rows) == n:
                return rows
            rows.append(_alone(values[len(rows)], lax, extras))
        rows.extend(self._skipping(values[len(rows) :], topic_type))
        return rows

    def _skipping(
        self, values: Sequence[bytes | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Rows that skip unknown fields; each message whose skipped fields
        could hold what orjson refuses is checked by orjson (``decode_vet``).
        A batch with a refused value is decoded again value by value."""
        limit = self._decoder.max_bytes
        decode = self._lax[topic_type].decode
        try:
            fits = max(map(len, values), default=0) <= limit  # type: ignore[arg-type]
        except TypeError:  # a tombstone
            fits = False
        rows: list[Row | None] | None = None
        if fits:
            with contextlib.suppress(*_REFUSED):
                rows = list(map(decode, values))  # type: ignore[arg-type]
        if rows is None:
            rows = []
            for value in values:
                try:
                    rows.append(
                        decode(value) if value is not None and len(value) <= limit else None
                    )
                except _REFUSED:
                    rows.append(None)
        vet_skipped(rows, values)
        return rows

    def _settle(self, rows: list[Row | None], topic_type: EventType | None) -> list[Row | None]:
        """``rows`` with string ts parsed and ``safe`` resolved; None for the
        rows the decoder must decide after all."""
        stamps: list[object] = list(map(_TS, filter(None, rows)))
        if stamps and type(stamps[0]) is str and len(stamps) == len(rows):  # loggers' shape
            try:  # joining the texts refuses a number among them
                parsed = self._ts_parser.parse_many(stamps)  # type: ignore[arg-type]
            except TypeError:
                self._parse_ts(rows)
            else:
                if None not in parsed:
                    deque(map(setattr, rows, repeat("ts"), parsed), maxlen=0)
                else:
                    self._parse_ts(rows)
        elif str in set(map(type, stamps)):
            self._parse_ts(rows)
        return self._resolve_safe(rows, topic_type)

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

    def _resolve_safe(
        self, rows: list[Row | None], topic_type: EventType | None
    ) -> list[Row | None]:
        """Resolve ``safe`` from the score; None for a row with neither."""
        if topic_type == "request":
            return rows
        threshold = self._decoder.safety_threshold
        # a response topic's rows are all responses
        kept = (
            filter(None, rows)
            if topic_type == "response"
            else compress(rows, self._responses.of(rows))
        )
        responses: list[ResponseRow] = list(kept)  # type: ignore[arg-type]
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


class Instances:
    """``isinstance(item, kinds)`` of each item in C loops, by a table of the
    types met: ``isinstance`` on a msgspec row of another class is a
    Python-level call, and a topic's rows may be of a class made at run time
    (``decode_extras``), so the table learns each type once. It forgets them
    all past ``_MOST_TYPES``: rows' classes are made anew as fields are learned."""

    __slots__ = ("_kinds", "_table")

    def __init__(self, kinds: type | tuple[type, ...]) -> None:
        self._kinds = kinds
        self._table: dict[type, bool] = {}

    def of(self, items: Sequence[object]) -> list[bool]:
        types = list(map(type, items))
        try:
            return list(map(self._table.__getitem__, types))
        except KeyError:
            if len(self._table) >= _MOST_TYPES:
                self._table.clear()
            for kind in set(types).difference(self._table):
                self._table[kind] = issubclass(kind, self._kinds)
            return list(map(self._table.__getitem__, types))


def _alone(value: bytes | None, lax: Callable[[bytes], Row], extras: ExtraFields) -> Row | None:
    """The row of one message the named rows refused, if the decoder would
    take it: decoded by the rows that skip unknown fields, then checked (and
    learned from) by orjson, the decoder's JSON parser."""
    if value is None:
        return None
    try:
        row = lax(value)
        doc = orjson.loads(value)
    except (*_REFUSED, orjson.JSONDecodeError):
        return None
    extras.learn(doc)
    return row
