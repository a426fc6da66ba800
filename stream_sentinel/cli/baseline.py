"""``stream-sentinel baseline LOG...``: learn baselines from a recorded normal period.

The logs go through the replay path (same decode, aggregate, store and rules)
with the service's provider recording every tick's history and never
alerting; the baselines over the trailing days of that history (same rules as
the service, ``baseline_math``) are printed as a config section ready to
paste, with per signal and hour what each rests on. ``replay --learn-from``
uses the same learning step and prints the same per-hour table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ..baseline_math import (
    DAY_S,
    LOOKBACK_S,
    MIN_RATIO_EVENTS,
    MIN_RATIO_WINDOWS,
    BaselineTable,
    Learned,
    Seasonality,
    learn_table,
    min_points_for,
)
from ..baselines import FixedBaselines, LearnedBaselines, first_visible_probe
from ..config import Config
from ..evaluate import Evaluator
from ..ingest import DeadLetter
from ..model import SIGNALS, SignalName, Tick, format_at
from ..replay import ReplaySummary, replay
from ..store.build import open_storage
from ..store.history import RATIO_SIGNALS
from ..wiring import build_rules, storage_settings

log = logging.getLogger(__name__)


async def learn_from_logs(
    paths: Sequence[str], cfg: Config, *, seasonality: Seasonality
) -> tuple[BaselineTable, ReplaySummary]:
    """Replay ``paths`` in event time, recording history, and learn all four signals.

    The same provider as the service records the history (stale ticks and the
    log's first event included), and the same rules pick the comparison set.
    """
    lookback = min(LOOKBACK_S, cfg.learning.history_days * DAY_S)
    min_points = min_points_for(cfg.alerting.tick_seconds)
    last_at: int | None = None

    def on_tick(tick: Tick) -> None:
        nonlocal last_at
        last_at = tick.at

    # the embedded store, whatever the config says: learning is a private backtest
    async with open_storage(storage_settings(cfg, redis_url="")) as storage:
        recorder = LearnedBaselines(
            storage.history,
            static={},
            learned=SIGNALS,
            learning_days=None,  # always learning: nothing alerts while we record
            seasonality=seasonality,
            min_points=min_points,
            lookback_s=lookback,
            probe=first_visible_probe(storage.store),
        )
        evaluator = Evaluator(storage.store, build_rules(cfg), recorder)
        summary = await replay(
            paths,
            cfg=cfg,
            store=storage.store,
            evaluator=evaluator,
            on_tick=on_tick,
            on_dead=_ignore,
        )
        since = await storage.history.visible_since(None)
        if last_at is None:
            return learn_table([], SIGNALS, min_points=min_points, visible_since=since), summary
        records = await storage.history.records(last_at + 1 - lookback, last_at + 1)
    table = learn_table(records, SIGNALS, min_points=min_points, visible_since=since)
    return table, summary


def _ignore(dead: DeadLetter) -> None:
    """Rejected lines are counted in the summary; learning needs nothing else."""


def _num(value: float, name: SignalName) -> str:
    """Six significant digits, always a TOML float ("5.0", never "5").

    For ``safety_pct`` the digits go to the failure rate ``100 - value``, which
    is what the rule uses: 99.99999 must not become 100.0 (a failure rate of 0).
    """
    if name != "safety_pct" or value >= 100.0:
        return repr(float(f"{value:.6g}"))
    failure = float(f"{100.0 - value:.6g}")
    decimals = min(12, max(1, 5 - math.floor(math.log10(failure))))
    text = f"{100.0 - failure:.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _rests_on(found: Learned) -> str:
    if found.events is None:
        return f"median of {found.windows} ticks"
    return f"pooled over {found.windows} windows, {found.events} events"


def render_toml(table: BaselineTable, *, seasonality: Seasonality, sources: Sequence[str]) -> str:
    """The ``[baselines]`` section, with comments saying where each value came from."""
    names = ", ".join(Path(p).name for p in sources)
    lines = [f"# Learned by `stream-sentinel baseline` from {names}"]
    if table.first_at is not None and table.last_at is not None:
        span = f"{format_at(table.first_at)} .. {format_at(table.last_at)}"
        lines += [
            f"# {table.ticks} ticks, {span} (at most the last 7 days of the logs).",
            "# Ratio signals: pooled proportion over non-overlapping 5-minute windows;",
            "# top_user_rps, spend_hour: median of ticks. Left out: stale ticks and",
            "# windows reaching back before the logs' first event. The logs are taken",
            "# as normal traffic: nothing was judged red while learning.",
        ]
    lines += [
        "# A signal given here has a static baseline and is no longer learned.",
        "[baselines]",
    ]
    for name in SIGNALS:
        found = table.flat.get(name)
        if found is None:
            lines.append(
                f"# {name}: too little usable history (needs {_needs(name)}); "
                "left out, so it is learned live"
            )
        else:
            floor = "; 0 means the floor (alerting.floors) is used" if found.value == 0 else ""
            lines.append(f"{name} = {_num(found.value, name)}  # {_rests_on(found)}{floor}")
    lines += ["", *hourly_lines(table, seasonality=seasonality)]
    return "\n".join(lines) + "\n"


def _needs(name: SignalName) -> str:
    if name in RATIO_SIGNALS:
        return f"{MIN_RATIO_WINDOWS} windows and {MIN_RATIO_EVENTS} events"
    return "half an hour of ticks"


def hourly_lines(table: BaselineTable, *, seasonality: Seasonality) -> list[str]:
    """Per signal and UTC hour: the baseline a tick uses and what it rests on, as comments."""
    used = "used by" if seasonality == "hour_of_day" else "for reference; used with"
    lines = [
        f'# Per UTC hour of the tick ({used} [learning] seasonality = "hour_of_day").',
        "# An hour with too little of its own uses the all-hours baseline (scope 'all').",
    ]
    for name in SIGNALS:
        lines.append(f"# {name:<13} hour      baseline  scope   windows      events")
        for hour in range(24):
            found = table.hourly.get(name, {}).get(hour) or table.flat.get(name)
            if found is None:
                lines.append(f"# {'':<13}   {hour:02d}   {'floor':>11}")
                continue
            events = "-" if found.events is None else str(found.events)
            lines.append(
                f"# {'':<13}   {hour:02d}   {_num(found.value, name):>11}  {found.scope:<5}"
                f"  {found.windows:>8}  {events:>10}"
            )
    return lines


async def learned_provider(paths: Sequence[str], cfg: Config) -> FixedBaselines:
    """Baselines for ``replay --learn-from``: learned from ``paths``, config's static ones kept."""
    seasonality = cfg.learning.seasonality
    table, summary = await learn_from_logs(paths, cfg, seasonality=seasonality)
    learned = cfg.learned_signals()
    log.info(
        "learned baselines from %d ticks (%d events): %s",
        summary.ticks,
        summary.counted,
        ", ".join(f"{n}={_num(v.value, n)}" for n, v in table.flat.items() if n in learned)
        or "none",
    )
    print("\n".join(hourly_lines(table, seasonality=seasonality)))
    if len(learned) < len(SIGNALS):
        log.info("static in the config, not replaced: %s", ", ".join(cfg.static_baselines()))
    return FixedBaselines(
        table, static=cfg.static_baselines(), learned=learned, seasonality=seasonality
    )


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


async def baseline_command(args: argparse.Namespace, cfg: Config) -> int:
    seasonality: Seasonality = args.seasonality or cfg.learning.seasonality
    table, summary = await learn_from_logs(args.logs, cfg, seasonality=seasonality)
    print(
        f"events read: {summary.lines}  counted: {summary.counted}  "
        f"dead-lettered: {summary.dead_lettered}  ticks: {summary.ticks}",
        file=sys.stderr,
    )
    if not table.ticks:
        print("no ticks: the logs hold no valid events", file=sys.stderr)
        return 1
    text = render_toml(table, seasonality=seasonality, sources=args.logs)
    if args.write:
        await asyncio.to_thread(_write, Path(args.write), text)
        print(f"baselines: {args.write}")
    else:
        sys.stdout.write(text)
    # nothing learned at all is a failure a script should notice
    return 0 if table.flat else 1
