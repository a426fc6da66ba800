"""Medians, learning days and floors (property tests) and the baseline providers."""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.baseline_math import (
    DAY_S,
    HOUR_S,
    BaselineTable,
    Learned,
    Seasonality,
    by_hour,
    hour_of_day,
    learning_note,
    median,
    min_points_for,
    pick,
)
from stream_sentinel.baselines import FixedBaselines, LearnedBaselines, build_baselines
from stream_sentinel.config import Config
from stream_sentinel.evaluate import StaticBaselines
from stream_sentinel.model import (
    SIGNALS,
    BaselineSource,
    SignalName,
    SignalReading,
    State,
    Status,
    Tick,
    WindowCounts,
)
from stream_sentinel.rules import Baseline, RulesConfig, SignalRule, evaluate_signals
from stream_sentinel.store.base import StoreUnavailable
from stream_sentinel.store.build import open_storage
from stream_sentinel.store.history import MemoryHistory, Point, RedisHistory, TickRecord
from stream_sentinel.wiring import storage_settings

T0 = 1_790_035_200  # 2026-09-22T00:00:00Z, midnight UTC
assert T0 % DAY_S == 0

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)
states = st.sampled_from(["ok", "red", "insufficient_data"])


# -- median ------------------------------------------------------------------


@given(st.lists(finite, min_size=1))
def test_median_matches_statistics_and_lies_between_extremes(values: list[float]) -> None:
    m = median(values)
    assert m == pytest.approx(statistics.median(values))
    assert m is not None and min(values) <= m <= max(values)
    assert median(list(reversed(values))) == m


@given(st.lists(finite, min_size=1), st.floats(min_value=1e7, max_value=1e12))
def test_median_resists_outliers_below_half(values: list[float], spike: float) -> None:
    # fewer than half the ticks being an attack cannot drag the median past the normal values
    spiked = values + [spike] * (len(values) - 1)
    m = median(spiked)
    assert m is not None and m <= max(values)


def test_median_of_nothing_is_none() -> None:
    assert median([]) is None


# -- hours and learning days ------------------------------------------------


def test_hour_of_day_is_the_utc_hour_of_the_tick() -> None:
    assert hour_of_day(T0) == 0
    assert hour_of_day(T0 + 15 * HOUR_S + 59 * 60) == 15
    assert hour_of_day(T0 + 3 * DAY_S + 23 * HOUR_S) == 23


@given(st.integers(0, 10**9), st.integers(-DAY_S, 400 * DAY_S), st.integers(1, 365))
def test_learning_note_counts_days_from_first_start(first: int, delta: int, days: int) -> None:
    note = learning_note(first, first + delta, days)
    day = max(0, delta) // DAY_S + 1
    if day <= days:
        assert note == f"day {day} of {days}"
    else:
        assert note is None


def test_learning_note_edges() -> None:
    assert learning_note(T0, T0, 7) == "day 1 of 7"
    assert learning_note(T0, T0 + 7 * DAY_S - 1, 7) == "day 7 of 7"
    assert learning_note(T0, T0 + 7 * DAY_S, 7) is None
    assert learning_note(T0, T0 + 30 * DAY_S, None) == "recording, day 31"


def test_min_points_is_half_an_hour_of_ticks() -> None:
    assert min_points_for(60) == 30
    assert min_points_for(10) == 180
    assert min_points_for(3600) == 1


# -- a median of 0 and the floors ---------------------------------------------


ZERO: Mapping[SignalName, Baseline] = {name: Baseline(0.0, "learned") for name in SIGNALS}


@settings(max_examples=200)
@given(st.integers(50, 5_000_000))
def test_learned_zero_median_one_event_never_red(n: int) -> None:
    cfg = RulesConfig()
    short = WindowCounts(requests=n, blocked=1, responses=n, safe=n - 1)
    readings = evaluate_signals(short, WindowCounts(), [("u", 1)], ZERO, cfg)
    for name in ("blocked_pct", "safety_pct", "top_user_rps"):
        assert readings[name].state != "red", name
        assert readings[name].baseline_source == "learned"
    # the floor is in force: the threshold is the multiplier times the floor, not 0
    assert readings["blocked_pct"].threshold == pytest.approx(2 * cfg.floor("blocked_pct"))


def test_learned_zero_spend_uses_the_configured_floor() -> None:
    # spend has no count test, so its floor is what stands between a zero median and an alert
    cfg = RulesConfig(signals={"spend_hour": SignalRule(floor=5.0)})
    hour = WindowCounts(responses=1, cost_nanousd=int(9.0e9))
    reading = evaluate_signals(WindowCounts(), hour, [], ZERO, cfg)["spend_hour"]
    assert reading.threshold == pytest.approx(10.0) and reading.state == "ok"


# -- the learned provider -----------------------------------------------------


def tick(
    at: int,
    value: float,
    state: State = "ok",
    name: SignalName = "spend_hour",
    source: BaselineSource = "learning",
) -> Tick:
    reading = SignalReading(name, value, 0.0, 0.0, state, None, 100, source)
    return Tick(at, "learning", (), {name: reading})


class CountingHistory(MemoryHistory):
    def __init__(self, keep_s: int) -> None:
        super().__init__(keep_s)
        self.reads = 0
        self.fail = False

    async def records(self, start: int, end: int) -> list[TickRecord]:
        self.reads += 1
        if self.fail:
            raise StoreUnavailable("history: test")
        return await super().records(start, end)

    async def append(self, record: TickRecord) -> None:
        if self.fail:
            raise StoreUnavailable("history: test")
        await super().append(record)


def provider(history: MemoryHistory, days: int = 7, **kw: object) -> LearnedBaselines:
    return LearnedBaselines(
        history,
        static={"blocked_pct": 0.1},
        learned=("blocked_pct", "spend_hour"),
        learning_days=days,
        min_points=30,
        **kw,  # type: ignore[arg-type]
    )


async def run(p: LearnedBaselines, start: int, minutes: int, value: float) -> None:
    for m in range(minutes):
        at = start + 60 * m
        await p.baselines(at)
        await p.record(tick(at, value))


async def test_learning_then_learned_with_static_kept() -> None:
    p = provider(MemoryHistory(14 * DAY_S))
    first, note = await p.baselines(T0)
    assert note == "day 1 of 7"
    assert first == {"blocked_pct": Baseline(0.1, "static")}  # spend: the rules' floor stand-in
    await run(p, T0, 60, 4.0)
    during, note = await p.baselines(T0 + 2 * DAY_S + 5)
    assert note == "day 3 of 7"
    assert during["spend_hour"] == Baseline(4.0, "learning")
    after, note = await p.baselines(T0 + 7 * DAY_S)
    assert note is None
    assert after == {"blocked_pct": Baseline(0.1, "static"), "spend_hour": Baseline(4.0, "learned")}


async def test_medians_recomputed_at_most_once_per_hour() -> None:
    history = CountingHistory(14 * DAY_S)
    p = provider(history)
    await run(p, T0, 150, 1.0)  # 2.5 hours of ticks
    assert history.reads == 3
    # mid-hour the cache answers, even though 30 new ticks have arrived
    base, _ = await p.baselines(T0 + 150 * 60)
    assert base["spend_hour"].value == 1.0 and history.reads == 3


async def test_reds_are_left_out_only_when_judged_against_a_real_baseline() -> None:
    history = MemoryHistory(14 * DAY_S)
    p = provider(history, days=1)
    # learning: a red against a provisional baseline alerted no one and stays in
    for m in range(60):
        await p.baselines(T0 + 60 * m)
        await p.record(tick(T0 + 60 * m, 2.0, "red"))
    # learned: 40 red spikes judged against the learned 2.0 stay out
    start = T0 + DAY_S
    for m in range(60):
        base, note = await p.baselines(start + 60 * m)
        assert note is None and base["spend_hour"] == Baseline(2.0, "learned")
        state: State = "red" if m < 40 else "ok"
        await p.record(tick(start + 60 * m, 50.0 if m < 40 else 3.0, state, source="learned"))
    recs = await history.records(T0, start + HOUR_S)
    assert [r.points["spend_hour"].judged for r in recs] == [False] * 60 + [True] * 60
    base, _ = await p.baselines(start + HOUR_S)
    assert base["spend_hour"].value == 2.0  # 60 x 2.0 and 20 x 3.0; the 40 spikes left out


runs = st.lists(  # runs of one-minute ticks separated by gaps
    st.tuples(st.integers(1, 600), st.integers(1, 240), st.none() | finite, states),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(runs, st.sampled_from(["none", "hour_of_day"]))
def test_hourly_cache_agrees_with_a_fresh_computation(
    steps: list[tuple[int, int, float | None, State]], seasonality: Seasonality
) -> None:
    """Whatever the gaps between ticks, the cached medians equal a from-scratch
    median over the whole hours of the lookback (here 6 hours, so hours drop out)."""

    async def scenario() -> int:
        history = MemoryHistory(14 * DAY_S)
        lookback = 6 * HOUR_S
        p = provider(history, days=1, seasonality=seasonality, lookback_s=lookback)
        at, found = T0, 0
        for gap, length, value, state in steps:
            at += 60 * gap
            for i in range(length):
                at += 60
                base, note = await p.baselines(at)
                start = at // HOUR_S * HOUR_S
                window = await history.records(start - lookback, start)
                fresh = pick(
                    by_hour(window, ("spend_hour",), None),
                    "spend_hour",
                    hour=hour_of_day(at),
                    seasonality=seasonality,
                    min_points=30,
                )
                expected = None if fresh is None else fresh.value
                got = base.get("spend_hour")
                if got is not None and got.source == "floor":
                    got = None
                assert (got.value if got else None) == expected
                found += expected is not None
                v = None if value is None else value + i % 7
                source: BaselineSource = "learning" if note else "learned"
                reading = SignalReading("spend_hour", v, 0.0, 0.0, state, None, 1, source)
                await p.record(Tick(at, "ok", (), {"spend_hour": reading}))
        return found

    found = asyncio.run(scenario())
    # the property says something only when medians exist; make sure they do
    if any(
        length >= 120 and value is not None and state == "ok" for _, length, value, state in steps
    ):
        assert found > 0


async def test_seasonal_provider_uses_the_same_hour() -> None:
    p = provider(MemoryHistory(14 * DAY_S), seasonality="hour_of_day")
    for m in range(24 * 60):  # one day: value = hour of day
        at = T0 + 60 * m
        await p.baselines(at)
        await p.record(tick(at, float(hour_of_day(at))))
    for hour in (0, 7, 23):
        base, _ = await p.baselines(T0 + DAY_S + hour * HOUR_S)
        assert base["spend_hour"].value == float(hour)
    flat = provider(MemoryHistory(14 * DAY_S))
    for m in range(24 * 60):
        await flat.baselines(T0 + 60 * m)
        await flat.record(tick(T0 + 60 * m, float(hour_of_day(T0 + 60 * m))))
    base, _ = await flat.baselines(T0 + DAY_S + 7 * HOUR_S)
    assert base["spend_hour"].value == 11.5


async def test_history_outage_keeps_cached_medians_and_never_loses_the_tick() -> None:
    history = CountingHistory(14 * DAY_S)
    p = provider(history)
    await run(p, T0, 120, 5.0)  # hour 1 learned the median 5.0
    history.fail = True
    base, note = await p.baselines(T0 + 2 * HOUR_S)  # a new hour: refresh fails
    assert base["spend_hour"].value == 5.0 and note == "day 1 of 7"
    await p.record(tick(T0 + 2 * HOUR_S, 5.0))  # does not raise
    history.fail = False
    assert len(history) == 120  # that one tick is lost, nothing else
    fresh = provider(CountingHistory(14 * DAY_S))
    fresh_history = fresh.history
    assert isinstance(fresh_history, CountingHistory)
    fresh_history.fail = True
    with pytest.raises(StoreUnavailable):
        await fresh.baselines(T0)


async def test_too_thin_a_history_after_learning_falls_back_to_the_floor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = provider(MemoryHistory(14 * DAY_S), days=1)
    for m in range(120):
        await p.baselines(T0 + 60 * m)
        reading = SignalReading("spend_hour", None, 0.0, 0.0, "insufficient_data")
        await p.record(Tick(T0 + 60 * m, "learning", (), {"spend_hour": reading}))
    base, note = await p.baselines(T0 + DAY_S)
    assert note is None and base["spend_hour"] == Baseline(0.0, "floor")
    hour = WindowCounts(responses=10, cost_nanousd=int(1.5e9))
    readings = evaluate_signals(WindowCounts(), hour, [], base, RulesConfig())
    assert readings["spend_hour"].baseline_source == "floor"
    assert readings["spend_hour"].to_json()["baseline_source"] == "floor"
    # the floor is in force: $1/h, threshold $2/h
    assert readings["spend_hour"].threshold == pytest.approx(2.0)
    assert "too little usable history for spend_hour" in caplog.text


# -- fixed tables and the factory ---------------------------------------------


async def test_fixed_baselines_flat_and_hourly() -> None:
    table = BaselineTable(
        flat={
            "spend_hour": Learned(4.0, 100, None, "all"),
            "blocked_pct": Learned(0.2, 100, 10**5, "all"),
        },
        hourly={"spend_hour": {3: Learned(1.0, 60, None, "hour")}},
        ticks=0,
        first_at=None,
        last_at=None,
    )
    static: dict[SignalName, float] = {"blocked_pct": 0.1}
    learned: tuple[SignalName, ...] = ("blocked_pct", "spend_hour", "top_user_rps")
    flat = FixedBaselines(table, static=static, learned=learned)
    base, note = await flat.baselines(T0 + 3 * HOUR_S)
    assert note is None
    assert base == {
        "blocked_pct": Baseline(0.1, "static"),
        "spend_hour": Baseline(4.0, "learned"),
        "top_user_rps": Baseline(0.0, "floor"),  # nothing learned for it
    }
    seasonal = FixedBaselines(table, static=static, learned=learned, seasonality="hour_of_day")
    assert (await seasonal.baselines(T0 + 3 * HOUR_S))[0]["spend_hour"].value == 1.0
    assert (await seasonal.baselines(T0 + 4 * HOUR_S))[0]["spend_hour"].value == 4.0


def test_build_baselines_static_when_nothing_is_learned() -> None:
    cfg = Config.model_validate(
        {
            "baselines": {
                "blocked_pct": 0.1,
                "safety_pct": 99.5,
                "top_user_rps": 5.0,
                "spend_hour": 4.0,
            }
        }
    )
    assert isinstance(build_baselines(cfg, MemoryHistory(DAY_S)), StaticBaselines)


async def test_build_baselines_learns_in_memory_for_the_embedded_store() -> None:
    cfg = Config.model_validate({"baselines": {"blocked_pct": 0.1}, "learning": {"days": 3}})
    async with open_storage(storage_settings(cfg)) as storage:
        built = build_baselines(cfg, storage.history)
    assert isinstance(built, LearnedBaselines)
    assert isinstance(built.history, MemoryHistory)


# -- stale ticks and the first visible event -----------------------------------


async def test_stale_ticks_are_recorded_marked_and_the_probe_waits_for_a_good_one() -> None:
    history = MemoryHistory(14 * DAY_S)
    asked: list[int] = []

    async def probe(at: int) -> int:
        asked.append(at)
        return at - 1800

    p = provider(history, probe=probe)
    stale = SignalReading("spend_hour", 0.5, 0.0, 0.0, "ok", None, 3, "learning")
    for m in range(3):  # rebuilding at the first start
        await p.baselines(T0 + 60 * m)
        await p.record(Tick(T0 + 60 * m, "stale", (), {"spend_hour": stale}, (), "rebuilding"))
    assert asked == [] and await history.visible_since(None) is None
    await run(p, T0 + 180, 3, 4.0)
    assert asked == [T0 + 180]  # once, at the first tick that is not stale
    assert await history.visible_since(None) == T0 + 180 - 1800
    recs = await history.records(T0, T0 + 600)
    assert [r.stale for r in recs] == [True] * 3 + [False] * 3


async def test_a_history_from_before_warm_up_tracking_keeps_its_ticks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = MemoryHistory(14 * DAY_S)
    await history.first_start(T0)
    for m in range(120):
        await history.append(
            TickRecord(T0 + 60 * m, {"spend_hour": Point(1.0 + 2 * (m >= 60), 10, "ok", False)})
        )

    async def probe(at: int) -> int:
        raise AssertionError("an old history is not probed")

    p = provider(history, probe=probe)
    at = T0 + DAY_S
    await p.baselines(at)
    with caplog.at_level(logging.INFO):
        await p.record(tick(at, 2.0))
    assert await history.visible_since(None) == T0 - HOUR_S
    base, _ = await p.baselines(at + HOUR_S)
    # 60 ticks of 1.0, 60 of 3.0 and one of 2.0: the first hour was not taken as warm-up
    assert base["spend_hour"] == Baseline(2.0, "learning")
    assert "predates warm-up tracking" in caplog.text


async def test_history_file_is_used_by_the_embedded_store_and_ignored_with_redis(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.jsonl"
    cfg = Config.model_validate({"learning": {"history_file": str(path)}})
    async with open_storage(storage_settings(cfg, history_file=True)) as storage:
        built = build_baselines(cfg, storage.history, storage.store)
        assert isinstance(built, LearnedBaselines)
        await built.baselines(T0)
    assert path.exists()  # the first start is already in the file
    assert await MemoryHistory(DAY_S, path=path).first_start(T0 + 5) == T0
    # a backtest (replay, baseline) never touches the deployment's file
    async with open_storage(storage_settings(cfg, redis_url="")) as storage:
        await storage.history.first_start(T0 + 7)
    assert await MemoryHistory(DAY_S, path=path).first_start(T0 + 5) == T0
    prefix = f"t{T0}x{id(path)}"
    settings = storage_settings(cfg, redis_url=redis_url, prefix=prefix, history_file=True)
    async with open_storage(settings) as storage:
        assert isinstance(storage.history, RedisHistory)
    assert "history_file is ignored" in caplog.text


ratio_runs = st.lists(  # runs of one-minute ticks: (gap, length, blocked per window, stale)
    st.tuples(st.integers(1, 300), st.integers(1, 240), st.integers(0, 20), st.booleans()),
    min_size=1,
    max_size=6,
)


@settings(max_examples=30, deadline=None)
@given(ratio_runs, st.sampled_from(["none", "hour_of_day"]))
def test_pooled_cache_agrees_with_a_fresh_computation(
    steps: list[tuple[int, int, int, bool]], seasonality: Seasonality
) -> None:
    """The provider's hourly cache of pooled counts equals pooling the lookback from scratch."""

    async def scenario() -> int:
        history = MemoryHistory(14 * DAY_S)
        lookback = 6 * HOUR_S
        p = LearnedBaselines(
            history,
            static={},
            learned=("blocked_pct",),
            learning_days=1,
            seasonality=seasonality,
            min_points=30,
            lookback_s=lookback,
        )
        at, found = T0, 0
        for gap, length, blocked, stale in steps:
            at += 60 * gap
            for _ in range(length):
                at += 60
                base, note = await p.baselines(at)
                start = at // HOUR_S * HOUR_S
                fresh = pick(
                    by_hour(await history.records(start - lookback, start), ("blocked_pct",), None),
                    "blocked_pct",
                    hour=hour_of_day(at),
                    seasonality=seasonality,
                    min_points=30,
                )
                got = base.get("blocked_pct")
                if got is None or got.source == "floor":
                    assert fresh is None
                else:
                    assert fresh is not None and got.value == fresh.value
                    found += 1
                source: BaselineSource = "learning" if note else "learned"
                value = 100.0 * blocked / 1000
                reading = SignalReading("blocked_pct", value, 0.0, 0.0, "ok", None, 1000, source)
                status: Status = "stale" if stale else "ok"
                await p.record(Tick(at, status, (), {"blocked_pct": reading}))
        return found

    found = asyncio.run(scenario())
    # three hours without a stale tick hold a whole hour of tiles and a refresh after it
    if any(length >= 180 and not stale for _, length, _, stale in steps):
        assert found > 0
