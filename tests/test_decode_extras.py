"""Rows that name a topic's extra fields (``decode_extras``).

Those rows decode extra values with msgspec instead of vetting them with
orjson, so the property everything rests on is checked here directly: an
extra value msgspec takes with ``ExtraValue`` is one orjson takes (at the
edges of a double, in strings, in nesting). Then how names are learned and
bounded, and that the batch loop resumes where the named rows refuse.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.decode import Decoder
from stream_sentinel.decode_extras import MAX_EXTRA_FIELDS, ExtraFields, ExtraValue
from stream_sentinel.decode_rows import RequestRow, ResponseRow, RowDecoder
from stream_sentinel.timestamps import parse_rfc3339

EXTRA = msgspec.json.Decoder(ExtraValue)
DBL_MAX_HALF_ULP = 2**1024 - 2**970  # the first integer that rounds to infinity


def takes(decode: Any, raw: bytes) -> bool:
    try:
        decode(raw)
    except (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError):
        return False
    return True


def edge_numbers() -> list[bytes]:
    spelled = [DBL_MAX_HALF_ULP - 1, DBL_MAX_HALF_ULP, DBL_MAX_HALF_ULP + 1, 10**308, 10**309]
    numbers = [str(n).encode() for n in spelled]
    numbers += (
        [b"-" + n for n in numbers] + [n + b".0" for n in numbers] + [n + b"e0" for n in numbers]
    )
    numbers += [b"0." + str(n).encode() + b"e309" for n in spelled]
    numbers += [b"1e308", b"1e309", b"2e308", b"1.7976931348623157e308"]
    numbers += [b"1.7976931348623158e308", b"1.7976931348623159e308", b"-1.797693134862315807e308"]
    numbers += [b"1e-400", b"-1e-400", b"4.9e-324", b"2e-324", b"0e999", b"0e-999", b"-0"]
    numbers += [b"1E+400", b"1e0308", b"1e00000000000000000000308", b"18446744073709551616"]
    return numbers


HOSTILE_STRINGS = [
    b'"\xff"',
    b'"\xed\xa0\x80"',  # a surrogate written in UTF-8
    b'"\xc0\xaf"',  # overlong
    b'"\xf4\x90\x80\x80"',  # past U+10FFFF
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\ude00\\ud83d"',
    b'"\\ud83d\\ude00"',
    b'"a\x01b"',
    b'"\\u0000"',
    b'"\\x"',
]
NESTED = [
    b'{"a": {"b": 1}}',
    b'{"a": {"b": {"c": 1}}}',
    b"[[1]]",
    b"[[[1]]]",
    b'[{"a": [1]}]',
    b"[" * 1100 + b"]" * 1100,
    b'{"\xff": 1}',
    b'{"a": {"\\ud800": 1}}',
    b"NaN",
    b"Infinity",
    b"[1,]",
]


@pytest.mark.parametrize("raw", edge_numbers() + HOSTILE_STRINGS + NESTED)
def test_an_extra_value_msgspec_takes_is_one_orjson_takes(raw: bytes) -> None:
    if takes(EXTRA.decode, raw):
        assert takes(orjson.loads, raw), raw[:80]


def test_the_edge_values_are_refused_by_both_where_orjson_refuses() -> None:
    # guards the test above against a vacuous pass: msgspec refuses the
    # overflowing numbers and bad strings too, and takes the good ones
    refused = [raw for raw in edge_numbers() + HOSTILE_STRINGS if not takes(orjson.loads, raw)]
    assert len(refused) >= 20
    assert not any(takes(EXTRA.decode, raw) for raw in refused)
    assert takes(EXTRA.decode, str(DBL_MAX_HALF_ULP - 1).encode())
    assert takes(EXTRA.decode, b'"\\ud83d\\ude00"')


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.integers(-(10**330), 10**330).map(lambda n: str(n).encode()),
        st.tuples(finite, st.integers(-400, 400)).map(lambda t: f"{t[0]!r}e{t[1]}".encode()),
        st.tuples(st.integers(1, 10**20), st.integers(280, 330)).map(
            lambda t: f"{t[0]}e{t[1]}".encode()
        ),
        st.binary(max_size=12).map(lambda b: b'"' + b + b'"'),
        st.recursive(st.none() | st.booleans() | finite, lambda inner: st.lists(inner, max_size=3))
        .map(json.dumps)
        .map(str.encode),
    )
)
def test_generated_extra_values_msgspec_takes_are_ones_orjson_takes(raw: bytes) -> None:
    if takes(EXTRA.decode, raw):
        assert takes(orjson.loads, raw), raw[:80]


def test_list_extend_keeps_what_it_appended_before_an_error() -> None:
    # RowDecoder resumes a batch after the message its rows refused, found
    # as the length of what list.extend appended before the decoder raised.
    # CPython does this; if an interpreter did not, the rows would be
    # misaligned with their messages: fail here, loudly.
    def upto_three(n: int) -> int:
        if n == 3:
            raise ValueError(n)
        return n

    got: list[int] = [9]
    with pytest.raises(ValueError):
        got.extend(map(upto_three, range(10)))
    assert got == [9, 0, 1, 2]


def fields(**extra: Any) -> dict[str, Any]:
    return {"event_id": "e", "type": "request", "ts": 1.0, "user_id": "u", **extra}


def test_names_are_learned_once_and_contract_fields_are_not_names() -> None:
    extras = ExtraFields("request", RequestRow, ResponseRow)
    assert extras.decoder is None
    extras.learn(fields(blocked=True, safe=None, cost_usd=1.0))  # contract fields only
    assert extras.decoder is None
    extras.learn(fields(env="prod", trace_id="ab"))
    first = extras.decoder
    assert extras.names == ("env", "trace_id")
    extras.learn(fields(trace_id="cd"))  # nothing new: the same decoder
    assert extras.decoder is first
    extras.learn(fields(region="eu"))  # the union: messages with either still decode
    assert extras.names == ("env", "trace_id", "region")
    assert extras.decoder is not None
    row = extras.decoder.decode(b'{"event_id":"e","ts":1,"user_id":"u","blocked":true,"env":"x"}')
    assert isinstance(row, RequestRow) and row.blocked is True


def test_names_stay_bounded() -> None:
    extras = ExtraFields(None, RequestRow, ResponseRow)
    extras.learn(fields(**{f"a{i}": 1 for i in range(MAX_EXTRA_FIELDS)}))
    assert len(extras.names) == MAX_EXTRA_FIELDS
    extras.learn(fields(b=1))  # one past the bound: this message's names replace them
    assert extras.names == ("b",)
    extras.learn(fields(**{f"c{i}": 1 for i in range(MAX_EXTRA_FIELDS + 1)}))  # too many
    assert extras.names == ("b",)
    for name in ("k" * 129, 'a"b', "a\\b", "a\x1fb"):  # too long, or not a name msgspec matches
        extras.learn(fields(**{name: 1}))
        assert extras.names == ("b",)


def producer(i: int, **extra: Any) -> bytes:
    doc = {
        "event_id": f"e{i}",
        "type": "response",
        "ts": "2026-10-29T00:00:01.019Z",
        "user_id": f"u{i % 7}",
        "safety_score": (i % 10) / 10,
        "trace_id": f"{i * 0x9E3779B97F4A7C15:032x}"[-32:],
        "client": {"name": "gateway", "retries": i % 3},
        **extra,
    }
    return orjson.dumps(doc)


def test_a_producer_stream_is_decoded_by_rows_naming_its_fields() -> None:
    rows = RowDecoder(Decoder())
    first = rows.rows([producer(i) for i in range(50)], "response")
    assert None not in first
    assert rows.extra_fields("response").names == ("trace_id", "client")
    second = rows.rows([producer(i) for i in range(50, 100)], "response")
    named = {field.encode_name for row in second for field in msgspec.structs.fields(row)}
    assert {"trace_id", "client"} <= named  # decoded by the named rows, not skipped
    assert [row.safe for row in second if row is not None] == [i % 10 >= 5 for i in range(50, 100)]
    want_ts = parse_rfc3339("2026-10-29T00:00:01.019Z")
    assert all(row is not None and row.ts == want_ts for row in second)


@pytest.mark.parametrize(
    "hostile",
    [b"1e400", b"1" + b"0" * 400, b'"\\ud800"', b'"a\xffb"', b"[" * 1100 + b"]" * 1100],
)
def test_a_hostile_value_in_a_named_field_leaves_that_message_alone(hostile: bytes) -> None:
    rows = RowDecoder(Decoder())
    rows.rows([producer(i) for i in range(10)], "response")  # learns trace_id and client
    batch = [producer(i) for i in range(10, 30)]
    batch[7] = batch[7].replace(b'"retries":', b'"retries":' + hostile + b',"r":')
    assert not takes(orjson.loads, batch[7])
    got = rows.rows(batch, "response")
    assert got[7] is None  # the decoder's to refuse (not_json)
    assert all(row is not None for i, row in enumerate(got) if i != 7)
    assert [row.event_id for row in got if row is not None] == [
        f"e{i}" for i in range(10, 30) if i != 17
    ]


def test_new_fields_midway_are_learned_and_the_batch_resumes() -> None:
    rows = RowDecoder(Decoder())
    batch = [producer(i, **({"span": f"s{i}"} if i % 10 == 5 else {})) for i in range(40)]
    batch[20] = b"{oops"
    got = rows.rows(batch, "response")
    assert [i for i, row in enumerate(got) if row is None] == [20]
    assert rows.extra_fields("response").names == ("trace_id", "client", "span")
    assert [row.event_id for row in got if row is not None] == [
        f"e{i}" for i in range(40) if i != 20
    ]
    assert not math.isnan(sum(row.ts for row in got if row is not None))


def test_past_a_few_refused_messages_the_rest_is_vetted_by_byte_searches() -> None:
    # every message has a new field: each is learned from until the batch
    # has had its few, then the rows that skip unknown fields take the rest
    rows = RowDecoder(Decoder())
    batch = [producer(i, **{f"f{i}": i}) for i in range(60)]
    batch[50] = batch[50].replace(b'"retries":', b'"retries":1e999,"r":')
    got = rows.rows(batch, "response")
    assert [i for i, row in enumerate(got) if row is None] == [50]
    assert len(rows.extra_fields("response").names) <= MAX_EXTRA_FIELDS


def test_the_members_of_an_extra_object_are_learned_and_checked() -> None:
    rows = RowDecoder(Decoder())
    rows.rows([producer(i) for i in range(10)], "response")
    extras = rows.extra_fields("response")
    assert extras.members("client") == ("name", "retries")
    assert extras.members("trace_id") is None  # never an object
    # a learned member holding what orjson refuses: that message alone is refused
    for hostile in (b"1e400", b'"\\ud800"', b'"a\xffb"', b"[[1]]", b'{"a": 1}'):
        batch = [producer(i, client={"name": "gateway", "retries": "HOSTILE"}) for i in range(5)]
        batch[2] = batch[2].replace(b'"HOSTILE"', hostile)
        got = rows.rows(batch, "response")
        valid = takes(orjson.loads, batch[2]) and hostile in (b"[[1]]", b'{"a": 1}')
        assert (got[2] is not None) is valid, hostile
        assert all(row is not None for i, row in enumerate(got) if i != 2)
    # a new member: refused by the named rows, taken alone and learned
    rows.rows([producer(20, client={"name": "g", "region": "eu"})], "response")
    assert extras.members("client") == ("name", "retries", "region")


def test_an_object_with_members_msgspec_cannot_name_is_decoded_as_a_dict() -> None:
    rows = RowDecoder(Decoder())
    batch = [producer(i, client={'we"ird': i, "ok": "y"}) for i in range(5)]
    assert None not in rows.rows(batch, "response")
    extras = rows.extra_fields("response")
    assert extras.names == ("trace_id", "client")
    assert extras.members("client") is None
    again = rows.rows(batch, "response")
    assert None not in again
    assert all(isinstance(row, ResponseRow) for row in again)


def test_instances_knows_rows_of_classes_made_at_run_time() -> None:
    from stream_sentinel.decode_rows import _MOST_TYPES, Instances

    responses = Instances(ResponseRow)
    rows = RowDecoder(Decoder())
    named = rows.rows([producer(i) for i in range(3)], "response")  # learns: a new class
    plain = msgspec.json.decode(b'{"event_id":"e","ts":1,"user_id":"u"}', type=ResponseRow)
    made = [msgspec.defstruct(f"C{i}", [], bases=(ResponseRow,)) for i in range(_MOST_TYPES + 5)]
    fields = msgspec.structs.asdict(plain)
    items: list[object] = [None, plain, *named, "x", *(kind(**fields) for kind in made)]
    assert responses.of(items) == [isinstance(item, ResponseRow) for item in items]
    assert responses.of(items[:4]) == [False, True, True, True]
