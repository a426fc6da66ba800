"""Oversized Kafka messages against the real broker: anything over the decoder's
``ingest.max_event_bytes`` is a ``too_large`` dead letter and the partition moves on.

test_ingest.py covers a message just over the default 64 KiB limit. Here: one
close to the broker's own limit (message.max.bytes, about 1 MiB), whose dead
letter (the value base64-encoded, a third bigger) would itself exceed the
broker's limit if it carried the whole value, so publishing it would fail for
ever and block the partition; and one over the broker's limit, which the broker
refuses, so it never reaches the sentinel.
"""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from stream_sentinel.ingest import MAX_DEAD_LETTER_VALUE

from .harness import (
    Expected,
    ServiceProcess,
    assert_exact,
    end_offsets,
    make_events,
    produce_raw,
    read_topic,
    reader_store,
    service_env,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

NEAR_BROKER_LIMIT = 1_000_000  # under message.max.bytes (1048588) with the batch overhead


async def test_a_message_near_the_broker_limit_is_dead_lettered_and_does_not_block(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,  # type: ignore[no-untyped-def]
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    topics = {
        "request": await make_topic(1, "req"),
        "response": await make_topic(1, "resp"),
        "dlq": await make_topic(1, "dlq"),
    }
    good = [e for e in make_events(300, now=time.time(), seed=21) if e["type"] == "request"]
    huge = (
        b'{"event_id":"big","type":"request","user_id":"u","pad":"'
        + b"x" * (NEAR_BROKER_LIMIT - 60)
        + b'"}'
    )
    over_default = b'{"pad":"' + b"y" * 70_000 + b'"}'
    values: list[bytes | None] = [orjson.dumps(e) for e in good[:50]]
    values += [huge, over_default, huge]
    values += [orjson.dumps(e) for e in good[50:]]
    await produce_raw(kafka_bootstrap, topics["request"], values)

    # over the broker's limit: refused at the door, nothing to dead-letter
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 << 20)
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(topics["request"], b"z" * (2 << 20), partition=0)
    finally:
        await producer.stop()

    expected = Expected()
    for e in good:
        expected.add(e)
    env = service_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_ns.prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=topics["dlq"],
    )
    svc = ServiceProcess(env)
    store = reader_store(redis_url, redis_ns.prefix)
    try:
        ends = await end_offsets(kafka_bootstrap, [topics["request"]])
        assert sum(ends.values()) == len(values)
        await wait_caught_up(store, ends, timeout=120, proc=svc)
        await assert_exact(store, expected)  # the events after the big ones counted too
        dead = sorted(
            await read_topic(kafka_bootstrap, topics["dlq"], 3), key=lambda d: d["source"]["offset"]
        )
        assert [d["reason"] for d in dead] == ["too_large"] * 3
        assert [d["source"]["offset"] for d in dead] == [50, 51, 52]
        big, small = dead[0], dead[1]
        # the big one's value is cut to a size the DLQ can take, and says so
        assert big["value_truncated"] is True and big["value_bytes"] == len(huge)
        assert base64.b64decode(big["value_b64"]) == huge[:MAX_DEAD_LETTER_VALUE]
        assert base64.b64decode(small["value_b64"]) == over_default  # small enough to keep whole
        assert "value_truncated" not in small
        assert svc.terminate() == 0
    finally:
        svc.close()
        await store.close()
