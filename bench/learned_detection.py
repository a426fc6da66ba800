"""Detection with learned baselines against static ones, on simulated logs.

    .venv/bin/python bench/learned_detection.py --dir /tmp/bl_bench \\
        [--seeds-2d 1 2 3] [--seeds-8d 1] [--only 2d|8d]

For each log (built once with ``stream-sentinel simulate``; attacks only on
the last day, after learning has ended) it replays the log with the static
baselines of ``examples/sentinel.toml`` and with no static baselines,
learning ``days`` (1 for 2-day logs, 7 for 8-day logs) with seasonality
``none`` and ``hour_of_day``, each with ``--timeline``; then scores the ticks
of the last day (the day after learning) against the truth file with
``stream_sentinel.sim.score`` (what ``stream-sentinel score`` prints) and
prints one markdown table: attacks found, detection delay per attack, false
critical and false warning ticks. Replays and timelines are cached in
``--dir``; delete a file to redo it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stream_sentinel.sim.score import parse_at, read_timeline, score
from stream_sentinel.sim.truth import read_truth

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "stream_sentinel"]
DAY_MIN = 1440
# (kind, minute of the last day, minutes): the six-attack suite, spread over the day
LAST_DAY_ATTACKS = (
    ("injection", 90, 20),
    ("jailbreak", 330, 20),
    ("dos", 570, 15),
    ("subtle_injection", 850, 45),  # 14:10 UTC, near the daily peak
    ("cost", 1050, 15),
    ("injection_jailbreak", 1290, 20),
)
LEARNED_TOML = """[alerting]
tick_seconds = 60
multiplier = 2.0
red_needed = 2
min_events = 50
significance = 0.001
clear_ticks = 3
lateness_seconds = 30

[learning]
days = {days}
seasonality = "{seasonality}"
"""


@dataclass(frozen=True)
class Run:
    log: Path
    truth: Path
    days: int  # of the log
    mode: str  # static | none | hour_of_day


def _sh(args: list[str]) -> None:
    print("+", " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def build_log(work: Path, days: int, seed: int) -> tuple[Path, Path]:
    log = work / f"{days}d_s{seed}.jsonl.gz"
    truth = work / f"{days}d_s{seed}.truth.json"
    if not log.exists() or not truth.exists():
        offset = (days - 1) * DAY_MIN
        attacks = [f"--attack={k}@{offset + m}+{d}" for k, m, d in LAST_DAY_ATTACKS]
        _sh(
            [
                *CLI,
                "simulate",
                "--hours",
                str(24 * days),
                "--seed",
                str(seed),
                *attacks,
                "--out",
                str(log),
                "--truth",
                str(truth),
            ]
        )
    return log, truth


def config_for(work: Path, run: Run) -> Path:
    if run.mode == "static":
        return ROOT / "examples" / "sentinel.toml"
    path = work / f"learn_{run.days - 1}d_{run.mode}.toml"
    path.write_text(LEARNED_TOML.format(days=run.days - 1, seasonality=run.mode))
    return path


def replay(work: Path, run: Run) -> Path:
    timeline = work / f"{run.log.name.split('.')[0]}.{run.mode}.timeline.jsonl"
    if not timeline.exists():
        partial = timeline.with_suffix(".partial")
        _sh(
            [
                *CLI,
                "replay",
                str(run.log),
                "--config",
                str(config_for(work, run)),
                "--timeline",
                str(partial),
                "--no-progress",
            ]
        )
        partial.rename(timeline)
    return timeline


def row(run: Run, timeline: Path) -> str:
    lines = list(read_timeline(timeline))
    start = parse_at(lines[0]["at"])
    cut = start - start % 86400 + (run.days - 1) * 86400  # midnight starting the last day
    last_day = [line for line in lines if parse_at(line["at"]) >= cut]
    truth = read_truth(run.truth)
    report = score(truth, last_day)
    found = sum(a.detected_at is not None for a in report.attacks)
    holds = report.held_ticks  # the hysteresis still holding an attack's red
    delays = " ".join("miss" if a.delay_s is None else f"{a.delay_s:.0f}" for a in report.attacks)
    learning = "static" if run.mode == "static" else f"{run.days - 1}d {run.mode}"
    return (
        f"| {run.log.name.split('.')[0]} | {learning} | {found}/{len(report.attacks)} "
        f"| {delays} | {report.false_critical} | {report.false_warning} | {holds} "
        f"| {report.normal_ticks} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="logs and timelines go here")
    parser.add_argument("--seeds-2d", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--seeds-8d", type=int, nargs="*", default=[1])
    parser.add_argument("--modes", nargs="*", default=["static", "none", "hour_of_day"])
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    for days, seeds in ((2, args.seeds_2d), (8, args.seeds_8d)):
        for seed in seeds:
            log, truth = build_log(args.dir, days, seed)
            runs += [Run(log, truth, days, mode) for mode in args.modes]
    print(
        "| log | baselines | attacks found | delay per attack (s) | false critical "
        "| false warning | held after an attack | normal ticks |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        print(row(run, replay(args.dir, run)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
