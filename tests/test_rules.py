"""Hysteresis, composite status, whole ticks and the heartbeat message."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.heartbeat import heartbeat_message
from stream_sentinel.model import NANO, SIGNALS, SignalName, SignalReading, State, WindowCounts
from stream_sentinel.rules import (
    Baseline,
    Hold,
    Hysteresis,
    RulesConfig,
    apply_hysteresis,
    composite,
    evaluate_tick,
)

CFG = RulesConfig()
SEED: dict[SignalName, Baseline] = {
    "blocked_pct": Baseline(0.1),
    "safety_pct": Baseline(99.5),
    "top_user_rps": Baseline(5.0),
    "spend_hour": Baseline(41.67),
}
# The seed's example message values: 0.12 %, 99.71 %, 3.20 rps, $4.10.
CALM_SHORT = WindowCounts(requests=10_000, blocked=12, responses=10_000, safe=9_971)
CALM_HOUR = WindowCounts(responses=100_000, cost_nanousd=4_100_000_000)
CALM_USERS = [("alice", 960), ("bob", 30)]
# An injection and jailbreak wave at the same time.
ATTACK_SHORT = WindowCounts(requests=10_000, blocked=900, responses=10_000, safe=9_000)
AT = 1_793_613_900  # 2026-11-02T10:05:00Z


def reading(name: SignalName, state: State, value: float | None = 1.0) -> SignalReading:
    return SignalReading(name, value, 1.0, 2.0, state)


def readings(states: dict[SignalName, State]) -> dict[SignalName, SignalReading]:
    return {n: reading(n, states.get(n, "ok")) for n in SIGNALS}


# --- hysteresis ---------------------------------------------------------------


def run(states: list[State], clear_ticks: int) -> list[State]:
    cfg = RulesConfig(clear_ticks=clear_ticks)
    hyst, shown = Hysteresis(), []
    for s in states:
        out, hyst = apply_hysteresis({"blocked_pct": reading("blocked_pct", s)}, hyst, cfg)
        shown.append(out["blocked_pct"].state)
    return shown


def test_red_clears_only_after_clear_ticks_non_red_ticks() -> None:
    raw: list[State] = ["red", "ok", "ok", "ok", "ok"]
    assert run(raw, 3) == ["red", "red", "red", "ok", "ok"]


def test_a_red_during_the_hold_restarts_the_count() -> None:
    raw: list[State] = ["red", "ok", "ok", "red", "ok", "ok", "ok"]
    assert run(raw, 3) == ["red", "red", "red", "red", "red", "red", "ok"]


def test_insufficient_data_counts_as_not_red() -> None:
    raw: list[State] = ["red", "insufficient_data", "insufficient_data", "insufficient_data"]
    assert run(raw, 3) == ["red", "red", "red", "insufficient_data"]


@pytest.mark.parametrize("clear_ticks", [0, 1])
def test_clear_ticks_zero_or_one_clears_at_once(clear_ticks: int) -> None:
    assert run(["red", "ok", "red", "insufficient_data"], clear_ticks) == [
        "red",
        "ok",
        "red",
        "insufficient_data",
    ]


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.sampled_from(["ok", "red", "insufficient_data"]), max_size=30),
    clear_ticks=st.integers(0, 6),
)
def test_hysteresis_matches_a_sliding_window_model(raw: list[State], clear_ticks: int) -> None:
    # Shown red exactly when a raw red occurred in the last max(clear_ticks, 1) ticks.
    width = max(clear_ticks, 1)
    expected = [
        "red" if "red" in raw[max(0, i - width + 1) : i + 1] else s for i, s in enumerate(raw)
    ]
    assert run(raw, clear_ticks) == expected


def test_a_held_reading_keeps_its_current_value() -> None:
    cfg = RulesConfig()
    _, hyst = apply_hysteresis(readings({"safety_pct": "red"}), Hysteresis(), cfg)
    now = readings({}) | {"safety_pct": replace(reading("safety_pct", "ok"), value=99.9)}
    shown, hyst = apply_hysteresis(now, hyst, cfg)
    assert shown["safety_pct"].state == "red"
    assert shown["safety_pct"].value == 99.9
    assert hyst.hold("safety_pct") == Hold(red=True, clear_streak=1)
    assert hyst.hold("blocked_pct") == Hold()


def test_hysteresis_is_immutable_and_round_trips_through_json() -> None:
    state = Hysteresis({"blocked_pct": Hold(True, 2), "spend_hour": Hold(True, 0)})
    with pytest.raises(TypeError):
        state.holds["safety_pct"] = Hold()  # type: ignore[index]
    text = json.dumps(state.to_json())
    assert Hysteresis.from_json(json.loads(text)) == state
    assert Hysteresis.from_json({}) == Hysteresis()
    assert Hysteresis.from_json({"unknown": 1}) == Hysteresis()


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "x",
        {"blocked_pct": True},
        {"blocked_pct": {"red": 1, "clear_streak": 0}},
        {"blocked_pct": {"red": True, "clear_streak": -1}},
        {"blocked_pct": {"red": True, "clear_streak": 1.5}},
        {"blocked_pct": {"red": True}},
    ],
)
def test_malformed_hysteresis_json_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError) as refused:
        Hysteresis.from_json(bad)
    expected = (
        "malformed hysteresis state for blocked_pct"
        if isinstance(bad, dict)
        else "hysteresis state must be an object"
    )
    assert str(refused.value) == expected


def test_a_held_red_missing_from_a_tick_keeps_its_hold() -> None:
    # a signal can be absent from one tick's readings (a caller evaluating a
    # subset): its hold must survive untouched, and the others move on
    held = Hysteresis({"blocked_pct": Hold(True, 1), "safety_pct": Hold(True, 0)})
    shown, after = apply_hysteresis(
        {"safety_pct": reading("safety_pct", "ok")}, held, RulesConfig(clear_ticks=3)
    )
    assert list(shown) == ["safety_pct"]
    assert shown["safety_pct"].state == "red"
    assert after.hold("blocked_pct") == Hold(True, 1)
    assert after.hold("safety_pct") == Hold(True, 1)


# --- composite -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("red", "red_needed", "expected"),
    [
        ((), 2, "ok"),
        (("spend_hour",), 2, "warning"),
        (("blocked_pct", "safety_pct"), 2, "critical"),
        (SIGNALS, 2, "critical"),
        (("top_user_rps",), 1, "critical"),
        (("blocked_pct", "safety_pct", "top_user_rps"), 4, "warning"),
    ],
)
def test_composite_counts_red_signals(
    red: tuple[SignalName, ...], red_needed: int, expected: str
) -> None:
    states: dict[SignalName, State] = dict.fromkeys(red, "red")
    cfg = RulesConfig(red_needed=red_needed)
    status, shown = composite(readings(states), cfg, learning=False, stale_reason=None)
    assert status == expected
    assert shown == tuple(n for n in SIGNALS if n in red)


def test_insufficient_data_is_not_red_for_the_composite() -> None:
    states: dict[SignalName, State] = dict.fromkeys(SIGNALS, "insufficient_data")
    assert composite(readings(states), CFG, learning=False, stale_reason=None) == ("ok", ())


def test_stale_overrides_learning_and_learning_overrides_red() -> None:
    states: dict[SignalName, State] = {"blocked_pct": "red", "safety_pct": "red"}
    both = ("blocked_pct", "safety_pct")
    r = readings(states)
    assert composite(r, CFG, learning=True, stale_reason=None) == ("learning", both)
    assert composite(r, CFG, learning=True, stale_reason="store unreachable") == ("stale", both)
    assert composite(r, CFG, learning=False, stale_reason="") == ("stale", both)


# --- whole ticks -------------------------------------------------------------------


def test_calm_tick_matches_the_timeline_contract() -> None:
    tick, state = evaluate_tick(AT, CALM_SHORT, CALM_HOUR, CALM_USERS, SEED, CFG, Hysteresis())
    assert (tick.status, tick.red, tick.reason) == ("ok", (), None)
    assert state == Hysteresis()
    line = json.loads(json.dumps(tick.to_json(), allow_nan=False))
    assert line["at"] == "2026-11-02T10:05:00Z"
    assert line["status"] == "ok"
    assert line["red"] == []
    assert line["top_users"] == [["alice", 3.2], ["bob", 0.1]]
    assert list(line["signals"]) == list(SIGNALS)
    blocked = line["signals"]["blocked_pct"]
    assert blocked["value"] == pytest.approx(0.12)
    assert (blocked["baseline"], blocked["threshold"], blocked["state"]) == (0.1, 0.2, "ok")
    assert 0.0 < blocked["p_value"] < 1.0


def test_an_attack_goes_critical_then_clears_after_clear_ticks() -> None:
    state = Hysteresis()
    statuses = []
    for i, short in enumerate([CALM_SHORT, ATTACK_SHORT, CALM_SHORT, CALM_SHORT, CALM_SHORT]):
        tick, state = evaluate_tick(AT + 60 * i, short, CALM_HOUR, CALM_USERS, SEED, CFG, state)
        statuses.append((tick.status, tick.red))
    both = ("blocked_pct", "safety_pct")
    held = ("critical", both)
    assert statuses == [("ok", ()), held, held, held, ("ok", ())]


def test_stale_tick_does_not_advance_the_hysteresis() -> None:
    _, state = evaluate_tick(AT, ATTACK_SHORT, CALM_HOUR, CALM_USERS, SEED, CFG, Hysteresis())
    for i in range(5):
        tick, after = evaluate_tick(
            AT + 60 * (i + 1),
            CALM_SHORT,
            CALM_HOUR,
            CALM_USERS,
            SEED,
            CFG,
            state,
            stale_reason="rebuilding",
        )
        assert (tick.status, tick.reason) == ("stale", "rebuilding")
        assert after == state
    tick, _ = evaluate_tick(AT + 600, CALM_SHORT, CALM_HOUR, CALM_USERS, SEED, CFG, state)
    assert tick.status == "critical"  # still held: stale ticks did not count as clear


def test_learning_tick_shows_reds_and_its_note() -> None:
    tick, state = evaluate_tick(
        AT,
        ATTACK_SHORT,
        CALM_HOUR,
        CALM_USERS,
        SEED,
        CFG,
        Hysteresis(),
        learning=True,
        learning_note="day 3 of 7",
    )
    assert (tick.status, tick.red, tick.reason) == (
        "learning",
        ("blocked_pct", "safety_pct"),
        "day 3 of 7",
    )
    assert state.hold("blocked_pct").red  # the rules ran; only the alert is suppressed


def test_a_learning_note_shows_only_while_learning() -> None:
    tick, _ = evaluate_tick(
        AT,
        CALM_SHORT,
        CALM_HOUR,
        CALM_USERS,
        SEED,
        CFG,
        Hysteresis(),
        learning=False,
        learning_note="day 8 of 7",
    )
    assert (tick.status, tick.reason) == ("ok", None)
    assert heartbeat_message(tick) == VALUES
    tick, _ = evaluate_tick(
        AT, CALM_SHORT, CALM_HOUR, CALM_USERS, SEED, CFG, Hysteresis(), learning_note="x"
    )
    assert tick.reason is None


def test_top_users_in_the_tick_are_cut_to_top_k() -> None:
    users = [(f"user{i:02d}", 100 + i) for i in range(25)]
    tick, _ = evaluate_tick(
        AT, CALM_SHORT, CALM_HOUR, users, SEED, RulesConfig(top_k=3), Hysteresis()
    )
    assert [u for u, _ in tick.top_users] == ["user24", "user23", "user22"]
    assert tick.signals["top_user_rps"].value == pytest.approx(124 / 300)


@settings(max_examples=80, deadline=None)
@given(
    counts=st.tuples(*[st.integers(0, 10**7)] * 4),
    cost=st.integers(0, 10**18),
    users=st.lists(st.tuples(st.text(max_size=6), st.integers(0, 10**9)), max_size=15),
    zero=st.booleans(),
)
def test_ticks_are_always_valid_json(
    counts: tuple[int, int, int, int], cost: int, users: list[tuple[str, int]], zero: bool
) -> None:
    baselines = (
        {n: Baseline(0.0) for n in SIGNALS} | {"safety_pct": Baseline(100.0)} if zero else SEED
    )
    short = WindowCounts(*counts)
    hour = WindowCounts(responses=counts[2], cost_nanousd=cost)
    tick, _ = evaluate_tick(AT, short, hour, users, baselines, CFG, Hysteresis())
    json.dumps(tick.to_json(), allow_nan=False)  # raises on NaN or inf
    assert len(tick.top_users) <= CFG.top_k
    assert all(math.isfinite(r) and r > 0 for _, r in tick.top_users)
    assert heartbeat_message(tick).count("\n") == 0


# --- heartbeat message ------------------------------------------------------------------


def message(
    short: WindowCounts = CALM_SHORT,
    *,
    learning: bool = False,
    learning_note: str | None = None,
    stale_reason: str | None = None,
) -> str:
    tick, _ = evaluate_tick(
        AT,
        short,
        CALM_HOUR,
        CALM_USERS,
        SEED,
        CFG,
        Hysteresis(),
        learning=learning,
        learning_note=learning_note,
        stale_reason=stale_reason,
    )
    return heartbeat_message(tick)


VALUES = "blocked=0.12%, safety=99.71%, top_user_rps=3.20, spend_hour=$4.10"


def test_message_has_the_seed_shape() -> None:
    assert message() == VALUES


def test_message_names_red_signals_and_status() -> None:
    assert message(ATTACK_SHORT) == (
        "critical: blocked=9.00%, safety=90.00%, top_user_rps=3.20, spend_hour=$4.10"
        "; red: blocked_pct, safety_pct"
    )
    one_red = WindowCounts(requests=10_000, blocked=900, responses=10_000, safe=9_971)
    assert message(one_red).startswith("warning: blocked=9.00%")
    assert message(one_red).endswith("; red: blocked_pct")


def test_message_prefixes_for_learning_and_stale() -> None:
    assert message(learning=True, learning_note="day 2 of 7") == f"learning (day 2 of 7): {VALUES}"
    assert message(learning=True) == f"learning: {VALUES}"
    assert message(stale_reason="store\nunreachable") == f"stale: store unreachable; {VALUES}"
    assert message(ATTACK_SHORT, stale_reason="x").endswith("; red: blocked_pct, safety_pct")
    assert message(stale_reason="") == f"stale: unknown; {VALUES}"
    assert message(stale_reason=" \n ") == f"stale: unknown; {VALUES}"


def test_message_shows_na_without_events() -> None:
    tick, _ = evaluate_tick(AT, WindowCounts(), WindowCounts(), [], SEED, CFG, Hysteresis())
    assert heartbeat_message(tick) == ("blocked=n/a, safety=n/a, top_user_rps=n/a, spend_hour=n/a")


@settings(max_examples=60, deadline=None)
@given(users=st.lists(st.tuples(st.text(min_size=1), st.integers(1, 10**6)), max_size=5))
def test_message_never_depends_on_user_ids(users: list[tuple[str, int]]) -> None:
    renamed = [(f"anon{i}", c) for i, (_, c) in enumerate(users)]
    ticks = [
        evaluate_tick(AT, CALM_SHORT, CALM_HOUR, u, SEED, CFG, Hysteresis())[0]
        for u in (users, renamed)
    ]
    assert heartbeat_message(ticks[0]) == heartbeat_message(ticks[1])
    assert "anon" not in heartbeat_message(ticks[1])


def test_spend_formatting_uses_the_hour_window() -> None:
    hour = WindowCounts(responses=1, cost_nanousd=23 * NANO + NANO // 2)
    tick, _ = evaluate_tick(AT, CALM_SHORT, hour, CALM_USERS, SEED, CFG, Hysteresis())
    assert heartbeat_message(tick).endswith("spend_hour=$23.50")
