"""Replay speed against a bare read-and-parse loop over the same log.

    .venv/bin/python bench/replay.py [--events N] [--rounds R] [--config FILE]
                                     [--shape contract|producer]

Generates (once; cached outside git) an N-event ``.jsonl.gz`` with
``stream_sentinel.sim.simulate``, then times, alternating for R rounds:

(a) a bare loop that only gunzips the file, splits lines and ``orjson.loads``
    each one: the floor any Python replay of this file pays;
(b) ``stream_sentinel.replay.replay`` with the embedded ``MemoryStore``, built
    as ``stream-sentinel replay`` builds it, without timeline or report
    (``.gz`` decompressed by isal in the replaying thread, as the verb does;
    the bare loop keeps Python's gzip module, the floor it always measured).

Prints events/s (wall clock and CPU) for each round, the best of each and
their ratio, and the median of the rounds' ratios. The machine may be
shared: the best round is the least disturbed one, and CPU seconds show how
much of a round was spent waiting for a core.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from shapes import SHAPES, shaped

from stream_sentinel.baselines import build_baselines
from stream_sentinel.config import Config, load_config
from stream_sentinel.evaluate import Evaluator
from stream_sentinel.ingest import DeadLetter
from stream_sentinel.model import Tick
from stream_sentinel.replay import ReplaySummary, replay
from stream_sentinel.sim.simulate import default_suite, simulate, write_log
from stream_sentinel.store.build import open_storage
from stream_sentinel.wiring import build_rules, storage_settings

START = 1_793_404_800.0  # a Monday 00:00 UTC, as the simulate verb's default
SEED = 1
BASE_RPS = 20.0  # simulate's default: ~25-55 events/s over the day
# DESIGN.md's static baselines: the "default config with static baselines" of issue 5
STATIC = {
    "SENTINEL_BASELINES_BLOCKED_PCT": "0.1",
    "SENTINEL_BASELINES_SAFETY_PCT": "99.5",
    "SENTINEL_BASELINES_TOP_USER_RPS": "5.0",
    "SENTINEL_BASELINES_SPEND_HOUR": "41.67",
}
BLOCK = 1 << 20


def cache_dir() -> Path:
    root = os.environ.get("STREAM_SENTINEL_CACHE") or Path.home() / ".cache" / "stream-sentinel"
    path = Path(root) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_log(events: int, shape: str) -> Path:
    """The cached log of ``events`` simulated events, generated when missing."""
    kind = "" if shape == "contract" else f"-{shape}"
    path = cache_dir() / f"replay-{events}-seed{SEED}-rps{BASE_RPS:g}{kind}.jsonl.gz"
    if path.exists():
        return path
    print(f"generating {events:,} events into {path} (once) ...", file=sys.stderr)
    days = 7.0  # more than enough: the stream is cut at ``events``
    stream, _ = simulate(
        start=START,
        duration_s=days * 86400,
        seed=SEED,
        base_rps=BASE_RPS,
        scenarios=default_suite(START, days),
    )
    partial = path.with_name(f"partial-{path.name}")  # still .gz: write_log compresses
    written = write_log(shaped(itertools.islice(stream, events), shape, SEED), partial)
    if written != events:
        raise SystemExit(f"simulate gave {written} events, wanted {events}")
    partial.replace(path)  # an interrupted run leaves no truncated cache behind
    return path


@dataclass(frozen=True)
class Timing:
    events: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.events / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.events / self.cpu_s


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (none today)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(run: Callable[[], int]) -> Timing:
    wall, cpu = time.perf_counter(), cpu_s()
    events = run()
    return Timing(events, time.perf_counter() - wall, cpu_s() - cpu)


def bare(path: Path) -> int:
    """Gunzip in blocks, split lines, parse each: nothing else."""
    loads = orjson.loads
    count = 0
    tail = b""
    with gzip.open(path, "rb") as f:
        while block := f.read(BLOCK):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if line:
                    loads(line)
                    count += 1
    if tail:
        loads(tail)
        count += 1
    return count


def ours(path: Path, cfg: Config) -> int:
    summary = asyncio.run(_replay(path, cfg))
    if summary.dead_lettered:
        raise SystemExit(f"{summary.dead_lettered} lines dead-lettered: not a clean benchmark")
    return summary.lines


async def _replay(path: Path, cfg: Config) -> ReplaySummary:
    # as commands.cmd_replay builds it for the embedded store, minus outputs
    def on_tick(tick: Tick) -> None:
        pass

    def on_dead(dead: DeadLetter) -> None:
        pass

    async with open_storage(storage_settings(cfg, redis_url="")) as storage:
        baselines = build_baselines(cfg, storage.history)
        evaluator = Evaluator(storage.store, build_rules(cfg), baselines)
        return await replay(
            [str(path)],
            cfg=cfg,
            store=storage.store,
            evaluator=evaluator,
            on_tick=on_tick,
            on_dead=on_dead,
        )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", help="TOML config (default: static baselines of DESIGN.md)")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="contract",
        help="producer: RFC 3339 ts and five extra fields per event (bench/shapes.py)",
    )
    args = parser.parse_args()

    cfg = load_config(args.config, {} if args.config else STATIC)
    path = ensure_log(args.events, args.shape)
    sys.stderr.flush()
    size = path.stat().st_size / 2**20
    print(f"log: {path} ({args.events:,} events, {size:.1f} MiB gzipped)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")

    bares: list[Timing] = []
    runs: dict[str, list[Timing]] = {"replay": []}
    rss_before = 0.0
    for round_no in range(1, args.rounds + 1):
        bares.append(timed(lambda: bare(path)))
        rss_before = rss_before or peak_rss_mib()
        runs["replay"].append(timed(lambda: ours(path, cfg)))
        b = bares[-1]
        print(f"round {round_no}: bare   {b.rate:>9,.0f} ev/s ({b.cpu_rate:>9,.0f}/s CPU)")
        for name, timings in runs.items():
            r = timings[-1]
            print(
                f"         {name:6s} {r.rate:>9,.0f} ev/s ({r.cpu_rate:>9,.0f}/s CPU)"
                f"   ratio {r.rate / b.rate:.2f}"
            )
    best_bare = max(bares, key=lambda t: t.rate)
    print(f"bare read + orjson.loads: {best_bare.rate:>9,.0f} events/s (best of {args.rounds})")
    for name, timings in runs.items():
        if {t.events for t in timings} != {t.events for t in bares}:
            raise SystemExit(f"{name} and the bare loop saw different numbers of events")
        label = "replay"
        best = max(timings, key=lambda t: t.rate)
        # each round runs the loops back to back: the median of the rounds'
        # ratios is steadier than best/best when one loop's speed swings more
        ratios = [r.rate / b.rate for b, r in zip(bares, timings, strict=True)]
        print(
            f"{label:24s}: {best.rate:>9,.0f} events/s (best of {args.rounds}),"
            f" best/best {best.rate / best_bare.rate:.2f},"
            f" median of round ratios {statistics.median(ratios):.2f},"
            f" CPU best/best {max(t.cpu_rate for t in timings) / best_bare.cpu_rate:.2f}"
        )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (before the first replay: {rss_before:.0f} MiB)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
