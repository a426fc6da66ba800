"""Per-tenant counts in Redis: keys, the outbox, and ranking across partitions.

The contract itself is tests/store/test_store_tenants.py. Here: what only the
Redis store can get wrong. Its tenant keys sit in the partition's slot (the
outbox) or a shard's, name no tenant, and expire; counts reach the shards
exactly once when a writer fails between its APPLY and its forward, retries,
or is replaced by another; reads stay exact under any interleaving of
batches, reads and ``prepare`` (compared with the memory store, a direct
count), and when a tenant's requests are spread over many partitions,
including when a partition's first tenants are not the global first ones.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BucketDelta, Delta, TenantDelta
from stream_sentinel.store.base import Outcome, PartitionId, Store, StoreUnavailable
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect
from stream_sentinel.store.redis_tenants import Outbox, outbox, shard_of, tenant_hash

T0 = 1_780_000_200  # a multiple of 300
WIDTH = 60
HOSTILE = ["{slot}", "a:b", "t\nnew", "é" * 256, "*", "\x00nul", "../..", "😀", "tr:x"]
TENANTS = ["t1", "t2", "{t}", "é", "x:y"]
USERS = ["u0", "u1", "u2", "u3", "{u}"]

# a store on the fixture's Redis; given a prefix, another writer of that store
RedisMaker = Callable[..., RedisStore]


@pytest.fixture(params=["redis", "cluster"])
async def make_redis(request: pytest.FixtureRequest) -> AsyncIterator[RedisMaker]:
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "redis_cluster_url"
    )
    made: list[RedisStore] = []

    def make(prefix: str | None = None) -> RedisStore:
        store = RedisStore(
            connect(url),
            prefix=prefix or f"tt{uuid.uuid4().hex[:10]}",
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


async def test_tenant_keys_sit_in_a_partition_or_shard_slot_name_no_tenant_and_expire(
    make_redis: RedisMaker,
) -> None:
    store = make_redis()
    offsets: dict[PartitionId, int] = {}
    part = PartitionId("llm.requests", 0)
    for i, name in enumerate(HOSTILE):
        await write([store], offsets, part, tenant_delta(T0 + 400 * i, name, "{u}", 2, 1))
    found = await store.top_tenants((T0 + 3200, T0 + 3500), (T0, T0 + 3600), 3, 1)
    assert [t.tenant for t in found] == [HOSTILE[8]]
    prefix = store._prefix
    keys = sorted([k.decode() async for k in store.client.scan_iter(match=f"{prefix}:*")])
    tagged = [k for k in keys if k != f"{prefix}:parts"]
    shards = {f"{prefix}:{{~tenants:{shard_of(tenant_hash(name))}}}:" for name in HOSTILE}
    in_partition = [k for k in tagged if k.startswith(f"{prefix}:{{llm.requests:0}}:")]
    in_shards = [k for k in tagged if k.startswith(f"{prefix}:{{~tenants:")]
    assert sorted(in_partition + in_shards) == tagged
    # the tenants' counts are in their own shards (a read sets up the others' windows)
    held = [k for k in in_shards if k.split("}:", 1)[1].startswith(("tc:", "tr:", "tu:"))]
    assert {k.split("}:", 1)[0] + "}:" for k in held} == shards
    assert any(k.endswith(":tx") for k in tagged)  # the outbox, in the partition's slot
    # a tenant is named in a key by its hash only, never by its text
    assert any(k.endswith(f":{tenant_hash(HOSTILE[0])}") for k in tagged)
    for name in HOSTILE:
        if name != "*":
            assert not any(name in k.split("}:", 1)[1] for k in tagged), name
    for key in tagged:
        ttl = await store.client.ttl(key)
        # only the fences live on: the partition's offset, a shard's offsets
        assert (ttl == -1) == key.endswith((":o", ":f")), key
    await store.drop_all()
    assert [k async for k in store.client.scan_iter(match=f"{prefix}:*")] == []


def failing_forwards(store: RedisStore, times: int) -> list[int]:
    """Make the store's next ``times`` forwards to the shards fail as a Redis
    that went away would; the list counts the forwards that failed."""
    failed: list[int] = []
    forward = store._tenants.forward

    async def flaky(part: PartitionId, offset: int, entry: Outbox) -> None:
        if len(failed) < times:
            failed.append(offset)
            raise StoreUnavailable("redis unreachable: test")
        await forward(part, offset, entry)

    store._tenants.forward = flaky  # type: ignore[method-assign]
    return failed


SHORT, HOUR = (T0, T0 + 300), (T0 - 3300, T0 + 300)


async def test_a_forward_that_fails_after_its_apply_is_counted_once_before_the_next_batch(
    make_redis: RedisMaker,
) -> None:
    store, memory = make_redis(), MemoryStore(retention_s=4000)
    part = PartitionId("r", 0)
    failed = failing_forwards(store, 1)
    first = tenant_delta(T0, "t1", "u1", 3, 1)
    with pytest.raises(StoreUnavailable):
        await store.apply(part, None, 1, first)
    assert failed == [1]
    # the batch is in the partition, not yet in its tenant's shard
    assert await store.window(*SHORT) == (await _applied(memory, part, None, 1, first))
    assert await store.top_tenants(SHORT, HOUR, 3, 2) == []
    # the writer retries the batch: it was applied, so it is fenced
    again = await store.apply(part, None, 1, first)
    assert (again.outcome, again.stored_offset) == (Outcome.FENCED, 1)
    second = tenant_delta(T0 + 60, "t1", "u2", 2, 0)
    assert (await store.apply(part, 1, 2, second)).outcome is Outcome.APPLIED
    await _applied(memory, part, 1, 2, second)
    expected = await memory.top_tenants(SHORT, HOUR, 3, 2)
    assert expected[0].short.requests == 5
    assert await store.top_tenants(SHORT, HOUR, 3, 2) == expected


async def test_another_writer_forwards_what_a_crashed_one_left_when_it_takes_over(
    make_redis: RedisMaker,
) -> None:
    crashed, memory = make_redis(), MemoryStore(retention_s=4000)
    part = PartitionId("r", 1)
    failing_forwards(crashed, 1)
    delta = tenant_delta(T0, "t2", "u1", 4, 2)
    with pytest.raises(StoreUnavailable):
        await crashed.apply(part, None, 7, delta)
    await _applied(memory, part, None, 7, delta)
    successor = make_redis(crashed._prefix)
    # a reader's look at the offsets (the leader's, every tick) writes nothing
    assert await successor.load_offsets([part]) == {part: 7}
    assert await successor.top_tenants(SHORT, HOUR, 3, 2) == []
    assert await successor.take_over([part]) == {part: 7}
    expected = await memory.top_tenants(SHORT, HOUR, 3, 2)
    assert await successor.top_tenants(SHORT, HOUR, 3, 2) == expected
    assert await successor.client.hlen(successor._outbox_key(part)) == 0
    # forwarded once: taking over again, or the crashed writer's late retry
    # of the same entry, counts nothing twice
    await successor.take_over([part])
    await crashed._tenants.forward_pending(part, [b"7", orjson.dumps(outbox(delta))])
    assert await successor.top_tenants(SHORT, HOUR, 3, 2) == expected


async def test_a_partitions_entries_reach_the_shards_in_offset_order_across_writers(
    make_redis: RedisMaker,
) -> None:
    """Writer A's forward of offset 1 fails; writer B writes offset 2 without
    loading offsets first: B must forward 1 before 2, or the shard's fence
    (at 2) would drop 1 for ever."""
    a, memory = make_redis(), MemoryStore(retention_s=4000)
    b = make_redis(a._prefix)
    part = PartitionId("r", 2)
    failing_forwards(a, 1)
    one = tenant_delta(T0, "t3", "u1", 5, 0)
    with pytest.raises(StoreUnavailable):
        await a.apply(part, None, 1, one)
    two = tenant_delta(T0, "t3", "u2", 1, 0)
    assert (await b.apply(part, 1, 2, two)).outcome is Outcome.APPLIED
    for delta, (prev, nxt) in ((one, (None, 1)), (two, (1, 2))):
        await _applied(memory, part, prev, nxt, delta)
    expected = await memory.top_tenants(SHORT, HOUR, 3, 2)
    assert expected[0].short.requests == 6
    assert await a.top_tenants(SHORT, HOUR, 3, 2) == expected
    # 1 was deleted once forwarded; 2 waits for b's next batch to say so
    assert await a.client.hkeys(a._outbox_key(part)) == [b"2"]


async def _applied(
    memory: MemoryStore, part: PartitionId, prev: int | None, nxt: int, delta: Delta
) -> Any:
    assert (await memory.apply(part, prev, nxt, delta)).outcome is Outcome.APPLIED
    return await memory.window(*SHORT)


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


async def test_candidates_that_cannot_make_the_cut_leave_the_ranking_exact(
    make_redis: RedisMaker,
) -> None:
    """Two partitions full of one-request tenants (more than a first list
    holds) and three heavy tenants, one of them spread over both."""
    store, memory = make_redis(), MemoryStore(retention_s=4000)
    offsets: dict[PartitionId, int] = {}
    for p in range(2):
        part = PartitionId("r", p)
        for j in range(40):
            await write([store, memory], offsets, part, tenant_delta(T0, f"s{p}-{j}", "u", 1, 0))
        await write([store, memory], offsets, part, tenant_delta(T0, "spread", f"w{p}", 30, 1))
    for name, requests in (("heavy-a", 70), ("heavy-b", 50)):
        await write(
            [store, memory], offsets, PartitionId("r", 0), tenant_delta(T0, name, "h", requests, 0)
        )
    short, hour = (T0, T0 + 300), (T0 - 3300, T0 + 300)
    found = await store.top_tenants(short, hour, 3, 2)
    assert found == await memory.top_tenants(short, hour, 3, 2)
    assert [(t.tenant, t.short.requests) for t in found] == [
        ("heavy-a", 70),
        ("spread", 60),
        ("heavy-b", 50),
    ]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # the heaviest users are in every partition
        (
            {0: {"a": 50, "b": 40, "c": 1, "d": 1}, 1: {"b": 41, "a": 30, "e": 1}},
            [("b", 81), ("a", 80)],
        ),
        # "z" is first in no partition but heaviest in total
        (
            {0: {"a": 9, "z": 7, "b": 1}, 1: {"c": 9, "d": 8, "z": 7}, 2: {"e": 9, "f": 8, "z": 7}},
            [("z", 21), ("a", 9)],
        ),
        # a tie, broken by user id
        ({0: {"a": 3, "b": 2}, 1: {"c": 4}, 2: {"a": 1, "d": 2}}, [("a", 4), ("c", 4)]),
    ],
)
async def test_a_tenants_heaviest_users_are_exact_however_they_are_spread(
    make_redis: RedisMaker,
    counts: dict[int, dict[str, int]],
    expected: list[tuple[str, int]],
) -> None:
    store, memory = make_redis(), MemoryStore(retention_s=4000)
    offsets: dict[PartitionId, int] = {}
    for p, users in counts.items():
        for user, requests in users.items():
            delta = tenant_delta(T0, "team", user, requests, 0)
            await write([store, memory], offsets, PartitionId("r", p), delta)
    short, hour = (T0, T0 + 300), (T0 - 3300, T0 + 300)
    found = await store.top_tenants(short, hour, 1, 2)
    assert found == await memory.top_tenants(short, hour, 1, 2)
    assert list(found[0].top_users) == expected


async def test_a_store_that_reads_no_tenants_keeps_no_tenant_keys(make_redis: RedisMaker) -> None:
    store = make_redis()
    part = PartitionId("r", 0)
    inc = BucketDelta(requests=3, responses=2, safe=2)
    inc.users["u"] = 3
    assert (await store.apply(part, None, 1, {T0: inc})).outcome is Outcome.APPLIED
    await store.prepare([(*SHORT, True), (*HOUR, False)])
    assert await store.window(*SHORT) == inc.counts()
    keys = [k.decode() async for k in store.client.scan_iter(match=f"{store._prefix}:*")]
    assert keys and not [k for k in keys if "~tenants" in k or k.endswith(":tx")], keys
