"""One self-contained HTML page for a replay: charts, status band, transitions, config.

The page loads nothing and runs nothing: charts are inline SVG, styles are
inline, and a CSP meta tag forbids everything else, so a hostile user id that
somehow slipped past escaping still could not execute or phone home. Every
string from the data (user ids above all) is HTML-escaped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import orjson

from .model import SIGNALS
from .report_charts import STATUS_COLORS, UNKNOWN_COLOR, series_for, signal_chart, status_band
from .report_tenants import red_tenants_table

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|authorization", re.IGNORECASE)
URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
REDACTED = "<redacted>"
TOP_USERS_SHOWN = 3

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1140px;
color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}
figure{margin:10px 0}figure svg{width:100%;height:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right}
.st{display:inline-block;padding:1px 7px;border-radius:8px;color:#fff;font-size:12px}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;padding:12px;overflow:auto;white-space:pre-wrap;word-break:break-all}
"""


def _baseline_caption(signal: str, ticks: Sequence[Mapping[str, Any]]) -> str:
    """Which baseline the signal used, where it came from, and its threshold.

    Learned baselines move, so the caption lists each distinct (source,
    baseline, threshold) the run used, in order of first use.
    """
    seen: dict[tuple[str, float, float], None] = {}
    for tick in ticks:
        reading = (tick.get("signals") or {}).get(signal)
        if not reading:
            continue
        key = (
            str(reading.get("baseline_source", "static")),
            float(reading.get("baseline") or 0.0),
            float(reading.get("threshold") or 0.0),
        )
        seen.setdefault(key, None)
    if not seen:
        return ""
    shown = list(seen)[:6]
    more = f" (+{len(seen) - len(shown)} more)" if len(seen) > len(shown) else ""
    items = "; ".join(f"{escape(src)} baseline {b:g}, threshold {t:g}" for src, b, t in shown)
    return f'<figcaption class="baseline">{items}{more}</figcaption>'


def redact(value: Any) -> Any:
    """A copy of a config tree with secrets blanked (tokens never leave the process)."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", value)
    return value


def transitions_from(ticks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every change of composite status, in the shape ``render_report`` takes."""
    out: list[dict[str, Any]] = []
    previous: str | None = None
    for tick in ticks:
        status = str(tick.get("status", ""))
        if status != previous:
            out.append(
                {
                    "at": tick.get("at"),
                    "from": previous,
                    "to": status,
                    "red": list(tick.get("red") or ()),
                    "top_users": list(tick.get("top_users") or ()),
                }
            )
            previous = status
    return out


def _badge(status: Any) -> str:
    if status is None:
        return "&ndash;"
    text = str(status)
    color = STATUS_COLORS.get(text, UNKNOWN_COLOR)
    return f'<span class="st" style="background:{color}">{escape(text)}</span>'


def _top_users(raw: Any) -> str:
    parts: list[str] = []
    for entry in list(raw or ())[:TOP_USERS_SHOWN]:
        if isinstance(entry, list | tuple) and len(entry) == 2:
            user, rate = entry
            rate_text = f"{rate:.2f}" if isinstance(rate, int | float) else str(rate)
            parts.append(f"<code>{escape(str(user))}</code> ({escape(rate_text)} rps)")
        else:
            parts.append(f"<code>{escape(str(entry))}</code>")
    return ", ".join(parts) or "&ndash;"


def _transition_table(transitions: Sequence[Mapping[str, Any]]) -> str:
    if not transitions:
        return "<p>No status transitions.</p>"
    rows = [
        "<table><thead><tr><th>time (UTC)</th><th>from</th><th>to</th>"
        "<th>red signals</th><th>top users</th></tr></thead><tbody>"
    ]
    for t in transitions:
        red = ", ".join(escape(str(s)) for s in (t.get("red") or ())) or "&ndash;"
        rows.append(
            f"<tr><td>{escape(str(t.get('at', '')))}</td><td>{_badge(t.get('from'))}</td>"
            f"<td>{_badge(t.get('to'))}</td><td>{red}</td>"
            f"<td>{_top_users(t.get('top_users'))}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _summary(ticks: Sequence[Mapping[str, Any]]) -> str:
    if not ticks:
        return '<p class="meta">No ticks.</p>'
    statuses = Counter(str(t.get("status", "")) for t in ticks)
    red = Counter(s for t in ticks for s in (t.get("red") or ()))
    status_cells = " ".join(f"{_badge(s)} {n}" for s, n in statuses.most_common())
    red_cells = ", ".join(f"{escape(str(s))}: {n}" for s, n in sorted(red.items())) or "none"
    return (
        f'<p class="meta">{len(ticks)} ticks from {escape(str(ticks[0].get("at")))} '
        f"to {escape(str(ticks[-1].get('at')))} UTC.</p>"
        f'<p class="meta">Ticks per status: {status_cells}</p>'
        f'<p class="meta">Red ticks per signal: {red_cells}</p>'
    )


def _charts(ticks: Sequence[Mapping[str, Any]]) -> str:
    if not ticks:
        return ""
    parts = [f'<figure class="status-band">{status_band(ticks)}</figure>']
    for signal in SIGNALS:
        chart = signal_chart(signal, series_for(signal, ticks))
        parts.append(
            f'<figure class="chart" id="chart-{signal}" data-signal="{signal}">{chart}'
            f"{_baseline_caption(signal, ticks)}</figure>"
        )
    return "\n".join(parts)


def render_report(
    ticks: Sequence[Mapping[str, Any]],
    *,
    config: Mapping[str, Any],
    transitions: Sequence[Mapping[str, Any]] | None = None,
    title: str,
) -> str:
    """The whole report page for timeline ``ticks`` (DESIGN.md's line format).

    ``transitions`` default to every composite status change in ``ticks``;
    pass the replay's own list to show exactly what it reported.
    """
    if transitions is None:
        transitions = transitions_from(ticks)
    config_text = orjson.dumps(
        redact(config), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            _summary(ticks),
            "<h2>Signals</h2>",
            _charts(ticks),
            "<h2>Status transitions</h2>",
            _transition_table(transitions),
            red_tenants_table(ticks, _badge),
            "<h2>Configuration</h2>",
            f"<pre>{escape(config_text)}</pre>",
            "</body></html>",
            "",
        ]
    )
