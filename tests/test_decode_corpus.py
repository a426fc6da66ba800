"""The decoder and the published schemas must agree on every input.

Each sample goes through ``Decoder.decode`` and through the reference in
``decode_reference`` (size limit + strict UTF-8 + strict JSON + jsonschema
2020-12 with a strict RFC 3339 checker + the ts range check). They must agree
on accept/reject, and an accepted event must carry the document's values.
Hand-picked nasty samples run under every topic and with and without the range
check; hypothesis adds generated and mutated events.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from decode_reference import load_validators, reference_decode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from row_reference import assert_rows_agree

from stream_sentinel.decode import Decoder
from stream_sentinel.events import Event, EventType, Rejection, RequestEvent, ResponseEvent

NOW = 1_793_610_000.0  # 2026-11-02T09:00:00Z
RETENTION_S = 3600 + 30 + 60
MAX_FUTURE_S = 300
THRESHOLD = 0.5
VALIDATORS = load_validators()
TOPICS: tuple[EventType | None, ...] = (None, "request", "response")


def check(
    raw: bytes, topic_type: EventType | None, now: float | None, max_bytes: int = 64 * 1024
) -> Event | Rejection:
    decoder = Decoder(
        max_bytes=max_bytes,
        safety_threshold=THRESHOLD,
        retention_s=RETENTION_S,
        max_future_s=MAX_FUTURE_S,
    )
    got = decoder.decode(raw, topic_type=topic_type, now=now)
    assert_rows_agree(decoder, raw, topic_type, now)
    want = reference_decode(
        raw,
        VALIDATORS,
        topic_type=topic_type,
        now=now,
        max_bytes=max_bytes,
        retention_s=RETENTION_S,
        max_future_s=MAX_FUTURE_S,
    )
    sample = raw[:300]
    if not want.accepted:
        assert isinstance(got, Rejection), (
            f"reference refused ({want.why}), decoder took {sample!r}"
        )
        return got
    assert not isinstance(got, Rejection), f"decoder refused ({got}), reference took {sample!r}"
    doc = want.doc
    assert doc is not None
    assert got.event_id == doc["event_id"]
    assert got.user_id == doc["user_id"]
    assert got.ts == want.ts
    assert got.model == doc.get("model")
    assert got.prompt_tokens == _count(doc.get("prompt_tokens"))
    assert got.tenant == doc.get("tenant")
    if want.kind == "request":
        assert isinstance(got, RequestEvent)
        assert got.blocked is doc["blocked"]
        assert got.block_reason == doc.get("block_reason")
    else:
        assert isinstance(got, ResponseEvent)
        safe = doc.get("safe")
        assert got.safe is (safe if safe is not None else doc["safety_score"] >= THRESHOLD)
        assert got.request_id == doc.get("request_id")
        assert got.completion_tokens == _count(doc.get("completion_tokens"))
        cost = doc.get("cost_usd")
        assert got.cost_usd == (None if cost is None else float(cost))
        assert got.cost_usd is None or type(got.cost_usd) is float
    return got


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _iso(
    ts: float, offset_min: int = 0, sep: str = "T", frac: str = "", zone: str | None = None
) -> str:
    """RFC 3339-like text for ``ts``; ``zone`` overrides the offset written ("" for none)."""
    local = datetime.fromtimestamp(ts, UTC) + timedelta(minutes=offset_min)
    if zone is None:
        sign = "+" if offset_min >= 0 else "-"
        zone = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    return local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + zone


REQ: dict[str, Any] = {
    "type": "request",
    "event_id": "r-1",
    "ts": NOW - 10,
    "user_id": "alice",
    "blocked": False,
}
RESP: dict[str, Any] = {
    "type": "response",
    "event_id": "s-1",
    "ts": NOW - 10,
    "user_id": "alice",
    "safe": True,
    "model": "gpt-x",
    "request_id": "r-1",
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "cost_usd": 0.0125,
}


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def both(**changes: Any) -> list[bytes]:
    """The change applied to a valid request and a valid response (``...`` deletes)."""
    out = []
    for base in (REQ, RESP):
        doc = {**base, **changes}
        out.append(dumps({k: v for k, v in doc.items() if v is not ...}))
    return out


def splice(doc: dict[str, Any], fragment: str) -> bytes:
    """Raw text inserted as the last member: for what json.dumps cannot write."""
    return dumps(doc)[:-1] + b", " + fragment.encode("utf-8", "surrogatepass") + b"}"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MB = 1024 * 1024
PRODUCER_EXTRAS: dict[str, Any] = {
    "env": "prod",
    "region": "eu-west-1",
    "latency_ms": 412.5,
    "client": {"name": "sdk-python", "version": "1.2.3", "retries": 0},
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
HAND_PICKED: list[tuple[str, bytes, int]] = [
    ("valid request", dumps(REQ), 64 * 1024),
    ("valid response", dumps(RESP), 64 * 1024),
    ("1 MB user_id", dumps({**REQ, "user_id": "u" * MB}), 64 * 1024),
    ("1 MB user_id, big limit", dumps({**REQ, "user_id": "u" * MB}), 2 * MB),
    ("1 MB extra field, big limit", dumps({**RESP, "note": "x" * MB}), 2 * MB),
    ("1 MB model, big limit", dumps({**RESP, "model": "m" * MB}), 2 * MB),
    ("1 MB ts fraction, big limit", dumps({**REQ, "ts": _iso(NOW, frac="." + "7" * MB)}), 2 * MB),
]
_RAW: dict[str, bytes | list[bytes]] = {
    "NaN ts": both(ts=float("nan")),
    "Infinity ts": both(ts=float("inf")),
    "-Infinity cost": both(cost_usd=float("-inf")),
    "NaN cost": both(cost_usd=float("nan")),
    "NaN score": both(safe=..., safety_score=float("nan")),
    "Infinity tokens": both(prompt_tokens=float("inf")),
    "1e309 ts": splice(REQ, '"ts": 1e309'),
    "1e309 cost": splice(RESP, '"cost_usd": 1e309'),
    "-1e309 cost": splice(RESP, '"cost_usd": -1e309'),
    "1e309 extra": splice(RESP, '"x": 1e309'),
    "400-digit int extra": splice(RESP, '"x": 1' + "0" * 400),
    "1e308 cost": both(cost_usd=1e308),
    "1e308 ts": both(ts=1e308),
    "2**64 ts": splice({k: v for k, v in REQ.items() if k != "ts"}, f'"ts": {2**64}'),
    "2**64 tokens": splice(RESP, f'"completion_tokens": {2**64}'),
    "1e-400 score": splice({**RESP, "safe": None}, '"safety_score": 1e-400'),
    "bool blocked 1": both(blocked=1),
    "bool blocked 0": both(blocked=0),
    "bool blocked str": both(blocked="true"),
    "bool blocked null": both(blocked=None),
    "blocked absent": both(blocked=...),
    "safe 1": both(safe=1),
    "safe str": both(safe="yes"),
    "safe null no score": both(safe=None),
    "safe null with score": both(safe=None, safety_score=0.9),
    "safe absent": both(safe=...),
    "int tokens true": both(prompt_tokens=True),
    "int tokens false": both(completion_tokens=False),
    "int tokens 1.0": both(prompt_tokens=1.0),
    "int tokens 1e2": both(completion_tokens=1e2),
    "int tokens 1.5": both(prompt_tokens=1.5),
    "int tokens -1": both(prompt_tokens=-1),
    "int tokens -1.0": both(completion_tokens=-1.0),
    "int tokens -0.0": both(prompt_tokens=-0.0),
    "int tokens 2**53-1": both(prompt_tokens=2**53 - 1),
    "int tokens 2**53": both(prompt_tokens=2**53),
    "int tokens 1e300": both(completion_tokens=1e300),
    "int tokens str": both(prompt_tokens="5"),
    "int tokens null": both(prompt_tokens=None, completion_tokens=None),
    "deep 1024 arrays": splice(RESP, '"x": ' + _nested(1023)),
    "deep 1025 arrays": splice(RESP, '"x": ' + _nested(1024)),
    "deep objects 1024": splice(RESP, '"x": ' + '{"a":' * 1023 + "1" + "}" * 1023),
    "deep objects 1025": splice(RESP, '"x": ' + '{"a":' * 1024 + "1" + "}" * 1024),
    "deep top level": _nested(5000).encode(),
    "deep in string": splice(RESP, '"x": "' + _nested(3000) + '"'),
    "bad utf-8 byte": dumps(REQ).replace(b"alice", b"al\xffice"),
    "overlong utf-8": dumps(REQ).replace(b"alice", b"\xc0\x80"),
    # in a field the decoder ignores: still not UTF-8, so not JSON
    "bad utf-8 in extra value": dumps({**RESP, "note": "al_ice"}).replace(b"al_ice", b"al\xffice"),
    "bad utf-8 in extra key": dumps({**RESP, "n_te": 1}).replace(b"n_te", b"n\xfete"),
    "encoded surrogate": dumps(REQ).replace(b"alice", b"\xed\xa0\x80"),
    "truncated utf-8": dumps(REQ).replace(b"alice", b"\xe2\x82"),
    "4-byte utf-8": dumps(REQ).replace(b"alice", "\U0001f600".encode()),
    "BOM": b"\xef\xbb\xbf" + dumps(REQ),
    "latin-1": dumps(REQ).replace(b"alice", "Zoë".encode("latin-1")),
    "lone surrogate escape": dumps(REQ).replace(b"alice", rb"a\ud800"),
    "lone low surrogate": dumps(REQ).replace(b"alice", rb"\udc00b"),
    "lone surrogate key": splice(REQ, r'"k\udbff": 1'),
    "surrogate pair escape": dumps(REQ).replace(b"alice", rb"\ud83d\ude00"),
    "NUL escape": dumps(REQ).replace(b"alice", rb"a\u0000b"),
    "raw control char": dumps(REQ).replace(b"alice", b"a\x01b"),
    "ts Z": both(ts=_iso(NOW - 60, zone="Z")),
    "ts z lower t": both(ts=_iso(NOW - 60, sep="t", zone="z")),
    "ts +05:30": both(ts=_iso(NOW - 60, offset_min=330)),
    "ts -08:00 fraction": both(ts=_iso(NOW - 60, offset_min=-480, frac=".123456789")),
    "ts -00:00": both(ts=_iso(NOW - 60, zone="-00:00")),
    "ts no offset": both(ts=_iso(NOW - 60, zone="")),
    "ts space separator": both(ts=_iso(NOW - 60, sep=" ", zone="Z")),
    "ts +0100 no colon": both(ts=_iso(NOW - 60, zone="+0100")),
    "ts +01 short": both(ts=_iso(NOW - 60, zone="+01")),
    "ts offset +24:00": both(ts=_iso(NOW - 60, zone="+24:00")),
    "ts offset +00:60": both(ts=_iso(NOW - 60, zone="+00:60")),
    "ts empty fraction": both(ts=_iso(NOW - 60, frac=".", zone="Z")),
    "ts 5000-digit fraction": both(ts=_iso(NOW - 60, frac="." + "9" * 5000, zone="Z")),
    "ts trailing newline": both(ts=_iso(NOW - 60, zone="Z") + "\n"),
    "ts leading space": both(ts=" " + _iso(NOW - 60, zone="Z")),
    "ts date only": both(ts="2026-11-02"),
    "ts leap second": both(ts="2026-11-02T08:59:60Z"),
    "ts second 61": both(ts="2026-11-02T08:59:61Z"),
    "ts hour 24": both(ts="2026-11-02T24:00:00Z"),
    "ts Feb 29 leap year": both(ts="2024-02-29T00:00:00Z"),
    "ts Feb 29 common year": both(ts="2023-02-29T00:00:00Z"),
    "ts Feb 29 1900": both(ts="1900-02-29T00:00:00Z"),
    "ts Feb 29 2000": both(ts="2000-02-29T00:00:00Z"),
    "ts month 13": both(ts="2026-13-02T08:00:00Z"),
    "ts day 00": both(ts="2026-11-00T08:00:00Z"),
    "ts year 0000": both(ts="0000-01-01T00:00:00+01:00"),
    "ts year 9999": both(ts="9999-12-31T23:59:59-23:59"),
    "ts before 1970": both(ts="1969-12-31T23:59:59.25Z"),
    "ts arabic digits": both(ts="\u0662\u0660\u0662\u0666-11-02T08:00:00Z"),
    "ts fullwidth Z": both(ts=_iso(NOW - 60, zone="\uff3a")),
    "ts numeric string": both(ts=str(NOW)),
    "ts bool": both(ts=True),
    "ts null": both(ts=None),
    "ts negative": both(ts=-1),
    "ts negative zero": both(ts=-0.0),
    "ts int": both(ts=int(NOW)),
    "ts far future": both(ts=NOW + MAX_FUTURE_S + 1),
    "ts edge future": both(ts=NOW + MAX_FUTURE_S),
    "ts edge past": both(ts=NOW - RETENTION_S),
    "ts past": both(ts=NOW - RETENTION_S - 0.001),
    "ts milliseconds": both(ts=NOW * 1000),
    "dup blocked last valid": splice({**REQ, "blocked": "x"}, '"blocked": true'),
    "dup blocked last invalid": splice(REQ, '"blocked": "x"'),
    "dup type": splice(REQ, '"type": "response"'),
    "dup ts last invalid": splice(RESP, '"ts": "yesterday"'),
    "dup safe": splice({**RESP, "safe": 3}, '"safe": false'),
    "negative cost": both(cost_usd=-0.01),
    "negative zero cost": both(cost_usd=-0.0),
    "int cost": both(cost_usd=3),
    "negative score": both(safe=..., safety_score=-0.5),
    "score above 1": both(safe=..., safety_score=1.0000001),
    "score 1": both(safe=..., safety_score=1),
    "score 0": both(safe=..., safety_score=0),
    "score at threshold": both(safe=..., safety_score=0.5),
    "score below threshold": both(safe=..., safety_score=0.49999999),
    "score string": both(safe=..., safety_score="0.9"),
    "score null": both(safe=..., safety_score=None),
    "safe false beats score": both(safe=False, safety_score=1.0),
    "score bad with safe": both(safety_score=2),
    "empty event_id": both(event_id=""),
    "empty user_id": both(user_id=""),
    "empty model": both(model=""),
    "empty type": both(type=""),
    "empty request_id": both(request_id=""),
    "empty block_reason": both(block_reason=""),
    "event_id 128": both(event_id="e" * 128),
    "event_id 129": both(event_id="e" * 129),
    "event_id 128 astral": both(event_id="\U0001f600" * 128),
    "event_id 129 astral": both(event_id="\U0001f600" * 129),
    "user_id 256": both(user_id="u" * 256),
    "user_id 257": both(user_id="u" * 257),
    "user_id combining": both(user_id="e\u0301" * 128),
    "user_id injection": both(user_id='{bad}\r\nkey:*"'),
    "event_id int": both(event_id=7),
    "user_id list": both(user_id=["alice"]),
    "model int": both(model=1),
    "block_reason bool": both(block_reason=True),
    "request_id object": both(request_id={"id": 1}),
    "type Request": both(type="Request"),
    "type int": both(type=1),
    "type null": both(type=None),
    "type list": both(type=["request"]),
    "type absent": both(type=...),
    "missing event_id": both(event_id=...),
    "missing ts": both(ts=...),
    "missing user_id": both(user_id=...),
    "response fields on request": dumps({**REQ, "cost_usd": "x", "safe": 2}),
    "request fields on response": dumps({**RESP, "blocked": "x", "block_reason": 1}),
    "unknown fields": both(extra={"a": [1, None, 1.5]}, zzz=None, x="y"),
    # as gateways and loggers write events: RFC 3339 ts in milliseconds and
    # extra fields of every kind; the batch rows must take these with the
    # decoder's values, and refuse what the decoder refuses in the extras
    "producer shape": both(ts=_iso(NOW - 60, frac=".019", zone="Z"), **PRODUCER_EXTRAS),
    "producer shape +02:00": both(ts=_iso(NOW - 60, 120, frac=".5"), **PRODUCER_EXTRAS),
    "producer shape non-ASCII extra": both(**{**PRODUCER_EXTRAS, "region": "z\u00fcrich"}),
    "producer shape hex ids": both(trace_id="7fe001e123e4567e89", span="1e100e999"),
    "producer 1e-400 extra": splice(RESP, '"x": {"y": 1e-400}'),
    "producer 1E400 nested extra": splice(RESP, '"x": {"y": [1, 1E400]}'),
    "producer 1.5e+308 extra": splice(RESP, '"x": 1.5e+308'),
    "producer 1e0308 extra": splice(RESP, '"x": 1e0308'),
    "producer 2e0308 extra": splice(RESP, '"x": 2e0308'),
    "producer 309-digit extra": splice(RESP, '"x": 9' + "0" * 308),
    "producer 308-digit extra": splice(RESP, '"x": 9' + "0" * 307),
    "producer 301 digits e10 extra": splice(RESP, '"x": 1' + "0" * 300 + "e10"),
    "producer 301 digits e7 extra": splice(RESP, '"x": 1' + "0" * 300 + "e7"),
    "producer 251 digits e60 extra": splice(RESP, '"x": [1' + "0" * 250 + "E+60]"),
    "producer 0e999 extra": splice(RESP, '"x": 0e999'),
    "producer deep 1025 in object": splice(RESP, '"x": {"y": ' + _nested(1023) + "}"),
    "producer bad utf-8 in nested": dumps({**RESP, "c": {"n": "al_ice"}}).replace(
        b"al_ice", b"al\xffice"
    ),
    "producer surrogate in extra": splice(RESP, r'"x": "\ud800"'),
    "producer control char in extra": dumps({**RESP, "x": "a_b"}).replace(b"a_b", b"a\x01b"),
    # the edges of the types the rows naming extra fields decode them with
    # (decode_extras.ExtraValue): two levels of objects and arrays, doubles
    "extras two levels deep": both(x={"a": [1, "b", None], "c": {"d": True}}, y=[[1], {"z": 2}]),
    "extras three levels deep": both(x={"a": {"b": {"c": 1}}}, y=[[[1]]]),
    "extras array of objects": both(x=[{"a": 1}, {"b": [2.5, None]}]),
    "extras 2**64 and -2**63-1": both(x=2**64, y=-(2**63) - 1, z=-0.0),
    "extras 1e-400 nested two levels": splice(RESP, '"x": [{"y": 1e-400}]'),
    "extras 1e400 nested two levels": splice(RESP, '"x": [{"y": 1e400}]'),
    "extras 310-digit int nested": splice(RESP, '"x": {"y": [1' + "0" * 309 + "]}"),
    "extras max double, spelled out": splice(RESP, '"x": ' + str(2**1024 - 2**971)),
    "extras half an ulp past max double": splice(RESP, '"x": ' + str(2**1024 - 2**970)),
    "extras just under half an ulp past": splice(RESP, '"x": ' + str(2**1024 - 2**970 - 1)),
    "extras -1.7976931348623159e308": splice(RESP, '"x": -1.7976931348623159e308'),
    "extras 1.7976931348623158e308": splice(RESP, '"x": 1.7976931348623158e308'),
    "extras escaped key": splice(RESP, r'"tr\u0061ce_id": "4bf92f3577b34da6"'),
    "extras escaped surrogate pair": splice(RESP, r'"x": "\ud83d\ude00"'),
    "extras reversed surrogate pair": splice(RESP, r'"x": "\ude00\ud83d"'),
    "extras key with a quote": both(**{'tr"ace': 1, "env": "prod"}),
    "extras key with a backslash": both(**{"tr\\ace": 1}),
    "extras key with a control char": both(**{"tr\x01ace": 1}),
    "extras empty key": both(**{"": 1}),
    "extras 129-char key": both(**{"k" * 129: 1}),
    "extras 33 fields": both(**{f"x{i}": i for i in range(33)}),
    "extras key non-ASCII, value bad utf-8": dumps({**RESP, "r\u00e9gion": "al_ice"}).replace(
        b"al_ice", b"al\xffice"
    ),
    "extras bad utf-8 in nested key": dumps({**RESP, "c": {"n_me": 1}}).replace(
        b"n_me", b"n\xffme"
    ),
    "extras duplicate, hostile last": splice(RESP, '"x": 1, "x": 1e999'),
    "extras duplicate, hostile first": splice(RESP, r'"x": "\ud800", "x": 1'),
    # tenant: optional, 1..256 characters when present (user_id's rule), null = absent
    "tenant null": both(tenant=None),
    "tenant empty": both(tenant=""),
    "tenant 1": both(tenant="t"),
    "tenant 256": both(tenant="t" * 256),
    "tenant 257": both(tenant="t" * 257),
    "tenant 256 3-byte": both(tenant="\u20ac" * 256),
    "tenant 257 3-byte": both(tenant="\u20ac" * 257),
    "tenant 256 astral": both(tenant="\U0001f600" * 256),
    "tenant 257 astral": both(tenant="\U0001f600" * 257),
    "tenant 256 combining": both(tenant="e\u0301" * 128),
    "tenant 257 combining": both(tenant="e\u0301" * 128 + "x"),
    "tenant unicode": both(tenant="Z\u00fcrich \u56e2\u961f \U0001f680"),
    "tenant control chars": both(tenant="a\u0000b\x01\x1b[31m\n\r\t\x7f"),
    "tenant quotes backslashes": both(tenant='q"uo\\te\\"d\\u0041'),
    "tenant bidi zero-width": both(tenant="\u202eevil\u200b\u2028\ufeff"),
    "tenant key syntax": both(tenant="{slot}:*:tenants"),
    "tenant surrogate pair escape": splice(REQ, r'"tenant": "\ud83d\ude00"'),
    "tenant lone surrogate": splice(REQ, r'"tenant": "t\ud800"'),
    "tenant raw control char": dumps({**REQ, "tenant": "a_b"}).replace(b"a_b", b"a\x01b"),
    "tenant bad utf-8": dumps({**RESP, "tenant": "a_b"}).replace(b"a_b", b"a\xffb"),
    "tenant int": both(tenant=7),
    "tenant float": both(tenant=1.5),
    "tenant bool": both(tenant=False),
    "tenant list": both(tenant=["team"]),
    "tenant object": both(tenant={"id": "team"}),
    "dup tenant last invalid": splice({**REQ, "tenant": "a"}, '"tenant": 5'),
    "dup tenant last valid": splice({**RESP, "tenant": 5}, '"tenant": "b"'),
    "dup tenant last empty": splice({**RESP, "tenant": "a"}, '"tenant": ""'),
    "producer shape tenant": both(
        ts=_iso(NOW - 60, frac=".019", zone="Z"), tenant="team-\U0001f680", **PRODUCER_EXTRAS
    ),
    "producer shape tenant 256 3-byte": both(
        ts=_iso(NOW - 60, 120, frac=".5"), tenant="\u20ac" * 256, **PRODUCER_EXTRAS
    ),
    "producer shape tenant 257": both(
        ts=_iso(NOW - 60, frac=".019", zone="Z"), tenant="t" * 257, **PRODUCER_EXTRAS
    ),
    "producer shape tenant null": both(
        ts=_iso(NOW - 60, frac=".019", zone="Z"), tenant=None, **PRODUCER_EXTRAS
    ),
    "producer shape tenant int": both(
        ts=_iso(NOW - 60, frac=".019", zone="Z"), tenant=42, **PRODUCER_EXTRAS
    ),
    "top array": b"[]",
    "top string": b'"request"',
    "top number": b"1",
    "top null": b"null",
    "top true": b"true",
    "empty": b"",
    "whitespace": b" \n\t ",
    "empty object": b"{}",
    "two objects": dumps(REQ) + dumps(REQ),
    "trailing newline": dumps(REQ) + b"\r\n",
    "trailing comma": dumps(REQ)[:-1] + b",}",
    "single quotes": dumps(REQ).replace(b'"', b"'"),
    "form feed": b"\x0c" + dumps(REQ),
}
for _name, _value in _RAW.items():
    for _i, _raw in enumerate(_value if isinstance(_value, list) else [_value]):
        HAND_PICKED.append((f"{_name} #{_i}", _raw, 64 * 1024))


def test_corpus_is_big_enough() -> None:
    assert len(HAND_PICKED) * len(TOPICS) * 2 >= 200


@pytest.mark.parametrize(
    ("raw", "max_bytes"), [(r, m) for _, r, m in HAND_PICKED], ids=[n for n, _, _ in HAND_PICKED]
)
def test_hand_picked_sample_agrees(raw: bytes, max_bytes: int) -> None:
    for topic in TOPICS:
        for now in (NOW, None):
            check(raw, topic, now, max_bytes)


def test_hand_picked_corpus_accepts_and_refuses_a_fair_share() -> None:
    # Guards the corpus itself: a reference that refused everything would agree vacuously.
    results = [check(raw, None, NOW, mb) for _, raw, mb in HAND_PICKED]
    accepted = sum(not isinstance(r, Rejection) for r in results)
    assert 40 <= accepted <= len(results) - 100


# --- generated samples ------------------------------------------------------------------

_TOPIC = st.sampled_from(TOPICS)
_NOW = st.sampled_from([NOW, None])
_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def _rfc3339ish(draw: st.DrawFn) -> str:
    """Mostly valid RFC 3339 text near NOW, often bent in one component."""
    ts = draw(st.floats(NOW - 2 * RETENTION_S, NOW + 2 * MAX_FUTURE_S))
    offset = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    local = datetime.fromtimestamp(ts, UTC) + timedelta(minutes=offset)
    parts = {
        "y": local.year,
        "mo": local.month,
        "d": local.day,
        "h": local.hour,
        "mi": local.minute,
        "s": local.second,
        "oh": abs(offset) // 60,
        "om": abs(offset) % 60,
    }
    if draw(st.integers(0, 5)) == 5:  # one component out of its range, or on its edge
        key = draw(st.sampled_from(sorted(parts)))
        parts[key] = draw(st.sampled_from([0, 12, 13, 23, 24, 28, 29, 30, 31, 32, 59, 60, 61]))
    sep = draw(st.sampled_from("TTTt _"))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=12)))
    frac = "." + frac if frac or draw(st.booleans()) else ""
    sign = "+" if offset >= 0 else "-"
    zone = draw(
        st.sampled_from(
            ["num", "Z", "num", "z", "+00:00", "-00:00", "num", "", "nocolon", " Z", "UTC"]
        )
    )
    if zone == "num":
        zone = f"{sign}{parts['oh']:02d}:{parts['om']:02d}"
    elif zone == "nocolon":
        zone = f"{sign}{parts['oh']:02d}{parts['om']:02d}"
    return (
        f"{parts['y']:04d}-{parts['mo']:02d}-{parts['d']:02d}{sep}"
        f"{parts['h']:02d}:{parts['mi']:02d}:{parts['s']:02d}{frac}{zone}"
    )


_IN_RANGE = st.floats(NOW - RETENTION_S, NOW + MAX_FUTURE_S)
# Valid values, so that whole events are often accepted and their values compared.
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.text(min_size=1, max_size=20),
    "ts": _IN_RANGE | st.integers(int(NOW) - RETENTION_S, int(NOW) + MAX_FUTURE_S) | _rfc3339ish(),
    "user_id": st.text(min_size=1, max_size=20),
    "model": st.text(max_size=10),
    "blocked": st.booleans(),
    "block_reason": st.sampled_from(["prompt_injection", "pii", ""]),
    "request_id": st.text(max_size=10),
    "safe": st.booleans(),
    "safety_score": st.floats(0, 1),
    "prompt_tokens": st.integers(0, 100_000),
    "completion_tokens": st.integers(0, 100_000) | st.integers(0, 100).map(float),
    "cost_usd": st.floats(0, 1e6) | st.integers(0, 100),
    "tenant": st.text(min_size=1, max_size=20),
}
# Values on or just over an edge of the contract.
_EDGE: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.sampled_from(["", "e" * 128, "e" * 129, "\U0001f600" * 129]),
    "ts": st.floats(NOW - 2 * RETENTION_S, NOW + 2 * MAX_FUTURE_S)
    | st.sampled_from([-1, -0.0, 0, NOW * 1000, 2**64, NOW - RETENTION_S, NOW + MAX_FUTURE_S]),
    "user_id": st.sampled_from(["", "u" * 256, "u" * 257, "\U0001f600" * 256]),
    "tenant": st.sampled_from(["", "t" * 256, "t" * 257, "\u20ac" * 256, "\u20ac" * 257]),
    "safety_score": st.floats(-0.25, 1.25) | st.sampled_from([THRESHOLD, -0.0, 1, 0]),
    "prompt_tokens": st.integers(-3, 2**64) | st.sampled_from([7.0, 2.5, -1.0, 2**53, 2**53 - 1]),
    "completion_tokens": st.floats(-3, 1e17),
    "cost_usd": st.floats(-1, 1) | st.sampled_from([-0.0, 1e308]),
}
_REQUIRED = ("event_id", "ts", "user_id", "blocked", "safe")


@st.composite
def _raw_event(draw: st.DrawFn) -> tuple[bytes, EventType | None]:
    topic = draw(_TOPIC)
    # Hypothesis favours edge values of integers(); the odds of the mix come from randoms().
    rnd = draw(st.randoms(use_true_random=True))
    doc: dict[str, Any] = {}
    kind = rnd.randrange(20)
    if kind < 12:
        doc["type"] = topic or draw(st.sampled_from(["request", "response"]))
        if topic is not None and kind < 4:
            del doc["type"]  # the topic implies it
    elif kind < 14:
        doc["type"] = draw(st.sampled_from(["request", "response"]))  # maybe not the topic's
    elif kind < 16:
        doc["type"] = draw(st.sampled_from(["Request", "", "reply", None, 1, True]))
    for field, good in _GOOD.items():
        if rnd.random() < (0.03 if field in _REQUIRED else 0.4):
            continue  # absent
        pick = rnd.randrange(40)
        if pick == 0:
            doc[field] = draw(_ANY_JSON)
        elif pick < 4 and field in _EDGE:
            doc[field] = draw(_EDGE[field])
        else:
            doc[field] = draw(good)
    doc.update(draw(st.dictionaries(st.sampled_from(["x", "note", "tags"]), _ANY_JSON, max_size=2)))
    raw = json.dumps(doc, allow_nan=True, ensure_ascii=draw(st.booleans())).encode()
    return _mutate(draw, rnd.choice(_MUTATIONS), doc, raw), topic


_MUTATIONS = ["none"] * 12 + ["dup_first", "dup_last", "cut", "bytes", "deep"]


def _mutate(draw: st.DrawFn, mutation: str, doc: dict[str, Any], raw: bytes) -> bytes:
    if mutation in ("dup_first", "dup_last") and doc:
        key = draw(st.sampled_from(sorted(doc)))
        value = draw(_ANY_JSON | _GOOD[key] if key in _GOOD else _ANY_JSON)
        inner = json.dumps({key: value})[1:-1].encode()
        body = raw[1:-1]
        if mutation == "dup_first":
            return b"{" + inner + b", " + body + b"}"
        return b"{" + body + b", " + inner + b"}"
    if mutation == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    if mutation == "bytes":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    if mutation == "deep":
        depth = draw(st.integers(1020, 1026))
        return raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=_raw_event(), now=_NOW)
def test_generated_event_agrees(sample: tuple[bytes, EventType | None], now: float | None) -> None:
    got = check(*sample, now)
    # --hypothesis-show-statistics shows the mix; accepted events must be a real share of it.
    event(got.reason if isinstance(got, Rejection) else "accepted")


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=200), topic=_TOPIC, now=_NOW)
def test_arbitrary_bytes_agree(raw: bytes, topic: EventType | None, now: float | None) -> None:
    check(raw, topic, now)


@settings(max_examples=100, deadline=None)
@given(doc=_ANY_JSON, topic=_TOPIC)
def test_arbitrary_json_agrees(doc: Any, topic: EventType | None) -> None:
    check(json.dumps(doc, allow_nan=True).encode(), topic, NOW)


def test_a_valid_tenant_reaches_the_event_on_both_paths() -> None:
    # the samples above only prove agreement; this pins the outcome: every
    # valid tenant is taken by the rows too (no detour per message), with the
    # decoder's value, and every refused one is a tenant reason
    decoder = Decoder(retention_s=RETENTION_S, max_future_s=MAX_FUTURE_S)
    accepted = 0
    for name, raw, _ in HAND_PICKED:
        if "tenant" not in name:
            continue
        got = decoder.decode(raw, now=NOW)
        if isinstance(got, Rejection):
            assert got.reason in ("type:tenant", "length:tenant", "not_json"), (name, got)
            continue
        accepted += 1
        assert (got.tenant is None) == ("null" in name), name
        row = assert_rows_agree(decoder, raw, None, NOW)
        if name.startswith("dup"):
            continue  # msgspec refuses a bad first duplicate: the decoder decides those
        assert row is not None and row.tenant == got.tenant, name
    assert accepted >= 20


def test_the_schemas_take_v1_events_without_a_tenant_and_bound_one() -> None:
    for kind, base in (("request", REQ), ("response", RESP)):
        validator = VALIDATORS[kind]
        assert "tenant" not in base and validator.is_valid(base)  # v1 events stay valid
        for tenant in (None, "t", "\u20ac" * 256, "\U0001f600" * 256):
            assert validator.is_valid({**base, "tenant": tenant}), tenant
        for bad in ("", "t" * 257, "\u20ac" * 257, 7, ["t"], {}):
            assert not validator.is_valid({**base, "tenant": bad}), bad
