"""RFC 3339 date-times to Unix seconds: pure arithmetic, no time zone database.

``ts`` may be an RFC 3339 string with an offset (DESIGN.md).
``datetime.fromisoformat`` parses most of them, but not a leap second
(``:60``), not more than six fraction digits and not year 0000, and it takes
shapes RFC 3339 does not allow. ``tests/test_decode.py`` checks this
against ``datetime`` where both apply.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from itertools import repeat
from operator import add, itemgetter

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
_SECOND_HEAD = itemgetter(slice(0, 19))
_FRACTION = itemgetter(slice(19, 23))


def parse_rfc3339(text: str) -> float | None:
    """Unix seconds of an RFC 3339 date-time (offset required), or None if it is not one.

    A leap second (``:60``) is accepted, as the RFC allows, and counts as the
    first second of the next minute. Fractions keep every digit until the one
    final rounding to a float.
    """
    return _parse(text, None)


class Rfc3339Parser:
    """``parse_rfc3339`` that remembers the minutes and seconds it has seen: a
    stream's events share them, and the date arithmetic is most of the cost."""

    __slots__ = ("_minutes", "_seconds")

    def __init__(self) -> None:
        self._minutes: dict[str, int | None] = {}
        # "YYYY-MM-DDTHH:MM:SS" -> its Unix seconds as text, for ``parse_many``
        self._seconds: dict[str, str | None] = {}

    def parse(self, text: str) -> float | None:
        return _parse(text, self._minutes)

    def parse_many(self, texts: list[str]) -> list[float | None]:
        """``parse`` of each text. When every one has the shape loggers write,
        ``2026-10-29T00:00:01.019Z``, this runs in C loops: one comparison of
        the whole batch against that shape, then per text a cached second and
        the fraction appended to it, with ``_parse``'s one rounding."""
        n = len(texts)
        joined = "\n".join(texts)
        if (
            len(joined) != n * (len(_MILLIS_SHAPE) + 1) - 1
            or not joined.isascii()
            or joined.translate(_DIGITS_AS_ZERO) != "\n".join(repeat(_MILLIS_SHAPE, n))
        ):
            return list(map(self.parse, texts))
        heads = list(map(_SECOND_HEAD, texts))
        seconds = self._seconds
        if len(seconds) >= _CACHED_MINUTES:
            seconds.clear()
        for head in set(heads).difference(seconds):
            whole = _parse(head + "Z", self._minutes)
            seconds[head] = None if whole is None or whole < 0 else str(int(whole))
        bases = list(map(seconds.__getitem__, heads))
        if None in bases:
            return list(map(self.parse, texts))
        return list(map(float, map(add, bases, map(_FRACTION, texts))))


def _parse(text: str, minutes: dict[str, int | None] | None) -> float | None:
    rest = _REST.fullmatch(text, _MINUTE_LEN)
    if rest is None:
        return None
    head = text[:_MINUTE_LEN]
    if minutes is None:
        base = _minute_seconds(head)
    elif head in minutes:
        base = minutes[head]
    else:
        if len(minutes) >= _CACHED_MINUTES:
            minutes.clear()
        base = minutes[head] = _minute_seconds(head)
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
