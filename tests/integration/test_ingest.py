"""Ingestion against the real broker and Redis: exact totals under faults.

Every test computes the expected totals per bucket and per user from what it
produced, then compares them with what the store holds once the service has
caught up with the end offsets.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections import Counter

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.store.redis import RedisStore

from .harness import (
    Expected,
    PrivateRedis,
    ServiceProcess,
    assert_exact,
    end_offsets,
    expected_of,
    free_port,
    make_events,
    produce,
    produce_raw,
    read_topic,
    reader_store,
    service_env,
    wait_caught_up,
)

pytestmark = pytest.mark.integration


async def _topics(make_topic, partitions: int = 4) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "request": await make_topic(partitions, "req"),
        "response": await make_topic(partitions, "resp"),
        "dlq": await make_topic(1, "dlq"),
    }


def _env(
    kafka_bootstrap: str, url: str, prefix: str, topics: dict[str, str], **kw: str
) -> dict[str, str]:
    return service_env(
        bootstrap=kafka_bootstrap,
        redis_url=url,
        prefix=prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=topics["dlq"],
        **kw,  # type: ignore[arg-type]
    )


async def test_100k_events_exact_per_bucket_and_user_and_lag_committed(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await _topics(make_topic)
    events = make_events(100_000, now=time.time(), seed=1)
    expected = expected_of(events)
    await produce(kafka_bootstrap, topics, events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    svc = ServiceProcess(_env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, group=group))
    store = reader_store(redis_url, redis_ns.prefix)
    try:
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        assert len(ends) == 8 and sum(ends.values()) == 100_000
        await wait_caught_up(store, ends, timeout=240, proc=svc)
        await assert_exact(store, expected)
        # Kafka's own committed offsets are kept too, for lag tooling
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                committed = await admin.list_consumer_group_offsets(group)
                got = {(tp.topic, tp.partition): om.offset for tp, om in committed.items()}
                if got == {(p.topic, p.partition): off for p, off in ends.items()}:
                    break
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()


async def test_sigkill_mid_stream_several_times_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await _topics(make_topic)
    rng = random.Random()
    events = make_events(60_000, now=time.time(), seed=2)
    expected = expected_of(events)
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics)
    store = reader_store(redis_url, redis_ns.prefix)
    # small batches so a kill lands between many store writes
    env["SENTINEL_INGEST_BATCH_MAX_RECORDS"] = "500"
    chunks = [events[i : i + 15_000] for i in range(0, len(events), 15_000)]
    svc = ServiceProcess(env, "svc0")
    try:
        for n, chunk in enumerate(chunks):
            await produce(kafka_bootstrap, topics, chunk)
            # let it get somewhere, then kill it at a random point
            await _wait_some_progress(store, topics, minimum=1)
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            svc.kill()
            svc.close()
            svc = ServiceProcess(env, f"svc{n + 1}")
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=240, proc=svc)
        await assert_exact(store, expected)
    finally:
        svc.close()
        await store.close()


async def _wait_some_progress(store: RedisStore, topics: dict[str, str], minimum: int) -> None:
    from stream_sentinel.store.base import PartitionId

    parts = [PartitionId(topics[t], p) for t in ("request", "response") for p in range(4)]
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        stored = await store.load_offsets(parts)
        if sum(v or 0 for v in stored.values()) >= minimum:
            return
        assert asyncio.get_running_loop().time() < deadline, "service made no progress"
        await asyncio.sleep(0.1)


async def test_two_consumers_one_group_one_stops_mid_stream(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await _topics(make_topic)
    events = make_events(40_000, now=time.time(), seed=3)
    expected = expected_of(events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, group=group)
    env["SENTINEL_INGEST_BATCH_MAX_RECORDS"] = "500"
    store = reader_store(redis_url, redis_ns.prefix)
    a, b = ServiceProcess(env, "a"), ServiceProcess(env, "b")
    try:
        # both members of the group hold partitions before the first one stops
        await a.wait_log("Setting newly assigned partitions {TopicPartition")
        await b.wait_log("Setting newly assigned partitions {TopicPartition")
        await produce(kafka_bootstrap, topics, events[:20_000])
        await _wait_some_progress(store, topics, minimum=2_000)
        assert a.terminate() == 0  # a graceful stop mid-stream hands its partitions over
        await produce(kafka_bootstrap, topics, events[20_000:])
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=240, proc=b)
        await assert_exact(store, expected)
        assert b.terminate() == 0
    finally:
        a.close()
        b.close()
        await store.close()


async def test_redis_paused_mid_stream_then_back(
    kafka_bootstrap: str,
    make_topic,  # type: ignore[no-untyped-def]
) -> None:
    redis = PrivateRedis()
    redis.start()
    topics = await _topics(make_topic)
    events = make_events(30_000, now=time.time(), seed=4)
    expected = expected_of(events)
    env = _env(kafka_bootstrap, redis.url, "p", topics)
    env["SENTINEL_INGEST_BATCH_MAX_RECORDS"] = "500"
    store = reader_store(redis.url, "p")
    svc = ServiceProcess(env)
    try:
        await produce(kafka_bootstrap, topics, events[:10_000])
        await _wait_some_progress(store, topics, minimum=1_000)
        redis.pause()  # an outage that keeps its data
        await produce(kafka_bootstrap, topics, events[10_000:])
        # longer than the store's 5 s socket timeout, so writes fail and are retried
        await asyncio.sleep(7)
        assert svc.proc.poll() is None, svc.log_tail()
        redis.resume()
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=240, proc=svc)
        await assert_exact(store, expected)
        assert "store unavailable" in svc.log.read_text()
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()
        redis.stop()


async def test_redis_restarted_empty_mid_stream_is_rebuilt_from_kafka(
    kafka_bootstrap: str,
    make_topic,  # type: ignore[no-untyped-def]
) -> None:
    redis = PrivateRedis()
    redis.start()
    topics = await _topics(make_topic)
    events = make_events(30_000, now=time.time(), seed=5)
    expected = expected_of(events)
    env = _env(kafka_bootstrap, redis.url, "p", topics)
    store = reader_store(redis.url, "p")
    svc = ServiceProcess(env)
    try:
        await produce(kafka_bootstrap, topics, events[:15_000])
        await _wait_some_progress(store, topics, minimum=5_000)
        redis.stop()  # no persistence: everything it held is gone
        redis.start()
        await produce(kafka_bootstrap, topics, events[15_000:])
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=240, proc=svc)
        await assert_exact(store, expected)
        assert "rebuilding" in svc.log.read_text()
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()
        redis.stop()


async def test_bad_messages_go_to_the_dlq_with_reasons_and_neighbours_count(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await _topics(make_topic, partitions=1)
    now = time.time()
    good = make_events(200, now=now, seed=6)
    good_requests = [e for e in good if e["type"] == "request"]
    bad: list[tuple[bytes | None, str]] = [
        (b"not json at all", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'{"event_id":"x","ts":%f,"user_id":"u"}' % now, "missing:blocked"),
        (b'{"event_id":"x","ts":%f,"user_id":"u","blocked":1}' % now, "type:blocked"),
        (
            b'{"event_id":"x","ts":%f,"user_id":"u","blocked":false}' % (now + 86400),
            "ts_out_of_range",
        ),
        (
            b'{"event_id":"x","ts":%f,"user_id":"u","blocked":false}' % (now - 86400),
            "ts_out_of_range",
        ),
        (b'{"event_id":"x","ts":NaN,"user_id":"u","blocked":false}', "not_json"),
        (b'{"event_id":"x","ts":%f,"user_id":"","blocked":false}' % now, "length:user_id"),
        (b"{" + b'"a":' * 1 + b"1" * 70_000 + b"}", "too_large"),
        (None, "empty"),
    ]
    values: list[bytes | None] = []
    for i, e in enumerate(good_requests):
        values.append(orjson.dumps(e))
        if i < len(bad):
            values.append(bad[i][0])
    await produce_raw(kafka_bootstrap, topics["request"], values)
    expected = Expected()
    for e in good_requests:
        expected.add(e)
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics)
    port = free_port()
    env["SENTINEL_HTTP_PORT"] = str(port)
    svc = ServiceProcess(env)
    store = reader_store(redis_url, redis_ns.prefix)
    try:
        ends = await end_offsets(kafka_bootstrap, [topics["request"]])
        await wait_caught_up(store, ends, timeout=120, proc=svc)
        await assert_exact(store, expected)
        # counted in stream_sentinel_events_total{result="invalid",reason=...}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            text = await r.text()
        samples = {
            (s.labels.get("result"), s.labels.get("reason")): s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "stream_sentinel_events"
            for s in fam.samples
            if s.name == "stream_sentinel_events_total" and s.labels.get("topic_type") == "request"
        }
        assert samples[("counted", "")] == len(good_requests)
        for reason, n in Counter(r for _, r in bad).items():
            assert samples[("invalid", reason)] == n, reason
        dead = await read_topic(kafka_bootstrap, topics["dlq"], len(bad))
        assert sorted(d["reason"] for d in dead) == sorted(r for _, r in bad)
        by_offset = {d["source"]["offset"]: d for d in dead}
        for offset, value in enumerate(values):
            if offset in by_offset:
                d = by_offset[offset]
                assert d["source"]["topic"] == topics["request"] and d["source"]["partition"] == 0
                assert base64.b64decode(d["value_b64"]) == (value or b"")
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()
