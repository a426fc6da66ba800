"""Per-tenant counts stay exact through the faults the global ones survive.

The service runs with ``[tenants] enabled`` on a single Redis and on the
Cluster, over events whose tenants spread over every partition (producers key
by user id) and include a hostile name. Faults: SIGKILLs while the stream is
counted, and a store wiped while the service is down (it must notice the lost
state and count everything again). Afterwards every bucket's tenants, as
``top_tenants`` reads them, equal what was produced, as do the global totals.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .harness import (
    HOSTILE_TENANT,
    ServiceProcess,
    assert_exact,
    assert_tenants_exact,
    create_topics,
    deployment_env,
    end_offsets,
    expected_of,
    make_events,
    produce,
    reader_store,
    stream_parts,
    wait_caught_up,
    wait_group_committed,
    wait_stored_total,
    with_tenants,
)

pytestmark = pytest.mark.integration

TENANTS = 40
SETTINGS = {
    "SENTINEL_TENANTS_ENABLED": "true",
    "SENTINEL_TENANTS_TOP_K": "5",
    # small batches: a kill lands between many store writes
    "SENTINEL_INGEST_BATCH_MAX_RECORDS": "500",
    # ticks often, so the leader reads tenants while they are counted
    "SENTINEL_ALERTING_TICK_SECONDS": "2",
    "SENTINEL_BASELINES_BLOCKED_PCT": "2.0",
    "SENTINEL_BASELINES_SAFETY_PCT": "99.0",
    "SENTINEL_BASELINES_SPEND_HOUR": "1000000",
}


@pytest.fixture(params=["redis", "cluster"])
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """A Redis URL (single node or Cluster) and a fresh key prefix, dropped afterwards."""
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "redis_cluster_url"
    )
    prefix = f"tenx{uuid.uuid4().hex[:10]}"
    yield url, prefix
    store = reader_store(url, prefix)
    try:
        await store.drop_all()
    finally:
        await store.close()


def _log_is_clean(svc: ServiceProcess) -> None:
    log = svc.log.read_text(errors="replace")
    assert "Traceback" not in log and "CROSSSLOT" not in log, svc.log_tail()
    assert "X-Injected" not in log and "{evil}" not in log  # the hostile tenant stays out


async def test_sigkills_while_counting_leave_every_tenant_exact(
    deployment: tuple[str, str], kafka_bootstrap: str, make_topic: Any
) -> None:
    url, prefix = deployment
    topics = await create_topics(make_topic)
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    events = with_tenants(make_events(30_000, now=time.time(), seed=seed), TENANTS)
    assert any(e.get("tenant") == HOSTILE_TENANT for e in events)
    expected = expected_of(events)
    env = deployment_env(kafka_bootstrap, url, prefix, topics, **SETTINGS)
    store = reader_store(url, prefix)
    parts = stream_parts(topics)
    producing = asyncio.create_task(produce(kafka_bootstrap, topics, events))
    svc = ServiceProcess(env, "tenants0")
    reached: list[int] = []
    try:
        for k in range(3):
            floor = reached[-1] + 1 if reached else 1
            point = max(floor, (k + 1) * len(events) // 5)
            reached.append(await wait_stored_total(store, parts, point, svc, timeout=300))
            svc.kill()
            svc.close()
            svc = ServiceProcess(env, f"tenants{k + 1}")
        await producing
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=600, proc=svc)
        await assert_exact(store, expected)
        await assert_tenants_exact(store, expected)
        assert svc.terminate() == 0
        _log_is_clean(svc)
    finally:
        producing.cancel()
        svc.close()
        await store.close()
    assert reached == sorted(reached)


async def test_a_store_wiped_while_down_is_recounted_exactly_per_tenant(
    deployment: tuple[str, str], kafka_bootstrap: str, make_topic: Any
) -> None:
    url, prefix = deployment
    topics = await create_topics(make_topic)
    events = with_tenants(make_events(24_000, now=time.time(), seed=77), TENANTS)
    before, after = events[:16_000], events[16_000:]
    env = deployment_env(kafka_bootstrap, url, prefix, topics, **SETTINGS)
    store = reader_store(url, prefix)
    svc = ServiceProcess(env, "wipe0")
    try:
        await produce(kafka_bootstrap, topics, before)
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=300, proc=svc)
        await assert_tenants_exact(store, expected_of(before))
        # the group's offsets in Kafka too: what tells the next start that an
        # empty store lost its state (else it is a first start, recounted alike)
        await wait_group_committed(kafka_bootstrap, env["SENTINEL_KAFKA_GROUP_ID"], ends)
        # SIGKILL, then every key of the deployment is gone (a Redis restarted
        # without persistence, all at once), then the service starts again
        svc.kill()
        svc.close()
        await store.drop_all()
        assert await store.registered() == []
        svc = ServiceProcess(env, "wipe1")
        await produce(kafka_bootstrap, topics, after)
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        await wait_caught_up(store, ends, timeout=300, proc=svc)
        expected = expected_of(events)
        await assert_exact(store, expected)
        await assert_tenants_exact(store, expected)
        # said at the first tick whose look at Kafka follows the assignment,
        # which may come after the recount has caught up
        await svc.wait_log("the store lost its state", timeout=120)
        assert svc.terminate() == 0
        _log_is_clean(svc)
    finally:
        svc.close()
        await store.close()
