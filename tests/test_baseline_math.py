"""The comparison set and the pooled proportion, on hand-built histories (no I/O)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.baseline_math import (
    DAY_S,
    HOUR_S,
    MIN_HOUR_HITS,
    MIN_RATIO_EVENTS,
    MIN_RATIO_WINDOWS,
    Learned,
    Pool,
    by_hour,
    is_warm_up,
    learn,
    learn_table,
    median,
    min_points_for,
    pick,
    pool,
)
from stream_sentinel.model import SignalName, State
from stream_sentinel.store.history import Point, TickRecord

T0 = 1_790_035_200  # 2026-09-22T00:00:00Z, midnight UTC
assert T0 % DAY_S == 0
MIN_POINTS = 30


def ratio_point(hits: int, events: int, state: State = "ok", judged: bool = True) -> Point:
    value = 100.0 * hits / events if events else None
    return Point(value, events, state, judged, hits)


def ticks(
    start: int,
    minutes: int,
    per_minute: list[tuple[int, int]] | None = None,
    *,
    spend: float = 5.0,
    stale: bool = False,
) -> list[TickRecord]:
    """One record a minute; ``per_minute[i]`` = (blocked, requests) in minute i,
    each record's blocked_pct point holding its 5-minute window's counts."""
    counts = per_minute or [(0, 1000)] * (minutes + 5)
    out = []
    for m in range(minutes):
        at = start + 60 * (m + 1)
        idx = (at - T0) // 60
        window = [counts[(idx - k - 1) % len(counts)] for k in range(5)]
        hits, events = sum(h for h, _ in window), sum(n for _, n in window)
        points = {
            "blocked_pct": ratio_point(hits, events),
            "spend_hour": Point(spend, 100, "ok"),
        }
        out.append(TickRecord(at, points, stale))
    return out


def learned(
    records: list[TickRecord],
    name: SignalName,
    *,
    at: int,
    seasonality: str = "none",
    since: int | None = None,
) -> Learned | None:
    return pick(
        by_hour(records, (name,), since),
        name,
        hour=at // HOUR_S % 24,
        seasonality="hour_of_day" if seasonality == "hour_of_day" else "none",
        min_points=MIN_POINTS,
    )


def test_all_zero_night_windows_pool_to_the_true_rate_not_zero() -> None:
    # a week of quiet nights: 1 blocked request in 2,000 (0.05 %), 600 requests
    # per 5 minutes, so most windows have no blocked request at all
    rng = random.Random(4)
    minutes = 7 * 24 * 60
    per_minute = [(int(rng.random() < 0.06), 120) for _ in range(minutes + 5)]
    records = ticks(T0, minutes, per_minute)
    night = [r for r in records if r.at // HOUR_S % 24 in (1, 2, 3)]
    windows = [r.points["blocked_pct"] for r in night if r.at % 300 == 0]
    assert median([p.value for p in windows if p.value is not None]) == 0.0  # the old way
    hour_tiles = [r for r in records if r.at // HOUR_S % 24 == 2 and r.at % 300 == 0]
    assert pool(hour_tiles, "blocked_pct", None).hits > 0
    # that hour alone rests on fewer than MIN_HOUR_HITS blocked requests: the flat rate
    at = T0 + 7 * DAY_S + 2 * HOUR_S
    found = learned(records, "blocked_pct", at=at, seasonality="hour_of_day")
    assert found is not None and found.scope == "all"
    tiles = [r for r in records if r.at % 300 == 0]
    hits = sum(r.points["blocked_pct"].hits or 0 for r in tiles)
    assert found.value == pytest.approx(100.0 * hits / (600 * len(tiles)))
    assert 0.02 < found.value < 0.1
    assert (found.windows, found.events) == (len(tiles), 600 * len(tiles))


def test_a_day_with_no_event_at_all_learns_zero() -> None:
    records = ticks(T0, 24 * 60)  # 0 blocked everywhere
    found = learned(records, "blocked_pct", at=T0 + DAY_S + 3 * HOUR_S, seasonality="hour_of_day")
    assert found == Learned(0.0, 24 * 12, 24 * 12 * 5000, "all")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400)), min_size=60, max_size=300))
def test_each_event_counts_once_whatever_the_overlap(per_minute: list[tuple[int, int]]) -> None:
    """Ticks every minute over 5-minute windows: the pool is the plain event total."""
    per_minute = [(min(h, n), n) for h, n in per_minute]
    minutes = len(per_minute) // 5 * 5
    records = ticks(T0, minutes, per_minute[:minutes] + [(0, 0)] * 5)
    got = pool(records, "blocked_pct", None)
    # minute i is in the window of the tile ending at the next multiple of 300
    assert got.hits == sum(h for h, _ in per_minute[:minutes])
    assert got.events == sum(n for _, n in per_minute[:minutes])
    assert got.windows == minutes // 5


def test_the_first_partial_hour_is_left_out() -> None:
    # spend fills up over the log's first hour: 0, 1/6, ... of the normal 6.0
    since = T0
    records = [
        TickRecord(T0 + 60 * m, {"spend_hour": Point(6.0 * min(m, 60) / 60, 100, "ok")})
        for m in range(1, 24 * 60 + 1)
    ]
    at = T0 + DAY_S  # hour 0 of the next day
    kept = learned(records, "spend_hour", at=at, seasonality="hour_of_day", since=since)
    # hour 0 held only warm-up ticks: it has too little of its own, the flat set stands in
    assert kept == Learned(6.0, 24 * 60 - 59, None, "all")
    naive = learned(records, "spend_hour", at=at, seasonality="hour_of_day")
    assert naive is not None and naive.scope == "hour" and naive.value < 3.5
    assert is_warm_up(T0 + 3599, "spend_hour", since)
    assert not is_warm_up(T0 + 3600, "spend_hour", since)
    assert is_warm_up(T0 + 299, "blocked_pct", since)
    assert not is_warm_up(T0 + 300, "blocked_pct", since)
    assert not is_warm_up(T0 + 1, "spend_hour", None)


def test_a_stale_stretch_mid_week_is_left_out() -> None:
    rng = random.Random(9)
    normal = [(int(rng.random() < 0.3), 600) for _ in range(7 * 24 * 60 + 5)]
    week = ticks(T0, 7 * 24 * 60, normal, spend=5.0)
    # day 4, 06:00-12:00: rebuilding after a wipe, counts partial and odd
    lo, hi = T0 + 3 * DAY_S + 6 * HOUR_S, T0 + 3 * DAY_S + 12 * HOUR_S
    mixed = [
        TickRecord(
            r.at, {"blocked_pct": ratio_point(40, 100), "spend_hour": Point(0.2, 3, "ok")}, True
        )
        if lo <= r.at < hi
        else r
        for r in week
    ]
    clean = [r for r in week if not lo <= r.at < hi]
    at = T0 + 7 * DAY_S + 8 * HOUR_S
    for seasonality in ("none", "hour_of_day"):
        for name in ("blocked_pct", "spend_hour"):
            got = learned(mixed, name, at=at, seasonality=seasonality)
            assert got == learned(clean, name, at=at, seasonality=seasonality)
            assert got is not None
    assert learned(mixed, "spend_hour", at=at) == Learned(5.0, len(clean), None, "all")


def test_judged_reds_are_left_out_reds_while_learning_are_not() -> None:
    base = ticks(T0, 120)
    red_judged = [
        TickRecord(r.at, {"blocked_pct": ratio_point(500, 5000, "red", True)}) for r in base
    ]
    red_learning = [
        TickRecord(r.at, {"blocked_pct": ratio_point(500, 5000, "red", False)}) for r in base
    ]
    assert pool(red_judged, "blocked_pct", None) == Pool()
    assert pool(red_learning, "blocked_pct", None) == Pool(500 * 24, 5000 * 24, 24)


def test_safety_learns_the_pooled_failure_rate() -> None:
    records = [
        TickRecord(
            T0 + 300 * i, {"safety_pct": Point(100.0 - 100.0 * u / 1000, 1000, "ok", True, u)}
        )
        for i, u in enumerate([0, 0, 0, 1, 5, 0, 0, 2])
    ]
    found = learned(records, "safety_pct", at=T0)
    assert found is not None
    assert found.value == pytest.approx(100.0 - 100.0 * 8 / 8000)


def test_exactly_the_minimum_is_enough_one_less_is_not() -> None:
    exact = Pool(3, MIN_RATIO_EVENTS, MIN_RATIO_WINDOWS)
    assert learn(exact, "blocked_pct", min_points=MIN_POINTS, scope="all") == Learned(
        0.3, MIN_RATIO_WINDOWS, MIN_RATIO_EVENTS, "all"
    )
    fewer_windows = Pool(3, MIN_RATIO_EVENTS, MIN_RATIO_WINDOWS - 1)
    fewer_events = Pool(3, MIN_RATIO_EVENTS - 1, MIN_RATIO_WINDOWS)
    for thin in (fewer_windows, fewer_events):
        assert learn(thin, "blocked_pct", min_points=MIN_POINTS, scope="all") is None
    values = tuple(float(i) for i in range(MIN_POINTS))
    assert learn(Pool(values=values), "spend_hour", min_points=MIN_POINTS, scope="hour") == (
        Learned(median(values) or 0.0, MIN_POINTS, None, "hour")
    )
    assert learn(Pool(values=values[1:]), "spend_hour", min_points=MIN_POINTS, scope="hour") is None


def test_an_hour_with_few_hits_uses_the_flat_rate() -> None:
    few = Pool(MIN_HOUR_HITS - 1, 10**5, 12)
    enough = Pool(MIN_HOUR_HITS, 10**5, 12)
    assert learn(few, "blocked_pct", min_points=MIN_POINTS, scope="hour") is None
    assert learn(few, "blocked_pct", min_points=MIN_POINTS, scope="all") is not None
    assert learn(enough, "blocked_pct", min_points=MIN_POINTS, scope="hour") is not None
    # a whole week without a single blocked request: each hour uses the flat 0
    records = ticks(T0, 7 * 24 * 60)
    found = learned(
        records, "blocked_pct", at=T0 + 7 * DAY_S + 3 * HOUR_S, seasonality="hour_of_day"
    )
    assert found is not None and (found.value, found.scope) == (0.0, "all")


def test_hour_of_day_and_flat_learn_different_baselines() -> None:
    # hour 14 blocks 0.2 %, every other hour 0.05 %
    per_minute = [(4 if m // 60 % 24 == 14 else 1, 2000) for m in range(DAY_S // 60 + 5)]
    records = ticks(T0, 24 * 60, per_minute)
    at = T0 + DAY_S + 14 * HOUR_S
    seasonal = learned(records, "blocked_pct", at=at, seasonality="hour_of_day")
    flat = learned(records, "blocked_pct", at=at)
    assert seasonal is not None and flat is not None
    assert seasonal.scope == "hour" and flat.scope == "all"
    assert seasonal.value == pytest.approx(0.2, rel=0.1)
    assert flat.value == pytest.approx(100.0 * (23 * 60 + 240) / (24 * 60 * 2000), rel=0.01)
    # hour 15's first tick (15:00) still covers 14:55-15:00: look at hour 16
    other = learned(records, "blocked_pct", at=at + 2 * HOUR_S, seasonality="hour_of_day")
    assert other is not None and other.value == pytest.approx(0.05, rel=0.1)


def test_learn_table_reports_what_each_baseline_rests_on() -> None:
    records = ticks(T0, 3 * 60)
    table = learn_table(records, ("blocked_pct", "spend_hour"), min_points=30, visible_since=T0)
    # blocked: tiles from T0+300 on (the first tick's window began before T0? no: T0+300-300 = T0)
    assert table.flat["blocked_pct"] == Learned(0.0, 36, 36 * 5000, "all")
    # spend: ticks whose hour-long window began at T0 or later (at >= T0 + 3600)
    assert table.flat["spend_hour"] == Learned(5.0, 121, None, "all")
    assert sorted(table.hourly["spend_hour"]) == [1, 2]
    assert table.lookup("spend_hour", T0 + DAY_S, "hour_of_day") == table.flat["spend_hour"]
    assert table.lookup("spend_hour", T0 + HOUR_S, "hour_of_day") == table.hourly["spend_hour"][1]
    assert (table.ticks, table.first_at, table.last_at) == (180, T0 + 60, T0 + 180 * 60)


def test_learn_table_learns_each_hours_own_ratio_when_it_has_the_hits() -> None:
    # hour 0: 1 % blocked (550 hits); hour 1: none at all, fewer than MIN_HOUR_HITS
    busy = [(10, 1000)] * 55 + [(0, 1000)] * 5
    quiet = [(0, 1000)] * 60
    records = ticks(T0, 120, busy + quiet)
    table = learn_table(records, ("blocked_pct",), min_points=30, visible_since=None)
    own = table.hourly["blocked_pct"]
    assert sorted(own) == [0]  # hour 1 rests on too few hits for a rate of its own
    assert own[0].scope == "hour"
    assert own[0].events is not None and own[0].value == pytest.approx(1.0)
    assert table.flat["blocked_pct"].scope == "all"
    assert table.lookup("blocked_pct", T0 + HOUR_S + 60, "hour_of_day") == table.flat["blocked_pct"]


def test_learn_table_of_no_history() -> None:
    table = learn_table([], ("blocked_pct", "spend_hour"), min_points=30, visible_since=None)
    assert (table.ticks, table.first_at, table.last_at) == (0, None, None)
    assert table.flat == {}
    assert table.hourly == {"blocked_pct": {}, "spend_hour": {}}


def test_a_median_signal_leaves_out_ticks_without_enough_data() -> None:
    records = [
        TickRecord(T0 + 60 * i, {"spend_hour": Point(9.0, 3, "insufficient_data")}, False)
        for i in range(1, 40)
    ]
    assert pool(records, "spend_hour", None) == Pool()
    records += [
        TickRecord(T0 + 3600 + 60 * i, {"spend_hour": Point(2.0, 50, "ok")}, False)
        for i in range(30)
    ]
    assert pool(records, "spend_hour", None) == Pool(0, 1500, 30, (2.0,) * 30)


def test_min_points_is_half_an_hour_of_ticks_as_a_whole_number() -> None:
    assert [min_points_for(t) for t in (1, 7, 60, 1800, 4000)] == [1800, 257, 30, 1, 1]
    assert type(min_points_for(7)) is int
