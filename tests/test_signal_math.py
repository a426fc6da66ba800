"""The four signals' raw readings: values, thresholds, floors, limits, significance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.model import NANO, SIGNALS, SignalName, SignalReading, WindowCounts
from stream_sentinel.signal_math import (
    DEFAULT_FLOORS,
    Baseline,
    RulesConfig,
    SignalRule,
    evaluate_signals,
    top_user_rates,
)
from stream_sentinel.stats import binom_sf, poisson_sf

SEED: dict[SignalName, Baseline] = {
    "blocked_pct": Baseline(0.1),
    "safety_pct": Baseline(99.5),
    "top_user_rps": Baseline(5.0),
    "spend_hour": Baseline(41.67),
}
BARE = RulesConfig(significance=0.0)
DEFAULT = RulesConfig()
EMPTY = WindowCounts()


def same_p(expected: float) -> object:
    """p-values are compared relatively: approx's default absolute tolerance
    (1e-12) would make 2e-30 equal to 8e-31, or to 0."""
    return pytest.approx(expected, rel=1e-9, abs=0.0)


def short(requests: int = 0, blocked: int = 0, responses: int = 0, safe: int = 0) -> WindowCounts:
    return WindowCounts(requests=requests, blocked=blocked, responses=responses, safe=safe)


def spend(usd: float, responses: int = 100) -> WindowCounts:
    return WindowCounts(responses=responses, cost_nanousd=round(usd * NANO))


# --- values -----------------------------------------------------------------


def test_values_follow_the_definitions() -> None:
    r = evaluate_signals(
        short(requests=10_000, blocked=12, responses=10_000, safe=9_971),
        spend(4.10),
        [("u1", 960), ("u2", 5)],
        SEED,
        DEFAULT,
    )
    assert r["blocked_pct"].value == pytest.approx(0.12)
    assert r["safety_pct"].value == pytest.approx(99.71)
    assert r["top_user_rps"].value == pytest.approx(3.2)
    assert r["spend_hour"].value == pytest.approx(4.10)
    assert list(r) == list(SIGNALS)
    assert [r[n].name for n in SIGNALS] == list(SIGNALS)
    assert [r[n].volume for n in SIGNALS] == [10_000, 10_000, 10_000, 100]
    assert all(r[n].state == "ok" for n in SIGNALS)


def test_zero_volume_gives_none_and_insufficient_data() -> None:
    r = evaluate_signals(EMPTY, EMPTY, [], SEED, DEFAULT)
    for name in SIGNALS:
        assert r[name].value is None
        assert r[name].state == "insufficient_data"
        assert r[name].p_value is None
        assert r[name].volume == 0


def test_spend_is_zero_not_none_when_responses_cost_nothing() -> None:
    r = evaluate_signals(EMPTY, spend(0.0, responses=3), [], SEED, DEFAULT)
    assert r["spend_hour"].value == 0.0
    assert r["spend_hour"].state == "ok"


def test_ratio_signals_below_min_events_report_value_but_never_red() -> None:
    # 49 of 49 blocked and 49 of 49 unsafe: as bad as it gets, but too few events.
    r = evaluate_signals(short(49, 49, 49, 0), EMPTY, [], SEED, BARE)
    assert r["blocked_pct"].value == 100.0
    assert r["safety_pct"].value == 0.0
    assert r["blocked_pct"].state == r["safety_pct"].state == "insufficient_data"
    r = evaluate_signals(short(50, 50, 50, 0), EMPTY, [], SEED, BARE)
    assert r["blocked_pct"].state == r["safety_pct"].state == "red"


def test_top_user_takes_the_maximum_whatever_the_order() -> None:
    r = evaluate_signals(short(10), EMPTY, [("a", 3), ("b", 900), ("c", 0)], SEED, DEFAULT)
    assert r["top_user_rps"].value == 3.0


# --- thresholds and the bare rule --------------------------------------------


def test_thresholds_are_multiplier_times_baseline() -> None:
    r = evaluate_signals(EMPTY, EMPTY, [], SEED, DEFAULT)
    assert r["blocked_pct"].threshold == pytest.approx(0.2)
    assert r["safety_pct"].threshold == pytest.approx(99.0)
    assert r["top_user_rps"].threshold == pytest.approx(10.0)
    assert r["spend_hour"].threshold == pytest.approx(83.34)
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(multiplier=3.0)})
    assert evaluate_signals(EMPTY, EMPTY, [], SEED, cfg)["blocked_pct"].threshold == (
        pytest.approx(0.3)
    )


def test_bare_rule_is_strictly_greater_than_the_threshold() -> None:
    at = evaluate_signals(short(1000, 2, 1000, 990), spend(83.34), [("u", 3000)], SEED, BARE)
    assert [at[n].state for n in SIGNALS] == ["ok"] * 4
    over = evaluate_signals(short(1000, 3, 1000, 989), spend(83.35), [("u", 3001)], SEED, BARE)
    assert [over[n].state for n in SIGNALS] == ["red"] * 4
    assert all(over[n].p_value is None for n in SIGNALS)


def test_significance_keeps_a_small_excess_from_going_red() -> None:
    # 3 blocked in 1,000 is "3x" the baseline, but p ~ 0.08 at this volume.
    r = evaluate_signals(short(1000, 3), EMPTY, [], SEED, DEFAULT)["blocked_pct"]
    assert r.state == "ok"
    assert r.p_value == same_p(binom_sf(3, 1000, 0.001))
    assert r.p_value is not None and r.p_value > 0.05
    # the same 0.3 % at 100,000 requests is overwhelming evidence
    r = evaluate_signals(short(100_000, 300), EMPTY, [], SEED, DEFAULT)["blocked_pct"]
    assert r.state == "red"
    assert r.p_value is not None and r.p_value < 1e-30


def test_safety_is_tested_on_the_unsafe_count() -> None:
    r = evaluate_signals(short(responses=10_000, safe=9_850), EMPTY, [], SEED, DEFAULT)
    s = r["safety_pct"]
    assert s.state == "red"
    assert s.p_value == same_p(binom_sf(150, 10_000, 0.005))
    # 1.1 % unsafe in 1,000: over 2x, yet not significant against 0.5 %
    r = evaluate_signals(short(responses=1_000, safe=989), EMPTY, [], SEED, DEFAULT)
    assert r["safety_pct"].state == "ok"


def test_top_user_uses_a_poisson_test_against_baseline_times_window() -> None:
    r = evaluate_signals(short(4000), EMPTY, [("u", 3100)], SEED, DEFAULT)["top_user_rps"]
    assert r.p_value == same_p(poisson_sf(3100, 5.0 * 300))
    assert r.state == "red"
    # just over the threshold, not significant against lam = 30 (floor 0.1 rps)
    low = {**SEED, "top_user_rps": Baseline(0.0)}
    strict = RulesConfig(significance=1e-9)
    weak = evaluate_signals(short(70), EMPTY, [("u", 61)], low, strict)["top_user_rps"]
    assert weak.value == pytest.approx(61 / 300)
    assert weak.p_value == same_p(poisson_sf(61, 30.0))
    assert weak.state == "ok"
    assert evaluate_signals(short(70), EMPTY, [("u", 61)], low, DEFAULT)["top_user_rps"].state == (
        "red"
    )


def test_spend_has_no_test() -> None:
    r = evaluate_signals(EMPTY, spend(100.0), [], SEED, DEFAULT)["spend_hour"]
    assert r.state == "red"
    assert r.p_value is None


def test_significance_zero_reports_no_p_value() -> None:
    r = evaluate_signals(short(1000, 3, 1000, 990), EMPTY, [("u", 5)], SEED, BARE)
    assert all(r[n].p_value is None for n in SIGNALS)


# --- floors ------------------------------------------------------------------


def test_zero_baselines_are_floored() -> None:
    zero = {n: Baseline(0.0) for n in SIGNALS} | {"safety_pct": Baseline(100.0)}
    r = evaluate_signals(EMPTY, EMPTY, [], zero, DEFAULT)
    assert r["blocked_pct"].threshold == pytest.approx(2 * DEFAULT_FLOORS["blocked_pct"])
    assert r["safety_pct"].threshold == pytest.approx(100 - 2 * DEFAULT_FLOORS["safety_pct"])
    assert r["top_user_rps"].threshold == pytest.approx(2 * DEFAULT_FLOORS["top_user_rps"])
    assert r["spend_hour"].threshold == pytest.approx(2 * DEFAULT_FLOORS["spend_hour"])
    # the reported baseline is the one configured, not the floor
    assert [r[n].baseline for n in SIGNALS] == [0.0, 100.0, 0.0, 0.0]


def test_configured_floor_overrides_the_default() -> None:
    cfg = RulesConfig(signals={"spend_hour": SignalRule(floor=10.0)})
    r = evaluate_signals(EMPTY, spend(15.0), [], {"spend_hour": Baseline(0.0)}, cfg)
    assert r["spend_hour"].threshold == 20.0
    assert r["spend_hour"].state == "ok"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(50, 10_000_000), cost=st.floats(0.0, 2.0))
def test_one_event_never_turns_a_zero_baseline_red(n: int, cost: float) -> None:
    zero = {n_: Baseline(0.0) for n_ in SIGNALS} | {"safety_pct": Baseline(100.0)}
    r = evaluate_signals(short(n, 1, n, n - 1), spend(cost, 1), [("u", 1)], zero, DEFAULT)
    assert [r[s].state for s in SIGNALS] == ["ok"] * 4


def test_missing_baseline_uses_the_floor_and_says_learning() -> None:
    r = evaluate_signals(short(100, 0, 100, 100), EMPTY, [("u", 1)], {}, DEFAULT)
    assert r["blocked_pct"].baseline == DEFAULT_FLOORS["blocked_pct"]
    assert r["safety_pct"].baseline == 100 - DEFAULT_FLOORS["safety_pct"]
    assert {r[n].baseline_source for n in SIGNALS} == {"learning"}
    assert evaluate_signals(EMPTY, EMPTY, [], SEED, DEFAULT)["spend_hour"].baseline_source == (
        "static"
    )


# --- absolute limits -----------------------------------------------------------


def test_absolute_limit_makes_red_below_the_multiplier_threshold() -> None:
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(absolute_limit=1.0)})
    drifted = {**SEED, "blocked_pct": Baseline(0.8, "learned")}
    r = evaluate_signals(short(100_000, 1_200), EMPTY, [], drifted, cfg)["blocked_pct"]
    assert r.threshold == 1.0
    assert r.state == "red"
    assert r.p_value == same_p(binom_sf(1_200, 100_000, 0.008))


def test_absolute_limit_below_the_baseline_tests_against_the_limit() -> None:
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(absolute_limit=1.0)})
    drifted = {**SEED, "blocked_pct": Baseline(1.5, "learned")}
    r = evaluate_signals(short(100_000, 1_300), EMPTY, [], drifted, cfg)["blocked_pct"]
    assert r.p_value == same_p(binom_sf(1_300, 100_000, 0.01))
    assert r.state == "red"


def test_absolute_limit_is_also_gated_by_significance_and_volume() -> None:
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(absolute_limit=1.0)})
    assert evaluate_signals(short(50, 1), EMPTY, [], SEED, cfg)["blocked_pct"].state == "ok"
    assert evaluate_signals(short(10, 5), EMPTY, [], SEED, cfg)["blocked_pct"].state == (
        "insufficient_data"
    )


def test_safety_absolute_limit_is_a_minimum() -> None:
    cfg = RulesConfig(significance=0.0, signals={"safety_pct": SignalRule(absolute_limit=99.4)})
    good = {**SEED, "safety_pct": Baseline(98.0)}  # 2x rule alone would allow 96 %
    r = evaluate_signals(short(responses=1000, safe=993), EMPTY, [], good, cfg)["safety_pct"]
    assert r.threshold == pytest.approx(99.4)
    assert r.state == "red"
    r = evaluate_signals(short(responses=1000, safe=994), EMPTY, [], good, cfg)["safety_pct"]
    assert r.state == "ok"


def test_other_limits() -> None:
    cfg = RulesConfig(
        significance=0.0,
        signals={
            "top_user_rps": SignalRule(absolute_limit=2.0),
            "spend_hour": SignalRule(absolute_limit=50.0),
        },
    )
    r = evaluate_signals(short(700), spend(50.01), [("u", 601)], SEED, cfg)
    assert (r["top_user_rps"].threshold, r["spend_hour"].threshold) == (2.0, 50.0)
    assert r["top_user_rps"].state == r["spend_hour"].state == "red"


# --- robustness ------------------------------------------------------------------


def test_inconsistent_counts_are_clamped() -> None:
    r = evaluate_signals(
        WindowCounts(requests=100, blocked=500, responses=100, safe=700), EMPTY, [], SEED, BARE
    )
    assert r["blocked_pct"].value == 100.0
    assert r["safety_pct"].value == 100.0


def test_safety_baseline_of_100_and_above() -> None:
    for b in (100.0, 250.0):
        base = {**SEED, "safety_pct": Baseline(b)}
        r = evaluate_signals(short(responses=100_000, safe=99_990), EMPTY, [], base, DEFAULT)
        assert r["safety_pct"].threshold == pytest.approx(99.98)
        assert r["safety_pct"].state == "ok"
        r = evaluate_signals(short(responses=100_000, safe=99_900), EMPTY, [], base, DEFAULT)
        assert r["safety_pct"].state == "red"


def test_safety_baseline_of_zero_never_alerts() -> None:
    base = {**SEED, "safety_pct": Baseline(0.0)}
    r = evaluate_signals(short(responses=1000, safe=0), EMPTY, [], base, BARE)
    assert r["safety_pct"].state == "ok"
    assert math.isfinite(r["safety_pct"].threshold)


def _finite_reading_fields(reading: SignalReading) -> list[float]:
    return [
        x
        for x in (reading.value, reading.baseline, reading.threshold, reading.p_value)
        if x is not None
    ]


counts = st.integers(0, 10_000_000)


@settings(max_examples=250, deadline=None)
@given(
    requests=counts,
    blocked=counts,
    responses=counts,
    safe=counts,
    cost=st.integers(0, 2**62),
    users=st.lists(st.tuples(st.text(max_size=8), st.integers(0, 10**9)), max_size=12),
    base=st.floats(0.0, 1e6),
    safety_base=st.sampled_from([0.0, 50.0, 99.5, 99.99, 100.0, 120.0]),
    significance=st.sampled_from([0.0, 0.001, 0.05, 1.0]),
    min_events=st.sampled_from([0, 1, 50]),
)
def test_no_nan_or_inf_and_states_are_consistent(
    requests: int,
    blocked: int,
    responses: int,
    safe: int,
    cost: int,
    users: list[tuple[str, int]],
    base: float,
    safety_base: float,
    significance: float,
    min_events: int,
) -> None:
    cfg = RulesConfig(significance=significance, min_events=min_events)
    baselines = {n: Baseline(base) for n in SIGNALS} | {"safety_pct": Baseline(safety_base)}
    w = WindowCounts(requests, blocked, responses, safe, cost)
    readings = evaluate_signals(w, w, users, baselines, cfg)
    for name, r in readings.items():
        assert all(math.isfinite(x) for x in _finite_reading_fields(r)), (name, r)
        if r.p_value is not None:
            assert 0.0 <= r.p_value <= 1.0
        if r.value is None:
            assert r.state == "insufficient_data"
        if r.state == "red":
            assert r.value is not None
            if name != "spend_hour":  # the one signal without a count test
                assert significance == 0 or (r.p_value is not None and r.p_value < significance)
            if name == "safety_pct":
                assert r.value < r.threshold
            else:
                assert r.value > r.threshold
            if name in ("blocked_pct", "safety_pct"):
                assert r.volume >= min_events
    bare_cfg = RulesConfig(significance=0.0, min_events=min_events)
    bare = evaluate_signals(w, w, users, baselines, bare_cfg)
    for name in SIGNALS:
        # the test can only take reds away, never add them
        if readings[name].state == "red":
            assert bare[name].state == "red"


@settings(max_examples=40, deadline=None)
@given(huge=st.integers(1, 10**12), others=st.integers(0, 5))
def test_a_single_huge_user(huge: int, others: int) -> None:
    users = [("whale", huge)] + [(f"u{i}", 1) for i in range(others)]
    r = evaluate_signals(short(huge + others), EMPTY, users, SEED, DEFAULT)["top_user_rps"]
    assert r.value == huge / 300
    assert r.p_value is not None and 0.0 <= r.p_value <= 1.0
    assert r.state == ("red" if huge > 3000 else "ok")


# --- config validation and top users --------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Baseline(math.nan), "baseline must be a finite number, got nan"),
        (lambda: Baseline(-1.0), "baseline must be >= 0"),
        (lambda: Baseline(math.inf), "baseline must be a finite number, got inf"),
        (lambda: SignalRule(multiplier=0.0), "multiplier must be positive"),
        (lambda: SignalRule(multiplier=-2.0), "multiplier must be positive"),
        (lambda: SignalRule(multiplier=math.nan), "multiplier must be a finite number, got nan"),
        (lambda: SignalRule(floor=0.0), "floor must be positive"),
        (lambda: SignalRule(floor=-math.inf), "floor must be a finite number, got -inf"),
        (
            lambda: SignalRule(absolute_limit=math.inf),
            "absolute_limit must be a finite number, got inf",
        ),
        (lambda: RulesConfig(significance=-0.1), "significance must be within [0, 1]"),
        (lambda: RulesConfig(significance=1.01), "significance must be within [0, 1]"),
        (
            lambda: RulesConfig(significance=math.nan),
            "significance must be a finite number, got nan",
        ),
        (lambda: RulesConfig(min_events=-1), "min_events must be >= 0"),
        (lambda: RulesConfig(clear_ticks=-1), "clear_ticks must be >= 0"),
        (lambda: RulesConfig(top_k=-1), "top_k must be >= 0"),
        (lambda: RulesConfig(red_needed=0), "red_needed must be >= 1"),
    ],
)
def test_invalid_settings_are_rejected_naming_the_setting(make: object, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        make()  # type: ignore[operator]
    assert str(refused.value) == message


def test_boundary_settings_are_accepted() -> None:
    for significance in (0.0, 1.0):
        assert RulesConfig(significance=significance).significance == significance
    edge = RulesConfig(min_events=0, clear_ticks=0, top_k=0, red_needed=1)
    assert (edge.min_events, edge.clear_ticks, edge.top_k, edge.red_needed) == (0, 0, 0, 1)
    assert Baseline(0.0).value == 0.0
    assert SignalRule(absolute_limit=-5.0, floor=1e-9).floor == 1e-9
    assert SignalRule(multiplier=0.5).multiplier == 0.5  # a limit tighter than the baseline


def test_partial_signal_rules_are_completed_with_defaults() -> None:
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(absolute_limit=1.0)})
    assert set(cfg.signals) == set(SIGNALS)
    assert cfg.rule("safety_pct") == SignalRule()
    assert cfg.floor("blocked_pct") == DEFAULT_FLOORS["blocked_pct"]
    with pytest.raises(TypeError):
        cfg.signals["blocked_pct"] = SignalRule()  # type: ignore[index]


def test_top_user_rates_rank_round_and_cut() -> None:
    users = [("b", 10), ("a", 10), ("c", 1), ("z", 0), ("d", 960)]
    assert top_user_rates(users, 3) == (("d", 3.2), ("a", 0.0333), ("b", 0.0333))
    assert top_user_rates(users, 10)[-1] == ("c", 0.0033)
    assert top_user_rates([], 10) == ()
    assert top_user_rates(users, 0) == ()


# --- edges a wrong change would cross ---------------------------------------------


def test_traffic_without_blocks_or_failures_is_exactly_zero() -> None:
    r = evaluate_signals(short(1000, 0, 1000, 0), EMPTY, [], SEED, DEFAULT)
    assert r["blocked_pct"].value == 0.0
    assert r["blocked_pct"].p_value == 1.0  # nothing blocked cannot be evidence
    assert r["safety_pct"].value == 0.0  # nothing safe
    assert r["safety_pct"].p_value == same_p(binom_sf(1000, 1000, 0.005))
    r = evaluate_signals(short(1000, 0, 1000, 1000), EMPTY, [], SEED, DEFAULT)
    assert r["safety_pct"].value == 100.0
    assert r["safety_pct"].p_value == 1.0


def test_a_p_value_exactly_at_significance_is_not_red() -> None:
    p = binom_sf(300, 100_000, 0.001)
    at = RulesConfig(significance=p)
    assert evaluate_signals(short(100_000, 300), EMPTY, [], SEED, at)["blocked_pct"].state == "ok"
    above = RulesConfig(significance=p * 1.000001)
    assert (
        evaluate_signals(short(100_000, 300), EMPTY, [], SEED, above)["blocked_pct"].state == "red"
    )


def test_safety_absolute_limit_with_significance_tests_against_the_limit() -> None:
    # 2x rule alone would allow 96 %; the 99.4 % minimum is the line and the
    # null failure rate of the test is the limit's 0.6 %, not the baseline's 2 %
    cfg = RulesConfig(signals={"safety_pct": SignalRule(absolute_limit=99.4)})
    good = {**SEED, "safety_pct": Baseline(98.0)}
    r = evaluate_signals(short(responses=100_000, safe=99_300), EMPTY, [], good, cfg)["safety_pct"]
    assert r.threshold == pytest.approx(99.4)
    assert r.p_value == same_p(binom_sf(700, 100_000, 0.006))
    assert r.state == "red"
    # the same rate on 1,000 responses: crossed, not significant
    r = evaluate_signals(short(responses=1000, safe=993), EMPTY, [], good, cfg)["safety_pct"]
    assert r.p_value == same_p(binom_sf(7, 1000, 0.006))
    assert r.state == "ok"


def test_safety_limit_looser_than_the_rule_keeps_the_rule_and_its_null() -> None:
    cfg = RulesConfig(signals={"safety_pct": SignalRule(absolute_limit=90.0)})
    r = evaluate_signals(short(responses=10_000, safe=9_850), EMPTY, [], SEED, cfg)["safety_pct"]
    assert r.threshold == pytest.approx(99.0)
    assert r.p_value == same_p(binom_sf(150, 10_000, 0.005))


def test_a_limit_of_perfection_tests_against_the_floor() -> None:
    # a 100 % minimum leaves no failure rate as the null: the floor (0.01 %) is used
    cfg = RulesConfig(signals={"safety_pct": SignalRule(absolute_limit=100.0)})
    r = evaluate_signals(short(responses=100_000, safe=99_990), EMPTY, [], SEED, cfg)
    assert r["safety_pct"].threshold == 100.0
    assert r["safety_pct"].p_value == same_p(binom_sf(10, 100_000, 0.0001))
    cfg = RulesConfig(signals={"blocked_pct": SignalRule(absolute_limit=0.001)})
    r = evaluate_signals(short(100_000, 10), EMPTY, [], SEED, cfg)
    assert r["blocked_pct"].threshold == 0.001
    assert r["blocked_pct"].p_value == same_p(binom_sf(10, 100_000, 0.0001))


def test_a_null_rate_over_100_percent_is_capped() -> None:
    high = {**SEED, "blocked_pct": Baseline(150.0), "safety_pct": Baseline(0.0)}
    r = evaluate_signals(short(100, 100, 100, 0), EMPTY, [], high, DEFAULT)
    assert r["blocked_pct"].p_value == 1.0
    assert r["blocked_pct"].state == "ok"
    assert r["safety_pct"].p_value == 1.0


def test_top_user_volume_is_at_least_the_top_count_and_p_against_the_floor() -> None:
    r = evaluate_signals(short(10), EMPTY, [("u", 900), ("v", 2)], {}, DEFAULT)["top_user_rps"]
    assert r.volume == 900
    assert r.value == 3.0
    assert r.threshold == pytest.approx(0.2)
    assert r.p_value == same_p(poisson_sf(900, 0.1 * 300))
    assert r.state == "red"
    r = evaluate_signals(short(5000), EMPTY, [("u", 900)], SEED, DEFAULT)["top_user_rps"]
    assert r.volume == 5000
    none = evaluate_signals(short(5000), EMPTY, [("u", 0), ("v", -3)], SEED, DEFAULT)
    assert none["top_user_rps"].value is None
    assert none["top_user_rps"].p_value is None
    assert none["top_user_rps"].volume == 5000


def test_negative_cost_reads_as_zero_spend() -> None:
    r = evaluate_signals(EMPTY, WindowCounts(responses=2, cost_nanousd=-NANO), [], SEED, DEFAULT)
    assert r["spend_hour"].value == 0.0
    assert r["spend_hour"].volume == 2
    assert r["spend_hour"].baseline == 41.67


def test_missing_safety_baseline_with_a_floor_over_100_is_zero() -> None:
    cfg = RulesConfig(signals={"safety_pct": SignalRule(floor=150.0)})
    r = evaluate_signals(EMPTY, EMPTY, [], {}, cfg)
    assert r["safety_pct"].baseline == 0.0
    assert r["safety_pct"].baseline_source == "learning"
    cfg = RulesConfig(signals={"top_user_rps": SignalRule(floor=2.5)})
    assert evaluate_signals(EMPTY, EMPTY, [], {}, cfg)["top_user_rps"].baseline == 2.5


def test_reading_fields_carry_through() -> None:
    learned = {**SEED, "blocked_pct": Baseline(0.3, "learned")}
    r = evaluate_signals(short(1000, 3, 1000, 990), spend(5.0), [("u", 30)], learned, DEFAULT)
    b = r["blocked_pct"]
    assert (b.name, b.baseline, b.baseline_source, b.volume) == (
        "blocked_pct",
        0.3,
        "learned",
        1000,
    )
    assert b.threshold == pytest.approx(0.6)
    assert r["spend_hour"].baseline_source == "static"
    assert r["top_user_rps"].p_value == same_p(poisson_sf(30, 1500.0))
