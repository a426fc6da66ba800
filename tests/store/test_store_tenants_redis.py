"""Per-tenant counts in Redis: keys, running windows, and ranking across partitions.

The contract itself is tests/store/test_store_tenants.py. Here: what only the
Redis store can get wrong. Its tenant keys stay in the partition's slot and
expire; its running window totals stay exact under any interleaving of
batches, reads and ``prepare`` (compared with the memory store, a direct
count); and its threshold ranking stays exact when a tenant's requests are
spread over many partitions, including when a partition's first tenants are
not the global first ones.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BucketDelta, Delta, TenantDelta
from stream_sentinel.store.base import Outcome, PartitionId, Store
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect
from stream_sentinel.store.redis_tenants import tenant_hash

T0 = 1_780_000_200  # a multiple of 300
WIDTH = 60
HOSTILE = ["{slot}", "a:b", "t\nnew", "é" * 256, "*", "\x00nul", "../..", "😀", "tr:x"]
TENANTS = ["t1", "t2", "{t}", "é", "x:y"]
USERS = ["u0", "u1", "u2", "u3", "{u}"]

RedisMaker = Callable[[], RedisStore]


@pytest.fixture(params=["redis", "cluster"])
async def make_redis(request: pytest.FixtureRequest) -> AsyncIterator[RedisMaker]:
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "redis_cluster_url"
    )
    made: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore(
            connect(url),
            prefix=f"tt{uuid.uuid4().hex[:10]}",
            bucket_width=WIDTH,
            counter_ttl_s=4000,
            user_ttl_s=3000,
        )
        made.append(store)
        return store

    yield make
    for store in made:
        await store.drop_all()
        await store.close()


def tenant_delta(bucket: int, tenant: str, user: str, requests: int, responses: int) -> Delta:
    """One user's share of a bucket: ``requests`` with the tenant, and responses
    that cost 2^40 nano-USD each (sums past 2^53 must stay exact)."""
    part = TenantDelta(requests, 0, responses, responses, responses * 2**40, 0)
    if requests:
        part.users[user] = requests
    inc = BucketDelta(requests, 0, responses, responses, responses * 2**40, 0)
    if requests:
        inc.users[user] = requests
    inc.tenants[tenant] = part
    return {bucket: inc}


async def write(
    stores: list[Store], offsets: dict[PartitionId, int], part: PartitionId, delta: Delta
) -> None:
    prev = offsets.get(part)
    for store in stores:
        result = await store.apply(part, prev, (prev or 0) + 1, delta)
        assert result.outcome is Outcome.APPLIED
    offsets[part] = (prev or 0) + 1


async def test_tenant_keys_share_the_partition_slot_and_expire(make_redis: RedisMaker) -> None:
    store = make_redis()
    offsets: dict[PartitionId, int] = {}
    part = PartitionId("llm.requests", 0)
    for i, name in enumerate(HOSTILE):
        await write([store], offsets, part, tenant_delta(T0 + 400 * i, name, "{u}", 2, 1))
    # a read makes the running window totals too
    found = await store.top_tenants((T0 + 3200, T0 + 3500), (T0, T0 + 3600), 3, 1)
    assert [t.tenant for t in found] == [HOSTILE[8]]
    prefix = store._prefix
    keys = sorted([k.decode() async for k in store.client.scan_iter(match=f"{prefix}:*")])
    tagged = [k for k in keys if k != f"{prefix}:parts"]
    assert any(":tc:" in k for k in tagged) and any(":wt:" in k for k in tagged)
    assert all(k.startswith(f"{prefix}:{{llm.requests:0}}:") for k in tagged)
    # a tenant is named in a key by its hash only, never by its text
    assert any(k.endswith(f":{tenant_hash(HOSTILE[0])}") for k in tagged)
    for name in HOSTILE:
        if name != "*":
            assert not any(name in k.split("}:", 1)[1] for k in tagged), name
    for key in tagged:
        ttl = await store.client.ttl(key)
        assert (ttl == -1) == key.endswith(":o"), key  # only the offset fence lives on
    await store.drop_all()
    assert [k async for k in store.client.scan_iter(match=f"{prefix}:*")] == []


async def test_many_partitions_rank_exactly_when_no_partition_shows_the_winner(
    make_redis: RedisMaker,
) -> None:
    """Each of 6 partitions has its own local leaders with 5 requests; the
    global leader has 4 in every partition (24), first nowhere."""
    store, memory = make_redis(), MemoryStore(retention_s=4000)
    offsets: dict[PartitionId, int] = {}
    for p in range(6):
        part = PartitionId("r", p)
        for j in range(20):
            local = f"local-{p}-{j:02d}"
            await write([store, memory], offsets, part, tenant_delta(T0, local, f"u{p}", 5, 0))
        await write([store, memory], offsets, part, tenant_delta(T0 + 60, "wide", f"w{p}", 4, 1))
    short, hour = (T0, T0 + 300), (T0 - 3300, T0 + 300)
    found = await store.top_tenants(short, hour, 3, 2)
    assert found == await memory.top_tenants(short, hour, 3, 2)
    assert found[0].tenant == "wide" and found[0].short.requests == 24


op_st = st.one_of(
    # a batch: bucket index, partition, tenant, user, requests, responses
    st.tuples(
        st.just("apply"),
        st.integers(0, 24),
        st.integers(0, 3),
        st.sampled_from(TENANTS),
        st.sampled_from(USERS),
        st.integers(0, 4),
        st.integers(0, 2),
    ),
    # the clock moves 0-3 buckets; the tick's windows are read or prepared for
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 1, 2, 3]), st.integers(1, 3), st.booleans()),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op_st, min_size=1, max_size=50))
async def test_running_tenant_totals_match_a_direct_count_whatever_the_order(
    make_redis: RedisMaker, ops: list[tuple[Any, ...]]
) -> None:
    store, memory = make_redis(), MemoryStore(retention_s=100_000)
    offsets: dict[PartitionId, int] = {}
    at = T0 + 5 * WIDTH
    for op in ops:
        if op[0] == "apply":
            _, index, p, tenant, user, requests, responses = op
            delta = tenant_delta(T0 + index * WIDTH, tenant, user, requests, responses)
            await write([store, memory], offsets, PartitionId("r", p), delta)
            continue
        _, steps, k, read = op
        at += steps * WIDTH
        short, hour = (at - 300, at), (at - 720, at)
        if read:
            expected = await memory.top_tenants(short, hour, k, 2)
            assert await store.top_tenants(short, hour, k, 2) == expected, op
        else:
            await store.prepare([(*short, True), (*hour, False)])
    short, hour = (at - 300, at), (at - 720, at)
    assert await store.top_tenants(short, hour, 5, 3) == await memory.top_tenants(short, hour, 5, 3)
