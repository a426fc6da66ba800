"""`stream-sentinel simulate`: synthetic traffic to a log file or to Kafka."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from ..config import Config
from ..sim.simulate import EXPECTED_SIGNALS, Scenario, default_suite, simulate, write_log
from ..sim.truth import write_truth

log = logging.getLogger(__name__)

# a Monday 00:00 UTC: a fixed default keeps `--seed` runs byte-identical
DEFAULT_START = 1_793_404_800.0
KAFKA_OUT = "kafka:"
KINDS = tuple(EXPECTED_SIGNALS)


def parse_attack(spec: str, start: float) -> Scenario:
    """``KIND@MINUTE+MINUTES``: e.g. ``injection_jailbreak@120+20``."""
    try:
        kind, _, rest = spec.partition("@")
        at, _, length = rest.partition("+")
        if kind not in KINDS:
            raise ValueError(f"unknown attack kind {kind!r} (one of {', '.join(KINDS)})")
        return Scenario(kind, start + float(at) * 60.0, float(length) * 60.0)
    except ValueError as exc:
        raise SystemExit(f"--attack {spec!r}: {exc} (expected KIND@MINUTE+MINUTES)") from None


def _scenarios(args: argparse.Namespace, start: float, duration_s: float) -> list[Scenario]:
    if args.no_attacks:
        return []
    if args.attack:
        return [parse_attack(spec, start) for spec in args.attack]
    return default_suite(start, days=duration_s / 86400.0)


async def simulate_command(args: argparse.Namespace, cfg: Config) -> int:
    duration_s = (args.hours * 3600.0) if args.hours else args.days * 86400.0
    if duration_s <= 0 or args.rps <= 0:
        log.error("duration and --rps must be positive")
        return 2
    if args.out == KAFKA_OUT:
        from .commands import require_topics

        topics = [cfg.kafka.request_topic, cfg.kafka.response_topic]
        if (code := await require_topics(cfg, topics, "simulate")) is not None:
            return code
    start = args.start if args.start is not None else DEFAULT_START
    events, truth = simulate(
        start=start,
        duration_s=duration_s,
        seed=args.seed,
        base_rps=args.rps,
        scenarios=_scenarios(args, start, duration_s),
    )
    meta = {"seed": args.seed, "start": start, "duration_s": duration_s, "base_rps": args.rps}
    if args.out == KAFKA_OUT:
        count = await _to_kafka(cfg, events)
    else:
        count = write_log(events, args.out)
    if args.truth:
        write_truth(truth, args.truth, meta=meta)
    print(f"simulated {count} events, {len(truth)} attacks -> {args.out}")
    for w in truth:
        signals = ",".join(w.expected_signals)
        print(f"  {w.name}: {w.start:.0f}..{w.end:.0f} expects {w.expected_status} on {signals}")
    return 0


async def _to_kafka(cfg: Config, events: Any) -> int:
    topics = {"request": cfg.kafka.request_topic, "response": cfg.kafka.response_topic}
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=10)
    await producer.start()
    count = 0
    try:
        pending = []
        for event in events:
            pending.append(
                await producer.send(
                    topics[event["type"]],
                    orjson.dumps(event),
                    key=str(event["user_id"]).encode(),
                )
            )
            count += 1
            if len(pending) >= 10_000:
                for fut in pending:
                    await fut
                pending.clear()
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return count
