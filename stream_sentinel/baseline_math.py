"""Pure baseline logic: what a learned baseline rests on, and its value.

No I/O: ``baselines`` feeds these from a ``History`` and caches the results.
DESIGN.md "Learned baselines" is the contract; here is how it is applied.

The comparison set of a signal is its points in the lookback (with
``hour_of_day``: those of ticks in the same UTC hour, ``at // 3600 % 24``)
except:

* points of ``stale`` ticks (counts being rebuilt are not normal counts);
* warm-up points: the signal's window ``[at - window, at)`` began before the
  earliest event the sentinel could see (``visible_since``): a window only
  partly filled reads too low;
* judged reds (red against a real baseline, see ``history.Point.judged``).

Ratio signals (``blocked_pct``; ``safety_pct`` through its failure rate) learn
the pooled proportion, sum of numerators over sum of denominators, over the
non-overlapping windows of the set: the ticks whose ``at`` is a multiple of the
window (300 s). Those windows tile the time line, so every event counts once,
and a rare event (a blocked request at night) is weighed by the traffic around
it instead of vanishing in a median of mostly-zero windows. Windows with fewer
than ``min_events`` events count too: their events are as real as any.

``top_user_rps`` and ``spend_hour`` learn the median of their tick values.

A baseline needs enough behind it (else the caller falls back to the floor,
see ``baselines``): a ratio at least ``MIN_RATIO_WINDOWS`` windows and
``MIN_RATIO_EVENTS`` events; a median ``min_points`` ticks (half an hour's
worth). With ``hour_of_day`` an hour short of that uses the flat set, and so
does an hour whose ratio rests on fewer than ``MIN_HOUR_HITS`` numerator
events: a rate from k events is known to about 1/sqrt(k), and one day's
night hour at 0.05 % blocked holds some 20 blocked requests, so its own rate
could as well be half or twice the truth, and a rate learned too low pages.
The flat set has 24 times the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .bucketing import BLOCKED_WINDOW_S, SAFETY_WINDOW_S, SPEND_WINDOW_S, TOP_USER_WINDOW_S
from .model import SignalName
from .store.history import RATIO_SIGNALS, Point, TickRecord

Seasonality = Literal["none", "hour_of_day"]
Scope = Literal["hour", "all"]  # learned from the same UTC hour, or from every hour
HOUR_S = 3600
DAY_S = 86400
LOOKBACK_S = 7 * DAY_S  # DESIGN.md: the trailing 7 days
MIN_COVERAGE_S = 1800  # a median needs at least half an hour of usable ticks
MIN_RATIO_WINDOWS = 6  # half an hour of non-overlapping 5-minute windows
MIN_RATIO_EVENTS = 1000  # a rate of 0.1 % is one event in this many
MIN_HOUR_HITS = 50  # an hour's own ratio: its numerator known to about +-14 %

WINDOW_S: Mapping[SignalName, int] = {
    "blocked_pct": BLOCKED_WINDOW_S,
    "safety_pct": SAFETY_WINDOW_S,
    "top_user_rps": TOP_USER_WINDOW_S,
    "spend_hour": SPEND_WINDOW_S,
}


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


def is_warm_up(at: int, name: SignalName, visible_since: int | None) -> bool:
    """Whether the window of ``name`` at ``at`` began before the first visible event."""
    return visible_since is not None and at - WINDOW_S[name] < visible_since


def learnable(record: TickRecord, name: SignalName, visible_since: int | None) -> Point | None:
    """The point of ``name`` in ``record`` when it belongs to the comparison set, else None."""
    point = record.points.get(name)
    if point is None or record.stale or is_warm_up(record.at, name, visible_since):
        return None
    if point.state == "red" and point.judged:
        return None
    if name in RATIO_SIGNALS:
        tiles = record.at % WINDOW_S[name] == 0
        return point if tiles and point.hits is not None else None
    if point.value is None or point.state == "insufficient_data":
        return None
    return point


@dataclass(frozen=True, slots=True)
class Pool:
    """What some ticks contribute to one signal: pooled counts, or values for a median."""

    hits: int = 0
    events: int = 0
    windows: int = 0
    values: tuple[float, ...] = field(default=())

    def __add__(self, other: Pool) -> Pool:
        return Pool(
            self.hits + other.hits,
            self.events + other.events,
            self.windows + other.windows,
            self.values + other.values,
        )


def pool(records: Iterable[TickRecord], name: SignalName, visible_since: int | None) -> Pool:
    hits = events = windows = 0
    values: list[float] = []
    for record in records:
        point = learnable(record, name, visible_since)
        if point is None:
            continue
        windows += 1
        events += point.volume
        if name in RATIO_SIGNALS:
            hits += point.hits or 0
        elif point.value is not None:
            values.append(point.value)
    return Pool(hits, events, windows, tuple(values))


ByHour = dict[int, dict[SignalName, Pool]]


def by_hour(
    records: Iterable[TickRecord], names: Sequence[SignalName], visible_since: int | None
) -> ByHour:
    """The pools of each of ``names``, by hour index (``at // 3600``)."""
    grouped: dict[int, list[TickRecord]] = {}
    for record in records:
        grouped.setdefault(record.at // HOUR_S, []).append(record)
    return {h: {name: pool(rs, name, visible_since) for name in names} for h, rs in grouped.items()}


def by_hour_tenants(
    records: Iterable[TickRecord], names: Sequence[SignalName], visible_since: int | None
) -> dict[str, ByHour]:
    """``by_hour`` of each tenant's own points (``TickRecord.tenants``): a tenant
    learns by the same rules as the global signals, from the ticks it was evaluated in."""
    grouped: dict[str, dict[int, list[TickRecord]]] = {}
    for record in records:
        for tenant, points in record.tenants.items():
            view = TickRecord(record.at, points, record.stale)
            grouped.setdefault(tenant, {}).setdefault(record.at // HOUR_S, []).append(view)
    return {
        tenant: {
            h: {name: pool(rs, name, visible_since) for name in names} for h, rs in hours.items()
        }
        for tenant, hours in grouped.items()
    }


@dataclass(frozen=True, slots=True)
class Learned:
    """A learned baseline and what it rests on (``events``: ratio signals only)."""

    value: float
    windows: int
    events: int | None
    scope: Scope


def learn(pooled: Pool, name: SignalName, *, min_points: int, scope: Scope) -> Learned | None:
    """The baseline ``pooled`` gives ``name``, or None when it rests on too little."""
    if name in RATIO_SIGNALS:
        if pooled.windows < MIN_RATIO_WINDOWS or pooled.events < MIN_RATIO_EVENTS:
            return None
        if scope == "hour" and pooled.hits < MIN_HOUR_HITS:
            return None
        rate = 100.0 * pooled.hits / pooled.events
        value = 100.0 - rate if name == "safety_pct" else rate
        return Learned(value, pooled.windows, pooled.events, scope)
    middle = median(pooled.values)
    if middle is None or len(pooled.values) < min_points:
        return None
    return Learned(middle, len(pooled.values), None, scope)


def pick(
    hours: Mapping[int, Mapping[SignalName, Pool]],
    name: SignalName,
    *,
    hour: int,
    seasonality: Seasonality,
    min_points: int,
) -> Learned | None:
    """The baseline for a tick in UTC hour ``hour`` from pools grouped by hour index.

    With ``hour_of_day`` that hour's pools, when they are enough; otherwise
    (and with ``none``) all of them, when they are enough.
    """
    empty = Pool()
    if seasonality == "hour_of_day":
        same = sum((p.get(name, empty) for h, p in hours.items() if h % 24 == hour), empty)
        found = learn(same, name, min_points=min_points, scope="hour")
        if found is not None:
            return found
    flat = sum((p.get(name, empty) for p in hours.values()), empty)
    return learn(flat, name, min_points=min_points, scope="all")


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
    """Baselines learned from a stretch of history, for ``baseline`` and ``--learn-from``."""

    flat: Mapping[SignalName, Learned]  # only signals with enough behind them
    hourly: Mapping[SignalName, Mapping[int, Learned]]  # UTC hour -> that hour's own
    ticks: int
    first_at: int | None
    last_at: int | None

    def lookup(self, name: SignalName, at: int, seasonality: Seasonality) -> Learned | None:
        """The baseline a tick at ``at`` uses: its hour's, else the flat one, else None."""
        if seasonality == "hour_of_day":
            found = self.hourly.get(name, {}).get(hour_of_day(at))
            if found is not None:
                return found
        return self.flat.get(name)


def learn_table(
    records: Sequence[TickRecord],
    names: Sequence[SignalName],
    *,
    min_points: int,
    visible_since: int | None,
) -> BaselineTable:
    grouped = by_hour(records, names, visible_since)
    flat: dict[SignalName, Learned] = {}
    hourly: dict[SignalName, dict[int, Learned]] = {}
    empty = Pool()
    for name in names:
        whole = sum((p.get(name, empty) for p in grouped.values()), empty)
        if (found := learn(whole, name, min_points=min_points, scope="all")) is not None:
            flat[name] = found
        hourly[name] = {}
        for hour in range(24):
            same = sum((p.get(name, empty) for h, p in grouped.items() if h % 24 == hour), empty)
            if (one := learn(same, name, min_points=min_points, scope="hour")) is not None:
                hourly[name][hour] = one
    first = records[0].at if records else None
    last = records[-1].at if records else None
    return BaselineTable(flat, hourly, len(records), first, last)
