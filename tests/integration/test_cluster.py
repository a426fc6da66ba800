"""The live service against the real 3-master Redis Cluster from scripts/services.

Counters, offsets, the partition registry, the leader lease and the learned
baselines' history then live on different nodes: any multi-key operation that
spans two slots fails with CROSSSLOT and the totals below would not be reached.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect

from .harness import (
    WIDTH,
    ServiceProcess,
    assert_exact,
    end_offsets,
    expected_of,
    free_port,
    make_events,
    produce,
    service_env,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

HOSTILE = ["{slot}", "line\nX-Injected: 1", "\x1b[31mred\x1b[0m", "\u202eevil", "a:b:{c}"]


@pytest.fixture
async def cluster_prefix(redis_cluster_url: str) -> AsyncIterator[str]:
    prefix = f"test{uuid.uuid4().hex[:12]}"
    yield prefix
    client = connect(redis_cluster_url)
    try:
        doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if doomed:
            await client.delete(*doomed)
    finally:
        await client.aclose()


async def test_service_on_a_cluster_counts_exactly_and_leads(
    kafka_bootstrap: str,
    redis_cluster_url: str,
    cluster_prefix: str,
    make_topic,  # type: ignore[no-untyped-def]
) -> None:
    topics = {
        "request": await make_topic(4, "req"),
        "response": await make_topic(4, "resp"),
        "dlq": await make_topic(1, "dlq"),
    }
    events = make_events(20_000, now=time.time(), seed=11)
    for i, event in enumerate(events[::50]):  # hostile ids must not reach the log
        event["user_id"] = HOSTILE[i % len(HOSTILE)]
    expected = expected_of(events)
    await produce(kafka_bootstrap, topics, events)
    port = free_port()
    env = service_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_cluster_url,
        prefix=cluster_prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=topics["dlq"],
        # learned signals write tick history; one-second ticks write it at once
        extra={"SENTINEL_HTTP_PORT": str(port), "SENTINEL_ALERTING_TICK_SECONDS": "1"},
    )
    env.pop("SENTINEL_BASELINES_SPEND_HOUR")
    svc = ServiceProcess(env)
    store = RedisStore.from_url(
        redis_cluster_url,
        prefix=cluster_prefix,
        bucket_width=WIDTH,
        counter_ttl_s=4000,
        user_ttl_s=700,
    )
    client = connect(redis_cluster_url)
    try:
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=180, proc=svc)
        await assert_exact(store, expected)

        # the keys really are spread over the masters: the test would prove
        # nothing if every key happened to hash to one node
        keys = [k.decode() async for k in client.scan_iter(match=f"{cluster_prefix}:*")]
        slots = {await client.cluster_keyslot(k) for k in keys}
        nodes = {client.get_node_from_key(k).name for k in keys}
        assert len(slots) >= 4 and len(nodes) >= 2, (slots, nodes)

        # this replica leads through the lease on the cluster (the holder key
        # names it), evaluates, and records history for the learned signal. One
        # poll sees all three: with 1 s ticks the lease lives 1.5 s, and on a
        # loaded machine a late renewal can let the key lapse for a moment.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"http://127.0.0.1:{port}/status") as response:
                    status = orjson.loads(await response.read())
                history = await client.zcard(f"{cluster_prefix}:{{history}}:ticks")
                holder = await client.get(f"{cluster_prefix}:{{leader}}:holder")
                leads = status.get("leader") is True and holder is not None
                if response.status == 200 and leads and history:
                    assert holder.decode() == status["replica"]
                    break
                assert svc.proc.poll() is None, svc.log_tail()
                assert loop.time() < deadline, (status, history, holder, svc.log_tail())
                await asyncio.sleep(0.2)
        assert svc.terminate() == 0
        log = svc.log.read_text(errors="replace")
        assert "CROSSSLOT" not in log and "Traceback" not in log, svc.log_tail()
        assert "\x1b" not in log and "X-Injected" not in log and "{slot}" not in log
    finally:
        svc.close()
        await store.close()
        await client.aclose()
