"""The batch row decoder must never take what the per-record decoder refuses.

``assert_rows_agree`` runs one message through ``RowDecoder`` as a batch of
one, on a topic's decoder or a log's (``topic_type`` None): where the rows take
it (and its ts is in range), ``Decoder`` must have accepted it with the same
values and types. The rows may refuse more (odd but valid shapes): that only
sends the message down the per-record path.
"""

from __future__ import annotations

from stream_sentinel.decode import Decoder
from stream_sentinel.decode_rows import RequestRow, ResponseRow, RowDecoder
from stream_sentinel.events import Event, EventType, Rejection, RequestEvent, ResponseEvent

_SHARED = ("event_id", "ts", "user_id", "model", "prompt_tokens", "tenant")
_REQUEST = (*_SHARED, "blocked", "block_reason")
_RESPONSE = (*_SHARED, "safe", "request_id", "cost_usd", "completion_tokens")


def assert_rows_agree(
    decoder: Decoder, raw: bytes, topic_type: EventType | None, now: float | None
) -> RequestRow | ResponseRow | None:
    """The row ``RowDecoder`` made of ``raw`` on ``topic_type``'s topic (or a log), if any."""
    (row,) = RowDecoder(decoder).rows([raw], topic_type)
    if row is None or (now is not None and not decoder.window.admits(row.ts, now)):
        return None
    want: Event | Rejection = decoder.decode(raw, topic_type=topic_type, now=now)
    assert not isinstance(want, Rejection), (
        f"rows took what the decoder refused ({want}): {raw[:300]!r}"
    )
    fields = _REQUEST if isinstance(want, RequestEvent) else _RESPONSE
    assert isinstance(want, RequestEvent if isinstance(row, RequestRow) else ResponseEvent)
    for name in fields:
        mine, theirs = getattr(row, name), getattr(want, name)
        assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs, raw[:300])
    return row
