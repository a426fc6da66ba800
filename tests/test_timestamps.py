"""The cached and batch RFC 3339 parsers give exactly what ``parse_rfc3339`` gives.

``Rfc3339Parser.parse`` caches minutes and ``parse_many`` parses a batch of
the loggers' shape (``2026-10-29T00:00:01.019Z``) with C loops (integers read
by msgspec per run of a minute, or msgspec's date-times); both must agree
with the uncached parser on every text, valid or not, in any mix and order,
including after their caches are cleared.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel import timestamps
from stream_sentinel.timestamps import Rfc3339Parser, parse_rfc3339

BASE = datetime(2026, 10, 29, 23, 59, 58, tzinfo=UTC)


def millis(offset_ms: int) -> str:
    when = BASE + timedelta(milliseconds=offset_ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


ODD = [
    "2026-10-29T23:59:60.500Z",  # a leap second: the loggers' shape, second 60
    "2026-10-29T23:59:61.000Z",  # no second 61
    "2026-02-30T00:00:00.000Z",  # no such day, in the loggers' shape
    "1969-12-31T23:59:59.250Z",  # before 1970
    "2026-10-29t23:59:59.001z",
    "2026-10-29T23:59:59.001+01:00",
    "2026-10-29T23:59:59Z",
    "2026-10-29T23:59:59.0011Z",
    "2026-10-29 23:59:59.001Z",
    "2026-10-29T23:59:59.001",
    "2026-10-29T23:59:5\u0669.001Z",  # an Arabic-Indic digit
    "",
    "x" * 24,
]
TEXTS = st.one_of(st.integers(-5_000, 130_000).map(millis), st.sampled_from(ODD))


@settings(max_examples=300)
@given(st.lists(TEXTS, min_size=1, max_size=40))
def test_parse_many_is_parse_rfc3339_of_each(texts: list[str]) -> None:
    parser = Rfc3339Parser()
    want = [parse_rfc3339(text) for text in texts]
    assert parser.parse_many(texts) == want
    assert parser.parse_many(texts) == want  # again, from the caches
    assert [parser.parse(text) for text in texts] == want


class OneByOne(Rfc3339Parser):
    """Counts the texts ``parse_many`` left to ``parse``: 0 on the batch paths."""

    def __init__(self) -> None:
        super().__init__()
        self.one_by_one = 0

    def parse(self, text: str) -> float | None:
        self.one_by_one += 1
        return super().parse(text)


def batch_agrees(texts: list[str]) -> int:
    """How many texts ``parse_many`` parsed one by one; its values checked."""
    parser = OneByOne()
    assert parser.parse_many(texts) == [parse_rfc3339(text) for text in texts]
    return parser.one_by_one


def test_a_batch_of_the_loggers_shape_takes_the_batch_path() -> None:
    in_order = [millis(ms) for ms in range(0, 3000, 7)]  # 23:59:58 to 00:00:01: two minutes
    assert batch_agrees(in_order) == 0
    # the runs of minutes take the integer path, not msgspec's date-times
    assert Rfc3339Parser()._by_minute('","'.join(in_order), in_order) is not None
    assert batch_agrees(in_order[::-1]) == 0  # minutes in runs, in any order
    ten_minutes = [millis(ms) for ms in range(0, 600_000, 997)]  # more runs than _by_minute takes
    assert batch_agrees(ten_minutes) == 0
    random.Random(1).shuffle(ten_minutes)
    assert batch_agrees(ten_minutes) == 0


def test_a_leap_second_or_a_missing_day_leaves_the_batch_to_parse() -> None:
    good = [millis(ms) for ms in range(0, 3000, 7)]
    for odd in ("2026-10-29T23:59:60.500Z", "2026-10-29T23:59:61.000Z", "2026-02-30T00:00:00.000Z"):
        texts = [*good[:50], odd, *good[50:]]
        assert batch_agrees(texts) == len(texts)


def in_shape(digits: str) -> str:
    """The loggers' shape with these 17 digits in its digit places."""
    places = iter(digits)
    return "".join(next(places) if c == "0" else c for c in "0000-00-00T00:00:00.000Z")


DIGITS = st.text("0123456789", min_size=17, max_size=17).map(in_shape)
NEAR_EDGES = st.sampled_from(
    ["0000", "0001", "1969", "1970", "2000", "2024", "2100", "9999"]
).flatmap(
    lambda year: st.tuples(
        st.sampled_from(["01-01", "02-28", "02-29", "03-01", "12-31", "04-31", "13-01", "00-10"]),
        st.sampled_from(["00:00", "00:01", "23:59", "24:00", "12:60"]),
        st.integers(0, 61),
        st.integers(0, 999),
    ).map(lambda t: f"{year}-{t[0]}T{t[1]}:{t[2]:02d}.{t[3]:03d}Z")
)


@settings(max_examples=300)
@given(st.lists(DIGITS | NEAR_EDGES, min_size=1, max_size=30), st.booleans())
def test_every_digit_of_the_shape_gets_parses_answer(texts: list[str], ordered: bool) -> None:
    # mostly dates that do not exist (parse decides each), and calendar edges:
    # year 0000, before 1970, leap days, hour 24, second 60 and past it
    batch_agrees(sorted(texts) if ordered else texts)


@settings(max_examples=200)
@given(
    st.sampled_from(
        ["0001-01-01T00:00", "1969-12-31T23:58", "1970-01-01T00:00", "9999-12-31T23:58"]
    ),
    st.lists(st.integers(0, 119_999), min_size=1, max_size=60),
    st.booleans(),
)
def test_valid_batches_at_the_calendars_edges_take_a_batch_path(
    minute: str, offsets_ms: list[int], ordered: bool
) -> None:
    start = datetime.fromisoformat(minute + ":00+00:00")
    texts = [
        (start + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:23] + "Z"
        for ms in (sorted(offsets_ms) if ordered else offsets_ms)
    ]
    assert batch_agrees(texts) == 0


def test_texts_of_the_loggers_length_but_not_their_shape_are_parsed_one_by_one() -> None:
    # 24 ASCII characters each, so only the shape comparison tells them apart
    texts = ["2026-10-29T23:59:59.1234", "2026-10-29T23:59:59.123Z"]
    assert Rfc3339Parser().parse_many(texts) == [None, parse_rfc3339(texts[1])]
    assert Rfc3339Parser().parse_many(["2026-10-29T23:59:59+0100"]) == [None]


def test_parse_remembers_each_minute_once() -> None:
    parser = Rfc3339Parser()
    for text in ("2026-10-29T23:59:59.5Z", "2026-10-29T23:59:01Z", "2026-10-30T00:00:00Z"):
        assert parser.parse(text) == parse_rfc3339(text)
    assert sorted(parser._minutes) == ["2026-10-29T23:59", "2026-10-30T00:00"]


def test_the_batch_path_remembers_every_minute_it_met() -> None:
    parser = Rfc3339Parser()
    texts = ["1970-01-01T00:00:00.250Z", "1970-01-01T00:00:01.500Z", "1970-01-01T00:01:00.000Z"]
    assert parser.parse_many(texts) == [0.25, 1.5, 60.0]
    assert parser._minutes == {"1970-01-01T00:00": 0, "1970-01-01T00:01": 60}


def test_the_caches_never_hold_more_than_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timestamps, "_CACHED_MINUTES", 4)
    parser = Rfc3339Parser()
    for minute in range(12):
        text = f"2026-10-29T10:{minute:02d}:00Z"
        assert parser.parse(text) == parse_rfc3339(text)
        assert 1 <= len(parser._minutes) <= 4
    for minute in range(12):
        batch = [f"2026-10-29T11:{minute:02d}:{second:02d}.000Z" for second in range(3)]
        assert parser.parse_many(batch) == list(map(parse_rfc3339, batch))
        assert 1 <= len(parser._minutes) <= 4
