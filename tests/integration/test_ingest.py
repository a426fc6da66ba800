"""Ingestion against the real broker and Redis: exact totals, lag committed,
a group rebalance, the dead-letter topic.

Every test computes the expected totals per bucket and per user from what it
produced, then compares them with what the store holds once the service has
caught up with the end offsets. The fault scenarios (SIGKILLs, Redis paused,
Redis restarted empty) live in test_faults.py, once each.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import (
    Expected,
    ServiceProcess,
    assert_exact,
    create_topics,
    deployment_env,
    end_offsets,
    expected_of,
    free_port,
    make_events,
    produce,
    produce_raw,
    read_topic,
    reader_store,
    stream_parts,
    wait_caught_up,
    wait_group_committed,
    wait_stored_total,
)

pytestmark = pytest.mark.integration


async def test_100k_events_exact_per_bucket_and_user_and_lag_committed(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await create_topics(make_topic, alerts=False)
    events = make_events(100_000, now=time.time(), seed=1)
    expected = expected_of(events)
    await produce(kafka_bootstrap, topics, events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    svc = ServiceProcess(
        deployment_env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, group=group)
    )
    store = reader_store(redis_url, redis_ns.prefix)
    try:
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        assert len(ends) == 8 and sum(ends.values()) == 100_000
        await wait_caught_up(store, ends, timeout=240, proc=svc)
        await assert_exact(store, expected)
        # Kafka's own committed offsets are kept too, for lag tooling
        await wait_group_committed(kafka_bootstrap, group, ends)
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()


async def test_two_consumers_one_group_one_stops_mid_stream(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await create_topics(make_topic, alerts=False)
    events = make_events(40_000, now=time.time(), seed=3)
    expected = expected_of(events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = deployment_env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, group=group)
    env["SENTINEL_INGEST_BATCH_MAX_RECORDS"] = "500"
    store = reader_store(redis_url, redis_ns.prefix)
    a, b = ServiceProcess(env, "a"), ServiceProcess(env, "b")
    try:
        # both members of the group hold partitions before the first one stops
        await a.wait_log("Setting newly assigned partitions {TopicPartition")
        await b.wait_log("Setting newly assigned partitions {TopicPartition")
        await produce(kafka_bootstrap, topics, events[:20_000])
        await wait_stored_total(store, stream_parts(topics), 2_000, a)
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


async def test_bad_messages_go_to_the_dlq_with_reasons_and_neighbours_count(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = await create_topics(make_topic, 1, alerts=False)
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
    env = deployment_env(kafka_bootstrap, redis_url, redis_ns.prefix, topics)
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
