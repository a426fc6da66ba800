"""The naive consumer baseline: one Redis round trip per event, as the seed did.

    eval "$(scripts/services start)"
    .venv/bin/python bench/naive.py [--events N] [--partitions P] [--compare]

``naive()`` is what ``bench/ingest.py`` compares ours against as "(b)": a
consumer group, ``getmany``, ``orjson.loads`` of each message, then one
awaited command per event: ``HINCRBY <prefix>:<bucket>:users <user_id> 1``
for a request, ``INCR <prefix>:<bucket>:responses`` for a response. No
batching, no Lua, no fencing, no offset commits.

Standalone, it creates a private topic pair (P partitions each), fills it
with N events using ``bench/ingest.py``'s helpers, times ``naive()`` from
the beginning and checks that Redis counted exactly N events. With
``--compare`` it also times ours (``bench/ingest.py``'s ``ours``) on the
same topics and prints the ratio. Topics and keys are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from redis import asyncio as aioredis

WIDTH = 60
BENCH = str(Path(__file__).resolve().parent)


@dataclass
class NaiveRun:
    events: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class _StartOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """Joining a group is not ingestion: the clock starts at the assignment."""

    def __init__(self, run: NaiveRun) -> None:
        self.run = run

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned and not self.run.started:
            self.run.started = time.perf_counter()


async def naive(
    bootstrap: str,
    redis_url: str,
    topics: Sequence[str],
    events: int,
    *,
    prefix: str,
    max_records: int = 500,
) -> NaiveRun:
    """Consume ``events`` messages from the start of ``topics``, one Redis call each."""
    run = NaiveRun()
    redis = aioredis.Redis.from_url(redis_url)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-naive-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.subscribe(topics=list(topics), listener=_StartOnAssign(run))
        while run.events < events:
            batches = await consumer.getmany(timeout_ms=300, max_records=max_records)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    bucket = int(event["ts"] // WIDTH) * WIDTH
                    if event["type"] == "request":
                        await redis.hincrby(f"{prefix}:{bucket}:users", event["user_id"], 1)
                    else:
                        await redis.incr(f"{prefix}:{bucket}:responses")
                    run.events += 1
        run.finished = time.perf_counter()
    finally:
        await consumer.stop()
        await redis.aclose()
    return run


async def counted(redis_url: str, prefix: str) -> int:
    """Events the naive consumer left in Redis under ``prefix``."""
    redis = aioredis.Redis.from_url(redis_url)
    total = 0
    try:
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            if key.endswith(b":users"):
                total += sum(map(int, await redis.hvals(key)))
            else:
                total += int(await redis.get(key) or 0)
    finally:
        await redis.aclose()
    return total


async def drop(redis_url: str, prefix: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()


async def main() -> int:
    # ours rebuilds every partition of a fresh key prefix from offset 0: its
    # "rebuilding" warnings are the point of the run, not news
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stream_sentinel.kafka").setLevel(logging.ERROR)
    # imported here, not at the top: bench/ingest.py imports this module
    sys.path.insert(0, BENCH)
    from ingest import create_topics, delete_topics, env, fill

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--compare", action="store_true", help="also time ours, print the ratio")
    args = parser.parse_args()
    bootstrap, redis_url = env("KAFKA_BOOTSTRAP_SERVERS"), env("REDIS_URL")
    run_id = uuid.uuid4().hex[:8]
    topics = {"request": f"bench.requests.{run_id}", "response": f"bench.responses.{run_id}"}
    names = list(topics.values())
    prefix = f"bench-naive:{run_id}"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    await create_topics(bootstrap, names, args.partitions)
    try:
        oldest = await fill(bootstrap, topics, args.events)
        try:
            result = await naive(bootstrap, redis_url, names, args.events, prefix=prefix)
            stored = await counted(redis_url, prefix)
        finally:
            await drop(redis_url, prefix)
        if stored != args.events:
            raise SystemExit(f"Redis counted {stored} events, expected {args.events}")
        print(
            f"naive (one awaited Redis command per event): {result.rate:>9,.0f} events/s"
            f" ({args.events:,} in {result.seconds:.1f}s)"
        )
        if args.compare:
            from ingest import bench_config, drop_keys, ours

            from stream_sentinel.wiring import build_kafka_settings

            cfg = bench_config(bootstrap, redis_url, topics, f"{run_id}-ours")
            try:
                mine = await ours(cfg, build_kafka_settings(cfg), args.events, oldest)
            finally:
                await drop_keys(redis_url, cfg.redis.key_prefix)
            print(f"KafkaIngest -> RedisStore:                   {mine.rate:>9,.0f} events/s")
            print(f"ratio ours / naive: {mine.rate / result.rate:.1f} (target >= 20)")
    finally:
        await delete_topics(bootstrap, names)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
