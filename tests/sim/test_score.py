"""score: hand-built timelines with known delays, false alarms and window extensions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.model import SIGNALS, format_at
from stream_sentinel.sim.score import format_table, parse_at, read_timeline, score
from stream_sentinel.sim.truth import AttackWindow

T0 = 1_793_095_200  # 2026-10-27T10:00:00Z


def tick(minute: int, status: str = "ok", red: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"at": format_at(T0 + 60 * minute), "status": status, "red": list(red), "signals": {}}


def timeline(
    minutes: range, overrides: dict[int, tuple[str, tuple[str, ...]]]
) -> list[dict[str, Any]]:
    return [tick(m, *overrides.get(m, ("ok", ()))) for m in minutes]


INJECTION = AttackWindow("inj", T0 + 7, T0 + 1207, ("blocked_pct",), "warning")  # 10:00:07-10:20:07
COMBINED = AttackWindow("both", T0 + 7, T0 + 1207, ("blocked_pct", "safety_pct"), "critical")
COST = AttackWindow("cost", T0 + 7, T0 + 907, ("spend_hour",), "warning")  # ends 10:15:07


def test_parse_at_reads_timeline_times_as_utc() -> None:
    assert parse_at("2026-10-27T10:00:00Z") == T0
    assert parse_at("2026-10-27T10:00:00") == T0
    assert parse_at("2026-10-27T12:00:00+02:00") == T0


def test_delay_is_first_matching_tick_minus_attack_start() -> None:
    lines = timeline(range(-10, 60), {m: ("warning", ("blocked_pct",)) for m in range(2, 24)})
    report = score([INJECTION], lines, clear_ticks=1)
    (a,) = report.attacks
    assert a.detected_at == T0 + 120
    assert a.delay_s == 113
    assert a.worst_status == "warning"
    # ticks 10:01 .. 10:25 lie in [start, end + 300] = [10:00:07, 10:25:07]
    assert a.ticks == 25
    assert report.ticks == 70 and report.normal_ticks == 45
    assert report.false_warning == 0 and report.false_critical == 0


def test_the_hysteresis_hold_after_the_window_is_the_same_alarm() -> None:
    # red until 10:27: 10:26 and 10:27 are past end + 5 min but within the
    # clear_ticks (3) hold: two more ticks of the same alarm, shown apart
    lines = timeline(range(-10, 60), {m: ("warning", ("blocked_pct",)) for m in range(2, 28)})
    report = score([INJECTION], lines)
    assert report.false_warning == 0
    assert report.held_ticks == 2
    assert report.normal_ticks == 45 - 2
    assert "held by the hysteresis just after an attack (not counted above): 2" in format_table(
        report
    )


def test_red_past_the_hold_counts_as_false() -> None:
    # 10:28 is a third tick past end + 5 min: no longer a hold of clear_ticks 3
    lines = timeline(range(-10, 60), {m: ("warning", ("blocked_pct",)) for m in range(2, 29)})
    report = score([INJECTION], lines)
    assert report.held_ticks == 2
    assert report.false_warning == 1
    assert report.false_alarm_ats == (format_at(T0 + 28 * 60),)
    assert report.false_warning_pct == 100 * 1 / 43


def test_the_hold_follows_clear_ticks_and_the_tick_length() -> None:
    lines = timeline(range(-10, 60), {m: ("warning", ("blocked_pct",)) for m in range(2, 28)})
    strict = score([INJECTION], lines, clear_ticks=1)
    assert (strict.false_warning, strict.held_ticks) == (2, 0)
    # two-minute ticks: the same two held ticks reach 4 minutes past the window
    slow = [
        tick(m, *(("warning", ("blocked_pct",)) if m <= 29 else ("ok", ())))
        for m in range(2, 60, 2)
    ]
    report = score([INJECTION], slow)
    assert (report.false_warning, report.held_ticks) == (0, 2)


def test_a_tick_must_name_the_expected_signals_and_be_severe_enough() -> None:
    lines = timeline(
        range(0, 30),
        {
            1: ("critical", ("safety_pct", "top_user_rps")),  # wrong signals
            2: ("warning", ("blocked_pct",)),  # not severe enough for critical
            3: ("critical", ("blocked_pct", "spend_hour")),  # safety missing
            4: ("critical", ("blocked_pct", "safety_pct")),
        },
    )
    inj, both = score([INJECTION, COMBINED], lines).attacks
    assert inj.delay_s == 2 * 60 - 7
    assert both.delay_s == 4 * 60 - 7
    assert both.worst_status == "critical"


def test_a_critical_tick_detects_an_expected_warning() -> None:
    lines = timeline(range(0, 30), {3: ("critical", ("blocked_pct", "spend_hour"))})
    (inj,) = score([INJECTION], lines).attacks
    assert inj.delay_s == 3 * 60 - 7


def test_missed_attack_and_statuses_that_are_not_alarms() -> None:
    lines = timeline(range(-5, 40), {m: ("stale", ()) for m in range(0, 10)})
    lines += [tick(41, "learning"), tick(42, "ok")]
    report = score([INJECTION], lines)
    assert report.attacks[0].detected_at is None and report.attacks[0].delay_s is None
    assert report.missed == ("inj",)
    assert report.false_warning == report.false_critical == 0
    assert "**missed**" in format_table(report)


def test_spend_window_extends_an_hour() -> None:
    # end 10:15:07 + 3600 s = 11:15:07: a red spend tick at 11:15 is excused, 11:16 is not
    lines = timeline(
        range(0, 80),
        {
            1: ("warning", ("spend_hour",)),
            75: ("warning", ("spend_hour",)),
            76: ("critical", ("spend_hour", "top_user_rps")),
        },
    )
    report = score([COST], lines, clear_ticks=1)
    assert report.attacks[0].delay_s == 53
    assert report.false_warning == 0 and report.false_critical == 1
    assert report.normal_ticks == 80 - 75  # ticks 10:01 .. 11:15 are inside


def test_window_bounds_are_inclusive_and_start_is_not_extended() -> None:
    w = AttackWindow("x", T0, T0 + 60, ("top_user_rps",), "warning")
    lines = [
        tick(-1, "warning", ("top_user_rps",)),
        tick(0, "warning", ("top_user_rps",)),
        tick(6, "warning", ("top_user_rps",)),
        tick(7, "warning", ("top_user_rps",)),
    ]
    report = score([w], lines, clear_ticks=1)
    assert report.attacks[0].delay_s == 0  # a tick at the very start counts
    assert report.false_warning == 2  # 09:59 (before start) and 10:07 (> end + 300)
    assert report.attacks[0].ticks == 2  # 10:00 and 10:06 (= end + 300)


def test_overlapping_windows_each_get_their_detection() -> None:
    lines = timeline(range(0, 30), {5: ("critical", ("blocked_pct", "safety_pct"))})
    report = score([INJECTION, COMBINED], lines, clear_ticks=1)
    assert [a.delay_s for a in report.attacks] == [293, 293]
    assert report.normal_ticks == 5  # 10:00 is before start; 10:26..10:29 after the extension


def test_no_normal_ticks_gives_zero_percent() -> None:
    report = score([INJECTION], timeline(range(1, 5), {}))
    assert report.normal_ticks == 0
    assert report.false_warning_pct == 0.0 and report.false_critical_pct == 0.0


def test_table_and_json_forms() -> None:
    evil = AttackWindow("a|b\nc", T0 + 7, T0 + 1207, ("blocked_pct",), "warning")
    lines = timeline(
        range(0, 40), {2: ("warning", ("blocked_pct",)), 35: ("critical", SIGNALS[:2])}
    )
    report = score([evil], lines, clear_ticks=1)
    table = format_table(report)
    assert "| a\\|b c |" in table
    assert "1m 53s (113 s)" in table and "20m 00s" in table
    assert "False critical ticks: 1 (6.67 %)" in table  # 1 of 15 normal ticks
    doc = orjson.loads(orjson.dumps(report.to_json()))
    assert doc["attacks"][0]["delay_s"] == 113
    assert doc["attacks"][0]["detected_at"] == "2026-10-27T10:02:00Z"
    assert doc["false_critical"] == 1 and doc["normal_ticks"] == 15
    assert doc["false_alarm_ats"] == ["2026-10-27T10:35:00Z"]


def test_read_timeline_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    lines = timeline(range(0, 3), {1: ("warning", ("blocked_pct",))})
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n\n")
    assert list(read_timeline(path)) == lines


statuses = st.sampled_from(["ok", "warning", "critical", "learning", "stale"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(statuses, min_size=0, max_size=120),
    st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), max_size=3),
)
def test_counts_are_consistent(status_list: list[str], spans: list[tuple[int, int]]) -> None:
    truth = [
        AttackWindow(f"a{i}", T0 + 60 * s, T0 + 60 * (s + d), ("blocked_pct",), "warning")
        for i, (s, d) in enumerate(spans)
    ]
    lines = [
        tick(i, s, ("blocked_pct",) if s in ("warning", "critical") else ())
        for i, s in enumerate(status_list)
    ]
    report = score(truth, lines)
    assert report.ticks == len(lines)
    assert report.false_critical + report.false_warning <= report.normal_ticks <= report.ticks
    if not truth:
        assert report.normal_ticks == len(lines)
        assert report.false_critical == status_list.count("critical")
        assert report.false_warning == status_list.count("warning")
    for a in report.attacks:
        if a.delay_s is not None:
            assert 0 <= a.delay_s <= a.window.end - a.window.start + 300
