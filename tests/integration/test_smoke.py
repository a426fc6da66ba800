"""The test stack itself works: real broker, real Redis, the path the service takes.

Keyed events go into a 4-partition topic, a consumer group reads them back,
per-partition counts and next offsets go to Redis in one transaction per
batch (the shape of the real pipeline's exactly-once write), and what Redis
holds must equal, exactly, what the producer was told it wrote.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from conftest import RedisNamespace, TopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 400
USERS = 37


async def _produce(bootstrap: str, topic: str) -> tuple[Counter[int], dict[str, set[int]]]:
    produced: Counter[int] = Counter()
    partitions_of_user: dict[str, set[int]] = defaultdict(set)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = []
        for i in range(EVENTS):
            user = f"user-{i % USERS}"
            event = {
                "event_id": f"e{i}",
                "type": "request",
                "ts": 1_700_000_000 + i,
                "user_id": user,
                "blocked": i % 10 == 0,
            }
            sends.append((user, await producer.send(topic, orjson.dumps(event), key=user.encode())))
        for user, delivery in sends:
            metadata = await delivery
            produced[metadata.partition] += 1
            partitions_of_user[user].add(metadata.partition)
    finally:
        await producer.stop()
    return produced, partitions_of_user


async def _consume_into_redis(bootstrap: str, topic: str, group: str, ns: RedisNamespace) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = 0
        async with asyncio.timeout(60):
            while seen < EVENTS:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    # Count and offset land together or not at all.
                    async with ns.client.pipeline(transaction=True) as tx:
                        tx.hincrby(ns.key("{smoke}", "counts"), str(tp.partition), len(records))
                        tx.hset(
                            ns.key("{smoke}", "offsets"), str(tp.partition), records[-1].offset + 1
                        )
                        await tx.execute()
                    seen += len(records)
                await consumer.commit()
    finally:
        await consumer.stop()


def _as_int_map(raw: dict[bytes | str, bytes | str]) -> dict[int, int]:
    return {int(k): int(v) for k, v in raw.items()}


async def test_keyed_events_round_trip_through_kafka_into_redis_exactly(
    kafka_bootstrap: str, make_topic: TopicFactory, redis_ns: RedisNamespace, unique_id: str
) -> None:
    topic = await make_topic(PARTITIONS, prefix="smoke")
    produced, partitions_of_user = await _produce(kafka_bootstrap, topic)

    assert sum(produced.values()) == EVENTS
    # Keying by user is what keeps one user's events in order on one partition.
    assert all(len(parts) == 1 for parts in partitions_of_user.values())
    # With 37 keys murmur2 spreads over all four; otherwise the test proves less.
    assert set(produced) == set(range(PARTITIONS))

    group = f"smoke-{unique_id}"
    await _consume_into_redis(kafka_bootstrap, topic, group, redis_ns)

    counts = _as_int_map(await redis_ns.client.hgetall(redis_ns.key("{smoke}", "counts")))
    offsets = _as_int_map(await redis_ns.client.hgetall(redis_ns.key("{smoke}", "offsets")))
    assert counts == dict(produced)
    # A fresh topic starts at offset 0, so each partition's next offset is its count.
    assert offsets == dict(produced)

    # Kafka's own committed offsets agree, which is what lag tooling reads.
    check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
    await check.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: await check.committed(tp) for tp in tps}
        ends = {tp.partition: offset for tp, offset in (await check.end_offsets(tps)).items()}
    finally:
        await check.stop()
    assert committed == dict(produced)
    assert ends == dict(produced)
