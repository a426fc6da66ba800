"""The ``stream-sentinel`` command: one verb per job, all built from one Config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from ..config import ConfigError, load_config
from ..source_file import LogReadError

log = logging.getLogger("stream_sentinel")

EXIT_CONFIG = 2
EXIT_INPUT = 1  # a log that cannot be read (missing, truncated, corrupt)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream-sentinel", description=__doc__)
    p.add_argument("--log-level", default=os.environ.get("STREAM_SENTINEL_LOG_LEVEL", "INFO"))
    verbs = p.add_subparsers(dest="verb", required=True)

    run = verbs.add_parser("run", help="the live service: Kafka -> store -> evaluator -> outputs")
    run.add_argument("--config", help="TOML config (default: sentinel.toml if present)")

    rp = verbs.add_parser("replay", help="backtest recorded logs through the same pipeline")
    rp.add_argument("logs", nargs="+", metavar="LOG", help=".jsonl, .jsonl.gz or - for stdin")
    rp.add_argument("--config")
    redis = rp.add_mutually_exclusive_group()
    redis.add_argument(
        "--redis",
        metavar="URL",
        help="use this Redis instead of the embedded store; a password in it is visible to "
        "every user in the process list: prefer --redis-url-file or --redis-url-env",
    )
    redis.add_argument("--redis-url-file", metavar="FILE", help="like --redis, URL read from FILE")
    redis.add_argument(
        "--redis-url-env", metavar="VAR", help="like --redis, URL read from the variable VAR"
    )
    rp.add_argument("--timeline", metavar="FILE", help="write one JSON line per tick")
    rp.add_argument("--dead-letters", metavar="FILE", help="write rejected lines with reasons")
    rp.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    rp.add_argument("--learn-from", metavar="LOG", nargs="+", help="learn baselines first")
    rp.add_argument("--no-progress", action="store_true", help="never draw a progress bar")

    pr = verbs.add_parser("produce", help="write recorded logs into the Kafka topics")
    pr.add_argument("logs", nargs="+", metavar="LOG")
    pr.add_argument("--config")
    speed = pr.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, help="replay speed factor (1 = real time)")
    speed.add_argument("--max", action="store_true", help="as fast as possible (default)")
    pr.add_argument("--shift-to-now", action="store_true", help="move timestamps to now")

    sim = verbs.add_parser("simulate", help="synthetic traffic with labelled attacks")
    sim.add_argument("--out", required=True, help="log file (.jsonl/.jsonl.gz) or kafka:")
    sim.add_argument("--truth", help="write attack windows here")
    sim.add_argument("--days", type=float, default=2.0)
    sim.add_argument("--hours", type=float, help="duration in hours (overrides --days)")
    sim.add_argument("--start", type=float, help="Unix start time (default: a fixed date)")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--rps", type=float, default=20.0, help="mean request rate")
    sim.add_argument("--no-attacks", action="store_true")
    sim.add_argument(
        "--attack",
        action="append",
        metavar="KIND@MIN+MINUTES",
        help="place one attack (repeatable), e.g. injection_jailbreak@120+20; "
        "default: the six-attack suite spread over the run",
    )
    sim.add_argument("--config")

    sc = verbs.add_parser("score", help="score a timeline against a truth file")
    sc.add_argument("--truth", required=True)
    sc.add_argument("--timeline", required=True)
    sc.add_argument("--json", action="store_true", help="print JSON instead of a table")

    bl = verbs.add_parser("baseline", help="learn baselines from a recorded normal period")
    bl.add_argument("logs", nargs="+", metavar="LOG")
    bl.add_argument("--config")
    bl.add_argument("--seasonality", choices=["none", "hour_of_day"])
    bl.add_argument("--write", metavar="FILE", help="write the [baselines] section here")
    from . import bridge, record

    record.describe(
        verbs.add_parser("record", help="copy the live topics' events, by event time, into a log")
    )
    br = verbs.add_parser("bridge", help="receive a gateway's HTTP log posts and produce events")
    sources = br.add_subparsers(dest="source", required=True)
    bridge.describe(sources.add_parser("litellm", help="LiteLLM's generic_api logger posts"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.verb == "score":
            from .commands import cmd_score

            return cmd_score(args)
        cfg = load_config(getattr(args, "config", None), os.environ)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from . import commands

    handler = {
        "run": commands.cmd_run,
        "replay": commands.cmd_replay,
        "produce": commands.cmd_produce,
        "simulate": commands.cmd_simulate,
        "baseline": commands.cmd_baseline,
        "record": commands.cmd_record,
        "bridge": commands.cmd_bridge,
    }[args.verb]
    try:
        return asyncio.run(handler(args, cfg))
    except LogReadError as exc:
        print(f"error: cannot read {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
