"""Baseline providers: learned from tick history, or fixed from a table learned beforehand.

``LearnedBaselines`` keeps the history through a ``History`` and recomputes its
baselines at most once per (event-time) hour, so a tick costs a few dict
lookups; ``FixedBaselines`` serves a table learned beforehand (``replay
--learn-from``). The arithmetic and the comparison set are in ``baseline_math``.

Choices DESIGN.md leaves open:

* The learning period counts from the first start recorded in the history
  (SET NX), in the clock of the ``at`` passed in: wall time live, event time
  in replay.
* "The trailing 7 days" are the 7 x 24 whole hours before the tick's hour.
* The earliest event the sentinel could see (warm-up ends one window after
  it) is found once, at the first tick that is not stale after a fresh start:
  the end of the earliest minute of the last hour that holds any event (that
  minute itself may be partly filled). In replay that is the log's first
  minute; live it is an hour back when the topic holds that much (the
  consumer counts the last hour again on a first start), later for a topic
  younger than that or trimmed by retention.
* While learning, the baseline shown (source ``learning``) is the one learned
  from the history so far once there is enough of it, else the rules' floor
  stand-in; alerts are suppressed by the note either way.
* A signal whose comparison set is still too thin when learning ends uses its
  floor (source ``floor``, and a warning in the log) while the other signals
  alert normally: silencing every signal for one that has no traffic would
  hide attacks on the others.
* A tenant (``[tenants]``) learns from the ticks it was evaluated in, by the
  same rules; its points are recorded only on ticks that end a whole 5-minute
  window (the ratio pools use only those anyway), which keeps the history
  five times smaller. A signal it has too little of uses the global baseline
  in force (source ``global``); its medians need ``min_points`` such ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .baseline_math import (
    DAY_S,
    HOUR_S,
    LOOKBACK_S,
    BaselineTable,
    ByHour,
    Learned,
    Seasonality,
    by_hour,
    by_hour_tenants,
    hour_of_day,
    learning_note,
    min_points_for,
    pick,
)
from .bucketing import BLOCKED_WINDOW_S, LONGEST_WINDOW_S
from .config import Config
from .evaluate import BaselineProvider, StaticBaselines
from .model import SignalName, SignalReading, Tick
from .rules import Baseline
from .store.base import Store, StoreUnavailable
from .store.history import History, Point, TickRecord, ratio_hits
from .tenants import with_global_fallback

log = logging.getLogger(__name__)

Probe = Callable[[int], Awaitable[int]]
PROBE_STEP_S = 60


def floor_stand_in(name: SignalName) -> Baseline:
    """A baseline the rules floor: 0 (for safety_pct, a failure rate of 0)."""
    return Baseline(100.0 if name == "safety_pct" else 0.0, "floor")


def first_visible_probe(store: Store) -> Probe:
    """Finds the earliest event time the store holds in the hour before ``at``."""

    async def probe(at: int) -> int:
        start = at - LONGEST_WINDOW_S
        spans = [(s, s + PROBE_STEP_S) for s in range(start, at, PROBE_STEP_S)]
        counts = await store.windows(spans)
        for (_, end), c in zip(spans, counts, strict=True):
            if c.requests or c.responses:
                return end
        return at

    return probe


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
        probe: Probe | None = None,
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
        self._probe = probe
        self._hour: int | None = None  # the hour the cached baselines belong to
        self._first: int | None = None
        self._since: int | None = None
        self._since_known = False  # recorded in the history: no need to ask again
        self._current: dict[SignalName, Learned] = {}
        self._hours: ByHour = {}  # pools of whole past hours, by hour index
        self._tenant_hours: dict[str, ByHour] = {}  # the same, per tenant
        self._tenant_current: dict[str, dict[SignalName, Learned]] = {}  # this hour's, as asked

    @property
    def history(self) -> History:
        return self._history

    @property
    def current(self) -> Mapping[SignalName, Learned]:
        """The learned baselines in force and what they rest on (thin ones absent)."""
        return self._current

    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        hour = at // HOUR_S
        if hour != self._hour:
            try:
                await self._refresh(at)
                self._hour = hour
            except StoreUnavailable:
                if self._first is None:
                    raise
                # keep last hour's baselines; try again next tick
                log.warning("baselines: history unreadable, keeping the previous baselines")
        assert self._first is not None
        note = learning_note(self._first, at, self._days)
        out: dict[SignalName, Baseline] = dict(self._static)
        for name in self._learned:
            found = self._current.get(name)
            if found is not None:
                out[name] = Baseline(found.value, "learning" if note else "learned")
            elif note is None:
                out[name] = floor_stand_in(name)
        return out, note

    async def _refresh(self, at: int) -> None:
        # Read the first start again every hour: after a Redis wipe it is set
        # anew, and the learning count restarts together with the lost history.
        first = await self._history.first_start(at)
        since = await self._history.visible_since(None)
        fresh = first == self._first and since == self._since
        if first != self._first:
            self._since_known = False  # a new history (a wipe): find it again
        hours = self._hours if fresh else {}
        tenant_hours = self._tenant_hours if fresh else {}
        now = at // HOUR_S
        oldest = now - self._lookback // HOUR_S
        # Past hours are complete once their last tick is recorded, so only
        # hours not seen yet are read: one hour of records per refresh.
        missing = [h for h in range(oldest, now) if h not in hours]
        if missing:
            records = await self._history.records(missing[0] * HOUR_S, now * HOUR_S)
            fetched = by_hour(records, self._learned, since)
            hours = {h: v for h, v in hours.items() if oldest <= h < missing[0]}
            hours.update({h: fetched.get(h, {}) for h in range(missing[0], now)})
            kept = {
                t: {h: v for h, v in by.items() if oldest <= h < missing[0]}
                for t, by in tenant_hours.items()
            }
            for tenant, by in by_hour_tenants(records, self._learned, since).items():
                kept.setdefault(tenant, {}).update(by)
            tenant_hours = {t: by for t, by in kept.items() if by}
        current: dict[SignalName, Learned] = {}
        for name in self._learned:
            found = pick(
                hours,
                name,
                hour=now % 24,
                seasonality=self._seasonality,
                min_points=self._min_points,
            )
            if found is not None:
                current[name] = found
        self._first, self._since, self._hours, self._current = first, since, hours, current
        self._tenant_hours, self._tenant_current = tenant_hours, {}
        thin = [n for n in self._learned if n not in current]
        if thin and learning_note(first, at, self._days) is None:
            log.warning(
                "baselines: too little usable history for %s (hour %02d); "
                "using the floor (source 'floor') until there is",
                ", ".join(thin),
                hour_of_day(at),
            )

    def tenant_baselines(
        self, tenant: str, at: int, shared: Mapping[SignalName, Baseline]
    ) -> Mapping[SignalName, Baseline]:
        own = self._tenant_current.get(tenant)
        if own is None:
            own = {}
            hours = self._tenant_hours.get(tenant, {})
            for name in self._learned if hours else ():
                found = pick(
                    hours,
                    name,
                    hour=hour_of_day(at),
                    seasonality=self._seasonality,
                    min_points=self._min_points,
                )
                if found is not None:
                    own[name] = found
            self._tenant_current[tenant] = own
        learning = self._first is None or learning_note(self._first, at, self._days) is not None
        mine = {n: Baseline(v.value, "learning" if learning else "learned") for n, v in own.items()}
        return with_global_fallback(mine, shared)

    async def _visible_since(self, at: int) -> None:
        """Record the earliest visible event time once, at the first tick that is not stale."""
        if self._probe is None or self._since_known:
            return  # without a probe nothing is known: no warm-up ticks are left out
        if await self._history.visible_since(None) is not None:
            self._since_known = True
            return
        first = await self._history.first_start(at)
        if first < at - LONGEST_WINDOW_S:
            # a history written before warm-up was recorded: its windows were
            # taken as full then, and guessing now would throw away its past
            since = first - LONGEST_WINDOW_S
            log.info("baselines: history predates warm-up tracking; no warm-up ticks left out")
        else:
            since = await self._probe(at)
        await self._history.visible_since(since)
        self._since_known = True

    async def record(self, tick: Tick) -> None:
        # A red while learning was judged against a provisional baseline and
        # alerted no one: it stays in the history (see history.Point).
        stale = tick.status == "stale"
        points = _points(tick.signals)
        tenants = (
            {t.tenant: _points(t.signals) for t in tick.tenants}
            if tick.at % BLOCKED_WINDOW_S == 0
            else {}
        )
        try:
            if not stale:
                await self._visible_since(tick.at)
            await self._history.append(TickRecord(tick.at, points, stale, tenants))
        except StoreUnavailable as exc:
            # one missing history point costs nothing; losing the tick would
            log.warning("baselines: tick not recorded in history: %s", exc)


def _points(signals: Mapping[SignalName, SignalReading]) -> dict[SignalName, Point]:
    # judged only against a baseline of its own: a tenant judged against the
    # global stand-in (source "global") is still learning its own normal, and
    # leaving out its reds would keep a tenant whose normal differs red for ever
    return {
        name: Point(
            r.value,
            r.volume,
            r.state,
            r.baseline_source not in ("learning", "global"),
            ratio_hits(name, r.value, r.volume),
        )
        for name, r in signals.items()
    }


class FixedBaselines:
    """Baselines learned beforehand (``replay --learn-from``): source ``learned`` or ``floor``."""

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
        self._seasonality: Seasonality = seasonality

    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        out: dict[SignalName, Baseline] = dict(self._static)
        for name in self._learned:
            found = self._table.lookup(name, at, self._seasonality)
            out[name] = floor_stand_in(name) if found is None else Baseline(found.value, "learned")
        return out, None

    def tenant_baselines(
        self, tenant: str, at: int, shared: Mapping[SignalName, Baseline]
    ) -> Mapping[SignalName, Baseline]:
        # a table learned from logs is the whole traffic's: no tenant has its own
        return with_global_fallback({}, shared)

    async def record(self, tick: Tick) -> None:
        return None


def build_baselines(cfg: Config, history: History, store: Store | None = None) -> BaselineProvider:
    """Static baselines when every signal has one; otherwise learned ones,
    kept in ``history`` (``store.build`` puts it where the counters live:
    Redis for the service, shared by replicas and kept across restarts; or
    memory, and ``[learning] history_file``). ``store`` is where the earliest
    visible event is looked for (warm-up); without it no tick is warm-up."""
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
        probe=None if store is None else first_visible_probe(store),
    )
