"""The replay report's table of tenants that went red.

Read from the timeline's ``tenants`` (DESIGN.md: ``{name: {status, red, ...}}``
per tick); a timeline without tenants gives no table. Tenant names are
untrusted: shown as ``untrusted.label`` (printable ASCII, bounded, distinct
tenants distinct) and HTML-escaped on top.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from . import untrusted

TENANTS_SHOWN = 50
SEVERITY = {"warning": 1, "critical": 2}


@dataclass(slots=True)
class RedTenant:
    tenant: str
    first_red_at: str
    worst: str
    ticks_red: int = 0
    signals: dict[str, None] = field(default_factory=dict)  # in order of first red


def red_tenants(ticks: Sequence[Mapping[str, Any]]) -> list[RedTenant]:
    """Every tenant with a red signal in some tick: the worst first, then the
    earliest, then the longest red."""
    found: dict[str, RedTenant] = {}
    for tick in ticks:
        tenants = tick.get("tenants")
        if not isinstance(tenants, Mapping):
            continue
        for name, line in tenants.items():
            red = list(line.get("red") or ()) if isinstance(line, Mapping) else []
            if not red:
                continue
            status = str(line.get("status", ""))
            entry = found.get(name)
            if entry is None:
                entry = found[name] = RedTenant(str(name), str(tick.get("at", "")), status)
            entry.ticks_red += 1
            if SEVERITY.get(status, 0) > SEVERITY.get(entry.worst, 0):
                entry.worst = status
            entry.signals.update(dict.fromkeys(str(s) for s in red))
    return sorted(
        found.values(),
        key=lambda t: (-SEVERITY.get(t.worst, 0), t.first_red_at, -t.ticks_red),
    )


def red_tenants_table(ticks: Sequence[Mapping[str, Any]], badge: Callable[[Any], str]) -> str:
    """The HTML table (``badge`` draws a status); empty when no tick has tenants."""
    if not any(isinstance(t.get("tenants"), Mapping) for t in ticks):
        return ""
    tenants = red_tenants(ticks)
    head = "<h2>Tenants that went red</h2>"
    if not tenants:
        return head + "\n<p>No tenant had a red signal.</p>"
    rows = [
        head,
        '<table class="tenants"><thead><tr><th>tenant</th><th>first red (UTC)</th>'
        "<th>red signals</th><th>ticks red</th><th>worst status</th></tr></thead><tbody>",
    ]
    for t in tenants[:TENANTS_SHOWN]:
        signals = ", ".join(escape(s) for s in t.signals)
        rows.append(
            f"<tr><td><code>{escape(untrusted.label(t.tenant))}</code></td>"
            f"<td>{escape(t.first_red_at)}</td><td>{signals}</td>"
            f'<td class="num">{t.ticks_red}</td><td>{badge(t.worst)}</td></tr>'
        )
    rows.append("</tbody></table>")
    if len(tenants) > TENANTS_SHOWN:
        rows.append(f'<p class="meta">(+{len(tenants) - TENANTS_SHOWN} more tenants)</p>')
    return "\n".join(rows)
