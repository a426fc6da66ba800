"""The replay report's table of tenants that went red, and the replay console's
tenant transitions: escaped, bounded, absent when there are no tenants."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from typing import Any

from tenant_ticks import HOSTILE_TENANTS, critical, tenant, tick_with

from stream_sentinel import untrusted
from stream_sentinel.cli.commands import format_summary
from stream_sentinel.model import Tick
from stream_sentinel.replay import ReplaySummary, TenantTransition
from stream_sentinel.report import render_report
from stream_sentinel.report_tenants import TENANTS_SHOWN, red_tenants

T0 = 1_800_000_000


def _timeline(ticks: list[Tick]) -> list[dict[str, Any]]:
    return [t.to_json() for t in ticks]


def _attack() -> list[dict[str, Any]]:
    warn = tenant("acme", "warning", ("spend_hour",), 50)
    return _timeline(
        [
            tick_with([tenant("acme"), tenant("big", requests=900)], at=T0),
            tick_with([warn, tenant("big", requests=900)], at=T0 + 60),
            tick_with([critical("acme"), tenant("big", requests=900)], at=T0 + 120),
            tick_with([tenant("acme"), tenant("big", requests=900)], at=T0 + 180),
            tick_with([tenant("big", requests=900), critical("late")], at=T0 + 240),
        ]
    )


def test_red_tenants_first_red_signals_ticks_and_worst() -> None:
    rows = red_tenants(_attack())
    assert [r.tenant for r in rows] == ["acme", "late"]  # worst, then earliest
    acme = rows[0]
    assert acme.first_red_at == "2027-01-15T08:01:00Z"
    assert list(acme.signals) == ["spend_hour", "blocked_pct", "safety_pct"]
    assert (acme.ticks_red, acme.worst) == (2, "critical")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_the_report_table_escapes_hostile_tenants() -> None:
    timeline = _timeline([tick_with([critical(n) for n in HOSTILE_TENANTS])])
    page = render_report(timeline, config={}, title="t")
    assert "Tenants that went red" in page
    table = page[page.index("Tenants that went red") :]
    for name in HOSTILE_TENANTS:
        assert f"<code>{escape(untrusted.label(name))}</code>" in table
    assert "<script>" not in page
    parser = _Text()
    parser.feed(table)
    assert "script" not in parser.tags and "a" not in parser.tags
    assert table.count("<tr><td><code>") == len(HOSTILE_TENANTS)


def test_the_table_is_bounded() -> None:
    many = [critical(f"t{i}") for i in range(TENANTS_SHOWN + 7)]
    page = render_report(_timeline([tick_with(many)]), config={}, title="t")
    assert page.count("<tr><td><code>") == TENANTS_SHOWN
    assert "(+7 more tenants)" in page


def test_no_tenants_no_table_and_calm_tenants_say_so() -> None:
    plain = render_report(_timeline([tick_with([])]), config={}, title="t")
    assert "Tenants that went red" not in plain and 'class="tenants"' not in plain
    calm = render_report(_timeline([tick_with([tenant("a")])]), config={}, title="t")
    assert "No tenant had a red signal." in calm


def test_console_lists_tenant_transitions_escaped_one_line_each() -> None:
    summary = ReplaySummary(ticks=3)
    summary.tenant_transitions = [
        TenantTransition(T0, name, None, "critical", ("blocked_pct",)) for name in HOSTILE_TENANTS
    ]
    summary.tenant_transitions_total = len(HOSTILE_TENANTS) + 4
    text = format_summary(summary)
    lines = [line for line in text.splitlines() if "tenant " in line and "->" in line]
    assert len(lines) == len(HOSTILE_TENANTS)  # a newline in a name is not a new line
    for line, name in zip(lines, HOSTILE_TENANTS, strict=True):
        assert f"tenant {untrusted.label(name)}  start -> critical  red: blocked_pct" in line
        assert all(" " <= c <= "~" for c in line)
    assert f"tenant transitions: {len(HOSTILE_TENANTS) + 4}" in text
    assert "(+4 more tenant transitions" in text


def test_console_without_tenants_is_unchanged() -> None:
    text = format_summary(ReplaySummary(ticks=3))
    assert "tenant" not in text
    assert re.search(r"status transitions: 0$", text)
