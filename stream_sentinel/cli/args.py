"""The command line: every verb and option, each with its help text (a test checks)."""

from __future__ import annotations

import argparse

CONFIG_HELP = "TOML config (default: $SENTINEL_CONFIG, else ./sentinel.toml if present)"


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def build_parser(version: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-sentinel",
        description="Watch an LLM application's event streams for abuse.",
        epilog="Exit codes: 0 done, 1 unreadable/unwritable file, 2 bad usage or config, "
        "3 server unreachable, 4 Kafka topic missing, 130 interrupted, 141 stdout closed.",
    )
    p.add_argument("--version", action="version", version=f"stream-sentinel {version}")
    p.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: [log] level / "
        "$SENTINEL_LOG_LEVEL, else INFO)",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="the live service: Kafka -> store -> evaluator -> outputs")
    _config(run)

    rp = verbs.add_parser("replay", help="backtest recorded logs through the same pipeline")
    rp.add_argument("logs", nargs="+", metavar="LOG", help=".jsonl, .jsonl.gz or - for stdin")
    _config(rp)
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
    pr.add_argument("logs", nargs="+", metavar="LOG", help=".jsonl, .jsonl.gz or - for stdin")
    _config(pr)
    speed = pr.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, help="replay speed factor (1 = real time)")
    speed.add_argument("--max", action="store_true", help="as fast as possible (default)")
    pr.add_argument("--shift-to-now", action="store_true", help="move timestamps to now")

    sim = verbs.add_parser("simulate", help="synthetic traffic with labelled attacks")
    sim.add_argument(
        "--out", required=True, help="log file (.jsonl/.jsonl.gz), or kafka: for the topics"
    )
    sim.add_argument("--truth", metavar="FILE", help="write the attack windows here (for score)")
    sim.add_argument("--days", type=float, default=2.0, help="duration in days (default 2)")
    sim.add_argument("--hours", type=float, help="duration in hours (overrides --days)")
    sim.add_argument("--start", type=float, help="Unix start time (default: a fixed date)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--rps", type=float, default=20.0, help="mean request rate (default 20)")
    sim.add_argument("--no-attacks", action="store_true", help="normal traffic only")
    sim.add_argument(
        "--tenants",
        type=int,
        default=0,
        metavar="N",
        help="put every user in one of N tenants (team-01..; 3 big at 25/20/15 %%, team-04.."
        "team-07 at 5 %%, the rest share 20 %%) and tag every event; default 0: no tenants",
    )
    sim.add_argument(
        "--attack",
        action="append",
        metavar="KIND[:TENANT]@MIN+MINUTES",
        help="place one attack (repeatable), e.g. injection_jailbreak@120+20, or aimed at "
        "one tenant (needs --tenants; injection, jailbreak or cost), e.g. "
        "injection:team-05@1530+20; default: the six-attack suite spread over the run",
    )
    _config(sim)

    sc = verbs.add_parser("score", help="score a timeline against a truth file")
    sc.add_argument("--truth", required=True, metavar="FILE", help="from simulate --truth")
    sc.add_argument("--timeline", required=True, metavar="FILE", help="from replay --timeline")
    sc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sc.add_argument(
        "--clear-ticks",
        type=int,
        default=3,
        metavar="N",
        help="the replay's [alerting] clear_ticks: a red is held N-1 ticks after an attack",
    )

    bl = verbs.add_parser("baseline", help="learn baselines from a recorded normal period")
    bl.add_argument("logs", nargs="+", metavar="LOG", help=".jsonl, .jsonl.gz or - for stdin")
    _config(bl)
    bl.add_argument(
        "--seasonality", choices=["none", "hour_of_day"], help="override [learning] seasonality"
    )
    bl.add_argument("--write", metavar="FILE", help="write the [baselines] section here")

    from . import bridge, record

    record.describe(
        verbs.add_parser("record", help="copy the live topics' events, by event time, into a log")
    )
    br = verbs.add_parser("bridge", help="receive a gateway's HTTP log posts and produce events")
    sources = br.add_subparsers(dest="source", required=True, metavar="SOURCE")
    bridge.describe(sources.add_parser("litellm", help="LiteLLM's generic_api logger posts"))

    tp = verbs.add_parser("topics", help="manage the Kafka topics the service uses")
    tp_verbs = tp.add_subparsers(dest="topics_verb", required=True, metavar="ACTION")
    create = tp_verbs.add_parser(
        "create",
        help="create the request, response, dead-letter and alerts topics (existing ones "
        "are left as they are)",
    )
    _config(create)
    create.add_argument(
        "--partitions", type=int, help="partitions of the request and response topics"
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        help="copies of each partition (default: [topics] replication_factor, else the "
        "broker's default)",
    )
    create.add_argument(
        "--retention-hours", type=int, help="retention of every topic, at least 2 hours"
    )
    return p
