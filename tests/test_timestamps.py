"""The cached and batch RFC 3339 parsers give exactly what ``parse_rfc3339`` gives.

``Rfc3339Parser.parse`` caches minutes and ``parse_many`` parses a batch of
the loggers' shape (``2026-10-29T00:00:01.019Z``) with C loops over cached
seconds; both must agree with the uncached parser on every text, valid or
not, in any mix, including after their caches are cleared.
"""

from __future__ import annotations

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


def test_a_batch_of_the_loggers_shape_takes_the_batch_path() -> None:
    texts = [millis(ms) for ms in range(0, 3000, 7)]
    parser = Rfc3339Parser()
    assert parser.parse_many(texts) == [parse_rfc3339(text) for text in texts]
    assert len(parser._seconds) == 3  # 23:59:58, 23:59:59, 00:00:00: one entry each


def test_the_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timestamps, "_CACHED_MINUTES", 8)
    parser = Rfc3339Parser()
    texts = [millis(ms) for ms in range(0, 100_000, 900)]  # ~100 seconds, 3 minutes
    for at in range(0, len(texts), 5):
        batch = texts[at : at + 5]
        assert parser.parse_many(batch) == [parse_rfc3339(text) for text in batch]
        assert len(parser._seconds) <= 8 + 5
    many_minutes = [f"2026-10-29T{h:02d}:{m:02d}:00Z" for h in range(3) for m in range(60)]
    assert [parser.parse(t) for t in many_minutes] == list(map(parse_rfc3339, many_minutes))
    assert len(parser._minutes) <= 8


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


def test_the_batch_path_remembers_every_second_and_minute_it_met() -> None:
    parser = Rfc3339Parser()
    texts = ["1970-01-01T00:00:00.250Z", "1970-01-01T00:00:01.500Z"]
    assert parser.parse_many(texts) == [0.25, 1.5]
    # the epoch's own second is a second like any other
    assert parser._seconds == {"1970-01-01T00:00:00": "0", "1970-01-01T00:00:01": "1"}
    assert list(parser._minutes) == ["1970-01-01T00:00"]


def test_the_caches_never_hold_more_than_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timestamps, "_CACHED_MINUTES", 4)
    parser = Rfc3339Parser()
    for minute in range(12):
        text = f"2026-10-29T10:{minute:02d}:00Z"
        assert parser.parse(text) == parse_rfc3339(text)
        assert 1 <= len(parser._minutes) <= 4
    for second in range(12):
        batch = [f"2026-10-29T11:00:{second:02d}.000Z"]
        assert parser.parse_many(batch) == [parse_rfc3339(batch[0])]
        assert 1 <= len(parser._seconds) <= 4
