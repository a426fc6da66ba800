"""The batch entry points and the batch aggregation are exactly the
one-record-at-a-time path they replace.

``batch_reference.feed_one`` (one record, ``Decoder`` alone) is the reference:
folding the same records through ``process`` (Kafka: a fixed clock) or
``ingest_log.feed_chunk`` (replay: the log is its own clock, stopping where a
tick is due) must give an equal ``Processed``: increments, next offset, dead
letters, outcomes and max ts.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from batch_reference import aggregate, feed_one
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.bucketing import bucket_of
from stream_sentinel.contract import ModelPrice, Pricing
from stream_sentinel.decode import Decoder
from stream_sentinel.events import EventType, RequestEvent, ResponseEvent
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.ingest_log import LogChunk, feed_chunk
from stream_sentinel.store.base import PartitionId

T0 = 1_790_000_000.0
PART = PartitionId("t", 3)
PRICES = {"m": ModelPrice(prompt_per_1k=0.5, completion_per_1k=1.5)}
TENANTS = ["t1", "t2", "\u20ac" * 256, '{t}:"\\\n']
# valid events but for the tenant (length:tenant, type:tenant)
BAD_TENANTS = [
    orjson.dumps(
        {
            "event_id": "e",
            "type": "request",
            "ts": T0,
            "user_id": "u",
            "blocked": False,
            "tenant": t,
        }
    )
    for t in ("", "t" * 257, 7)
]


def processor() -> BatchProcessor:
    decoder = Decoder(retention_s=300.0, max_future_s=math.inf)
    return BatchProcessor(decoder, BatchAggregator(60, PRICES))


def same(got: Processed, want: Processed) -> None:
    assert got.delta == want.delta
    assert got.next_offset == want.next_offset
    assert got.dead == want.dead
    assert got.outcomes == want.outcomes
    assert got.max_ts == want.max_ts


@st.composite
def record(draw: st.DrawFn) -> bytes | None:
    """A raw record: mostly valid events, some late or early, some refused."""
    kind = draw(st.sampled_from(["request", "response", "bad", "tombstone"]))
    if kind == "tombstone":
        return None
    if kind == "bad":
        return draw(
            st.sampled_from([b"{oops", b"[]", b'{"type":"request"}', b"  \n", *BAD_TENANTS])
        )
    doc: dict[str, Any] = {
        "event_id": "e",
        "type": kind,
        # mostly in order, sometimes far behind (refused as out of range in a log)
        "ts": T0 + draw(st.floats(0, 900)) - draw(st.sampled_from([0, 0, 0, 30, 1000])),
        "user_id": draw(st.sampled_from(["a", "b", "c"])),
    }
    tenant = draw(st.sampled_from([..., None, *TENANTS]))  # ...: no tenant field
    if tenant is not ...:
        doc["tenant"] = tenant
    if kind == "request":
        doc["blocked"] = draw(st.booleans())
    else:
        doc["safe"] = draw(st.booleans())
        doc["model"] = "m"
        doc["prompt_tokens"] = draw(st.integers(0, 5000))
        cost = draw(st.one_of(st.none(), st.floats(0, 5)))
        if cost is not None:
            doc["cost_usd"] = cost
    return orjson.dumps(doc)


RECORDS = st.lists(record(), min_size=1, max_size=60)
FIRST = st.integers(0, 10**6)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS, FIRST, st.sampled_from([None, "request", "response"]), st.booleans())
def test_process_equals_feeding_one_by_one(
    raws: list[bytes | None], first: int, topic: EventType | None, clock: bool
) -> None:
    proc = processor()
    now = T0 + 600 if clock else None
    want = Processed({}, first)
    for offset, raw in enumerate(raws, first):
        feed_one(proc, want, PART, topic, offset, raw, now)
    offsets = range(first, first + len(raws))
    got = proc.process(part=PART, topic_type=topic, offsets=offsets, values=raws, now=now)
    same(got, want)


def next_batch(proc: BatchProcessor, before: Processed) -> Processed:
    # as replay's flush: the next batch carries the log's clock over
    out = Processed({}, before.next_offset)
    out.max_ts = before.max_ts
    return out


def batches_one_by_one(
    proc: BatchProcessor, lines: list[bytes], first: int, until: float, clock: float | None
) -> list[Processed]:
    """Replay's loop as it was: a new batch after each event that makes a tick due."""
    out = Processed({}, first)
    out.max_ts = clock
    done = []
    for offset, raw in enumerate(lines, first):
        before = out.max_ts
        event = feed_one(proc, out, PART, None, offset, raw, before)
        new_max = event is not None and (before is None or event.ts > before)
        if event is not None and new_max and event.ts - 30 >= until:
            done.append(out)
            out = next_batch(proc, out)
    return [*done, out]


def batches_fed(
    proc: BatchProcessor,
    lines: list[bytes],
    first: int,
    until: float,
    clock: float | None,
    chunk_size: int = 1 << 30,
) -> list[Processed]:
    """Replay's loop: ``feed_chunk`` over blocks of ``chunk_size`` lines."""
    out = Processed({}, first)
    out.max_ts = clock
    done = []
    for at in range(0, len(lines), chunk_size):
        chunk = LogChunk(proc, lines[at : at + chunk_size], out.next_offset)
        while feed_chunk(proc, out, PART, chunk, lateness=30, until=until):
            done.append(out)
            out = next_batch(proc, out)
    return [*done, out]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS, FIRST, st.floats(-math.inf, T0 + 900), st.sampled_from([None, T0 + 300]))
def test_feeding_a_log_equals_feeding_one_by_one(
    raws: list[bytes | None], first: int, until: float, clock: float | None
) -> None:
    lines = [raw for raw in raws if raw is not None]  # a log has no tombstones
    proc = processor()
    want = batches_one_by_one(proc, lines, first, until, clock)
    got = batches_fed(proc, lines, first, until, clock)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        same(g, w)


def test_feeding_a_log_stops_right_after_the_event_that_makes_a_tick_due() -> None:
    proc = processor()
    lines = [
        orjson.dumps(
            {"event_id": str(i), "type": "request", "ts": ts, "user_id": "u", "blocked": 0}
        )
        for i, ts in enumerate([T0, T0 + 50, T0 + 90, T0 + 20, T0 + 95])
    ]
    out = Processed({}, 0)
    chunk = LogChunk(proc, lines, 0)
    # blocked=0 is refused (not a boolean): every line is dead-lettered, no stop
    assert not feed_chunk(proc, out, PART, chunk, lateness=30, until=T0 + 60)
    assert len(out.dead) == 5 and out.next_offset == 5 and out.max_ts is None

    lines = [line.replace(b'"blocked":0', b'"blocked":false') for line in lines]
    out = Processed({}, 0)
    chunk = LogChunk(proc, lines, 0)
    assert feed_chunk(proc, out, PART, chunk, lateness=30, until=T0 + 60)
    # T0 + 90 - 30 reaches T0 + 60: stopped after offset 2; the rest is still to come
    assert out.next_offset == 3 and out.max_ts == T0 + 90 and out.counted == 3
    assert chunk.pos == 3


@given(st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from([1, 2, 5, 10, 15, 30, 60]))
@example(-5e-324, 2)  # floor(ts / width) and ts // width differ here
def test_aggregation_buckets_as_bucket_of_does(ts: float, width: int) -> None:
    # the batch split must put each event where bucket_of says
    delta = aggregate(BatchAggregator(width), [RequestEvent("e", ts, "u", False)])
    assert list(delta) == [bucket_of(ts, width)]


@given(
    st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=40),
    st.sampled_from([1, 2, 5, 10, 15, 30, 60]),
)
def test_a_batch_splits_into_buckets_as_bucket_of_does(tss: list[float], width: int) -> None:
    events = [RequestEvent(str(i), ts, "u", False) for i, ts in enumerate(tss)]
    delta: dict[int, Any] = {}
    BatchAggregator(width).count_requests(delta, events)
    assert delta == aggregate(BatchAggregator(width), events)


@given(
    st.one_of(st.none(), st.floats(0, 1e6)),
    st.sampled_from([None, "m", "unpriced"]),
    st.one_of(st.none(), st.integers(0, 2**53 - 1)),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_aggregated_cost_is_the_pricing_rule(
    cost: float | None, model: str | None, prompt: int | None, completion: int | None
) -> None:
    event = ResponseEvent("e", T0, "u", True, model, None, cost, prompt, completion)
    bucket = aggregate(BatchAggregator(60, PRICES), [event])[bucket_of(T0, 60)]
    want = Pricing(PRICES).nanousd(cost, model, prompt, completion)
    assert (bucket.cost_nanousd, bucket.cost_unknown) == ((0, 1) if want is None else (want, 0))


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(0, 1e6)),
            st.sampled_from([None, "m", "unpriced"]),
            st.one_of(st.none(), st.integers(0, 2**53 - 1)),
            st.one_of(st.none(), st.integers(0, 10**6)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_batch_of_responses_costs_what_they_cost_one_by_one(
    fields: list[tuple[float | None, str | None, int | None, int | None]],
) -> None:
    events = [
        ResponseEvent(str(i), T0, "u", True, m, None, c, p, q)
        for i, (c, m, p, q) in enumerate(fields)
    ]
    delta: dict[int, Any] = {}
    BatchAggregator(60, PRICES).count_responses(delta, events)
    assert delta == aggregate(BatchAggregator(60, PRICES), events)
