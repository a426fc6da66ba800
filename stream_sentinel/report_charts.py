"""Matplotlib charts of a timeline, rendered to inline SVG strings.

Uses ``matplotlib.figure.Figure`` directly (no pyplot): no global figure
registry, no backend switch, safe to call from any thread of a service.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

STATUS_COLORS: Mapping[str, str] = {
    "ok": "#2e9d4a",
    "warning": "#f0a202",
    "critical": "#d62728",
    "learning": "#8c9bb0",
    "stale": "#6a3d9a",
}
UNKNOWN_COLOR = "#cccccc"

SIGNAL_LABELS: Mapping[str, tuple[str, str]] = {
    "blocked_pct": ("blocked requests, last 5 min", "%"),
    "safety_pct": ("safe responses, last 5 min", "%"),
    "top_user_rps": ("top user request rate, last 5 min", "req/s"),
    "spend_hour": ("spend, last 60 min", "USD"),
}

_SVG_ATTRS_TO_DROP = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


@dataclass(frozen=True, slots=True)
class Series:
    """One signal's columns, aligned with the tick times."""

    times: Sequence[datetime]
    values: Sequence[float]  # NaN where the window had no events
    thresholds: Sequence[float]
    baselines: Sequence[float]
    red: Sequence[bool]
    learning: Sequence[bool]


def tick_time(at: str) -> datetime:
    parsed = datetime.fromisoformat(at)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed  # naive UTC: matplotlib's date axis then labels plain UTC times


def _num(raw: Any) -> float:
    if raw is None or isinstance(raw, bool):
        return math.nan
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def series_for(signal: str, ticks: Sequence[Mapping[str, Any]]) -> Series:
    values: list[float] = []
    thresholds: list[float] = []
    baselines: list[float] = []
    red: list[bool] = []
    for tick in ticks:
        reading = (tick.get("signals") or {}).get(signal) or {}
        values.append(_num(reading.get("value")))
        thresholds.append(_num(reading.get("threshold")))
        baselines.append(_num(reading.get("baseline")))
        red.append(reading.get("state") == "red")
    return Series(
        times=[tick_time(str(t["at"])) for t in ticks],
        values=values,
        thresholds=thresholds,
        baselines=baselines,
        red=red,
        learning=[t.get("status") == "learning" for t in ticks],
    )


def tick_step(xs: Sequence[float]) -> float:
    """The usual spacing of ticks, so a lone tick still shades a visible span."""
    positive = [b - a for a, b in itertools.pairwise(xs) if b > a]
    return statistics.median(positive) if positive else 60.0 / 86400.0


def date_numbers(times: Sequence[datetime]) -> list[float]:
    """Matplotlib's date axis coordinates (days since its epoch)."""
    # matplotlib.dates ships without type annotations
    return [float(mdates.date2num(t)) for t in times]  # type: ignore[no-untyped-call]


def runs(flags: Sequence[bool]) -> Iterable[tuple[int, int]]:
    """``(first, last)`` index pairs of consecutive True flags."""
    first: int | None = None
    for i, flag in enumerate(flags):
        if flag and first is None:
            first = i
        elif not flag and first is not None:
            yield first, i - 1
            first = None
    if first is not None:
        yield first, len(flags) - 1


def _shade(ax: Any, xs: Sequence[float], flags: Sequence[bool], step: float, **kw: Any) -> None:
    for first, last in runs(flags):
        ax.axvspan(xs[first], xs[last] + step, **kw)


def _finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if not math.isnan(x)]


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    # rc_context only for the save: text as <text> (smaller, searchable) and
    # per-chart id salts so several SVGs can share one HTML document
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(
            buf,
            format="svg",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # inline SVG in HTML needs no namespace declarations; dropping them keeps
    # the page free of any URL-looking string
    return _SVG_ATTRS_TO_DROP.sub("", text, count=2)


def _plain_number(value: float, _pos: int | None) -> str:
    return f"{value:g}"


def _time_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)


def signal_chart(signal: str, series: Series) -> str:
    title, unit = SIGNAL_LABELS.get(signal, (signal, ""))
    fig = Figure(figsize=(11, 2.8))
    # fixed margins (not constrained layout) so every chart's time axis lines up
    fig.subplots_adjust(left=0.07, right=0.97, top=0.86, bottom=0.17)
    ax = fig.add_subplot()
    xs = date_numbers(series.times)
    step = tick_step(xs)
    learning_color = STATUS_COLORS["learning"]
    _shade(ax, xs, series.learning, step, color=learning_color, alpha=0.25, lw=0)
    _shade(ax, xs, series.red, step, color=STATUS_COLORS["critical"], alpha=0.18, lw=0)
    ax.plot(xs, series.values, color="#1f5fa8", lw=1.1, label="value")
    ax.plot(xs, series.thresholds, color="#d62728", lw=1.0, ls="--", label="threshold")
    ax.plot(xs, series.baselines, color="#777777", lw=0.8, ls=":", label="baseline")
    values, thresholds = _finite(series.values), _finite(series.thresholds)
    if values and thresholds and signal != "safety_pct":
        limit = max(min(thresholds), 1e-9)
        if max(values) > 5 * limit:
            # attacks run at 10-100x the threshold; a linear axis would flatten
            # everything normal into the floor
            ax.set_yscale("symlog", linthresh=limit)
            ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    handles = list(ax.get_legend_handles_labels()[0])
    if any(series.red):
        handles.append(Patch(color=STATUS_COLORS["critical"], alpha=0.18, label="red"))
    if any(series.learning):
        handles.append(Patch(color=learning_color, alpha=0.25, label="learning"))
    # legend above the plot, beside the title, so it never hides the data
    ax.legend(
        handles=handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        ncols=5,
        frameon=False,
        borderaxespad=0.2,
    )
    ax.set_title(f"{signal}: {title}", loc="left", fontsize=11)
    ax.set_ylabel(unit)
    _time_axis(ax)
    if xs:
        ax.set_xlim(xs[0], xs[-1] + step)
    return _svg(fig, f"ss-{signal}")


def status_band(ticks: Sequence[Mapping[str, Any]]) -> str:
    xs = date_numbers([tick_time(str(t["at"])) for t in ticks])
    statuses = [str(t.get("status", "")) for t in ticks]
    fig = Figure(figsize=(11, 1.3))
    fig.subplots_adjust(left=0.07, right=0.97, top=0.78, bottom=0.42)
    ax = fig.add_subplot()
    step = tick_step(xs)
    seen: list[str] = []
    for status in dict.fromkeys(statuses):
        color = STATUS_COLORS.get(status, UNKNOWN_COLOR)
        # an edge in the fill colour hides the hairline seams browsers draw
        # between adjacent SVG rectangles
        flags = [s == status for s in statuses]
        _shade(ax, xs, flags, step, facecolor=color, edgecolor=color, lw=0.5)
        seen.append(status)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_title("composite status", loc="left", fontsize=11)
    handles = [Patch(color=STATUS_COLORS.get(s, UNKNOWN_COLOR), label=s) for s in seen]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35),
        ncols=6,
        fontsize=8,
        frameon=False,
    )
    _time_axis(ax)
    ax.grid(False)
    if xs:
        ax.set_xlim(xs[0], xs[-1] + step)
    return _svg(fig, "ss-composite")
