"""`stream-sentinel simulate`: synthetic traffic to a log file or to Kafka."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import replace
from typing import Any

import orjson

from ..config import Config
from ..kafka.clients import start_producer
from ..sim.simulate import (
    EXPECTED_SIGNALS,
    Scenario,
    check_tenant,
    default_suite,
    simulate,
    simulation_tenants,
    write_log,
)
from ..sim.tenants import TenantPlan
from ..sim.truth import write_truth
from .exits import EXIT_CONFIG

log = logging.getLogger(__name__)

# a Monday 00:00 UTC: a fixed default keeps `--seed` runs byte-identical
DEFAULT_START = 1_793_404_800.0
KAFKA_OUT = "kafka:"
KINDS = tuple(EXPECTED_SIGNALS)
# more tenants than users would leave some empty; the default pool has 2,000 users
MAX_TENANTS = 1000


def tenant_plan(seed: int, rps: float, tenants: int) -> TenantPlan | None:
    """The tenants ``simulate`` will build for these arguments (to check
    ``--attack`` names against them before simulating)."""
    if not tenants:
        return None
    return simulation_tenants(seed=seed, base_rps=rps, tenants=tenants)


class AttackSpecError(ValueError):
    """A bad ``--attack``: its message is the whole one-line explanation."""


def parse_attack(spec: str, start: float, tenants: TenantPlan | None = None) -> Scenario:
    """``KIND[:TENANT]@MINUTE+MINUTES``: e.g. ``injection_jailbreak@120+20`` or
    ``cost:team-05@1530+10`` (aimed at one of the simulated ``tenants``)."""
    try:
        head, _, rest = spec.partition("@")
        kind, colon, tenant = head.partition(":")
        at, plus, length = rest.partition("+")
        if kind not in KINDS:
            raise ValueError(f"unknown attack kind {kind!r} (one of {', '.join(KINDS)})")
        if not plus:
            raise ValueError("no +MINUTES")
        minute, minutes = float(at), float(length)
        if not (math.isfinite(minute) and math.isfinite(minutes)) or minutes <= 0:
            raise ValueError("MINUTE must be a number and MINUTES a positive one")
        scenario = Scenario(kind, start + minute * 60.0, minutes * 60.0)
        if colon:
            scenario = replace(scenario, tenant=tenant)
            check_tenant(scenario, tenants)
        return scenario
    except ValueError as exc:
        raise AttackSpecError(
            f"--attack {spec!r}: {exc} (expected KIND[:TENANT]@MINUTE+MINUTES)"
        ) from None


def _scenarios(
    args: argparse.Namespace, start: float, duration_s: float, tenants: TenantPlan | None
) -> list[Scenario]:
    if args.no_attacks:
        return []
    if args.attack:
        return [parse_attack(spec, start, tenants) for spec in args.attack]
    return default_suite(start, days=duration_s / 86400.0)


async def simulate_command(args: argparse.Namespace, cfg: Config) -> int:
    duration_s = (args.hours * 3600.0) if args.hours else args.days * 86400.0
    if duration_s <= 0 or args.rps <= 0:
        log.error("duration and --rps must be positive")
        return 2
    if not 0 <= args.tenants <= MAX_TENANTS:
        print(f"error: --tenants must be within 0..{MAX_TENANTS}", file=sys.stderr)
        return EXIT_CONFIG
    start = args.start if args.start is not None else DEFAULT_START
    plan = tenant_plan(args.seed, args.rps, args.tenants)
    try:
        # bad --attack specs stop here, before anything is written or connected
        scenarios = _scenarios(args, start, duration_s, plan)
    except AttackSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.out == KAFKA_OUT:
        from .commands import require_topics

        topics = [cfg.kafka.request_topic, cfg.kafka.response_topic]
        if (code := await require_topics(cfg, topics, "simulate")) is not None:
            return code
    events, truth = simulate(
        start=start,
        duration_s=duration_s,
        seed=args.seed,
        base_rps=args.rps,
        scenarios=scenarios,
        tenants=args.tenants,
    )
    meta: dict[str, Any] = {
        "seed": args.seed,
        "start": start,
        "duration_s": duration_s,
        "base_rps": args.rps,
    }
    if args.tenants:
        meta["tenants"] = args.tenants
    if args.out == KAFKA_OUT:
        count = await _to_kafka(cfg, events)
    else:
        count = write_log(events, args.out)
    if args.truth:
        write_truth(truth, args.truth, meta=meta)
    print(f"simulated {count} events, {len(truth)} attacks -> {args.out}")
    for w in truth:
        signals = ",".join(w.expected_signals)
        whom = "" if w.tenant is None else f" of {w.tenant}"
        print(
            f"  {w.name}: {w.start:.0f}..{w.end:.0f} expects {w.expected_status} on {signals}{whom}"
        )
    return 0


async def _to_kafka(cfg: Config, events: Any) -> int:
    topics = {"request": cfg.kafka.request_topic, "response": cfg.kafka.response_topic}
    producer = await start_producer(cfg.kafka, linger_ms=10)
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
