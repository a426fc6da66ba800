"""Pure baseline logic: medians of tick history, hour-of-day selection, learning days.

No I/O: ``baselines`` feeds these from a ``History`` and caches the results.

"The same hour" is the UTC hour of the tick time ``at`` (``at // 3600 % 24``).
Until that hour has ``min_points`` usable ticks of its own, the flat median
stands in. A tick is usable when it has a value, enough data, and was not red
against a real (static or learned) baseline (see ``history.Point.judged``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal

from .model import SignalName
from .store.history import Point, TickRecord

Seasonality = Literal["none", "hour_of_day"]
HOUR_S = 3600
DAY_S = 86400
LOOKBACK_S = 7 * DAY_S  # DESIGN.md: the median of the trailing 7 days
MIN_COVERAGE_S = 1800  # a median needs at least half an hour of usable ticks


def median(values: Sequence[float]) -> float | None:
    """The median (mean of the middle two for an even count); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def hour_of_day(at: int) -> int:
    return (at // HOUR_S) % 24


def is_usable(point: Point) -> bool:
    """A point a median may use: it has a value, enough data, and was not judged red."""
    if point.value is None or point.state == "insufficient_data":
        return False
    return not (point.state == "red" and point.judged)


def usable_values(
    records: Iterable[TickRecord], name: SignalName, *, hour: int | None = None
) -> list[float]:
    """Values of ``name`` a median may use, optionally only ticks of one UTC hour."""
    found: list[float] = []
    for record in records:
        if hour is not None and (record.at // HOUR_S) % 24 != hour:
            continue
        point = record.points.get(name)
        if point is not None and point.value is not None and is_usable(point):
            found.append(point.value)
    return found


ByHour = dict[int, dict[SignalName, list[float]]]


def by_hour(records: Iterable[TickRecord], names: Sequence[SignalName]) -> ByHour:
    """Usable values of each of ``names``, grouped by hour index (``at // 3600``)."""
    out: ByHour = {}
    for record in records:
        slot = out.setdefault(record.at // HOUR_S, {})
        for name in names:
            point = record.points.get(name)
            if point is not None and point.value is not None and is_usable(point):
                slot.setdefault(name, []).append(point.value)
    return out


def pick(
    hours: Mapping[int, Mapping[SignalName, Sequence[float]]],
    name: SignalName,
    *,
    hour: int,
    seasonality: Seasonality,
    min_points: int,
) -> float | None:
    """The baseline for a tick in UTC hour ``hour`` from values grouped by hour index.

    With ``hour_of_day`` the median of that hour's values, when there are
    ``min_points`` of them; otherwise (and with ``none``) the flat median, when
    there are ``min_points`` values at all.
    """
    if seasonality == "hour_of_day":
        same = list(
            chain.from_iterable(vs.get(name, ()) for h, vs in hours.items() if h % 24 == hour)
        )
        if len(same) >= min_points:
            return median(same)
    flat = list(chain.from_iterable(vs.get(name, ()) for vs in hours.values()))
    return median(flat) if len(flat) >= min_points else None


def learned_value(
    records: Iterable[TickRecord],
    name: SignalName,
    *,
    at: int,
    seasonality: Seasonality,
    min_points: int,
) -> float | None:
    """The baseline of ``name`` for a tick at ``at`` from ``records`` (the lookback)."""
    grouped = by_hour(records, (name,))
    return pick(grouped, name, hour=hour_of_day(at), seasonality=seasonality, min_points=min_points)


def learning_note(first: int, at: int, days: int | None) -> str | None:
    """``"day N of D"`` while ``at`` is within ``days`` of ``first``, else None.

    ``days=None`` never ends (the ``baseline`` verb only records).
    """
    day = max(0, at - first) // DAY_S + 1
    if days is None:
        return f"recording, day {day}"
    return f"day {day} of {days}" if day <= days else None


def min_points_for(tick_seconds: int) -> int:
    return max(1, MIN_COVERAGE_S // tick_seconds)


@dataclass(frozen=True)
class BaselineTable:
    """Medians learned from a stretch of history, for the ``baseline`` verb."""

    flat: Mapping[SignalName, float]  # only signals with enough usable ticks
    hourly: Mapping[SignalName, Mapping[int, float]]  # UTC hour -> median
    usable: Mapping[SignalName, int]  # usable ticks behind each flat median
    ticks: int
    first_at: int | None
    last_at: int | None


def learn_table(
    records: Sequence[TickRecord], names: Sequence[SignalName], *, min_points: int
) -> BaselineTable:
    flat: dict[SignalName, float] = {}
    hourly: dict[SignalName, dict[int, float]] = {}
    usable: dict[SignalName, int] = {}
    for name in names:
        values = usable_values(records, name)
        usable[name] = len(values)
        value = median(values)
        if value is not None and len(values) >= min_points:
            flat[name] = value
        per_hour = {h: usable_values(records, name, hour=h) for h in range(24)}
        hourly[name] = {
            h: m
            for h, vs in per_hour.items()
            if len(vs) >= min_points and (m := median(vs)) is not None
        }
    first = records[0].at if records else None
    last = records[-1].at if records else None
    return BaselineTable(flat, hourly, usable, len(records), first, last)
