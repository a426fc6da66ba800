"""Learned baselines: medians of tick history, learning mode, and the providers.

The pure part (``median``, ``usable_values``, ``learned_value``,
``learning_note``, ``learn_table``) has no I/O. ``LearnedBaselines`` keeps the
history through a ``History`` and recomputes its medians at most once per
(event-time) hour, so a tick costs one dict lookup; ``FixedBaselines`` serves
a table learned beforehand (``replay --learn-from``).

Choices DESIGN.md leaves open:

* The learning period counts from the first start recorded in the history
  (SET NX), in the clock of the ``at`` passed in: wall time live, event time
  in replay.
* While learning, the baseline shown (source ``learning``) is the median of
  the history so far once there is enough of it, else the rules' floor
  stand-in; alerts are suppressed by the note either way.
* A signal still without usable history when learning ends keeps the floor
  stand-in with source ``learning`` (and a warning in the log), while the
  other signals alert normally: silencing every signal for one that has no
  traffic would hide attacks on the others.
* "The same hour" is the UTC hour of the tick time ``at``. Until an hour has
  ``min_points`` usable ticks of its own, the flat median stands in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .config import Config
from .evaluate import BaselineProvider, StaticBaselines
from .history import History, MemoryHistory, Point, RedisHistory, TickRecord
from .model import BaselineSource, SignalName, Tick
from .rules import Baseline
from .store import Store, StoreUnavailable

log = logging.getLogger(__name__)

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


def learned_value(
    records: Sequence[TickRecord],
    name: SignalName,
    *,
    at: int,
    seasonality: Seasonality,
    min_points: int,
) -> float | None:
    """The baseline of ``name`` for a tick at ``at`` from ``records`` (the lookback).

    With ``hour_of_day`` the median of the ticks of ``at``'s hour, when that
    hour has ``min_points`` usable ones; otherwise (and with ``none``) the flat
    median, when there are ``min_points`` usable ticks at all.
    """
    if seasonality == "hour_of_day":
        same_hour = usable_values(records, name, hour=hour_of_day(at))
        if len(same_hour) >= min_points:
            return median(same_hour)
    flat = usable_values(records, name)
    return median(flat) if len(flat) >= min_points else None


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


class LearnedBaselines:
    """The provider for configs with at least one learned signal."""

    def __init__(
        self,
        history: History,
        *,
        static: Mapping[SignalName, float],
        learned: Sequence[SignalName],
        learning_days: int | None,
        seasonality: Seasonality = "none",
        min_points: int = min_points_for(60),
        lookback_s: int = LOOKBACK_S,
    ) -> None:
        self._history = history
        self._static = {name: Baseline(v, "static") for name, v in static.items()}
        self._learned = tuple(n for n in learned if n not in self._static)
        self._days = learning_days
        self._seasonality: Seasonality = seasonality
        self._min_points = min_points
        self._lookback = lookback_s
        self._hour: int | None = None  # the hour the cached medians belong to
        self._first: int | None = None
        self._medians: dict[SignalName, float] = {}
        self._given: tuple[int, frozenset[SignalName]] | None = None

    @property
    def history(self) -> History:
        return self._history

    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        hour = at // HOUR_S
        if hour != self._hour:
            try:
                await self._refresh(at)
                self._hour = hour
            except StoreUnavailable:
                if self._first is None:
                    raise
                # keep last hour's medians; try again next tick
                log.warning("baselines: history unreadable, keeping the previous medians")
        assert self._first is not None
        note = learning_note(self._first, at, self._days)
        source: BaselineSource = "learning" if note is not None else "learned"
        out: dict[SignalName, Baseline] = dict(self._static)
        for name, value in self._medians.items():
            out[name] = Baseline(value, source)
        # signals left out get the rules' floor stand-in, judged by nothing
        self._given = (at, frozenset(out))
        return out, note

    async def _refresh(self, at: int) -> None:
        # Read the first start again every hour: after a Redis wipe it is set
        # anew, and the learning count restarts together with the lost history.
        first = await self._history.first_start(at)
        records = await self._history.records(at - self._lookback, at)
        medians: dict[SignalName, float] = {}
        for name in self._learned:
            value = learned_value(
                records,
                name,
                at=at,
                seasonality=self._seasonality,
                min_points=self._min_points,
            )
            if value is not None:
                medians[name] = value
        self._first, self._medians = first, medians
        missing = [n for n in self._learned if n not in medians]
        if missing and learning_note(first, at, self._days) is None:
            log.warning(
                "baselines: no usable history for %s after learning; "
                "using the floor (source 'learning') until there is",
                ", ".join(missing),
            )

    async def record(self, tick: Tick) -> None:
        judged = self._given[1] if self._given and self._given[0] == tick.at else frozenset()
        points = {
            name: Point(r.value, r.volume, r.state, name in judged)
            for name, r in tick.signals.items()
        }
        try:
            await self._history.append(TickRecord(tick.at, points))
        except StoreUnavailable as exc:
            # one missing history point costs nothing; losing the tick would
            log.warning("baselines: tick not recorded in history: %s", exc)


class FixedBaselines:
    """Baselines learned beforehand (``replay --learn-from``): source ``learned``."""

    def __init__(
        self,
        table: BaselineTable,
        *,
        static: Mapping[SignalName, float],
        learned: Sequence[SignalName],
        seasonality: Seasonality = "none",
    ) -> None:
        self._static = {name: Baseline(v, "static") for name, v in static.items()}
        self._table = table
        self._learned = tuple(n for n in learned if n not in self._static)
        self._seasonal = seasonality == "hour_of_day"

    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        out: dict[SignalName, Baseline] = dict(self._static)
        hour = hour_of_day(at)
        for name in self._learned:
            value = self._table.hourly.get(name, {}).get(hour) if self._seasonal else None
            if value is None:
                value = self._table.flat.get(name)
            if value is not None:
                out[name] = Baseline(value, "learned")
        return out, None

    async def record(self, tick: Tick) -> None:
        return None


def build_baselines(
    cfg: Config, store: Store, *, history: History | None = None
) -> BaselineProvider:
    """Static baselines when every signal has one; otherwise learned ones.

    The history lives where the counters live: in Redis next to a
    ``RedisStore`` (shared by replicas, kept across restarts), else in memory.
    """
    learned = cfg.learned_signals()
    if not learned:
        return StaticBaselines(cfg.static_baselines())
    keep_s = cfg.learning.history_days * DAY_S
    if history is None:
        from .store_redis import RedisStore

        if isinstance(store, RedisStore):
            history = RedisHistory(store.client, prefix=store.prefix, keep_s=keep_s)
        else:
            history = MemoryHistory(keep_s)
    return LearnedBaselines(
        history,
        static=cfg.static_baselines(),
        learned=learned,
        learning_days=cfg.learning.days,
        seasonality=cfg.learning.seasonality,
        min_points=min_points_for(cfg.alerting.tick_seconds),
        lookback_s=min(LOOKBACK_S, keep_s),
    )
