"""A Kafka batch counts exactly what the per-record path counts.

``BatchProcessor.process`` decodes a batch into msgspec rows (C loops) and
leaves each message the rows refuse to ``Decoder``; its ``Processed`` must
equal feeding the records one by one through ``Decoder`` alone
(``batch_reference``): increments per bucket and per user, outcomes, max ts,
next offset, dead letters. Batches here span several buckets, arrive out of
order, mix priced and costed responses, and sometimes hold one message the
rows must leave to the per-record decoder.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from batch_reference import feed_one
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.contract import ModelPrice
from stream_sentinel.decode import Decoder
from stream_sentinel.events import EventType
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.store.base import PartitionId

NOW = 1_790_000_000.0
PART = PartitionId("t", 3)
PRICES = {"m": ModelPrice(prompt_per_1k=0.5, completion_per_1k=1.5), "z": ModelPrice()}
FIRST = 1_000
TENANTS = ["team-a", "t" * 256, "\u20ac" * 256, '{x}:"\\', "\x1b[0m\n"]


def processor(max_bytes: int = 64 * 1024, *, tenants: bool = False) -> BatchProcessor:
    decoder = Decoder(max_bytes=max_bytes, retention_s=3690.0, max_future_s=300.0)
    return BatchProcessor(decoder, BatchAggregator(10, PRICES, tenants=tenants))


def per_record(proc: BatchProcessor, topic: EventType, raws: list[bytes | None]) -> Processed:
    out = Processed({}, FIRST)
    for offset, raw in enumerate(raws, FIRST):
        feed_one(proc, out, PART, topic, offset, raw, NOW)
    return out


def batch_of(proc: BatchProcessor, topic: EventType, raws: list[bytes | None]) -> Processed:
    offsets = range(FIRST, FIRST + len(raws))
    return proc.process(part=PART, topic_type=topic, offsets=offsets, values=raws, now=NOW)


def taken(proc: BatchProcessor, topic: EventType, raws: list[bytes | None]) -> bool:
    """Whether the rows take every message (the performance guard)."""
    return None not in proc.rows.rows(raws, topic)


def assert_same(got: Processed, want: Processed) -> None:
    assert got.delta == want.delta
    assert got.next_offset == want.next_offset
    assert got.dead == want.dead
    assert got.outcomes == want.outcomes
    assert got.max_ts == want.max_ts


@st.composite
def event(draw: st.DrawFn, kind: EventType) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=8)),
        "type": kind,
        # several 10 s buckets, in any order, up to the edges of the ts window
        "ts": draw(st.floats(NOW - 3690.0, NOW + 300.0) | st.floats(NOW - 45, NOW)),
        "user_id": draw(st.sampled_from(["a", "b", "c", "{x}:y", "\u00e9\U0001f600"])),
    }
    optional = {
        "model": st.sampled_from(["m", "z", "unpriced"]) | st.none(),
        "prompt_tokens": st.integers(0, 10**6) | st.none(),
        "tenant": st.sampled_from(TENANTS) | st.text(min_size=1, max_size=6) | st.none(),
    }
    if kind == "request":
        doc["blocked"] = draw(st.booleans())
        optional["block_reason"] = st.sampled_from(["prompt_injection", ""]) | st.none()
    else:
        safe = draw(st.sampled_from(["safe", "score", "both"]))
        if safe != "score":
            doc["safe"] = draw(st.booleans())
        if safe != "safe":
            doc["safety_score"] = draw(st.floats(0, 1) | st.sampled_from([0, 1, 0.5]))
        optional["cost_usd"] = st.floats(0, 1e6) | st.integers(0, 10) | st.none()
        optional["completion_tokens"] = st.integers(0, 10**6) | st.none()
        optional["request_id"] = st.text(max_size=4) | st.none()
    for name, values in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(values)
    return doc


@st.composite
def batch(draw: st.DrawFn) -> tuple[EventType, list[bytes | None]]:
    kind: EventType = draw(st.sampled_from(["request", "response"]))
    raws: list[bytes | None] = [
        orjson.dumps(doc) for doc in draw(st.lists(event(kind), min_size=1, max_size=40))
    ]
    return kind, raws


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_a_batch_of_contract_events_is_taken_and_counted_exactly(
    sample: tuple[EventType, list[bytes | None]],
) -> None:
    kind, raws = sample
    proc = processor()
    assert taken(proc, kind, raws)  # every message here is one the rows must take
    got = batch_of(proc, kind, raws)
    assert not got.dead
    assert_same(got, per_record(proc, kind, raws))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_each_tenant_is_counted_alike_from_rows_and_from_the_decoder(
    sample: tuple[EventType, list[bytes | None]],
) -> None:
    # with per-tenant counting on, the tenant read from a row must count where
    # the decoder's event counts it; the events' own tenants are the oracle
    kind, raws = sample
    proc = processor(tenants=True)
    assert taken(proc, kind, raws)
    got = batch_of(proc, kind, raws)
    assert_same(got, per_record(proc, kind, raws))
    docs = [orjson.loads(raw or b"") for raw in raws]
    want = Counter(doc["tenant"] for doc in docs if doc.get("tenant") is not None)
    counted: Counter[str] = Counter()
    for bucket in got.delta.values():
        for tenant, part in bucket.tenants.items():
            counted[tenant] += part.requests + part.responses
    assert counted == want


ODD = [
    None,  # tombstone
    b"{oops",
    b"",
    b"  ",
    b"[]",
    b'{"type":"request"}',
    b"\xff",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch(), st.data())
def test_one_odd_message_is_left_to_the_per_record_path(
    sample: tuple[EventType, list[bytes | None]], data: st.DataObject
) -> None:
    kind, raws = sample
    at = data.draw(st.integers(0, len(raws)))
    doc = orjson.loads(raws[min(at, len(raws) - 1)] or b"{}")
    odd = data.draw(
        st.sampled_from(
            [
                *ODD,
                orjson.dumps({**doc, "extra": 1}),  # valid, but extra fields are per-record
                orjson.dumps({**doc, "ts": "2026-11-02T09:00:00Z"}),  # valid string ts
                orjson.dumps({**doc, "ts": NOW - 3691}),  # too old
                orjson.dumps({**doc, "ts": NOW + 301}),  # too far ahead
                orjson.dumps({**doc, "type": "response" if kind == "request" else "request"}),
                orjson.dumps(
                    {k: v for k, v in doc.items() if k not in ("safe", "blocked", "safety_score")}
                ),
                orjson.dumps({**doc, "user_id": "u" * 257}),
                orjson.dumps({**doc, "tenant": "t" * 257}),
                orjson.dumps({**doc, "tenant": ""}),
                orjson.dumps({**doc, "tenant": 7}),
                orjson.dumps({**doc, "prompt_tokens": 7.0}),
            ]
        )
    )
    raws = [*raws[:at], odd, *raws[at:]]
    proc = processor()
    got = batch_of(proc, kind, raws)
    assert_same(got, per_record(proc, kind, raws))
    assert sum(got.outcomes.values()) == len(raws)  # the rest is still counted
    rows = proc.rows.rows(raws, kind)
    assert all(row is not None for i, row in enumerate(rows) if i != at)


def test_a_message_over_the_size_limit_is_left_to_the_per_record_path() -> None:
    doc = {"event_id": "e", "type": "request", "ts": NOW, "user_id": "u", "blocked": False}
    small = orjson.dumps(doc)
    big = orjson.dumps({**doc, "model": "m" * 200})
    proc = processor(max_bytes=len(small) + 10)
    assert proc.rows.rows([small, big], "request")[1] is None
    got = batch_of(proc, "request", [small, big])
    (dead,) = got.dead
    assert dead.reason == "too_large"
    assert_same(got, per_record(proc, "request", [small, big]))


def test_a_bad_tenant_is_a_dead_letter_and_its_neighbours_count() -> None:
    base = {"event_id": "e", "type": "request", "ts": NOW, "user_id": "u", "blocked": False}
    tenants = ["a", "t" * 257, "", 7, None, "\u20ac" * 256, ["a"]]
    raws: list[bytes | None] = [orjson.dumps({**base, "tenant": t}) for t in tenants]
    proc = processor()
    got = batch_of(proc, "request", raws)
    assert [(d.offset - FIRST, d.reason) for d in got.dead] == [
        (1, "length:tenant"),
        (2, "length:tenant"),
        (3, "type:tenant"),
        (6, "type:tenant"),
    ]
    assert got.outcomes[("request", "")] == 3
    assert_same(got, per_record(proc, "request", raws))


def test_a_missing_type_is_the_topics_type_on_both_paths() -> None:
    raws: list[bytes | None] = [
        orjson.dumps({"event_id": "e", "ts": NOW, "user_id": "u", "blocked": True}),
        orjson.dumps({"event_id": "e", "ts": NOW, "user_id": "u", "blocked": False}),
    ]
    proc = processor()
    assert taken(proc, "request", raws)
    got = batch_of(proc, "request", raws)
    assert_same(got, per_record(proc, "request", raws))
    assert got.outcomes == {("request", ""): 2}


def test_safe_comes_from_the_score_when_absent() -> None:
    base = {"event_id": "e", "type": "response", "ts": NOW, "user_id": "u"}
    raws: list[bytes | None] = [
        orjson.dumps({**base, "safety_score": 0.5}),  # on the threshold: safe
        orjson.dumps({**base, "safety_score": 0.49}),
        orjson.dumps({**base, "safe": False, "safety_score": 0.9}),  # safe wins
    ]
    proc = processor()
    assert taken(proc, "response", raws)
    got = batch_of(proc, "response", raws)
    (bucket,) = got.delta.values()
    assert (bucket.responses, bucket.safe, bucket.cost_unknown) == (3, 1, 3)


def test_buckets_split_where_the_per_event_path_splits_them() -> None:
    # ts on and around bucket edges, out of order: 10 s buckets at ...90, ...00, ...10
    edge = math.floor(NOW / 10) * 10
    stamps = [
        edge,
        edge - 1e-6,
        edge + 9.999999,
        edge + 10,
        edge - 10,
        edge,
        math.nextafter(edge, 0),
    ]
    raws: list[bytes | None] = [
        orjson.dumps({"event_id": "e", "type": "request", "ts": ts, "user_id": u, "blocked": b})
        for ts, u, b in zip(stamps, "abcabca", [True, False] * 4, strict=False)
    ]
    proc = processor()
    assert taken(proc, "request", raws)
    got = batch_of(proc, "request", raws)
    assert sorted(got.delta) == [edge - 10, edge, edge + 10]
    assert_same(got, per_record(proc, "request", raws))


def producer_shaped(raw: bytes | None, extra: dict[str, Any]) -> bytes:
    """``raw`` as a logger writes it: RFC 3339 ts in milliseconds, extra fields."""
    doc = orjson.loads(raw or b"{}")
    when = datetime.fromtimestamp(doc["ts"], UTC)
    doc["ts"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({**doc, **extra})


EXTRAS = st.fixed_dictionaries(
    {
        "trace_id": st.integers(0, 2**128 - 1).map("{:032x}".format),
        "latency_ms": st.floats(0, 1e4) | st.integers(-(2**63), 2**63 - 1),
        "client": st.fixed_dictionaries({"v": st.text(max_size=5), "n": st.none() | st.booleans()}),
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch(), st.lists(EXTRAS, min_size=1, max_size=3))
def test_a_batch_as_producers_write_it_is_taken_and_counted_exactly(
    sample: tuple[EventType, list[bytes | None]], extras: list[dict[str, Any]]
) -> None:
    kind, raws = sample
    shaped: list[bytes | None] = [
        producer_shaped(raw, extras[i % len(extras)]) for i, raw in enumerate(raws)
    ]
    proc = processor()
    assert taken(proc, kind, shaped)  # RFC 3339 ts and extra fields stay on the rows
    assert_same(batch_of(proc, kind, shaped), per_record(proc, kind, shaped))


HOSTILE_EXTRA_VALUES = [
    b"1e400",
    b"-1" + b"0" * 400,
    b'"\\ud800"',
    b'"a\xffb"',
    b"[" * 1100 + b"]" * 1100,
    b'{"a": {"b": {"c": 1}}}',  # valid, deeper than the named rows decode
    b"[1e-400, 2e308]",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch(), st.lists(EXTRAS, min_size=1, max_size=3), st.data())
def test_hostile_extra_values_after_learning_count_as_the_per_record_path(
    sample: tuple[EventType, list[bytes | None]], extras: list[dict[str, Any]], data: st.DataObject
) -> None:
    # the processor has learned the producer's extra fields from a first
    # batch; in the next, named fields carry values orjson refuses (or valid
    # ones the named rows do not decode)
    kind, raws = sample
    shaped = [producer_shaped(raw, extras[i % len(extras)]) for i, raw in enumerate(raws)]
    proc = processor()
    batch_of(proc, kind, list(shaped))
    places = data.draw(st.sets(st.integers(0, len(shaped) - 1), max_size=3))
    hostile: list[bytes | None] = list(shaped)
    for at in places:
        value = data.draw(st.sampled_from(HOSTILE_EXTRA_VALUES))
        hostile[at] = shaped[at][:-1] + b',"trace_id":' + value + b"}"  # the last one wins
    assert_same(batch_of(proc, kind, hostile), per_record(proc, kind, hostile))
    rows = proc.rows.rows(hostile, kind)
    assert all(row is not None for i, row in enumerate(rows) if i not in places)
