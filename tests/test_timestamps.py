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
