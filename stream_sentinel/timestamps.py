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

# [0-9], not \d: \d also matches non-ASCII digits, which RFC 3339 does not allow.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_rfc3339(text: str) -> float | None:
    """Unix seconds of an RFC 3339 date-time (offset required), or None if it is not one.

    A leap second (``:60``) is accepted, as the RFC allows, and counts as the
    first second of the next minute. Fractions keep every digit until the one
    final rounding to a float.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = match.groups()
    y, mo, d = int(year), int(month), int(day)
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo)):
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 60:
        return None
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
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
