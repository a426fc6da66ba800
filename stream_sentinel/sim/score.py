"""Grade a replay timeline against the simulator's truth file.

Pure: takes parsed timeline lines and attack windows, returns numbers. A tick
"detects" an attack when it falls in the attack's window (extended by the
expected signals' window, since a 60-minute sum stays red that long after the
attack stops), is at least as severe as expected, and names every expected
signal red. Ticks outside every extended window are "normal"; any warning or
critical among them is a false alarm. An attack aimed at one tenant is graded
on the timeline's ``tenants`` sections (``score_tenants``); its window still
counts as an attack window for the global ticks (a global red then is real).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from ..model import format_at
from .grading import SEVERITY, AttackScore, cell, duration, extended, pct
from .score_tenants import TenantReport, score_tenants, tenant_table
from .truth import AttackWindow

__all__ = ["AttackScore", "ScoreReport", "format_table", "parse_at", "read_timeline", "score"]


def parse_at(at: str) -> float:
    """Unix seconds of a timeline ``at`` ("YYYY-MM-DDTHH:MM:SSZ"; naive means UTC)."""
    parsed = datetime.fromisoformat(at)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class ScoreReport:
    attacks: tuple[AttackScore, ...]
    ticks: int
    normal_ticks: int
    false_critical: int
    false_warning: int
    false_alarm_ats: tuple[str, ...]  # the first few, to go and look at
    held_ticks: int = 0  # warning/critical ticks in the hysteresis hold after an attack
    tenants: TenantReport | None = None  # when the truth or the timeline has tenants

    @property
    def false_critical_pct(self) -> float:
        return pct(self.false_critical, self.normal_ticks)

    @property
    def false_warning_pct(self) -> float:
        return pct(self.false_warning, self.normal_ticks)

    @property
    def missed(self) -> tuple[str, ...]:
        aimed = self.tenants.attacks if self.tenants is not None else ()
        return tuple(a.window.name for a in (*self.attacks, *aimed) if a.detected_at is None)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "attacks": [a.to_json() for a in self.attacks],
            "ticks": self.ticks,
            "normal_ticks": self.normal_ticks,
            "false_critical": self.false_critical,
            "false_critical_pct": self.false_critical_pct,
            "false_warning": self.false_warning,
            "false_warning_pct": self.false_warning_pct,
            "false_alarm_ats": list(self.false_alarm_ats),
            "held_ticks": self.held_ticks,
            "missed": list(self.missed),
        }
        if self.tenants is not None:
            doc["tenants"] = self.tenants.to_json()
        return doc


DEFAULT_CLEAR_TICKS = 3  # RulesConfig's default


def tick_interval(ats: Sequence[float]) -> float:
    """The timeline's tick length: the smallest gap between consecutive ticks
    (a stale stretch or a restart only makes gaps longer); 60 s when unknown."""
    gaps = [b - a for a, b in pairwise(ats) if b > a]
    return min(gaps) if gaps else 60.0


def score(
    truth: Sequence[AttackWindow],
    timeline: Iterable[Mapping[str, Any]],
    *,
    clear_ticks: int = DEFAULT_CLEAR_TICKS,
) -> ScoreReport:
    lines = list(timeline)
    ats = [parse_at(str(line["at"])) for line in lines]
    hold_s = max(0, clear_ticks - 1) * tick_interval(ats)
    graded = [w for w in truth if w.tenant is None]
    spans = [extended(w) for w in graded]
    # every attack, also one aimed at a single tenant, makes its window abnormal
    attack_spans = [extended(w) for w in truth]
    held_spans = [(hi, hi + hold_s) for _, hi in attack_spans]
    detected: list[float | None] = [None] * len(graded)
    worst: list[str] = ["ok"] * len(graded)
    inside = [0] * len(graded)
    ticks = normal = false_crit = false_warn = held = 0
    false_ats: list[str] = []
    for line, at in zip(lines, ats, strict=True):
        ticks += 1
        status = str(line.get("status", ""))
        severity = SEVERITY.get(status, 0)
        red = set(line.get("red") or ())
        for i, (w, (lo, hi)) in enumerate(zip(graded, spans, strict=True)):
            if not lo <= at <= hi:
                continue
            inside[i] += 1
            if severity > SEVERITY.get(worst[i], 0):
                worst[i] = status
            if (
                detected[i] is None
                and severity >= SEVERITY[w.expected_status]
                and red.issuperset(w.expected_signals)
            ):
                detected[i] = at
        if any(lo <= at <= hi for lo, hi in attack_spans):
            continue
        if any(lo < at <= hi for lo, hi in held_spans):
            held += severity > 0
            continue
        normal += 1
        if severity:
            false_crit += status == "critical"
            false_warn += status == "warning"
            if len(false_ats) < 20:
                false_ats.append(str(line["at"]))
    return ScoreReport(
        attacks=tuple(
            AttackScore(w, d, s, n)
            for w, d, s, n in zip(graded, detected, worst, inside, strict=True)
        ),
        ticks=ticks,
        normal_ticks=normal,
        false_critical=false_crit,
        false_warning=false_warn,
        false_alarm_ats=tuple(false_ats),
        held_ticks=held,
        tenants=score_tenants(truth, lines, ats, hold_s),
    )


def format_table(report: ScoreReport) -> str:
    """The report as a markdown table plus a summary of false alarms."""
    rows = [
        "| attack | start (UTC) | duration | expected | detected at | delay | worst status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in report.attacks:
        w = a.window
        expected = f"{w.expected_status}: {', '.join(w.expected_signals)}"
        if a.detected_at is None:
            found, delay = "**missed**", "-"
        else:
            found = format_at(int(a.detected_at))
            delay = f"{duration(a.delay_s or 0.0)} ({a.delay_s:.0f} s)"
        rows.append(
            f"| {cell(w.name)} | {format_at(int(w.start))} | {duration(w.end - w.start)} "
            f"| {expected} | {found} | {delay} | {a.worst_status} |"
        )
    rows += [
        "",
        f"Ticks: {report.ticks}, normal (outside every attack window + signal window + hold): "
        f"{report.normal_ticks}.",
        f"False critical ticks: {report.false_critical} ({report.false_critical_pct:.2f} %). "
        f"False warning ticks: {report.false_warning} ({report.false_warning_pct:.2f} %).",
        f"Alarm ticks held by the hysteresis just after an attack (not counted above): "
        f"{report.held_ticks}.",
    ]
    if report.tenants is not None:
        rows += tenant_table(report.tenants)
    return "\n".join(rows) + "\n"


def read_timeline(path: str | Path) -> Iterator[dict[str, Any]]:
    """Timeline lines from a file written by ``replay --timeline`` (blank lines skipped)."""
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ValueError(f"line {number} is not JSON") from None
            if not isinstance(line, dict) or not isinstance(line.get("at"), str):
                raise ValueError(f'line {number} is not a timeline line (no "at")')
            try:
                parse_at(line["at"])
            except ValueError:
                raise ValueError(f'line {number}: "at" is not a time') from None
            yield line
