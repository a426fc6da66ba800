"""The batch row decoder must never take what the per-record decoder refuses.

``assert_rows_agree`` runs one message through ``RowDecoder`` as a batch of
one, on a topic's decoder or a log's (``topic_type`` None): where the rows take
it (and its ts is in range), ``Decoder`` must have accepted it with the same
values and types. The rows may refuse more (odd but valid shapes): that only
sends the message down the per-record path. It runs twice on one
``RowDecoder``: first with nothing learned (the rows that skip unknown
fields, then orjson), then with the rows naming every field of the message
and the members of its objects (``decode_extras``), which decode its extra
fields too: hostile values in them must be refused there as orjson refuses them.
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
    skeleton = _skeleton(raw)
    if skeleton:
        rows.extra_fields(topic_type).learn(skeleton)
    (named,) = rows.rows([raw], topic_type)
    _assert_agrees(decoder, raw, topic_type, now, first)
    _assert_agrees(decoder, raw, topic_type, now, named)
    assert (first is None) == (named is None), ("learning changed the answer", raw[:300])
    return named


def _skeleton(raw: bytes) -> dict[str, object]:
    """The names of ``raw`` and of the members of its objects, values
    unchecked (hostile ones too): what rows naming its fields are learned from."""
    try:
        fields = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, RecursionError):
        return {}
    skeleton: dict[str, object] = {}
    for name, value in fields.items():
        try:
            members = msgspec.json.decode(value, type=dict[str, msgspec.Raw])
        except (msgspec.DecodeError, RecursionError):
            skeleton[name] = None
        else:
            skeleton[name] = dict.fromkeys(members)
    return skeleton


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
