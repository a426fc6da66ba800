"""The batch row decoder must never take what the per-record decoder refuses.

``assert_rows_agree`` runs one message through ``RowDecoder`` as a batch of
one, on a topic's decoder or a log's (``topic_type`` None): where the rows take
it (and its ts is in range), ``Decoder`` must have accepted it with the same
values and types. The rows may refuse more (odd but valid shapes): that only
sends the message down the per-record path. It runs twice on one
``RowDecoder``: first with nothing learned (the rows that skip unknown
fields, then orjson), then with the rows naming every field of the message
(``decode_extras``), which decode its extra fields too: hostile values in
them must be refused there as orjson refuses them.
"""

from __future__ import annotations

import msgspec

from stream_sentinel.decode import Decoder
from stream_sentinel.decode_rows import RequestRow, ResponseRow, RowDecoder
from stream_sentinel.events import Event, EventType, Rejection, RequestEvent, ResponseEvent

_SHARED = ("event_id", "ts", "user_id", "model", "prompt_tokens", "tenant")
_REQUEST = (*_SHARED, "blocked", "block_reason")
_RESPONSE = (*_SHARED, "safe", "request_id", "cost_usd", "completion_tokens")


def assert_rows_agree(
    decoder: Decoder, raw: bytes, topic_type: EventType | None, now: float | None
) -> RequestRow | ResponseRow | None:
    """The row ``RowDecoder`` made of ``raw`` on ``topic_type``'s topic (or a
    log), if any, with the rows that have learned its extra fields."""
    rows = RowDecoder(decoder)
    (first,) = rows.rows([raw], topic_type)
    names = _field_names(raw)
    if names:
        rows.extra_fields(topic_type).learn(dict.fromkeys(names))
    (named,) = rows.rows([raw], topic_type)
    _assert_agrees(decoder, raw, topic_type, now, first)
    _assert_agrees(decoder, raw, topic_type, now, named)
    assert (first is None) == (named is None), ("learning changed the answer", raw[:300])
    return named


def _field_names(raw: bytes) -> list[str]:
    """The top-level names of ``raw``, its values unchecked (hostile ones too)."""
    try:
        return list(msgspec.json.decode(raw, type=dict[str, msgspec.Raw]))
    except (msgspec.DecodeError, RecursionError):
        return []


def _assert_agrees(
    decoder: Decoder,
    raw: bytes,
    topic_type: EventType | None,
    now: float | None,
    row: RequestRow | ResponseRow | None,
) -> None:
    if row is None or (now is not None and not decoder.window.admits(row.ts, now)):
        return
    want: Event | Rejection = decoder.decode(raw, topic_type=topic_type, now=now)
    assert not isinstance(want, Rejection), (
        f"rows took what the decoder refused ({want}): {raw[:300]!r}"
    )
    fields = _REQUEST if isinstance(want, RequestEvent) else _RESPONSE
    assert isinstance(want, RequestEvent if isinstance(row, RequestRow) else ResponseEvent)
    for name in fields:
        mine, theirs = getattr(row, name), getattr(want, name)
        assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs, raw[:300])
