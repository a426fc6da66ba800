"""Our ingestion against a peer: a Quix Streams application, both exactly-once.

    eval "$(scripts/services start)"
    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/peer_quix.py [--events N] [--rounds R] [--partitions P]

Needs the real broker and Redis. Fills a private request/response topic pair
as ``bench/ingest.py`` does (same generator, keys, seed and topic setup),
then, alternating for R rounds, each from the beginning with fresh consumer
groups:

(a) ours: ``KafkaIngest`` -> ``RedisStore``, as the ``run`` verb wires them
    (``bench/ingest.py``'s ``ours``), exactly-once: counts and offsets in one
    atomic Redis write;
(b) Quix Streams (``processing_guarantee="exactly-once"``): per topic a
    StreamingDataFrame with a 60 s tumbling window per message key (user id)
    on the event's ``ts``, aggregating requests and blocked, or responses,
    safe and cost (nano-USD, by ``contract.Pricing``, the same rule as ours);
    closed windows are summed per minute in this process. Its state is
    RocksDB with changelog topics (Kafka transactions), created by Quix.

Quix runs in this process, after ours has finished (never at the same time).
CPU time is ``time.process_time()`` of the process over a round, so it
includes librdkafka's C threads on Quix's side; ours is one Python thread.
A round's clock starts at partition assignment (ours) or at the first
message Quix hands the dataframe (it has no assignment hook of its own), and
stops when the last of the N events is counted: ours when its batch is in
Redis, Quix's when ``Application.run`` returns after its final checkpoint
(transaction commit). The time from its N-th message to that return is
printed too.

Every round checks the two agree: for each minute that all of Quix's
partitions have closed, requests, blocked, responses, safe, cost and every
user's request count equal what ours holds in Redis. Topics (including
Quix's changelogs), state dirs and Redis keys are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from ingest import (
    Round,
    bench_config,
    create_topics,
    delete_topics,
    drop_keys,
    env,
    fill,
    ours,
)

try:
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum
except ImportError:
    raise SystemExit(
        "bench/peer_quix.py needs the bench extra: pip install -e '.[bench]'"
    ) from None

from stream_sentinel.config import Config
from stream_sentinel.contract import ModelPrice, Pricing, safe_from_score
from stream_sentinel.model import WindowCounts
from stream_sentinel.store.base import Store
from stream_sentinel.store.build import open_storage
from stream_sentinel.wiring import build_kafka_settings, storage_settings

MINUTE_MS = 60_000
Guarantee = Literal["exactly-once", "at-least-once"]
GRACE_MS = 5_000  # a partition's events are nearly time-ordered; a little slack


@dataclass
class Minute:
    requests: int = 0
    blocked: int = 0
    responses: int = 0
    safe: int = 0
    cost_nanousd: int = 0
    cost_unknown: int = 0
    users: Counter[str] = field(default_factory=Counter)

    def counts(self) -> WindowCounts:
        return WindowCounts(
            self.requests,
            self.blocked,
            self.responses,
            self.safe,
            self.cost_nanousd,
            self.cost_unknown,
        )


@dataclass
class QuixRun:
    result: Round
    minutes: dict[int, Minute]  # minute start (Unix s) -> closed windows summed
    tail_s: float  # from the N-th message to run() returning (final commit, close)


def _event_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return int(value["ts"] * 1000)


def quix(
    bootstrap: str,
    topics: dict[str, str],
    events: int,
    cfg: Config,
    group: str,
    guarantee: Guarantee = "exactly-once",
) -> QuixRun:
    result = Round()
    minutes: dict[int, Minute] = {}
    processed_at = [0.0]
    pricing = Pricing(
        {
            model: ModelPrice(p.prompt_per_1k, p.completion_per_1k)
            for model, p in cfg.ingest.prices.items()
        }
    )
    threshold = cfg.ingest.safety_threshold
    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,
        state_dir=state_dir,
        loglevel="WARNING",
    )

    def seen(_value: Any) -> None:
        if not result.started:
            result.started = time.perf_counter()
        result.events += 1
        if result.events == events:
            processed_at[0] = time.perf_counter()
            app.stop()  # the loop ends after this message, then commits

    def minute(window: dict[str, Any]) -> Minute:
        start = window["start"] // 1000
        found = minutes.get(start)
        if found is None:
            found = minutes[start] = Minute()
        return found

    def add_requests(window: dict[str, Any], key: str, _ts: int, _headers: Any) -> None:
        into = minute(window)
        into.requests += window["requests"]
        into.blocked += window["blocked"]
        into.users[key] += window["requests"]

    def add_responses(window: dict[str, Any], key: str, _ts: int, _headers: Any) -> None:
        into = minute(window)
        into.responses += window["responses"]
        into.safe += window["safe"]
        into.cost_nanousd += window["cost_nanousd"]
        into.cost_unknown += window["responses"] - window["costed"]

    def response_row(value: dict[str, Any]) -> dict[str, Any]:
        safe = value.get("safe")
        if safe is None:
            safe = safe_from_score(value["safety_score"], threshold)
        cost = pricing.nanousd(
            value.get("cost_usd"),
            value.get("model"),
            value.get("prompt_tokens"),
            value.get("completion_tokens"),
        )
        return {"safe": int(safe), "cost": cost or 0, "costed": int(cost is not None)}

    def topic(name: str) -> Any:
        return app.topic(
            name,
            value_deserializer="json",
            key_deserializer="str",
            timestamp_extractor=_event_ms,
        )

    requests = app.dataframe(topic(topics["request"]))
    requests = requests.update(seen).apply(lambda v: {"blocked": int(v["blocked"])})
    requests = (
        requests.tumbling_window(MINUTE_MS, grace_ms=GRACE_MS)
        .agg(requests=Count(), blocked=Sum("blocked"))
        .final(closing_strategy="partition")
    )
    requests.update(add_requests, metadata=True)

    responses = app.dataframe(topic(topics["response"]))
    responses = responses.update(seen).apply(response_row)
    responses = (
        responses.tumbling_window(MINUTE_MS, grace_ms=GRACE_MS)
        .agg(
            responses=Count(),
            safe=Sum("safe"),
            cost_nanousd=Sum("cost"),
            costed=Sum("costed"),
        )
        .final(closing_strategy="partition")
    )
    responses.update(add_responses, metadata=True)
    try:
        app.run()
        result.finished = time.perf_counter()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if result.events != events:
        raise SystemExit(f"Quix stopped after {result.events} of {events} events")
    return QuixRun(result, minutes, result.finished - processed_at[0])


async def read_minutes(store: Store, starts: list[int]) -> dict[int, Minute]:
    """What ``store`` holds for each minute of ``starts``."""
    minutes: dict[int, Minute] = {}
    for start in starts:
        counts = await store.window(start, start + 60)
        users = await store.top_users(start, start + 60, 1_000_000)
        minutes[start] = Minute(
            counts.requests,
            counts.blocked,
            counts.responses,
            counts.safe,
            counts.cost_nanousd,
            counts.cost_unknown,
            Counter(dict(users)),
        )
    return minutes


def closed_minutes(peer: QuixRun) -> list[int]:
    """Minutes every partition has closed: all but the newest few (the
    partitions' clocks are within seconds of each other on this fill)."""
    if not peer.minutes:
        return []
    newest = max(peer.minutes)
    return sorted(m for m in peer.minutes if m + 60 + GRACE_MS // 1000 + 60 <= newest)


def compare(peer: QuixRun, mine: dict[int, Minute]) -> int:
    for start, theirs in mine.items():
        quix_minute = peer.minutes[start]
        if theirs.counts() != quix_minute.counts() or theirs.users != quix_minute.users:
            raise SystemExit(
                f"minute {start}: ours {theirs.counts()} ({len(theirs.users)} users),"
                f" Quix {quix_minute.counts()} ({len(quix_minute.users)} users)"
            )
    return len(mine)


async def drop_group_topics(bootstrap: str, group: str) -> None:
    """Quix's changelog topics carry the consumer group in their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if group in t]
    finally:
        await admin.close()
    if names:
        await delete_topics(bootstrap, names)


async def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # a fresh store rebuilds every partition from the start: those warnings are noise
    for name in ("stream_sentinel.kafka.source", "stream_sentinel.kafka.partitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--quix-guarantee",
        choices=("exactly-once", "at-least-once"),
        default="exactly-once",
        help="at-least-once: how much of Quix's time its transactions take",
    )
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1 or args.partitions < 1:
        raise SystemExit("--events, --rounds and --partitions must be positive")
    bootstrap, redis_url = env("KAFKA_BOOTSTRAP_SERVERS"), env("REDIS_URL")

    run = uuid.uuid4().hex[:8]
    topics = {"request": f"bench.requests.{run}", "response": f"bench.responses.{run}"}
    names = list(topics.values())
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    await create_topics(bootstrap, names, args.partitions)
    mine_rounds: list[Round] = []
    peer_rounds: list[QuixRun] = []
    try:
        oldest = await fill(bootstrap, topics, args.events, "contract")
        print(f"filled {names} ({args.partitions} partitions each): {args.events:,} events")
        for n in range(1, args.rounds + 1):
            cfg = bench_config(bootstrap, redis_url, topics, f"{run}-{n}")
            group = f"bench-quix-{run}-{n}"
            # Quix first in odd rounds, ours first in even ones
            order = ("quix", "ours") if n % 2 else ("ours", "quix")
            peer: QuixRun | None = None
            mine: Round | None = None
            try:
                for side in order:
                    cpu = time.process_time()
                    if side == "quix":
                        peer = quix(bootstrap, topics, args.events, cfg, group, args.quix_guarantee)
                        peer.result.cpu_s = time.process_time() - cpu
                    else:
                        mine = await ours(cfg, build_kafka_settings(cfg), args.events, oldest)
                        mine.cpu_s = time.process_time() - cpu
                assert peer is not None and mine is not None
                async with open_storage(storage_settings(cfg)) as storage:
                    held = await read_minutes(storage.store, closed_minutes(peer))
                checked = compare(peer, held)
            finally:
                await drop_keys(redis_url, cfg.redis.key_prefix)
                await drop_group_topics(bootstrap, group)
            mine_rounds.append(mine)
            peer_rounds.append(peer)
            q = peer.result
            print(
                f"round {n} ({' then '.join(order)}): ours {mine.rate:>9,.0f} ev/s"
                f"   Quix {q.rate:>9,.0f} ev/s   ratio {mine.rate / q.rate:.2f}"
                f"   CPU {mine.cpu_us_per_event:.2f} vs {q.cpu_us_per_event:.2f} us/event"
                f"   (Quix: {q.finished - q.started:.1f}s, {peer.tail_s:.2f}s final commit;"
                f" {checked} minutes equal)",
                flush=True,
            )
    finally:
        await delete_topics(bootstrap, names)
    best_ours = max(r.rate for r in mine_rounds)
    best_quix = max(p.result.rate for p in peer_rounds)
    ratios = [r.rate / p.result.rate for r, p in zip(mine_rounds, peer_rounds, strict=True)]
    cpu_ours = min(r.cpu_us_per_event for r in mine_rounds)
    cpu_quix = min(p.result.cpu_us_per_event for p in peer_rounds)
    print(f"best of {args.rounds}:")
    quix_label = f"Quix Streams ({args.quix_guarantee}, RocksDB):"
    print(f"  {'ours, KafkaIngest -> Redis (exactly-once):':<45}{best_ours:>9,.0f} events/s")
    print(f"  {quix_label:<45}{best_quix:>9,.0f} events/s")
    print(f"  {'ratio ours / Quix:':<45}{best_ours / best_quix:.2f}")
    print(f"  {'median of round ratios:':<45}{statistics.median(ratios):.2f}")
    print(f"  CPU per event: ours {cpu_ours:.2f} us, Quix {cpu_quix:.2f} us")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
