"""RFC 3339 date-times to Unix seconds: pure arithmetic, no time zone database.

``ts`` may be an RFC 3339 string with an offset (DESIGN.md).
``datetime.fromisoformat`` parses most of them, but not a leap second
(``:60``), not more than six fraction digits and not year 0000, and it takes
shapes RFC 3339 does not allow. ``tests/test_decode.py`` checks this
against ``datetime`` where both apply.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, localcontext
from itertools import repeat
from operator import add, truediv

import msgspec

# [0-9], not \d: \d also matches non-ASCII digits, which RFC 3339 does not allow.
# A date-time is split where a stream's events stop sharing it: the first 16
# characters ("2026-10-29T00:00") name a minute, which ``Rfc3339Parser`` caches.
_MINUTE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2})")
_MINUTE_LEN = 16
_REST = re.compile(r":([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# how many minutes (and seconds) a parser remembers before it starts again
_CACHED_MINUTES = 4096
# the shape loggers write, digits as 0: UTC, milliseconds
_MILLIS_SHAPE = "0000-00-00T00:00:00.000Z"
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
# ``parse_many``: a text of the loggers' shape and the '","' joining it to the next
_CELL = len(_MILLIS_SHAPE) + 3
_SECOND_AND_MILLIS = (17, 18, 20, 21, 22)  # where "SS" and "mmm" stand in the shape
_SECOND_TENS = _SECOND_AND_MILLIS[0]
_FIELD = 7  # "1SSmmm," per text in ``_by_minute``'s integers
_ONE = 100_000  # the leading 1 of those
_MOST_MINUTES = 8
_INTS = msgspec.json.Decoder(list[int])
_UTC_MOMENTS = msgspec.json.Decoder(list[datetime])


def parse_rfc3339(text: str) -> float | None:
    """Unix seconds of an RFC 3339 date-time (offset required), or None if it is not one.

    A leap second (``:60``) is accepted, as the RFC allows, and counts as the
    first second of the next minute. Fractions keep every digit until the one
    final rounding to a float.
    """
    return _parse(text, None)


class Rfc3339Parser:
    """``parse_rfc3339`` that remembers the minutes it has seen: a stream's
    events share them, and the date arithmetic is most of the cost."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[str, int | None] = {}

    def parse(self, text: str) -> float | None:
        return _parse(text, self._minutes)

    def parse_many(self, texts: list[str]) -> list[float | None]:
        """``parse`` of each text. When every one has the shape loggers write,
        ``2026-10-29T00:00:01.019Z``, this runs in C loops: one comparison of
        the whole batch against that shape, then ``_by_minute`` (or, for texts
        of many minutes in no order, msgspec reading them as UTC date-times
        and ``datetime.timestamp``). Either refuses the whole batch for a date
        that does not exist (and msgspec a leap second); ``parse`` then
        decides each text. For this shape both give ``_parse``'s value: the
        one correctly rounded double of (seconds x 1000 + millis) / 1000
        (``tests/test_timestamps.py`` compares them on every digit of the shape).
        A text that is no string raises TypeError (joining them)."""
        n = len(texts)
        quoted = '","'.join(texts)
        if (
            len(quoted) != n * _CELL - 3
            or not quoted.isascii()
            or quoted.translate(_DIGITS_AS_ZERO) != '","'.join(repeat(_MILLIS_SHAPE, n))
        ):
            return list(map(self.parse, texts))
        by_minute = self._by_minute(quoted, texts)
        if by_minute is not None:
            return by_minute
        try:
            moments = _UTC_MOMENTS.decode(f'["{quoted}"]')
        except msgspec.DecodeError:
            return list(map(self.parse, texts))
        return list(map(datetime.timestamp, moments))

    def _by_minute(self, quoted: str, texts: list[str]) -> list[float | None] | None:
        """Texts of the loggers' shape (``quoted``: joined by ``","``) whose
        minutes come in runs, at most ``_MOST_MINUTES``: None otherwise.

        The seconds and millis of every text are copied out of ``quoted`` by
        strided slices into one JSON array of integers "1SSmmm" (the 1 keeps
        JSON's rule against leading zeros) that msgspec reads. A run's
        texts are those from its first on that name its minute: the minute
        can only occur at the start of a text in this shape, and it is a run
        if every occurrence lies within it. Each value is then one integer
        division, (minute x 1000 + SSmmm) / 1000, correctly rounded as ``_parse``'s.
        """
        n = len(texts)
        raw = quoted.encode()
        if raw[_SECOND_TENS::_CELL].translate(None, b"012345"):
            return None  # a leap second (or past it): ``parse`` decides
        fields = bytearray(b"1" * (_FIELD * n))
        for to, at in enumerate(_SECOND_AND_MILLIS, 1):
            fields[to::_FIELD] = raw[at::_CELL]
        fields[_FIELD - 1 :: _FIELD] = b"," * n
        fields[-1:] = b"]"
        into_minute: list[int] = _INTS.decode(b"[" + fields)
        values: list[float | None] = []
        at = 0
        for _ in range(_MOST_MINUTES):
            head = texts[at][:_MINUTE_LEN]
            minute = _minute_of(head, self._minutes)
            start = at * _CELL
            run = quoted.count(head, start)
            if minute is None or (
                at + run < n and quoted.count(head, start, start + run * _CELL) != run
            ):
                return None
            offset = minute * 1000 - _ONE
            values += map(
                truediv, map(add, repeat(offset), into_minute[at : at + run]), repeat(1000)
            )
            at += run
            if at == n:
                return values
        return None


def _parse(text: str, minutes: dict[str, int | None] | None) -> float | None:
    rest = _REST.fullmatch(text, _MINUTE_LEN)
    if rest is None:
        return None
    head = text[:_MINUTE_LEN]
    base = _minute_seconds(head) if minutes is None else _minute_of(head, minutes)
    if base is None:
        return None
    second, frac, sign, off_h, off_m = rest.groups()
    s = int(second)
    if s > 60:
        return None
    secs = base + s
    if sign is not None:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            return None
        offset = oh * 3600 + om * 60
        secs += -offset if sign == "+" else offset
    if frac is None:
        return float(secs)
    if secs >= 0:
        return float(f"{secs}.{frac}")  # one correctly rounded conversion
    with localcontext() as ctx:  # negative: exact sum first, then one rounding
        ctx.prec = len(frac) + 32
        return float(Decimal(secs) + Decimal(f"0.{frac}"))


def _minute_of(head: str, minutes: dict[str, int | None]) -> int | None:
    """``_minute_seconds``, remembered in ``minutes``."""
    if head in minutes:
        return minutes[head]
    if len(minutes) >= _CACHED_MINUTES:
        minutes.clear()
    base = minutes[head] = _minute_seconds(head)
    return base


def _minute_seconds(head: str) -> int | None:
    """Unix seconds of the minute ``YYYY-MM-DDTHH:MM``, or None if it is not one."""
    match = _MINUTE.fullmatch(head)
    if match is None:
        return None
    y, mo, d, h, mi = map(int, match.groups())
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo)) or h > 23 or mi > 59:
        return None
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
