"""Baseline providers: learned from tick history, or fixed from a table learned beforehand.

``LearnedBaselines`` keeps the history through a ``History`` and recomputes its
medians at most once per (event-time) hour, so a tick costs a few dict
lookups; ``FixedBaselines`` serves a table learned beforehand (``replay
--learn-from``). The arithmetic is in ``baseline_math``.

Choices DESIGN.md leaves open:

* The learning period counts from the first start recorded in the history
  (SET NX), in the clock of the ``at`` passed in: wall time live, event time
  in replay.
* "The trailing 7 days" are the 7 x 24 whole hours before the tick's hour.
* While learning, the baseline shown (source ``learning``) is the median of
  the history so far once there is enough of it, else the rules' floor
  stand-in; alerts are suppressed by the note either way.
* A signal still without usable history when learning ends keeps the floor
  stand-in with source ``learning`` (and a warning in the log), while the
  other signals alert normally: silencing every signal for one that has no
  traffic would hide attacks on the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .baseline_math import (
    DAY_S,
    HOUR_S,
    LOOKBACK_S,
    BaselineTable,
    ByHour,
    Seasonality,
    by_hour,
    hour_of_day,
    learning_note,
    min_points_for,
    pick,
)
from .config import Config
from .evaluate import BaselineProvider, StaticBaselines
from .model import BaselineSource, SignalName, Tick
from .rules import Baseline
from .store.base import StoreUnavailable
from .store.history import History, Point, TickRecord

log = logging.getLogger(__name__)


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
        if lookback_s <= 0 or lookback_s % HOUR_S:
            raise ValueError("lookback_s must be a positive number of whole hours")
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
        self._hours: ByHour = {}  # usable values of whole past hours, by hour index

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
        return out, note

    async def _refresh(self, at: int) -> None:
        # Read the first start again every hour: after a Redis wipe it is set
        # anew, and the learning count restarts together with the lost history.
        first = await self._history.first_start(at)
        hours = self._hours if first == self._first else {}
        now = at // HOUR_S
        oldest = now - self._lookback // HOUR_S
        # Past hours are complete once their last tick is recorded, so only
        # hours not seen yet are read: one hour of records per refresh.
        missing = [h for h in range(oldest, now) if h not in hours]
        if missing:
            records = await self._history.records(missing[0] * HOUR_S, now * HOUR_S)
            fetched = by_hour(records, self._learned)
            hours = {h: v for h, v in hours.items() if oldest <= h < missing[0]}
            hours.update({h: fetched.get(h, {}) for h in range(missing[0], now)})
        medians: dict[SignalName, float] = {}
        for name in self._learned:
            value = pick(
                hours,
                name,
                hour=now % 24,
                seasonality=self._seasonality,
                min_points=self._min_points,
            )
            if value is not None:
                medians[name] = value
        self._first, self._hours, self._medians = first, hours, medians
        missing_signals = [n for n in self._learned if n not in medians]
        if missing_signals and learning_note(first, at, self._days) is None:
            log.warning(
                "baselines: no usable history for %s after learning; "
                "using the floor (source 'learning') until there is",
                ", ".join(missing_signals),
            )

    async def record(self, tick: Tick) -> None:
        # A red while learning was judged against a provisional baseline and
        # alerted no one: it stays in the history (see history.Point).
        points = {
            name: Point(r.value, r.volume, r.state, r.baseline_source != "learning")
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


def build_baselines(cfg: Config, history: History) -> BaselineProvider:
    """Static baselines when every signal has one; otherwise learned ones,
    kept in ``history`` (``store.build`` puts it where the counters live:
    Redis for the service, shared by replicas and kept across restarts)."""
    learned = cfg.learned_signals()
    if not learned:
        return StaticBaselines(cfg.static_baselines())
    return LearnedBaselines(
        history,
        static=cfg.static_baselines(),
        learned=learned,
        learning_days=cfg.learning.days,
        seasonality=cfg.learning.seasonality,
        min_points=min_points_for(cfg.alerting.tick_seconds),
        lookback_s=min(LOOKBACK_S, cfg.learning.history_days * DAY_S),
    )
