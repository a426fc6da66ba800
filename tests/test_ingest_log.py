"""Feeding a log in chunks (``ingest_log``) is exactly feeding it one line at a time.

Same generated logs as ``test_ingest_batch`` (valid events, late and very
late ones, lines the rows leave to the decoder), fed in chunks with ticks due
at arbitrary points: each batch between two stops must be equal.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_ingest_batch import (
    PART,
    PRICES,
    T0,
    batches_fed,
    batches_one_by_one,
    processor,
    record,
    same,
)

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.decode import Decoder
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.ingest_log import LogChunk, feed_chunk


@st.composite
def odd_line(draw: st.DrawFn) -> bytes:
    """Valid lines the rows refuse, so the decoder decides them."""
    doc: dict[str, Any] = {"event_id": "e", "type": "request", "user_id": "u", "blocked": True}
    kind = draw(
        st.sampled_from(["extra", "string ts", "missing safe", "too old", "huge", "tenant 257"])
    )
    ts = T0 + draw(st.floats(0, 900))
    if kind == "extra":
        return orjson.dumps({**doc, "ts": ts, "note": "x"})
    if kind == "string ts":
        return orjson.dumps({**doc, "ts": "2026-09-21T14:00:00Z"})
    if kind == "missing safe":
        return orjson.dumps({"event_id": "e", "type": "response", "user_id": "u", "ts": ts})
    if kind == "tenant 257":
        return orjson.dumps({**doc, "ts": ts, "tenant": "t" * 257})
    if kind == "too old":
        return orjson.dumps({**doc, "ts": T0 - 5000})
    return orjson.dumps({**doc, "ts": ts, "model": "m" * 70_000})  # over the size limit


_REQ = {"event_id": "e", "type": "request", "user_id": "u", "blocked": False}
LOGS = st.lists(record() | odd_line(), max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    LOGS,
    st.integers(0, 10**6),
    st.floats(-math.inf, T0 + 900),
    st.sampled_from([None, T0 + 300]),
    st.integers(1, 30),
)
@example(
    [
        orjson.dumps(
            {"event_id": "e", "type": "request", "ts": T0, "user_id": "u", "blocked": False}
        )
    ],
    0,
    -math.inf,
    None,
    1,
)
@example(  # the last line of a run is too old
    [orjson.dumps({**_REQ, "ts": T0}), orjson.dumps({**_REQ, "ts": T0 - 301})], 0, math.inf, None, 5
)
@example(  # the watermark lands exactly on the tick
    [orjson.dumps({**_REQ, "ts": T0 + 29}), orjson.dumps({**_REQ, "ts": T0 + 30})], 0, T0, None, 5
)
@example(  # runs of one row each: the second is older than the clock, the third too old
    [orjson.dumps({**_REQ, "ts": T0 + 100 - d}) for d in (0, 50, 5000)], 0, math.inf, None, 1
)
def test_chunks_equal_one_line_at_a_time(
    raws: list[bytes | None], first: int, until: float, clock: float | None, chunk_size: int
) -> None:
    lines = [raw for raw in raws if raw is not None]  # a log has no tombstones
    proc = processor()
    want = batches_one_by_one(proc, lines, first, until, clock)
    got = batches_fed(proc, lines, first, until, clock, chunk_size)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        same(g, w)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOGS, st.floats(-math.inf, T0 + 900), st.integers(1, 30))
def test_chunks_equal_one_line_at_a_time_with_a_future_limit(
    raws: list[bytes | None], until: float, chunk_size: int
) -> None:
    # replay has no future limit; the rows still apply one when the decoder has it
    lines = [raw for raw in raws if raw is not None]
    proc = BatchProcessor(Decoder(retention_s=300.0, max_future_s=120.0), BatchAggregator(60))
    want = batches_one_by_one(proc, lines, 0, until, None)
    got = batches_fed(proc, lines, 0, until, None, chunk_size)
    assert [g.outcomes for g in got] == [w.outcomes for w in want]
    for g, w in zip(got, want, strict=True):
        same(g, w)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOGS, st.floats(-math.inf, T0 + 900), st.integers(1, 30))
@example(  # two tenants and none, across a tick
    [
        orjson.dumps({**_REQ, "ts": T0 + i, "tenant": ["a", "\u20ac" * 256, None][i % 3]})
        for i in range(9)
    ],
    T0 - 26,  # due from the event at T0 + 4 on (lateness 30)
    4,
)
def test_chunks_count_each_tenant_as_one_line_at_a_time(
    raws: list[bytes | None], until: float, chunk_size: int
) -> None:
    lines = [raw for raw in raws if raw is not None]
    decoder = Decoder(retention_s=300.0, max_future_s=math.inf)
    proc = BatchProcessor(decoder, BatchAggregator(60, PRICES, tenants=True))
    want = batches_one_by_one(proc, lines, 0, until, None)
    got = batches_fed(proc, lines, 0, until, None, chunk_size)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        same(g, w)  # the deltas hold the per-tenant counts


def test_a_clean_log_is_taken_by_rows_not_line_by_line() -> None:
    # the performance guard: rows that always declined would pass the tests above
    proc = processor()
    lines = [
        orjson.dumps(
            {
                "event_id": "e",
                "type": t,
                "ts": T0 + i,
                "user_id": "u",
                "blocked": False,
                "safe": True,
                "tenant": ["team-a", "\u20ac" * 256][i % 2],
            }
        )
        .replace(b',"safe":true', b"" if t == "request" else b',"safe":true')
        .replace(b',"blocked":false', b',"blocked":false' if t == "request" else b"")
        for i, t in enumerate(["request", "response"] * 50)
    ]
    chunk = LogChunk(proc, lines, 0)
    assert None not in chunk.rows
    out = Processed({}, 0)
    assert not feed_chunk(proc, out, PART, chunk, lateness=30, until=math.inf)
    assert out.counted == 100 and out.next_offset == 100 and out.max_ts == T0 + 99
