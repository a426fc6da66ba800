"""The batch row decoder must never take what the per-record decoder refuses.

``assert_rows_agree`` runs one message through ``RowDecoder`` as a batch of
one, under both topics: where the rows take it, ``Decoder`` must have accepted
it with the same values and types. The rows may refuse more (extra fields,
string timestamps...): that only sends a batch down the per-record path.
"""

from __future__ import annotations

from stream_sentinel.decode import Decoder
from stream_sentinel.decode_rows import RequestRow, ResponseRow, RowDecoder
from stream_sentinel.events import Event, EventType, Rejection, RequestEvent, ResponseEvent

_SHARED = ("event_id", "ts", "user_id", "model", "prompt_tokens")
_REQUEST = (*_SHARED, "blocked", "block_reason")
_RESPONSE = (*_SHARED, "safe", "request_id", "cost_usd", "completion_tokens")


def assert_rows_agree(
    decoder: Decoder, raw: bytes, topic_type: EventType | None, now: float | None
) -> RequestRow | ResponseRow | None:
    """The row ``RowDecoder`` made of ``raw`` on ``topic_type``'s topic, if any."""
    if topic_type is None:  # rows are per topic; a log line is the per-record path's
        return None
    rows = RowDecoder(decoder)
    got = rows.requests([raw], now) if topic_type == "request" else rows.responses([raw], now)
    if got is None:
        return None
    (row,) = got
    want: Event | Rejection = decoder.decode(raw, topic_type=topic_type, now=now)
    assert not isinstance(want, Rejection), (
        f"rows took what the decoder refused ({want}): {raw[:300]!r}"
    )
    fields = _REQUEST if isinstance(want, RequestEvent) else _RESPONSE
    assert isinstance(want, RequestEvent if topic_type == "request" else ResponseEvent)
    for name in fields:
        mine, theirs = getattr(row, name), getattr(want, name)
        assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs, raw[:300])
    return row
