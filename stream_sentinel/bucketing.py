"""Time bucketing: pure arithmetic on integer seconds."""

from __future__ import annotations

import math

BLOCKED_WINDOW_S = 300
SAFETY_WINDOW_S = 300
TOP_USER_WINDOW_S = 300
SPEND_WINDOW_S = 3600
LONGEST_WINDOW_S = SPEND_WINDOW_S


def bucket_seconds_for(tick_seconds: int) -> int:
    """Largest bucket width that makes every window at every tick exact.

    Windows end on multiples of ``tick_seconds`` and are 300 s or 3600 s long,
    so the bucket must divide the tick and 300 (hence 3600 too). Capped at 60 s
    so the default (tick 60 s) keeps one bucket per minute.
    """
    if tick_seconds <= 0:
        raise ValueError("tick_seconds must be positive")
    return math.gcd(tick_seconds, 60)


def bucket_of(ts: float, width: int) -> int:
    """Start (Unix seconds) of the bucket holding ``ts``; half-open buckets."""
    # floor division, not floor(ts / width): the quotient of a tiny negative
    # ts underflows to -0.0 and would put it in the bucket after it
    return int(ts // width) * width


def buckets_in(start: int, end: int, width: int) -> range:
    """Bucket starts covering ``[start, end)``; both ends must be bucket aligned."""
    if start % width or end % width:
        raise ValueError(f"window [{start}, {end}) is not aligned to {width} s buckets")
    return range(start, end, width)


def tick_floor(now: float, tick_seconds: int) -> int:
    """The latest tick boundary at or before ``now``."""
    return math.floor(now / tick_seconds) * tick_seconds
