"""Per-tenant detection on a simulated 2-day log with tenants (issue 22).

    .venv/bin/python bench/tenant_detection.py --dir /tmp/tenant_bench [--rps 60] [--seed 1]

Builds (once, with ``stream-sentinel simulate``) a 2-day log of 20 tenants
(``--tenants 20``: team-01..03 at 25/20/15 %, team-04..07 at 5 %, the rest
share 20 %) where, on day 2, the 5 % tenant team-05 suffers an injection wave
(14:00 UTC, 20 min) and the 5 % tenant team-06 a cost attack (16:00 UTC,
10 min), both aimed at the tenant and sized to stay under 2x globally.
Replays it learning ``[learning] days = 1`` with ``hour_of_day`` and
``[tenants] enabled = true`` (``--timeline``), then scores day 2 with
``stream_sentinel.sim.score`` (global and per tenant) and prints:

* per attack: the tick the tenant turned red (delay), and the global
  signal's largest value over its baseline during the attack (must stay
  under 2x) and the global red ticks then (must be 0);
* false critical / warning tenant ticks (and global ones) over day 2.

Logs and timelines are cached in ``--dir``; delete a file to redo it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stream_sentinel.sim.score import ScoreReport, parse_at, read_timeline, score
from stream_sentinel.sim.truth import AttackWindow, read_truth

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "stream_sentinel"]
DAY_MIN = 1440
TENANTS = 20
# (kind, tenant, minute of day 2, minutes): at the daily peak, where the
# volume gives the tenant's significance test the most to work with
ATTACKS = (("injection", "team-05", 840, 20), ("cost", "team-06", 960, 10))
TOML = """[alerting]
tick_seconds = 60
multiplier = 2.0
red_needed = 2
min_events = 50
significance = 0.001
clear_ticks = 3
lateness_seconds = 30

[learning]
days = 1
seasonality = "hour_of_day"

[tenants]
enabled = true
top_k = {top_k}
"""


def _sh(args: list[str]) -> None:
    print("+", " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def build_log(work: Path, rps: float, seed: int) -> tuple[Path, Path]:
    stem = f"2d_r{rps:g}" if seed == 1 else f"2d_r{rps:g}_s{seed}"
    log, truth = work / f"{stem}.jsonl.gz", work / f"{stem}.truth.json"
    if not log.exists() or not truth.exists():
        attacks = [f"--attack={k}:{t}@{DAY_MIN + m}+{d}" for k, t, m, d in ATTACKS]
        _sh(
            [
                *CLI, "simulate", "--hours", "48", "--seed", str(seed), "--rps", f"{rps:g}",
                "--tenants", str(TENANTS), *attacks, "--out", str(log), "--truth", str(truth),
            ]
        )  # fmt: skip
    return log, truth


def replay(work: Path, log: Path, top_k: int) -> Path:
    timeline = work / f"{log.name.split('.')[0]}.k{top_k}.timeline.jsonl"
    if not timeline.exists():
        config = work / f"tenants_k{top_k}.toml"
        config.write_text(TOML.format(top_k=top_k))
        partial = timeline.with_suffix(".partial")
        _sh(
            [
                *CLI, "replay", str(log), "--config", str(config),
                "--timeline", str(partial), "--no-progress",
            ]
        )  # fmt: skip
        partial.rename(timeline)
    return timeline


def global_during(
    window: AttackWindow, lines: Sequence[Mapping[str, Any]]
) -> tuple[float, float, int]:
    """The global signal over its effective baseline (largest, mean), and the
    global red ticks, over the ticks whose window holds attack events."""
    (signal,) = window.expected_signals
    ratios: list[float] = []
    reds = 0
    for line in lines:
        at = parse_at(line["at"])
        if not window.start < at <= window.end + window.signal_window_s:
            continue
        reading = line["signals"][signal]
        reds += signal in line.get("red", ())
        # the threshold is multiplier x the effective (floored) baseline, so
        # value / (threshold / 2) is "how many times the baseline"
        if reading["value"] is not None and reading["threshold"]:
            ratios.append(2.0 * reading["value"] / reading["threshold"])
    return max(ratios, default=0.0), sum(ratios) / max(len(ratios), 1), reds


def report_rows(label: str, report: ScoreReport, lines: Sequence[Mapping[str, Any]]) -> list[str]:
    tenants = report.tenants
    if tenants is None:
        return [f"| {label} | no tenants in the timeline | | | | | |"]
    rows = []
    for a in tenants.attacks:
        w = a.window
        delay = "missed" if a.delay_s is None else f"{a.delay_s:.0f} s ({a.delay_s / 60:.1f} ticks)"
        largest, mean, reds = global_during(w, lines)
        rows.append(
            f"| {label} | {w.name} | {delay} | {a.worst_status} "
            f"| {mean:.2f}x / {largest:.2f}x | {reds} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="logs and timelines go here")
    parser.add_argument("--rps", type=float, nargs="*", default=[60.0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=20)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(
        "| log | tenant attack | found per tenant after | worst tenant status "
        "| global signal mean / max (x its baseline) | global red ticks |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    summaries = []
    for rps in args.rps:
        log, truth_path = build_log(args.dir, rps, args.seed)
        lines = list(read_timeline(replay(args.dir, log, args.top_k)))
        start = parse_at(lines[0]["at"])
        cut = start - start % 86400 + 86400  # midnight starting day 2
        day2 = [line for line in lines if parse_at(line["at"]) >= cut]
        report = score(read_truth(truth_path), day2)
        label = log.name.split(".")[0]
        for row in report_rows(label, report, day2):
            print(row, flush=True)
        t = report.tenants
        if t is not None:
            summaries.append(
                f"{label}: day 2 tenant entries {t.entries} (normal {t.normal_entries}): "
                f"false critical {t.false_critical}, false warning {t.false_warning}, "
                f"held {t.held_entries}; first false: "
                f"{', '.join(f'{at} {name}' for at, name in t.false_alarms[:5]) or '-'}. "
                f"Global: false critical {report.false_critical}, false warning "
                f"{report.false_warning} of {report.normal_ticks} normal ticks."
            )
    print()
    for line in summaries:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
