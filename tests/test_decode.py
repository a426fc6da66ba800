"""Unit tests of the contract v1 decoder: every rejection reason, every policy, never raising."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.decode import MAX_TOKENS, Decoder
from stream_sentinel.events import Event, EventType, Rejection, RequestEvent, ResponseEvent
from stream_sentinel.timestamps import parse_rfc3339

NOW = 1_793_610_000.0  # 2026-11-02T09:00:00Z
REQ: dict[str, Any] = {
    "type": "request",
    "event_id": "r-1",
    "ts": NOW - 5,
    "user_id": "alice",
    "blocked": True,
    "block_reason": "prompt_injection",
    "model": "gpt-x",
    "prompt_tokens": 12,
    "tenant": "team-search",
}
RESP: dict[str, Any] = {
    "type": "response",
    "event_id": "s-1",
    "ts": NOW - 5,
    "user_id": "alice",
    "safe": False,
    "model": "gpt-x",
    "request_id": "r-1",
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "cost_usd": 0.25,
    "tenant": "team-search",
}
# Every reason the decoder can give, with <field> spelled out: they become metric labels.
REASON = re.compile(
    r"too_large|not_json|not_object|bad_ts|type_mismatch|ts_out_of_range|bad_value:type"
    r"|missing:(type|event_id|ts|user_id|blocked|safe)"
    r"|type:(type|event_id|ts|user_id|model|blocked|block_reason|request_id|safe"
    r"|safety_score|prompt_tokens|completion_tokens|cost_usd|tenant)"
    r"|length:(event_id|user_id|tenant)"
    r"|bad_number:(ts|safety_score|prompt_tokens|completion_tokens|cost_usd)"
)


def raw(base: dict[str, Any], **changes: Any) -> bytes:
    """``base`` with ``changes`` applied; a value of ``...`` removes the field."""
    doc = {k: v for k, v in {**base, **changes}.items() if v is not ...}
    return json.dumps(doc, ensure_ascii=False).encode()


def decode(
    data: bytes,
    topic_type: EventType | None = None,
    now: float | None = NOW,
    decoder: Decoder | None = None,
) -> Event | Rejection:
    return (decoder or Decoder()).decode(data, topic_type=topic_type, now=now)


def reason(data: bytes, topic_type: EventType | None = None, **kw: Any) -> str:
    got = decode(data, topic_type, **kw)
    assert isinstance(got, Rejection), got
    assert REASON.fullmatch(got.reason), got.reason
    return got.reason


# --- accepted events -------------------------------------------------------------------


def test_request_carries_every_field() -> None:
    assert decode(raw(REQ)) == RequestEvent(
        event_id="r-1",
        ts=NOW - 5,
        user_id="alice",
        blocked=True,
        model="gpt-x",
        block_reason="prompt_injection",
        prompt_tokens=12,
        tenant="team-search",
    )


def test_response_carries_every_field() -> None:
    assert decode(raw(RESP)) == ResponseEvent(
        event_id="s-1",
        ts=NOW - 5,
        user_id="alice",
        safe=False,
        model="gpt-x",
        request_id="r-1",
        cost_usd=0.25,
        prompt_tokens=12,
        completion_tokens=30,
        tenant="team-search",
    )


def test_minimal_events_leave_optional_fields_none() -> None:
    req = decode(raw(REQ, model=..., block_reason=..., prompt_tokens=..., tenant=...))
    assert req == RequestEvent("r-1", NOW - 5, "alice", True)
    resp = decode(
        raw(
            RESP,
            model=...,
            request_id=...,
            prompt_tokens=...,
            completion_tokens=...,
            cost_usd=...,
            tenant=...,
        )
    )
    assert resp == ResponseEvent("s-1", NOW - 5, "alice", False)
    assert isinstance(req, RequestEvent) and req.tenant is None


def test_null_in_optional_fields_means_absent() -> None:
    got = decode(
        raw(RESP, model=None, request_id=None, cost_usd=None, completion_tokens=None, tenant=None)
    )
    assert got == ResponseEvent("s-1", NOW - 5, "alice", False, prompt_tokens=12)
    # tenant is bounded like user_id, but optional: null is absent, not type:tenant
    assert decode(raw(REQ, tenant=None)) == decode(raw(REQ, tenant=...))


def test_events_built_positionally_before_tenant_still_build() -> None:
    # tenant is the last field, so constructions that predate it keep their meaning
    req = RequestEvent("r", 1.0, "u", True, "m", "pii", 5)
    resp = ResponseEvent("s", 1.0, "u", False, "m", "r", 0.5, 5, 6)
    assert (req.prompt_tokens, req.tenant) == (5, None)
    assert (resp.completion_tokens, resp.tenant) == (6, None)


def test_unknown_fields_and_other_types_fields_are_ignored() -> None:
    got = decode(raw(REQ, extra={"deep": [1, 2]}, cost_usd="n/a", safe="?", request_id=5))
    assert isinstance(got, RequestEvent)
    got = decode(raw(RESP, blocked="?", block_reason=7, note=None))
    assert isinstance(got, ResponseEvent)


def test_topic_implies_the_type_when_absent() -> None:
    assert isinstance(decode(raw(REQ, type=...), "request"), RequestEvent)
    assert isinstance(decode(raw(RESP, type=...), "response"), ResponseEvent)
    assert isinstance(decode(raw(RESP), "response"), ResponseEvent)


def test_integral_numbers_and_int_cost() -> None:
    got = decode(raw(RESP, prompt_tokens=7.0, completion_tokens=MAX_TOKENS, cost_usd=3))
    assert isinstance(got, ResponseEvent)
    assert (got.prompt_tokens, got.completion_tokens, got.cost_usd) == (7, MAX_TOKENS, 3.0)
    assert type(got.prompt_tokens) is int and type(got.cost_usd) is float


def test_duplicate_keys_last_one_wins() -> None:
    data = b'{"type":"request","event_id":"a","event_id":"b","ts":1,"user_id":"u",'
    data += b'"blocked":"no","blocked":false}'
    got = decode(data, now=None)
    assert got == RequestEvent("b", 1.0, "u", False)
    assert reason(data.replace(b'"blocked":false}', b'"blocked":false,"blocked":0}')) == (
        "type:blocked"
    )


@pytest.mark.parametrize(
    ("safe", "score", "threshold", "expected"),
    [
        (..., 0.5, 0.5, True),  # at the threshold counts as safe
        (..., 0.4999, 0.5, False),
        (..., 0.9, 0.95, False),
        (..., 0, 0.0, True),
        (..., 1, 1.0, True),
        (True, 0.0, 0.5, True),  # an explicit verdict wins over the score
        (False, 1.0, 0.5, False),
        (None, 0.7, 0.5, True),  # null safe: the score decides
    ],
)
def test_safe_resolution(safe: Any, score: float, threshold: float, expected: bool) -> None:
    decoder = Decoder(safety_threshold=threshold)
    got = decode(raw(RESP, safe=safe, safety_score=score), decoder=decoder)
    assert isinstance(got, ResponseEvent)
    assert got.safe is expected


def test_size_limit_is_inclusive_and_counts_bytes() -> None:
    base = raw(REQ, user_id="\u00e9l\u00e8ve")  # 5 characters, 7 bytes
    exact = base[:-1] + b" " * (200 - len(base)) + b"}"
    assert len(exact) == 200
    decoder = Decoder(max_bytes=200)
    assert isinstance(decode(exact, decoder=decoder), RequestEvent)
    assert reason(exact + b" ", decoder=decoder) == "too_large"


def test_size_is_checked_before_parsing() -> None:
    # Not even JSON: an oversized message must be refused for its size, without a parse.
    assert reason(b"\xff" * (64 * 1024 + 1)) == "too_large"


# --- rejection reasons -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{",
        b"NaN",
        b'{"ts": NaN}',
        b'{"ts": Infinity}',
        b'{"cost_usd": -Infinity}',
        b'{"ts": 1e309}',
        b'{"x": 1' + b"0" * 400 + b"}",
        b"\xef\xbb\xbf{}",
        b'{"user_id": "\xff"}',
        b'{"user_id": "\xed\xa0\x80"}',
        rb'{"user_id": "\ud800"}',
        b'{"user_id": "a\x01"}',
        b"{}{}",
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"x": ' + b"[" * 1025 + b"]" * 1025 + b"}",
        b"[" * 100_000,
    ],
)
def test_not_json(data: bytes) -> None:
    decoder = Decoder(max_bytes=1 << 20)
    assert reason(data, decoder=decoder) == "not_json"


def test_nesting_up_to_orjson_limit_is_json() -> None:
    data = raw(REQ)[:-1] + b', "x": ' + b"[" * 1023 + b"]" * 1023 + b"}"
    assert isinstance(decode(data), RequestEvent)


@pytest.mark.parametrize("data", [b"[]", b'"request"', b"1", b"null", b"true", b"[{}]"])
def test_not_object(data: bytes) -> None:
    assert reason(data) == "not_object"


@pytest.mark.parametrize(
    ("base", "field"),
    [
        (REQ, "event_id"),
        (REQ, "ts"),
        (REQ, "user_id"),
        (REQ, "blocked"),
        (RESP, "event_id"),
        (RESP, "ts"),
        (RESP, "user_id"),
    ],
)
def test_missing_required_field(base: dict[str, Any], field: str) -> None:
    assert reason(raw(base, **{field: ...})) == f"missing:{field}"
    # null is a value of the wrong type, not an absent field
    assert reason(raw(base, **{field: None})) == f"type:{field}"


def test_missing_type_without_topic() -> None:
    assert reason(raw(REQ, type=...)) == "missing:type"


def test_missing_safe_needs_neither_verdict_nor_score() -> None:
    assert reason(raw(RESP, safe=...)) == "missing:safe"
    assert reason(raw(RESP, safe=None, safety_score=None)) == "missing:safe"


@pytest.mark.parametrize(
    ("base", "field", "value"),
    [
        (REQ, "type", 1),
        (REQ, "type", None),
        (REQ, "type", ["request"]),
        (REQ, "event_id", 7),
        (REQ, "event_id", True),
        (REQ, "ts", True),
        (REQ, "ts", [NOW]),
        (REQ, "ts", {"s": NOW}),
        (REQ, "user_id", ["alice"]),
        (REQ, "model", 4),
        (REQ, "blocked", 1),  # int where bool is expected
        (REQ, "blocked", 0),
        (REQ, "blocked", "true"),
        (REQ, "block_reason", False),
        (REQ, "prompt_tokens", True),  # bool where int is expected
        (REQ, "prompt_tokens", 1.5),
        (REQ, "prompt_tokens", "12"),
        (RESP, "request_id", {"id": 1}),
        (RESP, "safe", 1),
        (RESP, "safe", "yes"),
        (RESP, "safety_score", "0.9"),
        (RESP, "safety_score", True),
        (RESP, "completion_tokens", False),
        (RESP, "completion_tokens", 0.5),
        (RESP, "cost_usd", "0.25"),
        (RESP, "cost_usd", True),
        (REQ, "tenant", 7),
        (REQ, "tenant", True),
        (REQ, "tenant", ["team"]),
        (RESP, "tenant", {"team": 1}),
        (RESP, "tenant", 0.5),
    ],
)
def test_wrong_type(base: dict[str, Any], field: str, value: Any) -> None:
    assert reason(raw(base, **{field: value})) == f"type:{field}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", ""),
        ("event_id", "e" * 129),
        ("event_id", "\U0001f600" * 129),
        ("user_id", ""),
        ("user_id", "u" * 257),
        ("tenant", ""),
        ("tenant", "t" * 257),
        ("tenant", "\u20ac" * 257),
    ],
)
def test_length(field: str, value: str) -> None:
    assert reason(raw(REQ, **{field: value})) == f"length:{field}"
    assert reason(raw(RESP, **{field: value})) == f"length:{field}"


def test_lengths_count_characters_not_bytes() -> None:
    got = decode(
        raw(REQ, event_id="\U0001f600" * 128, user_id="\u00e9" * 256, tenant="\u20ac" * 256)
    )
    assert isinstance(got, RequestEvent)
    assert len(got.event_id) == 128 and len(got.user_id) == 256
    assert got.tenant == "\u20ac" * 256  # 768 bytes of UTF-8, 256 characters


@pytest.mark.parametrize(
    ("base", "field", "value"),
    [
        (REQ, "ts", -1),
        (REQ, "ts", -0.001),
        (REQ, "prompt_tokens", -1),
        (REQ, "prompt_tokens", -1.0),
        (REQ, "prompt_tokens", MAX_TOKENS + 1),
        (RESP, "completion_tokens", 1e300),
        (RESP, "completion_tokens", 2**64 - 1),
        (RESP, "cost_usd", -0.01),
        (RESP, "cost_usd", -1),
        (RESP, "safety_score", -0.01),
        (RESP, "safety_score", 1.01),
        (RESP, "safety_score", 2),
    ],
)
def test_bad_number(base: dict[str, Any], field: str, value: Any) -> None:
    assert reason(raw(base, **{field: value}), now=None) == f"bad_number:{field}"


def test_an_invalid_score_is_refused_even_beside_a_verdict() -> None:
    assert reason(raw(RESP, safe=True, safety_score=1.5)) == "bad_number:safety_score"


def test_negative_zero_is_not_negative() -> None:
    got = decode(raw(RESP, cost_usd=-0.0, prompt_tokens=-0.0), now=None)
    assert isinstance(got, ResponseEvent)
    assert got.cost_usd == 0.0 and got.prompt_tokens == 0


@pytest.mark.parametrize("value", ["", "Request", "RESPONSE", "alert", "request "])
def test_bad_value_type(value: str) -> None:
    assert reason(raw(REQ, type=value)) == "bad_value:type"
    assert reason(raw(REQ, type=value), "request") == "bad_value:type"


def test_type_mismatch_with_topic() -> None:
    assert reason(raw(REQ), "response") == "type_mismatch"
    assert reason(raw(RESP), "request") == "type_mismatch"


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-02T08:59:00",  # no offset: local time is ambiguous
        "2026-11-02 08:59:00Z",
        "2026-11-02T08:59Z",
        "2026-11-02T08:59:00+0100",
        "2026-11-02T08:59:00+01",
        "2026-11-02T08:59:00.Z",
        "2026-11-02T08:59:00 Z",
        "2026-11-02T08:59:00UTC",
        "2026-11-02T08:59:00Z\n",
        " 2026-11-02T08:59:00Z",
        "2026-11-02",
        "20261102T085900Z",
        "2026-13-02T08:59:00Z",
        "2026-00-02T08:59:00Z",
        "2026-11-31T08:59:00Z",
        "2026-02-29T08:59:00Z",
        "2100-02-29T08:59:00Z",
        "2026-11-02T24:00:00Z",
        "2026-11-02T08:60:00Z",
        "2026-11-02T08:59:61Z",
        "2026-11-02T08:59:00+24:00",
        "2026-11-02T08:59:00+01:60",
        "\u0662\u0660\u0662\u0666-11-02T08:59:00Z",  # Arabic-Indic digits
        "2026-11-02T08:59:00\uff3a",
        "1793609940",
        "",
    ],
)
def test_bad_ts(value: str) -> None:
    assert reason(raw(REQ, ts=value), now=None) == "bad_ts"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-02T08:59:00Z", NOW - 60),
        ("2026-11-02t08:59:00z", NOW - 60),
        ("2026-11-02T09:59:00+01:00", NOW - 60),
        ("2026-11-02T03:29:00-05:30", NOW - 60),
        ("2026-11-02T08:59:00-00:00", NOW - 60),
        ("2026-11-02T08:59:00.25Z", NOW - 59.75),
        ("2026-11-02T08:59:00.000000001Z", NOW - 60 + 1e-9),
        ("2026-11-02T08:59:59.999999999999999999999Z", NOW),
        ("2026-11-02T08:59:60Z", NOW),  # a leap second is the next minute's first second
        ("2024-02-29T00:00:00Z", 1709164800.0),
        ("2000-02-29T00:00:00Z", 951782400.0),
        ("1970-01-01T00:00:00Z", 0.0),
        ("1970-01-01T01:00:00+01:00", 0.0),
        ("1969-12-31T23:59:59.75Z", -0.25),
        ("0000-01-01T00:00:00Z", -62167219200.0),
        ("9999-12-31T23:59:59Z", 253402300799.0),
    ],
)
def test_rfc3339_values(value: str, expected: float) -> None:
    assert parse_rfc3339(value) == expected


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset_min=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_rfc3339_matches_datetime(moment: datetime, offset_min: int) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    text = moment.astimezone(zone).isoformat()  # RFC 3339 shape, microseconds when non-zero
    assert parse_rfc3339(text) == moment.timestamp()


@pytest.mark.parametrize("year", [2024, 2000, 1996, 2026, 2100, 1900])
def test_rfc3339_month_lengths(year: int) -> None:
    # the last day of every month is a date, the day after it is not
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    lengths = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    for month, days in enumerate(lengths, start=1):
        last = f"{year:04d}-{month:02d}-{days:02d}T12:00:00Z"
        assert parse_rfc3339(last) == datetime.fromisoformat(last).timestamp(), last
        assert parse_rfc3339(f"{year:04d}-{month:02d}-{days + 1:02d}T12:00:00Z") is None
    assert parse_rfc3339(f"{year:04d}-02-30T00:00:00Z") is None


def test_rfc3339_edges_of_the_clock_and_offset() -> None:
    # the largest offsets and the last second of a day
    assert parse_rfc3339("2026-11-02T23:59:59+23:59") == 1793577659.0
    assert parse_rfc3339("2026-11-02T09:00:00-23:59") == NOW + 23 * 3600 + 59 * 60
    assert parse_rfc3339("2026-12-31T00:00:00Z") == 1798675200.0
    assert parse_rfc3339("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_rfc3339("2026-03-01T00:00:00Z") == 1772323200.0
    assert parse_rfc3339("1600-03-01T00:00:00Z") == -11670912000.0
    assert parse_rfc3339("1600-02-29T00:00:00Z") == -11670998400.0


def test_rfc3339_fractions_before_1970_keep_every_digit() -> None:
    # negative seconds: the fraction is added exactly, then rounded once
    assert parse_rfc3339("1969-12-31T23:59:59.5Z") == -0.5
    tiny = parse_rfc3339("1969-12-31T23:59:59.999999999999999999999999Z")
    assert tiny == -1e-24
    deep = parse_rfc3339("1900-01-01T00:00:00.123456789012345678Z")
    assert deep == float(Decimal(-2208988800) + Decimal("0.123456789012345678"))
    assert parse_rfc3339("1969-12-31T23:59:00.25+00:00") == -59.75


def test_string_ts_reaches_the_event() -> None:
    got = decode(raw(RESP, ts="2026-11-02T10:00:00.5+01:00"))
    assert isinstance(got, ResponseEvent)
    assert got.ts == NOW + 0.5


def test_ts_range_edges_are_inclusive() -> None:
    decoder = Decoder(retention_s=100, max_future_s=10)
    for ts in (NOW - 100, NOW + 10, NOW):
        assert isinstance(decode(raw(REQ, ts=ts), decoder=decoder), RequestEvent)
    for ts in (NOW - 100.001, NOW + 10.001, 0, NOW * 1000):
        assert reason(raw(REQ, ts=ts), decoder=decoder) == "ts_out_of_range"


def test_no_range_check_without_now() -> None:
    assert isinstance(decode(raw(REQ, ts=1), now=None), RequestEvent)
    assert reason(raw(REQ, ts=1), now=NOW) == "ts_out_of_range"


def test_schema_errors_win_over_the_range() -> None:
    assert reason(raw(REQ, ts=1, user_id="")) == "length:user_id"


def test_default_range_is_an_hour_plus_lateness_back_and_five_minutes_ahead() -> None:
    assert isinstance(decode(raw(REQ, ts=NOW - 3690)), RequestEvent)
    assert reason(raw(REQ, ts=NOW - 3691)) == "ts_out_of_range"
    assert isinstance(decode(raw(REQ, ts=NOW + 300)), RequestEvent)
    assert reason(raw(REQ, ts=NOW + 301)) == "ts_out_of_range"


def test_details_never_echo_user_strings() -> None:
    marker = "SECRET\u2028<script>"
    cases = [
        raw(REQ, user_id=marker * 40),
        raw(REQ, event_id=marker * 20),
        raw(REQ, ts=marker),
        raw(REQ, type=marker),
        raw(REQ, blocked=marker),
        raw(RESP, safe=marker),
        raw(RESP, safety_score=marker),
        raw(REQ, **{marker: 1}, event_id=...),
        raw(REQ, user_id=marker)[:-3],
        raw(REQ, tenant=marker * 40),
        raw(REQ, tenant=[marker]),
    ]
    for data in cases:
        got = decode(data, "response")
        assert isinstance(got, Rejection)
        assert "SECRET" not in got.detail and "SECRET" not in got.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bytes": 0},
        {"safety_threshold": 1.5},
        {"safety_threshold": float("nan")},
        {"retention_s": 0},
        {"max_future_s": -1},
    ],
)
def test_constructor_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as refused:
        Decoder(**kwargs)
    key = next(iter(kwargs))
    named = "retention_s" if key == "max_future_s" else key
    assert str(refused.value).startswith(f"{named} must be")


def test_constructor_accepts_the_edges() -> None:
    edge = Decoder(max_bytes=1, safety_threshold=0.0, retention_s=0.001, max_future_s=0)
    assert (edge.max_bytes, edge.safety_threshold) == (1, 0.0)
    assert Decoder(safety_threshold=1.0).safety_threshold == 1.0


# Dead letters carry the detail to the operator: it names the field and what
# was expected, never the value (test_details_never_echo_user_strings).
@pytest.mark.parametrize(
    ("data", "topic", "expected"),
    [
        (b"x" * 65537, None, ("too_large", "65537 bytes, limit 65536")),
        (b"[1]", None, ("not_object", "top level is array, not an object")),
        (b'"s"', None, ("not_object", "top level is string, not an object")),
        (b"1.5", None, ("not_object", "top level is number, not an object")),
        (b"true", None, ("not_object", "top level is boolean, not an object")),
        (b"null", None, ("not_object", "top level is null, not an object")),
        (raw(REQ, type=...), None, ("missing:type", "type is required")),
        (raw(REQ, type=7), None, ("type:type", "type must be a string, got number")),
        (raw(REQ, type="x"), None, ("bad_value:type", 'type must be "request" or "response"')),
        (raw(REQ), "response", ("type_mismatch", "type request on the responses topic")),
        (raw(REQ, event_id=...), None, ("missing:event_id", "event_id is required")),
        (
            raw(REQ, event_id=None),
            None,
            ("type:event_id", "event_id must be a string, got null"),
        ),
        (
            raw(REQ, event_id=[]),
            None,
            ("type:event_id", "event_id must be a string, got array"),
        ),
        (
            raw(REQ, event_id=""),
            None,
            ("length:event_id", "event_id has 0 characters, allowed 1..128"),
        ),
        (
            raw(REQ, user_id="u" * 257),
            None,
            ("length:user_id", "user_id has 257 characters, allowed 1..256"),
        ),
        (raw(REQ, user_id={}), None, ("type:user_id", "user_id must be a string, got object")),
        (
            raw(REQ, tenant=""),
            None,
            ("length:tenant", "tenant has 0 characters, allowed 1..256"),
        ),
        (
            raw(RESP, tenant="t" * 257),
            None,
            ("length:tenant", "tenant has 257 characters, allowed 1..256"),
        ),
        (raw(RESP, tenant=7), None, ("type:tenant", "tenant must be a string, got number")),
        (
            raw(REQ, ts=-1),
            None,
            ("bad_number:ts", "numeric ts must be finite Unix seconds >= 0"),
        ),
        (
            raw(REQ, ts="x"),
            None,
            ("bad_ts", "ts string is not an RFC 3339 date-time with an offset"),
        ),
        (
            raw(REQ, ts=True),
            None,
            ("type:ts", "ts must be a number or an RFC 3339 string, got boolean"),
        ),
        (raw(REQ, model=1), None, ("type:model", "model must be a string, got number")),
        (
            raw(REQ, prompt_tokens=1.5),
            None,
            ("type:prompt_tokens", "prompt_tokens must be an integer, got number"),
        ),
        (
            raw(REQ, prompt_tokens=-1),
            None,
            ("bad_number:prompt_tokens", f"prompt_tokens must be within 0..{MAX_TOKENS}"),
        ),
        (raw(REQ, blocked=...), None, ("missing:blocked", "blocked is required")),
        (raw(REQ, blocked=1), None, ("type:blocked", "blocked must be a boolean, got number")),
        (
            raw(REQ, block_reason=False),
            None,
            ("type:block_reason", "block_reason must be a string, got boolean"),
        ),
        (
            raw(RESP, request_id=2),
            None,
            ("type:request_id", "request_id must be a string, got number"),
        ),
        (
            raw(RESP, safe=..., safety_score=...),
            None,
            ("missing:safe", "response needs safe or safety_score"),
        ),
        (raw(RESP, safe="yes"), None, ("type:safe", "safe must be a boolean, got string")),
        (
            raw(RESP, safety_score="1"),
            None,
            ("type:safety_score", "safety_score must be a number, got string"),
        ),
        (
            raw(RESP, safety_score=1.01),
            None,
            ("bad_number:safety_score", "safety_score must be a finite number within 0..1.0"),
        ),
        (
            raw(RESP, completion_tokens=MAX_TOKENS + 1),
            None,
            ("bad_number:completion_tokens", f"completion_tokens must be within 0..{MAX_TOKENS}"),
        ),
        (
            raw(RESP, cost_usd=-0.5),
            None,
            ("bad_number:cost_usd", "cost_usd must be a finite number within 0..1000000.0"),
        ),
    ],
)
def test_rejection_reasons_and_details(
    data: bytes, topic: EventType | None, expected: tuple[str, str]
) -> None:
    got = decode(data, topic, now=None)
    assert isinstance(got, Rejection)
    assert (got.reason, got.detail) == expected


def test_out_of_range_detail_says_how_far_and_the_window() -> None:
    got = decode(raw(REQ, ts=NOW - 4000.25))
    assert isinstance(got, Rejection)
    assert (got.reason, got.detail) == (
        "ts_out_of_range",
        "ts is -4000.25 s from now; allowed -3690..+300 s",
    )


def test_not_json_detail_is_orjsons_message() -> None:
    with pytest.raises(orjson.JSONDecodeError) as parse_error:
        orjson.loads(b'{"a": }')
    got = decode(b'{"a": }')
    assert isinstance(got, Rejection)
    assert (got.reason, got.detail) == ("not_json", str(parse_error.value))


# --- never raises ----------------------------------------------------------------------


def _check_total(data: bytes, topic: EventType | None, now: float | None) -> None:
    got = Decoder(max_bytes=4096).decode(data, topic_type=topic, now=now)
    if isinstance(got, Rejection):
        assert REASON.fullmatch(got.reason), got.reason
    else:
        assert isinstance(got, RequestEvent | ResponseEvent)


_TOPICS = st.sampled_from([None, "request", "response"])
_NOWS = st.sampled_from([None, NOW])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=5000), topic=_TOPICS, now=_NOWS)
def test_any_bytes_give_an_event_or_a_known_reason(
    data: bytes, topic: EventType | None, now: float | None
) -> None:
    _check_total(data, topic, now)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([REQ, RESP]),
    cut=st.integers(0, 400),
    noise=st.binary(max_size=8),
    topic=_TOPICS,
    now=_NOWS,
)
def test_damaged_events_give_an_event_or_a_known_reason(
    base: dict[str, Any], cut: int, noise: bytes, topic: EventType | None, now: float | None
) -> None:
    data = raw(base)
    _check_total(data[:cut] + noise + data[cut:], topic, now)
    _check_total(data[:cut] + noise, topic, now)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([REQ, RESP]),
    field=st.sampled_from(sorted({*REQ, *RESP, "safety_score"})),
    value=_JSON,
    topic=_TOPICS,
)
def test_any_value_in_any_field_gives_an_event_or_a_known_reason(
    base: dict[str, Any], field: str, value: Any, topic: EventType | None
) -> None:
    _check_total(json.dumps({**base, field: value}).encode(), topic, NOW)
