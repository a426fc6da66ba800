"""``stream-sentinel baseline LOG...``: learn baselines from a recorded normal period.

The logs go through the replay path (same decode, aggregate, store and rules)
with a provider that records every tick's history and never alerts; the
medians over the trailing days of that history are printed as a config
section ready to paste. ``replay --learn-from`` uses the same learning step.
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
    BaselineTable,
    Seasonality,
    learn_table,
    min_points_for,
)
from ..baselines import FixedBaselines, LearnedBaselines
from ..config import Config
from ..evaluate import Evaluator
from ..ingest import DeadLetter
from ..model import SIGNALS, SignalName, Tick, format_at
from ..replay import ReplaySummary, replay
from ..sim.truth import SIGNAL_WINDOW_S
from ..store.build import open_storage
from ..store.history import TickRecord
from ..wiring import build_rules, storage_settings

log = logging.getLogger(__name__)


async def learn_from_logs(
    paths: Sequence[str], cfg: Config, *, seasonality: Seasonality
) -> tuple[BaselineTable, ReplaySummary]:
    """Replay ``paths`` in event time, recording history, and learn all four signals."""
    lookback = min(LOOKBACK_S, cfg.learning.history_days * DAY_S)
    min_points = min_points_for(cfg.alerting.tick_seconds)
    first_at: int | None = None
    last_at: int | None = None

    def on_tick(tick: Tick) -> None:
        nonlocal first_at, last_at
        first_at = tick.at if first_at is None else first_at
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
        if first_at is None or last_at is None:
            return learn_table([], SIGNALS, min_points=min_points), summary
        records = await storage.history.records(last_at + 1 - lookback, last_at + 1)
    return learn_table(full_windows(records, first_at), SIGNALS, min_points=min_points), summary


def full_windows(records: Sequence[TickRecord], since: int) -> list[TickRecord]:
    """Records without the points whose window reaches back before ``since``.

    The first hour of a replay sees a spend window that is only partly
    filled (the first five minutes, partly filled short windows): those
    values are too low and would drag the medians down. A live deployment
    has no such warm-up, since a fresh consumer counts the last hour again.
    """
    return [
        TickRecord(r.at, {n: p for n, p in r.points.items() if r.at - SIGNAL_WINDOW_S[n] >= since})
        for r in records
    ]


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


def render_toml(table: BaselineTable, *, seasonality: Seasonality, sources: Sequence[str]) -> str:
    """The ``[baselines]`` section, with comments saying where each value came from."""
    names = ", ".join(Path(p).name for p in sources)
    lines = [f"# Learned by `stream-sentinel baseline` from {names}"]
    if table.first_at is not None and table.last_at is not None:
        span = f"{format_at(table.first_at)} .. {format_at(table.last_at)}"
        lines += [
            f"# {table.ticks} ticks, {span} (at most the last 7 days of the logs).",
            "# Medians leave out ticks with insufficient data or a window reaching",
            "# back before the logs. The logs are taken as normal traffic: nothing was",
            "# judged red while learning, the median keeps a short incident out.",
        ]
    lines += [
        "# A signal given here has a static baseline and is no longer learned.",
        "[baselines]",
    ]
    for name in SIGNALS:
        value = table.flat.get(name)
        used = table.usable.get(name, 0)
        if value is None:
            lines.append(
                f"# {name}: no usable history ({used} of {table.ticks} ticks had enough data);"
                " left out, so it is learned live"
            )
        else:
            floor = "; 0 means the floor (alerting.floors) is used" if value == 0 else ""
            lines.append(f"{name} = {_num(value, name)}  # median of {used} ticks{floor}")
    if seasonality == "hour_of_day":
        lines += _hourly_comment(table)
    return "\n".join(lines) + "\n"


def _hourly_comment(table: BaselineTable) -> list[str]:
    lines = [
        "",
        "# Per-hour medians (UTC hour of the tick), for reference: [baselines] takes one",
        "# value per signal. To alert on per-hour baselines, leave the signals out of",
        '# [baselines] and set  [learning] seasonality = "hour_of_day"  (the service then',
        "# learns them), or backtest with  stream-sentinel replay --learn-from LOG...",
        "# hour " + "".join(f"{name:>14}" for name in SIGNALS),
    ]
    for hour in range(24):
        cells = []
        for name in SIGNALS:
            value = table.hourly.get(name, {}).get(hour)
            cells.append(f"{'-' if value is None else _num(value, name):>14}")
        lines.append(f"#   {hour:02d} " + "".join(cells))
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
        ", ".join(f"{n}={_num(v, n)}" for n, v in table.flat.items() if n in learned) or "none",
    )
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
