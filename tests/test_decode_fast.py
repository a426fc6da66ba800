"""The fast path (msgspec rows) for common shapes agrees with the full path.

Batches are decoded into rows (``decode_rows``); each message the rows refuse
goes to ``Decoder.decode``, the field-by-field walk. The rows must never
change an answer: every input here goes through both (``row_reference``),
and a row must only exist where the decoder accepts, with equal values of
identical types (a ts of ``float``, counts of ``int``). Inputs are common
documents with fields changed to values at every boundary the rows test
(lengths, ranges, int vs float vs bool, null vs absent, the ts window): each
change alone, exhaustively, then several at once.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from row_reference import assert_rows_agree

from stream_sentinel.decode import MAX_COST_USD, MAX_TOKENS, Decoder
from stream_sentinel.events import EventType, Rejection

NOW = 1_793_610_000.0
RETENTION_S = 3690.0
MAX_FUTURE_S = 300.0
ABSENT = object()  # the field is left out of the document


def decoder(max_future_s: float = MAX_FUTURE_S) -> Decoder:
    return Decoder(safety_threshold=0.5, retention_s=RETENTION_S, max_future_s=max_future_s)


def common_request(**changes: Any) -> dict[str, Any]:
    doc = {
        "event_id": "s1n-000000000",
        "type": "request",
        "ts": NOW - 1.5,
        "user_id": "u01526",
        "model": "gpt-4o-mini",
        "blocked": False,
        "prompt_tokens": 79,
    }
    return with_changes(doc, changes)


def common_response(**changes: Any) -> dict[str, Any]:
    doc = {
        "event_id": "s1n-000000001",
        "type": "response",
        "ts": NOW - 1.0,
        "user_id": "u01526",
        "model": "gpt-4o-mini",
        "request_id": "s1n-000000000",
        "safe": True,
        "prompt_tokens": 79,
        "completion_tokens": 103,
        "cost_usd": 0.00004774,
    }
    return with_changes(doc, changes)


def with_changes(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**doc, **changes}
    return {k: v for k, v in merged.items() if v is not ABSENT}


BASES = [
    common_request(),
    common_request(blocked=True, block_reason="prompt_injection"),
    common_response(),
    common_response(safe=ABSENT, safety_score=0.9),
]

# Per field: values at every boundary the fast path tests, and wrong types.
_STR = [ABSENT, None, "", "x", 5, 1.5, True, [], {}]
_COUNT = [ABSENT, None, 0, -1, 12, 12.0, 12.5, -0.0, MAX_TOKENS, MAX_TOKENS + 1, 2**64 - 1]
_COUNT += [True, "1", []]
_NUMBER = [ABSENT, None, 0, 1, 3, 0.5, 0.49999, 1.0000001, -0.0, -1e-9, 2, True, "0.9"]
_NUMBER += [MAX_COST_USD, int(MAX_COST_USD) + 1, MAX_COST_USD + 0.5, 2**64 - 1]
_FLAG = [ABSENT, None, True, False, 1, 0, "true"]
# valid tenants at the edges of what they may hold: any characters, 1..256 of them
TENANTS = [
    "team-search",
    "t" * 256,
    "\u20ac" * 256,  # 768 bytes: characters count, not bytes
    "\U0001f600" * 256,
    "Z\u00fcrich \u56e2\u961f",
    'q"uo\\te\\"d',
    "a\u0000b\x1b[31m\r\n\t",
    "\u202eevil\u200b\u2028",
]
VALUES: dict[str, list[Any]] = {
    "type": [ABSENT, None, "request", "response", "Request", "", 1],
    "event_id": [*_STR, "e" * 128, "e" * 129],
    "user_id": [*_STR, "u" * 256, "u" * 257, "ü"],
    # optional, but bounded like user_id: "" (in _STR) is refused, null is absent
    "tenant": [*_STR, *TENANTS, "t" * 257, "\u20ac" * 257, "\U0001f600" * 257],
    "ts": [
        ABSENT,
        None,
        NOW,
        int(NOW),
        NOW - RETENTION_S,
        math.nextafter(NOW - RETENTION_S, 0),
        NOW + MAX_FUTURE_S,
        math.nextafter(NOW + MAX_FUTURE_S, math.inf),
        0,
        0.0,
        -0.0,
        -1,
        -1.5,
        2**53,
        2**64 - 1,
        1e308,
        True,
        "2026-11-02T09:00:00Z",
        "2026-11-02T09:00:00",
        "2026-11-02T08:59:58.019Z",
        "2026-11-02T08:59:58.0191234567Z",
        "2026-11-02 08:59:58Z",
        "2026-11-02T08:59:58+0100",
        "2026-11-02T09:05:00.000001Z",
        "2026-11-02T07:58:29.999Z",
        "1969-12-31T23:59:59.5Z",
        [],
    ],
    "model": _STR,
    "block_reason": _STR,
    "request_id": _STR,
    "blocked": _FLAG,
    "safe": _FLAG,
    "prompt_tokens": _COUNT,
    "completion_tokens": _COUNT,
    "safety_score": _NUMBER,
    "cost_usd": _NUMBER,
    # extra fields: what msgspec skips unchecked must still be what orjson takes
    "note": [ABSENT, "x", "\u00e9", 1e-300, -1.5e300, {"a": [1, {"b": None}]}, []],
}
TOPICS: list[EventType | None] = [None, "request", "response"]
CLOCKS = [None, NOW]


def check(doc: dict[str, Any], topic: EventType | None, now: float | None) -> None:
    raw = orjson.dumps(doc)
    for max_future_s in (MAX_FUTURE_S, math.inf):  # replay runs without a future limit
        assert_rows_agree(decoder(max_future_s), raw, topic, now)


def test_every_single_field_change_gets_the_same_answer() -> None:
    for base in BASES:
        for name, values in VALUES.items():
            for value in values:
                doc = with_changes(base, {name: value})
                for topic in TOPICS:
                    for now in CLOCKS:
                        check(doc, topic, now)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A common document with a few fields changed to boundary values."""
    base = draw(st.sampled_from(BASES))
    names = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=2, max_size=4, unique=True))
    return with_changes(base, {n: draw(st.sampled_from(VALUES[n])) for n in names})


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.sampled_from(TOPICS), st.sampled_from(CLOCKS))
def test_combined_changes_get_the_same_answer(
    doc: dict[str, Any], topic: EventType | None, now: float | None
) -> None:
    check(doc, topic, now)


PRODUCER_EXTRAS: dict[str, Any] = {
    "env": "prod",
    "region": "eu-west-1",
    "latency_ms": 412.5,
    "client": {"name": "sdk-python", "version": "1.2.3"},
    "trace_id": "7fe001e123e4567e89b0",
}


def test_common_shapes_are_taken_by_the_row_decoder() -> None:
    # the performance guard: rows that refused these would pass the tests
    # above and send every such message down the per-record path. Common
    # shapes: numeric or RFC 3339 ts, optional fields present, absent or null,
    # extra fields as producers add them.
    full = decoder()
    shapes = [
        *BASES,
        common_request(ts=int(NOW), model=None, prompt_tokens=ABSENT),
        common_response(cost_usd=3, request_id=None, completion_tokens=0),
        common_response(safe=None, safety_score=0.2),
        common_request(ts="2026-11-02T08:59:58.019Z"),
        common_response(ts="2026-11-02T10:59:58+02:00"),
        common_request(**PRODUCER_EXTRAS),
        common_response(ts="2026-11-02T08:59:59.5Z", **PRODUCER_EXTRAS),
        common_response(ts="2026-11-02t08:59:59z", note="caf\u00e9"),
        common_request(tenant="team-search"),
        common_response(tenant=None),
        common_request(ts="2026-11-02T08:59:58.019Z", tenant="\u20ac" * 256, **PRODUCER_EXTRAS),
    ]
    for doc in shapes:
        for topic in (doc["type"], None):
            row = assert_rows_agree(full, orjson.dumps(doc), topic, NOW)
            assert row is not None, doc


def test_a_tenant_survives_on_both_paths_with_the_same_value() -> None:
    full = decoder()
    for tenant in TENANTS:
        for doc in (
            common_request(tenant=tenant),
            common_response(tenant=tenant),
            common_response(ts="2026-11-02T08:59:59.5Z", tenant=tenant, **PRODUCER_EXTRAS),
        ):
            raw = orjson.dumps(doc)
            for topic in (doc["type"], None):
                event = full.decode(raw, topic_type=topic, now=NOW)
                assert not isinstance(event, Rejection) and event.tenant == tenant
                row = assert_rows_agree(full, raw, topic, NOW)
                assert row is not None and row.tenant == tenant
