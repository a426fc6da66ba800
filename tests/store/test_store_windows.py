"""Running window totals: any interleaving of writes, reads and prepares is exact.

The Redis store answers window reads from per-partition running totals that
its apply script keeps and its reads move (``redis_scripts``). These tests
drive every store through random sequences of batches (on time, late, early),
reads of windows moving forwards, backwards and jumping, and ``prepare``
hints, and compare each read with a direct count of what was written.
Producers are keyed by user id here (each user in one partition), which is
when top users are exact; the other case has its own tests below.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BucketDelta
from stream_sentinel.model import WindowCounts
from stream_sentinel.store.base import PartitionId, Store, top_k
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import RedisClient, connect

T0 = 1_780_000_200  # a multiple of 300
WIDTH = 60
USERS = ["u0", "u1", "u2", "u3", "u4", "{u}", "a|b", "é"]
PARTS = 3


def home(user: str) -> PartitionId:
    return PartitionId("r", sum(user.encode()) % PARTS)


StoreMaker = Callable[[], Any]


async def _redis(url: str) -> tuple[RedisStore, RedisClient, str]:
    prefix = f"w{uuid.uuid4().hex[:10]}"
    client = connect(url)
    store = RedisStore(
        client, prefix=prefix, bucket_width=WIDTH, counter_ttl_s=4000, user_ttl_s=3000
    )
    return store, client, prefix


async def read_ahead(store: Store, windows: list[tuple[int, int, bool]]) -> None:
    """The hint, where the store takes one (Redis); reads are exact either way."""
    if isinstance(store, RedisStore):
        await store.prepare(windows)


async def _drop(client: RedisClient, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreMaker]:
    """A factory of empty stores of one kind (hypothesis needs one per example)."""
    made: list[tuple[RedisStore, RedisClient, str]] = []
    url = ""
    if request.param != "memory":
        url = request.getfixturevalue(
            "redis_url" if request.param == "redis" else "redis_cluster_url"
        )

    async def make() -> Store:
        if not url:
            return MemoryStore(retention_s=4000)
        trio = await _redis(url)
        made.append(trio)
        return trio[0]

    yield make
    for store, client, prefix in made:
        await _drop(client, prefix)
        await store.close()


class Truth:
    def __init__(self) -> None:
        self.counts: dict[int, WindowCounts] = {}
        self.users: dict[int, Counter[str]] = {}

    def add(self, bucket: int, user: str, requests: int, blocked: int, cost: int) -> BucketDelta:
        delta = BucketDelta(requests=requests, blocked=blocked, responses=requests, safe=requests)
        delta.cost_nanousd = cost
        delta.users[user] = requests
        self.counts[bucket] = self.counts.get(bucket, WindowCounts()) + delta.counts()
        self.users.setdefault(bucket, Counter())[user] += requests
        return delta

    def window(self, start: int, end: int) -> WindowCounts:
        total = WindowCounts()
        for bucket, counts in self.counts.items():
            if start <= bucket < end:
                total += counts
        return total

    def top(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        totals: Counter[str] = Counter()
        for bucket, users in self.users.items():
            if start <= bucket < end:
                totals.update(users)
        return top_k(dict(totals), k)


op_st = st.one_of(
    # a batch: bucket index, user, requests, blocked, cost
    st.tuples(
        st.just("apply"),
        st.integers(0, 24),
        st.sampled_from(USERS),
        st.integers(1, 5),
        st.integers(0, 1),
        st.integers(0, 2**40),
    ),
    # the clock moves on by 0-3 buckets; then the windows of a tick ending
    # there are read, or prepared for (top k, read or prepare)
    st.tuples(
        st.just("tick"), st.sampled_from([0, 1, 1, 1, 2, 3]), st.integers(1, 4), st.booleans()
    ),
    st.tuples(st.just("tick"), st.sampled_from([1, 1, 2]), st.integers(1, 4), st.booleans()),
    # any read or hint: first bucket, length in buckets, top k, seconds off the grid
    st.tuples(
        st.sampled_from(["window", "top", "prepare"]),
        st.integers(0, 24),
        st.sampled_from([1, 2, 5, 5, 5, 12]),
        st.integers(1, 4),
        st.sampled_from([0, 0, 0, 30]),
    ),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op_st, min_size=1, max_size=60))
async def test_reads_match_a_direct_count_whatever_the_order(
    make_store: StoreMaker, ops: list[tuple[Any, ...]]
) -> None:
    store: Store = await make_store()
    truth = Truth()
    offsets: dict[PartitionId, int] = {}
    at = T0 + 5 * WIDTH
    for op in ops:
        if op[0] == "tick":
            _, steps, k, read = op
            at += steps * WIDTH
            if read:
                assert await store.window(at - 300, at) == truth.window(at - 300, at), op
                assert await store.window(at - 720, at) == truth.window(at - 720, at), op
                assert await store.top_users(at - 300, at, k) == truth.top(at - 300, at, k), op
            else:
                await read_ahead(store, [(at - 300, at, True), (at - 720, at, False)])
            continue
        if op[0] == "apply":
            _, index, user, requests, blocked, cost = op
            bucket = T0 + index * WIDTH
            delta = truth.add(bucket, user, requests, min(blocked, requests), cost)
            part = home(user)
            prev = offsets.get(part)
            await store.apply(part, prev, (prev or 0) + 1, {bucket: delta})
            offsets[part] = (prev or 0) + 1
            continue
        kind, index, length, k, off = op
        start = T0 + index * WIDTH + off
        end = start + length * WIDTH
        if kind == "window":
            assert await store.window(start, end) == truth.window(start, end), op
        elif kind == "top":
            assert await store.top_users(start, end, k) == truth.top(start, end, k), op
        else:
            await read_ahead(store, [(start, end, k % 2 == 0)])
    # the windows a tick reads, after all of it
    for start in (T0, T0 + 5 * WIDTH, T0 + 20 * WIDTH):
        assert await store.window(start, start + 300) == truth.window(start, start + 300)
        assert await store.top_users(start, start + 300, 3) == truth.top(start, start + 300, 3)


async def test_a_tick_sequence_with_late_and_early_batches(make_store: StoreMaker) -> None:
    """The service's order: prepare the next tick, batches arrive, tick."""
    store: Store = await make_store()
    truth = Truth()
    offsets: dict[PartitionId, int] = {}

    async def write(bucket: int, user: str, n: int) -> None:
        delta = truth.add(bucket, user, n, 0, n * 1000)
        part = home(user)
        prev = offsets.get(part)
        await store.apply(part, prev, (prev or 0) + 1, {bucket: delta})
        offsets[part] = (prev or 0) + 1

    for i in range(12):
        at = T0 + 600 + i * WIDTH
        await read_ahead(store, [(at - 300, at, True), (at - 3600, at, False)])
        await write(at - WIDTH, USERS[i % len(USERS)], 1 + i)  # the open bucket
        await write(at - 4 * WIDTH, USERS[(i + 3) % len(USERS)], 2)  # late, inside the window
        await write(at - 6 * WIDTH, "u0", 7)  # late, before the window: not in it
        await write(at + WIDTH, "u1", 3)  # early: counted when the window gets there
        # the tick's reads: both counter windows in one call
        assert await store.windows([(at - 300, at), (at - 3600, at), (at, at)]) == [
            truth.window(at - 300, at),
            truth.window(at - 3600, at),
            WindowCounts(),
        ]
        assert await store.top_users(at - 300, at, 3) == truth.top(at - 300, at, 3)
        assert await store.window(at - 300, at) == truth.window(at - 300, at)


async def test_a_user_in_two_partitions_is_summed(make_store: StoreMaker) -> None:
    """Producers not keyed by user id: the top candidate is found in a second
    partition, where it is not among the first k, and the store merges all."""
    store: Store = await make_store()
    p0, p1 = PartitionId("r", 0), PartitionId("r", 1)
    x3 = BucketDelta(requests=3)
    x3.users["x"] = 3
    y2x1 = BucketDelta(requests=3)
    y2x1.users.update({"y": 2, "x": 1})
    await store.apply(p0, None, 1, {T0: x3})
    await store.apply(p1, None, 1, {T0 + WIDTH: y2x1})
    assert await store.top_users(T0, T0 + 300, 1) == [("x", 4)]
    assert await store.top_users(T0, T0 + 300, 2) == [("x", 4), ("y", 2)]


async def test_running_totals_lost_are_summed_again(redis_url: str) -> None:
    """Redis evicted or lost a window's totals (not the buckets): read again, exact."""
    store, client, prefix = await _redis(redis_url)
    try:
        truth = Truth()
        offsets: dict[PartitionId, int] = {}
        for i, user in enumerate(USERS):
            delta = truth.add(T0 + (i % 5) * WIDTH, user, i + 1, 0, 5)
            prev = offsets.get(home(user))
            await store.apply(home(user), prev, (prev or 0) + 1, {T0 + (i % 5) * WIDTH: delta})
            offsets[home(user)] = (prev or 0) + 1
        assert await store.top_users(T0, T0 + 300, 3) == truth.top(T0, T0 + 300, 3)
        states = [k async for k in client.scan_iter(match=f"{prefix}:*:w*")]
        assert states
        await client.delete(*states)
        assert await store.top_users(T0, T0 + 300, 3) == truth.top(T0, T0 + 300, 3)
        assert await store.window(T0, T0 + 300) == truth.window(T0, T0 + 300)
    finally:
        await _drop(client, prefix)
        await store.close()
