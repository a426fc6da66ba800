"""Kafka -> Redis ingestion speed against a bare aiokafka consumer.

    eval "$(scripts/services start)"
    .venv/bin/python bench/ingest.py [--events N] [--rounds R] [--partitions P]
                                     [--shape contract|producer] [--stock-records]

Needs the real broker and Redis (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL). Creates
a private request/response topic pair (P partitions each), fills it with N
contract events from ``stream_sentinel.sim.simulate`` (keyed by user_id, event
times in the last 30 minutes so the live range check takes them all), then
times, alternating for R rounds, each from the beginning with a fresh
consumer group:

(a) a bare ``AIOKafkaConsumer.getmany`` loop that only counts messages, with
    the same fetch settings as ours (``max_partition_fetch_bytes``, and the
    ``max_records`` of ours' getmany calls: ``ingest.fetch_step_records``);
(b) our ingestion: ``KafkaIngest`` with a ``RedisStore`` (fresh key prefix)
    and ``build_processor(cfg)``, as the ``run`` verb wires them;
(c) the naive consumer of ``bench/naive.py`` (one awaited Redis command per
    event, as the seed did) over the first ``--naive-events`` of the topics:
    its rate is per event, so a shorter run compares fairly.

A round's clock starts when the group has assigned the partitions (joining a
group costs the same for both and is not ingestion) and stops when the last
of the N messages is counted: in (b), when its batch is written to Redis.
Prints events/s for both, the best of each and their ratio, the median of
the rounds' ratios (each round runs both loops back to back), and checks that
Redis holds exactly N counted events. Topics and keys are removed afterwards.

``--fetch-steps 500,1000,20000`` runs (a) and (b) once per getmany size in
each round, both loops with that size: the bare loop's speed depends on it
(its records live longer in larger steps and cost the garbage collector more).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_options import kafka_options, security_env
from naive import NaiveRun, naive
from redis import asyncio as aioredis
from shapes import SHAPES, producer_shaped

from stream_sentinel.config import Config, load_config
from stream_sentinel.ingest import Processed
from stream_sentinel.kafka.source import KafkaIngest, KafkaSettings
from stream_sentinel.sim.simulate import simulate
from stream_sentinel.store.base import PartitionId, ReadAhead
from stream_sentinel.store.build import Storage, open_storage
from stream_sentinel.wiring import build_kafka_settings, build_processor, storage_settings

SEED = 1
SPAN_S = 1800.0  # event times cover the last 30 minutes before the fill


@dataclass
class Round:
    events: int = 0
    started: float = 0.0
    finished: float = 0.0
    store_s: float = 0.0  # of which waiting for store.apply
    cpu_s: float = 0.0  # this process's CPU time over the whole round

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6

    @property
    def rate(self) -> float:
        return self.events / (self.finished - self.started)


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f'{name} is not set: eval "$(scripts/services start)" first')
    return value


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names], timeout_ms=30_000)
        async with asyncio.timeout(30):
            for name in names:  # wait until every partition has a leader
                while True:
                    (found,) = await admin.describe_topics([name])
                    led = [p for p in found["partitions"] if p["leader"] >= 0]
                    if found["error_code"] == 0 and len(led) == partitions:
                        break
                    await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(list(names), timeout_ms=30_000)
    finally:
        await admin.close()


async def fill(bootstrap: str, topics: dict[str, str], events: int, shape: str) -> float:
    """Produce ``events`` simulated events (as ``shape`` has them); returns the ts
    of the oldest."""
    start = time.time() - SPAN_S
    # ~2 events per request, times a diurnal factor >= 0.55: at least 1.1 x
    # ``events`` in the span at any hour; the stream is cut at ``events``
    rps = events / SPAN_S
    stream, _ = simulate(start=start, duration_s=SPAN_S, seed=SEED, base_rps=rps)
    producer = AIOKafkaProducer(
        **kafka_options(bootstrap), linger_ms=20, max_batch_size=256 * 1024, acks=1
    )
    await producer.start()
    sent = 0
    oldest = float("inf")
    rng = random.Random(SEED)
    try:
        pending: list[asyncio.Future[Any]] = []
        for event in stream:
            if sent == events:
                break
            oldest = min(oldest, event["ts"])
            if shape == "producer":
                event = producer_shaped(event, rng)
            key = event["user_id"].encode()
            pending.append(await producer.send(topics[event["type"]], orjson.dumps(event), key=key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    if sent != events:
        raise SystemExit(f"simulate gave only {sent} events")
    return oldest


class _StartClock(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, result: Round) -> None:
        self.result = result

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned and not self.result.started:
            self.result.started = time.perf_counter()


async def bare(
    bootstrap: str, topics: Sequence[str], events: int, settings: KafkaSettings
) -> Round:
    """The fetch settings are ours (``settings``), so both loops fetch alike."""
    result = Round()
    consumer = AIOKafkaConsumer(
        **kafka_options(bootstrap),
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
    )
    await consumer.start()
    try:
        consumer.subscribe(topics=list(topics), listener=_StartClock(result))
        while result.events < events:
            batches = await consumer.getmany(timeout_ms=300, max_records=settings.fetch_records)
            for records in batches.values():
                result.events += len(records)
        result.finished = time.perf_counter()
    finally:
        await consumer.stop()
    return result


class _Counter:
    """IngestObserver: starts the clock on assignment, stops it at ``events``."""

    def __init__(self, events: int, stop: asyncio.Event) -> None:
        self.result = Round()
        self.target = events
        self.stop = stop
        self.dead = 0

    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None:
        self.result.events += sum(processed.outcomes.values())
        self.result.store_s += store_seconds
        self.dead += len(processed.dead)
        if self.result.events >= self.target and not self.stop.is_set():
            self.result.finished = time.perf_counter()
            self.stop.set()

    def store_error(self, op: str) -> None:
        print(f"store error during {op}", file=sys.stderr)

    def lag(self, part: PartitionId, lag: int) -> None:
        pass

    def assignment_changed(
        self, assigned: Sequence[PartitionId], revoked: Sequence[PartitionId]
    ) -> None:
        if assigned and not self.result.started:
            self.result.started = time.perf_counter()


def bench_config(
    bootstrap: str, redis_url: str, topics: dict[str, str], run_id: str, *, lean: bool = True
) -> Config:
    return load_config(
        None,
        {
            **security_env(),
            "SENTINEL_INGEST_LEAN_RECORDS": "true" if lean else "false",
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SENTINEL_KAFKA_GROUP_ID": f"bench-ours-{run_id}",
            "SENTINEL_KAFKA_REQUEST_TOPIC": topics["request"],
            "SENTINEL_KAFKA_RESPONSE_TOPIC": topics["response"],
            "SENTINEL_KAFKA_DLQ_TOPIC": f"{topics['request']}.dlq",
            "SENTINEL_REDIS_URL": redis_url,
            "SENTINEL_REDIS_KEY_PREFIX": f"bench:{run_id}",
        },
    )


async def _leader(read_ahead: ReadAhead, stop: asyncio.Event) -> None:
    """A stand-in for the service's leader, which keeps the store's running
    window totals in place (``prepare`` after each tick): with them, every
    batch also adds to the 5-minute and 1-hour totals, as it does in service.
    Once a second (the service does it once a tick): the first call that finds
    partitions creates them, later ones find them in place."""
    while not stop.is_set():
        at = (int(time.time()) // 60 + 1) * 60
        await read_ahead.prepare([(at - 300, at, True), (at - 3600, at, False)])
        await asyncio.sleep(1.0)


async def ours(cfg: Config, settings: KafkaSettings, events: int, oldest: float) -> Round:
    async with open_storage(storage_settings(cfg)) as storage:
        return await _ours(cfg, storage, settings, events, oldest)


async def _ours(
    cfg: Config, storage: Storage, settings: KafkaSettings, events: int, oldest: float
) -> Round:
    store, read_ahead = storage.store, storage.read_ahead
    assert read_ahead is not None, "the benchmark runs on Redis"
    stop = asyncio.Event()
    counter = _Counter(events, stop)
    ingest = KafkaIngest(
        settings,
        store,
        build_processor(cfg),
        observer=counter,
    )
    leader = asyncio.create_task(_leader(read_ahead, stop))
    await ingest.start()
    if ingest.lean != settings.lean_records:
        await ingest.stop()
        leader.cancel()
        raise SystemExit("aiokafka's record internals changed: lean records unavailable")
    try:
        await ingest.run(stop)
    finally:
        await ingest.stop()
        leader.cancel()
    if counter.dead:
        raise SystemExit(f"{counter.dead} events dead-lettered: not a clean benchmark")
    counts = await store.window(int(oldest) - 60, int(time.time()) + 60)
    if counts.requests + counts.responses != events:
        raise SystemExit(f"Redis holds {counts}, expected {events} events")
    return counter.result


async def drop_keys(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


async def main() -> int:
    # a fresh store rebuilds every partition from the start: that is the point
    # here, so the consumer's "rebuilding" warnings are noise
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stream_sentinel.kafka").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--naive-events", type=int, default=100_000, help="its rate is per event")
    parser.add_argument(
        "--fetch-steps",
        type=lambda text: [int(x) for x in text.split(",")],
        default=None,
        help="getmany sizes to run, comma-separated (default: the config's)",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="contract",
        help="producer: RFC 3339 ts and five extra fields per event (bench/shapes.py)",
    )
    parser.add_argument(
        "--stock-records",
        action="store_true",
        help="ours without kafka/records.py's patch (ingest.lean_records = false)",
    )
    args = parser.parse_args()
    bootstrap, redis_url = env("KAFKA_BOOTSTRAP_SERVERS"), env("REDIS_URL")

    run = uuid.uuid4().hex[:8]
    topics = {"request": f"bench.requests.{run}", "response": f"bench.responses.{run}"}
    names = list(topics.values())
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    await create_topics(bootstrap, names, args.partitions)
    try:
        began = time.perf_counter()
        oldest = await fill(bootstrap, topics, args.events, args.shape)
        took = time.perf_counter() - began
        print(f"filled {names} ({args.partitions} partitions each): {args.events:,} in {took:.0f}s")
        # getmany size -> (bare rounds, our rounds)
        by_step: dict[int, tuple[list[Round], list[Round]]] = {}
        naives: list[NaiveRun] = []
        for n in range(1, args.rounds + 1):
            cfg = bench_config(
                bootstrap, redis_url, topics, f"{run}-{n}", lean=not args.stock_records
            )
            steps = args.fetch_steps or [cfg.ingest.fetch_step_records]
            for step in steps:
                settings = dataclasses.replace(build_kafka_settings(cfg), fetch_records=step)
                prefix = f"{cfg.redis.key_prefix}-{step}"
                cfg_step = cfg.model_copy(
                    update={"redis": cfg.redis.model_copy(update={"key_prefix": prefix})}
                )
                try:
                    cpu = time.process_time()
                    b = await bare(bootstrap, names, args.events, settings)
                    b.cpu_s = time.process_time() - cpu
                    cpu = time.process_time()
                    r = await ours(cfg_step, settings, args.events, oldest)
                    r.cpu_s = time.process_time() - cpu
                finally:
                    await drop_keys(redis_url, prefix)
                by_step.setdefault(step, ([], []))
                by_step[step][0].append(b)
                by_step[step][1].append(r)
                print(
                    f"round {n}, step {step}: bare getmany {b.rate:>9,.0f} ev/s"
                    f"   ours {r.rate:>9,.0f} ev/s   ratio {r.rate / b.rate:.2f}"
                    f"   (ours: {r.finished - r.started:.1f}s, {r.store_s:.1f}s in store.apply;"
                    f" CPU {b.cpu_us_per_event:.2f} vs {r.cpu_us_per_event:.2f} us/event)",
                    flush=True,
                )
            try:
                n_events = min(args.naive_events, args.events)
                prefix = cfg.redis.key_prefix
                # the naive consumer reads a numeric ts only: producer shapes skip it
                if n_events > 0 and args.shape != "producer":
                    naives.append(await naive(bootstrap, redis_url, names, n_events, prefix=prefix))
            finally:
                await drop_keys(redis_url, cfg.redis.key_prefix)
    finally:
        await delete_topics(bootstrap, names)
    bares = [b for b_rounds, _ in by_step.values() for b in b_rounds]
    runs = [r for _, r_rounds in by_step.values() for r in r_rounds]
    for step, (b_rounds, r_rounds) in by_step.items():
        best_bare = max(b.rate for b in b_rounds)
        best_ours = max(r.rate for r in r_rounds)
        # on a shared machine wall time includes waiting for a core; CPU time
        # per event (this process only: not the broker's, not Redis's) does not
        cpu_bare = min(b.cpu_us_per_event for b in b_rounds)
        cpu_ours = min(r.cpu_us_per_event for r in r_rounds)
        print(f"step {step} (best of {args.rounds}):")
        print(f"  bare aiokafka getmany (count only): {best_bare:>9,.0f} events/s")
        print(f"  KafkaIngest -> RedisStore:          {best_ours:>9,.0f} events/s")
        print(f"  ratio ours / bare:                  {best_ours / best_bare:.2f}")
        ratios = [r.rate / b.rate for b, r in zip(b_rounds, r_rounds, strict=True)]
        print(f"  median of round ratios:             {statistics.median(ratios):.2f}")
        print(f"  CPU per event: bare {cpu_bare:.2f} us, ours {cpu_ours:.2f} us", end="")
        print(f" (ratio {cpu_bare / cpu_ours:.2f})")
    if len(by_step) > 1:
        best_bare = max(b.rate for b in bares)
        best_ours = max(r.rate for r in runs)
        print(f"fastest of all steps: bare {best_bare:,.0f}, ours {best_ours:,.0f}", end="")
        print(f" events/s (ratio {best_ours / best_bare:.2f})")
    best_ours = max(r.rate for r in runs)
    if naives:
        best_naive = max(x.rate for x in naives)
        print(
            f"naive, one Redis call per event:    {best_naive:>9,.0f} events/s"
            f" (best of {args.rounds})"
        )
        print(f"ratio ours (fastest) / naive:       {best_ours / best_naive:.1f} (target >= 20)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
