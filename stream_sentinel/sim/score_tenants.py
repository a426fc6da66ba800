"""Grade the timeline's ``tenants`` sections against attacks aimed at one tenant.

A tenant attack is detected at the first tick inside its extended window
whose entry for THAT tenant is at least as severe as expected and names every
expected signal red (the global rule, read from ``tenants[T]``). Every other
warning or critical tenant entry is false, unless its tick lies inside the
extended window of an attack aimed at that tenant, or of a global attack
(whose attackers are spread over the tenants, so their reds are real), or in
the hysteresis hold right after one (counted apart, as globally).

Tenant names come from the timeline: untrusted. They are compared as
strings, reported in JSON as strings, and escaped in tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import format_at
from .grading import SEVERITY, AttackScore, cell, duration, extended, pct
from .truth import AttackWindow

MAX_FALSE_LISTED = 20


@dataclass(frozen=True, slots=True)
class TenantReport:
    attacks: tuple[AttackScore, ...]  # the attacks aimed at one tenant
    entries: int  # tenant entries in the timeline (a tick with 20 tenants has 20)
    normal_entries: int  # outside every window and hold that covers their tenant
    false_critical: int
    false_warning: int
    false_alarms: tuple[tuple[str, str], ...]  # the first few (at, tenant)
    held_entries: int  # warning/critical entries in the hold after an attack

    @property
    def false_critical_pct(self) -> float:
        return pct(self.false_critical, self.normal_entries)

    @property
    def false_warning_pct(self) -> float:
        return pct(self.false_warning, self.normal_entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "attacks": [a.to_json() for a in self.attacks],
            "entries": self.entries,
            "normal_entries": self.normal_entries,
            "false_critical": self.false_critical,
            "false_critical_pct": self.false_critical_pct,
            "false_warning": self.false_warning,
            "false_warning_pct": self.false_warning_pct,
            "false_alarms": [{"at": at, "tenant": t} for at, t in self.false_alarms],
            "held_entries": self.held_entries,
        }


def _verdict(entry: object) -> tuple[str, frozenset[str]]:
    """(status, red signals) of one tenant entry; anything malformed is no alarm."""
    if not isinstance(entry, Mapping):
        return "", frozenset()
    status = entry.get("status")
    red = entry.get("red")
    names = frozenset(r for r in red if isinstance(r, str)) if isinstance(red, list) else None
    return (status if isinstance(status, str) else ""), names or frozenset()


def _entries(line: Mapping[str, Any]) -> Mapping[str, Any] | None:
    section = line.get("tenants")
    return section if isinstance(section, Mapping) else None


def score_tenants(
    truth: Sequence[AttackWindow],
    lines: Sequence[Mapping[str, Any]],
    ats: Sequence[float],
    hold_s: float,
) -> TenantReport | None:
    """None when there is nothing per tenant to grade (no tenant attack in the
    truth and no ``tenants`` section in the timeline)."""
    aimed = [w for w in truth if w.tenant is not None]
    sections = [_entries(line) for line in lines]
    if not aimed and all(s is None for s in sections):
        return None
    everyone = [extended(w) for w in truth if w.tenant is None]
    own: dict[str, list[tuple[float, float]]] = {}
    for w in aimed:
        own.setdefault(str(w.tenant), []).append(extended(w))
    detected: list[float | None] = [None] * len(aimed)
    worst = ["ok"] * len(aimed)
    inside = [0] * len(aimed)
    entries = normal = false_crit = false_warn = held = 0
    false_alarms: list[tuple[str, str]] = []
    for line, at, maybe in zip(lines, ats, sections, strict=True):
        section = maybe or {}
        for i, w in enumerate(aimed):
            lo, hi = extended(w)
            if not lo <= at <= hi:
                continue
            inside[i] += 1
            status, red = _verdict(section.get(str(w.tenant)))
            severity = SEVERITY.get(status, 0)
            if severity > SEVERITY.get(worst[i], 0):
                worst[i] = status
            if (
                detected[i] is None
                and severity >= SEVERITY[w.expected_status]
                and red.issuperset(w.expected_signals)
            ):
                detected[i] = at
        for tenant, entry in section.items():
            entries += 1
            spans = everyone + own.get(tenant, [])
            if any(lo <= at <= hi for lo, hi in spans):
                continue
            status, _ = _verdict(entry)
            severity = SEVERITY.get(status, 0)
            if any(hi < at <= hi + hold_s for _, hi in spans):
                held += severity > 0
                continue
            normal += 1
            if severity:
                false_crit += status == "critical"
                false_warn += status == "warning"
                if len(false_alarms) < MAX_FALSE_LISTED:
                    false_alarms.append((str(line["at"]), str(tenant)))
    return TenantReport(
        attacks=tuple(
            AttackScore(w, d, s, n)
            for w, d, s, n in zip(aimed, detected, worst, inside, strict=True)
        ),
        entries=entries,
        normal_entries=normal,
        false_critical=false_crit,
        false_warning=false_warn,
        false_alarms=tuple(false_alarms),
        held_entries=held,
    )


def tenant_table(report: TenantReport) -> list[str]:
    """The per-tenant part of ``score``'s table: one row per tenant attack,
    then the false tenant alarms."""
    rows = [
        "",
        "Per tenant:",
        "",
        "| attack | tenant | start (UTC) | duration | expected | detected at | delay "
        "| worst status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in report.attacks:
        w = a.window
        expected = f"{w.expected_status}: {', '.join(w.expected_signals)}"
        if a.delay_s is None:
            found, delay = "**missed**", "-"
        else:
            found = format_at(int(a.window.start + a.delay_s))
            delay = f"{duration(a.delay_s)} ({a.delay_s:.0f} s)"
        rows.append(
            f"| {cell(w.name)} | {cell(str(w.tenant))} | {format_at(int(w.start))} "
            f"| {duration(w.end - w.start)} | {expected} | {found} | {delay} "
            f"| {a.worst_status} |"
        )
    rows += [
        "",
        f"Tenant entries: {report.entries}, normal (outside every window covering their "
        f"tenant + hold): {report.normal_entries}.",
        f"False critical tenant ticks: {report.false_critical} "
        f"({report.false_critical_pct:.2f} %). False warning tenant ticks: "
        f"{report.false_warning} ({report.false_warning_pct:.2f} %).",
        f"Tenant alarm ticks held by the hysteresis just after an attack: {report.held_entries}.",
    ]
    if report.false_alarms:
        shown = ", ".join(f"{at} {cell(t)}" for at, t in report.false_alarms[:5])
        rows.append(f"First false tenant alarms: {shown}.")
    return rows
