"""score per tenant: hand-built timelines with tenants sections, hostile names included."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_sentinel.model import format_at
from stream_sentinel.sim.grading import CELL_CHARS, cell
from stream_sentinel.sim.score import format_table, score
from stream_sentinel.sim.truth import AttackWindow, truth_from_bytes, truth_to_bytes

T0 = 1_793_095_200  # 2026-10-27T10:00:00Z
BLOCKED = ("blocked_pct",)

Entry = tuple[str, tuple[str, ...]]


def tick(
    minute: int,
    tenants: dict[str, Entry] | None = None,
    status: str = "ok",
    red: tuple[str, ...] = (),
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "at": format_at(T0 + 60 * minute),
        "status": status,
        "red": list(red),
        "signals": {},
    }
    if tenants is not None:
        line["tenants"] = {
            name: {"status": s, "red": list(r), "requests": 400, "signals": {}}
            for name, (s, r) in tenants.items()
        }
    return line


def quiet(*names: str) -> dict[str, Entry]:
    return {n: ("ok", ()) for n in names}


# injection aimed at team-05, 10:00:07-10:20:07; scored until 10:25:07 (+ hold)
AIMED = AttackWindow(
    "inj5", T0 + 7, T0 + 1207, BLOCKED, "warning", kind="injection", tenant="team-05"
)
GLOBAL = AttackWindow("glob", T0 + 7, T0 + 1207, BLOCKED, "warning", kind="injection")


def test_detected_at_the_first_tick_the_tenant_names_the_signal() -> None:
    lines = []
    for m in range(-10, 60):
        entries = quiet("team-01", "team-05")
        if 4 <= m <= 24:
            entries["team-05"] = ("warning", BLOCKED)
        if m == 3:
            entries["team-05"] = ("warning", ("spend_hour",))  # the wrong signal
            entries["team-01"] = ("warning", BLOCKED)  # the wrong tenant
        lines.append(tick(m, entries))
    report = score([AIMED], lines, clear_ticks=1)
    assert report.attacks == ()  # nothing global to grade
    t = report.tenants
    assert t is not None
    (a,) = t.attacks
    assert a.detected_at == T0 + 240 and a.delay_s == 233
    assert a.worst_status == "warning" and a.ticks == 25
    # team-01's warning at 10:03 is outside every window aimed at team-01: false
    assert (t.false_warning, t.false_critical) == (1, 0)
    assert t.false_alarms == (("2026-10-27T10:03:00Z", "team-01"),)
    assert t.entries == 140
    # team-01: 70 - 0 (no window for it); team-05: 70 - 25 inside its window
    assert t.normal_entries == 70 + 45
    assert report.missed == ()


def test_a_tenant_missing_from_the_top_k_is_not_detected() -> None:
    lines = [tick(m, quiet("team-01")) for m in range(0, 30)]
    report = score([AIMED], lines)
    assert report.tenants is not None
    assert report.tenants.attacks[0].detected_at is None
    assert report.missed == ("inj5",)
    assert report.tenants.attacks[0].worst_status == "ok"


def test_severity_must_reach_the_expected_status() -> None:
    both = AttackWindow(
        "both", T0 + 7, T0 + 1207, ("blocked_pct", "safety_pct"), "critical", tenant="t"
    )
    lines = [tick(m, {"t": ("warning", ("blocked_pct", "safety_pct"))}) for m in range(0, 5)]
    lines += [tick(m, {"t": ("critical", ("blocked_pct", "safety_pct"))}) for m in range(5, 9)]
    report = score([both], lines)
    assert report.tenants is not None
    assert report.tenants.attacks[0].detected_at == T0 + 300


def test_the_hold_after_a_tenant_attack_is_counted_apart() -> None:
    # red until 10:27: 10:26 and 10:27 are past end + 5 min, within the hold
    lines = [
        tick(m, {"team-05": ("warning", BLOCKED) if 2 <= m <= 27 else ("ok", ())})
        for m in range(0, 40)
    ]
    report = score([AIMED], lines)
    t = report.tenants
    assert t is not None
    assert t.held_entries == 2 and t.false_warning == 0
    lines[35]["tenants"]["team-05"]["status"] = "critical"
    again = score([AIMED], lines)
    assert again.tenants is not None and again.tenants.false_critical == 1


def test_a_global_attack_window_excuses_tenant_reds() -> None:
    lines = [tick(m, {"team-02": ("warning", BLOCKED)}, "warning", BLOCKED) for m in range(2, 20)]
    report = score([GLOBAL], lines)
    assert report.tenants is not None
    assert report.tenants.false_warning == 0 and report.tenants.normal_entries == 0
    assert report.attacks[0].detected_at == T0 + 120


def test_a_tenant_attack_window_is_an_attack_window_for_global_ticks() -> None:
    lines = [tick(m, quiet("team-05"), "warning", BLOCKED) for m in range(2, 20)]
    lines += [tick(m, quiet("team-05"), "critical", BLOCKED) for m in range(40, 42)]
    report = score([AIMED], lines)
    assert report.false_warning == 0  # a global red during a tenant attack is real
    assert report.false_critical == 2  # but not long after it
    assert report.normal_ticks == 2


def test_old_timelines_and_truth_score_as_before() -> None:
    lines = [tick(m, None, "warning", BLOCKED) for m in range(2, 10)]
    report = score([GLOBAL], lines)
    assert report.tenants is None
    doc = report.to_json()
    assert "tenants" not in doc
    assert "Per tenant" not in format_table(report)


@pytest.mark.parametrize(
    "section",
    [
        [],
        "team-05",
        {"team-05": "critical"},
        {"team-05": {"status": 2, "red": "blocked_pct"}},
        {"team-05": {"status": ["critical"], "red": [None, 3]}},
    ],
)
def test_malformed_tenant_sections_are_no_alarm(section: Any) -> None:
    line = tick(40)
    line["tenants"] = section
    report = score([AIMED], [line])
    assert report.tenants is not None
    assert report.tenants.false_critical == 0 and report.tenants.false_warning == 0
    assert report.tenants.attacks[0].detected_at is None


HOSTILE = [
    "a|b",
    "t" * 256,
    "x\ny\r\nz",
    "<script>alert(1)</script>",
    "`rm -rf`",
    "back\\slash",
    "\u2028sep\x1b[31m",
    "| --- |",
]


def test_hostile_tenant_names_stay_inert_in_the_table_and_intact_in_json() -> None:
    aimed = AttackWindow("evil", T0 + 7, T0 + 607, BLOCKED, "warning", tenant=HOSTILE[0])
    lines = [tick(m, {name: ("critical", BLOCKED) for name in HOSTILE}) for m in range(40, 43)]
    report = score([aimed], lines)
    t = report.tenants
    assert t is not None
    assert t.false_critical == len(HOSTILE) * 3
    assert {name for _, name in t.false_alarms} == set(HOSTILE)
    # JSON keeps every name exactly
    doc = orjson.loads(orjson.dumps(report.to_json()))
    assert {a["tenant"] for a in doc["tenants"]["false_alarms"]} == set(HOSTILE)
    assert doc["tenants"]["attacks"][0]["tenant"] == "a|b"
    table = format_table(report)
    # every row keeps its columns (8 global, 9 per tenant): no | is left unescaped
    rows = [row for row in table.splitlines() if row.startswith("|")]
    assert {row.replace("\\|", "").count("|") for row in rows} == {8, 9}
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "\x1b" not in table and "\u2028" not in table and "\r" not in table
    assert "\\`rm -rf\\`" in table
    shown = format_table(
        score([aimed], [tick(40, {n: ("critical", BLOCKED)}) for n in HOSTILE[5:]])
    )
    assert "back\\\\slash" in shown and "\u2028" not in shown and "\x1b" not in shown
    assert "\\| --- \\|" in shown
    assert "t" * CELL_CHARS not in table and "t" * (CELL_CHARS - 1) + "…" in table
    assert "| evil | a\\|b |" in table


def test_cell_escaping() -> None:
    assert cell("a|b\nc") == "a\\|b c"  # what the global table always did
    assert cell("a\\|b") == "a\\\\\\|b"
    assert cell("x & <y>") == "x &amp; &lt;y&gt;"
    assert len(cell("é" * 300)) == CELL_CHARS


def test_table_and_json_forms_per_tenant() -> None:
    lines = [
        tick(m, {"team-05": ("warning", BLOCKED) if m >= 2 else ("ok", ()), "team-01": ("ok", ())})
        for m in range(0, 40)
    ]
    lines[35]["tenants"]["team-01"] = {"status": "critical", "red": ["blocked_pct", "spend_hour"]}
    for line in lines[28:]:
        line["tenants"]["team-05"]["status"] = "ok"
    report = score([AIMED], lines)
    table = format_table(report)
    assert "| inj5 | team-05 | 2026-10-27T10:00:07Z | 20m 00s | warning: blocked_pct " in table
    assert "| 2026-10-27T10:02:00Z | 1m 53s (113 s) | warning |" in table
    assert "False critical tenant ticks: 1" in table
    assert "First false tenant alarms: 2026-10-27T10:35:00Z team-01." in table
    doc = orjson.loads(orjson.dumps(report.to_json()))
    tenants = doc["tenants"]
    assert tenants["attacks"][0]["tenant"] == "team-05"
    assert tenants["attacks"][0]["delay_s"] == 113
    assert tenants["false_critical"] == 1
    assert tenants["false_alarms"] == [{"at": "2026-10-27T10:35:00Z", "tenant": "team-01"}]
    assert doc["missed"] == []


def test_truth_with_and_without_tenant_round_trips() -> None:
    data = truth_to_bytes([AIMED, GLOBAL])
    assert truth_from_bytes(data) == [AIMED, GLOBAL]
    doc = orjson.loads(data)
    assert doc["attacks"][0]["tenant"] == "team-05"
    assert "tenant" not in doc["attacks"][1]  # a global attack's entry is as before
    with pytest.raises(ValueError):
        truth_from_bytes(data.replace(b'"team-05"', b"5"))
    with pytest.raises(ValueError):
        AttackWindow("x", 0, 1, BLOCKED, "warning", tenant="")
