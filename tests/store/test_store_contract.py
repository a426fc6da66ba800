"""One contract, two stores: MemoryStore and RedisStore (single node and Cluster) must
behave the same."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from batch_reference import aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator, BucketDelta, Delta
from stream_sentinel.events import RequestEvent, ResponseEvent
from stream_sentinel.model import NANO, WindowCounts
from stream_sentinel.store.base import Outcome, PartitionId, Store
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import RedisClient, connect

T0 = 1_780_000_200  # a multiple of 300
WIDTH = 60
P0 = PartitionId("llm.requests", 0)
P1 = PartitionId("llm.requests", 1)
R0 = PartitionId("llm.responses", 0)


async def _redis_store(redis_url: str) -> tuple[RedisStore, RedisClient, str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = connect(redis_url)
    store = RedisStore(
        client, prefix=prefix, bucket_width=WIDTH, counter_ttl_s=4000, user_ttl_s=700
    )
    return store, client, prefix


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(retention_s=4000)
        return
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    redis_url: str = request.getfixturevalue(name)
    s, client, prefix = await _redis_store(redis_url)
    yield s
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await s.close()


def req(ts: float, user: str, blocked: bool = False) -> RequestEvent:
    return RequestEvent(event_id=uuid.uuid4().hex, ts=ts, user_id=user, blocked=blocked)


def resp(ts: float, user: str, safe: bool = True, cost: float | None = 0.001) -> ResponseEvent:
    return ResponseEvent(event_id=uuid.uuid4().hex, ts=ts, user_id=user, safe=safe, cost_usd=cost)


AGG = BatchAggregator(WIDTH)


def delta_of(*events: RequestEvent | ResponseEvent) -> Delta:
    return aggregate(AGG, events)


async def test_apply_then_window_sums_exactly(store: Store) -> None:
    d = delta_of(req(T0 + 1, "a"), req(T0 + 2, "a", blocked=True), req(T0 + 61, "b"))
    r = await store.apply(P0, None, 3, d)
    assert r.outcome is Outcome.APPLIED and r.stored_offset == 3
    d2 = delta_of(resp(T0 + 5, "a"), resp(T0 + 70, "b", safe=False, cost=None))
    await store.apply(R0, None, 2, d2)
    assert await store.window(T0, T0 + 120) == WindowCounts(
        requests=3, blocked=1, responses=2, safe=1, cost_nanousd=NANO // 1000, cost_unknown=1
    )
    # [start, end) is half open on bucket boundaries
    assert (await store.window(T0, T0 + 60)).requests == 2
    assert (await store.window(T0 + 60, T0 + 120)).requests == 1
    assert await store.window(T0 + 120, T0 + 3600) == WindowCounts()


async def test_fence_makes_a_replayed_batch_a_no_op(store: Store) -> None:
    d = delta_of(req(T0, "a"), req(T0, "b"))
    assert (await store.apply(P0, None, 2, d)).outcome is Outcome.APPLIED
    again = await store.apply(P0, None, 2, d)
    assert again.outcome is Outcome.FENCED and again.stored_offset == 2
    stale = await store.apply(P0, 0, 2, d)
    assert stale.outcome is Outcome.FENCED
    assert (await store.window(T0, T0 + 60)).requests == 2
    assert (await store.apply(P0, 2, 3, delta_of(req(T0, "a")))).outcome is Outcome.APPLIED
    assert (await store.window(T0, T0 + 60)).requests == 3
    assert await store.load_offsets([P0, P1]) == {P0: 3, P1: None}
    assert await store.load_offset(P0) == 3


async def test_top_users_merge_partitions_exactly(store: Store) -> None:
    await store.apply(P0, None, 3, delta_of(req(T0, "x"), req(T0, "x"), req(T0, "y")))
    await store.apply(P1, None, 2, delta_of(req(T0 + 60, "y"), req(T0 + 60, "y")))
    await store.apply(P1, 2, 3, delta_of(req(T0 + 600, "z")))
    assert await store.top_users(T0, T0 + 300, 10) == [("y", 3), ("x", 2)]
    assert await store.top_users(T0, T0 + 300, 1) == [("y", 3)]
    assert await store.top_users(T0 + 300, T0 + 900, 10) == [("z", 1)]


HOSTILE_IDS = ["{slot}", "a|b|c", "12:r", "ünï©ødé 🚀", "x" * 256, "*", "\\n\r\n", "ss:parts"]
# the Redis store ships a page's users to its script as one JSON object: text
# that JSON escapes, and text that looks like JSON, must come back unchanged
HOSTILE_IDS += ['"', "\\", '{"a": 1}', "\x00", "nul\x00mid", "\x1b[31mred", "\u2028", "\\u0000"]
# and the Redis store's read scripts sum per user id in a Lua table and return
# it as JSON: ids that look like numbers must stay distinct strings
NUMBER_LIKE_IDS = ["007", "7", "1e5", "100000", "-0", "nan", "[]", "{}"]


async def test_hostile_user_ids_are_only_fields(store: Store) -> None:
    ids = HOSTILE_IDS + NUMBER_LIKE_IDS
    events = [req(T0 + i, uid) for i, uid in enumerate(ids)] + [req(T0, "{slot}")]
    await store.apply(P0, None, len(events), delta_of(*events))
    top = dict(await store.top_users(T0, T0 + 300, 100))
    assert top == {uid: 2 if uid == "{slot}" else 1 for uid in ids}
    assert (await store.window(T0, T0 + 300)).requests == len(events)


async def test_windows_cut_pages_at_bucket_edges(store: Store) -> None:
    """Windows that start and end inside a 300 s page count only their buckets."""
    d = delta_of(*(req(T0 + 60 * i + 1, f"u{i % 3}", blocked=i == 2) for i in range(10)))
    await store.apply(P0, None, 10, d)
    assert await store.window(T0 + 120, T0 + 420) == WindowCounts(requests=5, blocked=1)
    assert await store.top_users(T0 + 120, T0 + 420, 10) == [("u0", 2), ("u2", 2), ("u1", 1)]
    assert await store.top_users(T0 + 240, T0 + 300, 10) == [("u1", 1)]
    assert await store.top_users(T0 + 600, T0 + 900, 10) == []


async def test_counter_sums_stay_exact_past_float_precision(store: Store) -> None:
    """Costs are integer nano-USD: sums beyond 2^53 must not be rounded."""
    await store.apply(R0, None, 1, {T0: _cost(2**62 + 1)})
    await store.apply(PartitionId("llm.responses", 1), None, 1, {T0 + 60: _cost(2**62 + 3)})
    await store.apply(R0, 1, 2, {T0 + 240: _cost(999_999_999)})
    total = await store.window(T0, T0 + 300)
    assert total.cost_nanousd == 2**63 + 4 + 999_999_999 and total.responses == 3


def _cost(nano: int) -> BucketDelta:
    return BucketDelta(responses=1, safe=1, cost_nanousd=nano)


async def test_redis_keys_share_one_slot_per_partition(any_redis_url: str) -> None:
    s, client, prefix = await _redis_store(any_redis_url)
    try:
        d = delta_of(*(req(T0 + 400 * i, uid) for i, uid in enumerate(HOSTILE_IDS)))
        await s.apply(P0, None, 1, d)
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
        tagged = [k for k in keys if k != f"{prefix}:parts"]
        assert tagged and all(k.startswith(f"{prefix}:{{llm.requests:0}}:") for k in tagged)
        for uid in HOSTILE_IDS:
            assert not any(uid in k for k in tagged if uid not in ("*",))
        for key in tagged:
            ttl = await client.ttl(key)
            assert (ttl == -1) == key.endswith(":o"), key  # only the offset fence lives on
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])
        await s.close()


event_st = st.tuples(
    st.integers(0, 3599),  # seconds after T0
    # a few repeated ids (ties and sums in top_users), and any text at all
    st.sampled_from(["u1", "u2", "u3", "{u}", "a|b"]) | st.text(min_size=1, max_size=12),
    st.booleans(),  # request or response
    st.booleans(),  # blocked / safe
    st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
    st.integers(0, 2),  # partition
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(event_st, max_size=30), min_size=1, max_size=4))
async def test_stores_agree_with_a_direct_count(
    any_redis_url: str, batches: list[list[tuple]]
) -> None:  # type: ignore[type-arg]
    redis_store, client, prefix = await _redis_store(any_redis_url)
    stores: list[Store] = [MemoryStore(retention_s=4000), redis_store]
    try:
        offsets: dict[PartitionId, int | None] = {}
        expected_users: Counter[str] = Counter()
        expected = WindowCounts()
        for batch in batches:
            per_part: dict[PartitionId, list[RequestEvent | ResponseEvent]] = {}
            for dt, user, is_req, flag, cost, p in batch:
                ts = T0 + dt + 0.5
                if is_req:
                    ev: RequestEvent | ResponseEvent = req(ts, user, blocked=flag)
                    expected_users[user] += 1 if dt < 300 else 0
                    expected += WindowCounts(requests=1, blocked=int(flag))
                    # keyed by user id, as top users are exact for (a user
                    # in two partitions: tests/store/test_store_windows.py)
                    part = PartitionId("r", sum(user.encode()) % 3)
                else:
                    ev = resp(ts, user, safe=flag, cost=cost)
                    nano = 0 if cost is None else round(cost * NANO)
                    expected += WindowCounts(
                        responses=1,
                        safe=int(flag),
                        cost_nanousd=nano,
                        cost_unknown=int(cost is None),
                    )
                    part = PartitionId("s", p)
                per_part.setdefault(part, []).append(ev)
            for part, events in per_part.items():
                prev = offsets.get(part)
                nxt = (prev or 0) + len(events)
                for s in stores:
                    r = await s.apply(part, prev, nxt, delta_of(*events))
                    assert r.outcome is Outcome.APPLIED
                offsets[part] = nxt
        top = sorted(((u, c) for u, c in expected_users.items() if c), key=lambda x: (-x[1], x[0]))
        for s in stores:
            assert await s.window(T0, T0 + 3600) == expected
            assert await s.top_users(T0, T0 + 300, 3) == top[:3]
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await redis_store.close()


async def test_memory_store_stays_bounded() -> None:
    s = MemoryStore(retention_s=3700)
    for i in range(500):
        await s.apply(P0, i or None, i + 1, delta_of(req(T0 + 60 * i, "a")))
    assert s.bucket_count() <= 3700 // 60 + 2
    assert (await s.window(T0 + 60 * 440, T0 + 60 * 500)).requests == 60


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1/0"])
async def test_redis_unreachable_raises_store_unavailable(url: str) -> None:
    from stream_sentinel.store.base import StoreUnavailable

    s = RedisStore.from_url(url, prefix="x", bucket_width=60, counter_ttl_s=10, user_ttl_s=10)
    with pytest.raises(StoreUnavailable):
        await s.ping()
    with pytest.raises(StoreUnavailable):
        await s.apply(P0, None, 1, delta_of(req(T0, "a")))
    await s.close()


async def test_redis_store_that_lost_everything_lists_partitions_again(any_redis_url: str) -> None:
    """A Redis restarted without persistence: the next write must be readable."""
    s, client, prefix = await _redis_store(any_redis_url)
    try:
        await s.apply(P0, None, 1, delta_of(req(T0, "a")))
        await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])
        assert await s.load_offset(P0) is None
        assert (await s.apply(P0, None, 2, delta_of(req(T0, "b")))).outcome is Outcome.APPLIED
        assert await s.top_users(T0, T0 + 60, 10) == [("b", 1)]
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])
        await s.close()


async def test_lost_partition_registry_alone_is_rebuilt_by_the_next_write(
    any_redis_url: str,
) -> None:
    """On a Cluster the registry and a partition's keys live on different nodes, so
    one node can come back empty while the other keeps its offsets and counters."""
    s, client, prefix = await _redis_store(any_redis_url)
    try:
        await s.apply(P0, None, 1, delta_of(req(T0, "a")))
        await client.delete(f"{prefix}:parts")
        assert await s.window(T0, T0 + 60) == WindowCounts()  # invisible until re-listed
        assert (await s.apply(P0, 1, 2, delta_of(req(T0, "b")))).outcome is Outcome.APPLIED
        assert (await s.window(T0, T0 + 60)).requests == 2
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])
        await s.close()


async def test_generation_is_claimed_once_and_then_held(store: Store) -> None:
    assert await store.generation() is None
    assert await store.claim_generation("first") == "first"
    # a second replica starting later adopts the deployment's generation
    assert await store.claim_generation("second") == "first"
    assert await store.generation() == "first"


async def test_registered_lists_every_written_partition(store: Store) -> None:
    assert await store.registered() == []
    await store.apply(P1, None, 3, delta_of(req(T0, "a")))
    await store.apply(R0, None, 1, {})  # an offset alone registers its partition too
    assert sorted(await store.registered()) == [P1, R0]


async def test_a_wiped_redis_has_no_generation_and_a_new_claim_replaces_it(
    any_redis_url: str,
) -> None:
    s, client, prefix = await _redis_store(any_redis_url)
    try:
        assert await s.claim_generation("g1") == "g1"
        await s.apply(P0, None, 1, delta_of(req(T0, "a")))
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        # under the deployment's prefix, in a hash slot of its own
        assert f"{prefix}:{{generation}}".encode() in keys
        for key in keys:
            await client.delete(key)  # one by one: a Cluster spreads them over slots
        assert await s.generation() is None
        assert await s.registered() == []
        assert await s.claim_generation("g2") == "g2"
    finally:
        for key in [k async for k in client.scan_iter(match=f"{prefix}:*")]:
            await client.delete(key)
        await s.close()


async def test_drop_all_forgets_offsets_counts_and_users(store: Store) -> None:
    await store.apply(P0, None, 2, delta_of(req(T0, "a"), req(T0 + 60, "b")))
    await store.apply(R0, None, 1, delta_of(resp(T0, "a")))
    await store.claim_generation("before")
    await store.drop_all()
    assert await store.load_offsets([P0, R0]) == {P0: None, R0: None}
    assert await store.generation() is None  # a live service reads this as a lost state
    assert await store.window(T0, T0 + 3600) == WindowCounts()
    assert await store.top_users(T0, T0 + 3600, 5) == []
    # a store emptied this way starts afresh, as a new one would
    assert (await store.apply(P0, None, 1, delta_of(req(T0, "c")))).outcome is Outcome.APPLIED
    assert await store.top_users(T0, T0 + 300, 5) == [("c", 1)]
