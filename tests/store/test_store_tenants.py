"""Per-tenant counts (issue 22): the same contract for every store.

``top_tenants`` ranks tenants by requests in the 5-minute window and answers
their exact counts over both windows and their heaviest users, the same in
the memory store and in Redis (single node and Cluster).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator, Delta
from stream_sentinel.events import RequestEvent, ResponseEvent
from stream_sentinel.model import NANO, TenantCounts, WindowCounts
from stream_sentinel.store.base import Outcome, PartitionId, Store
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect

STORES = ["memory", "redis", "cluster"]
T0 = 1_780_000_200  # a multiple of 300
WIDTH = 60
SHORT = (T0, T0 + 300)
HOUR = (T0 + 300 - 3600, T0 + 300)
P0 = PartitionId("llm.requests", 0)
P1 = PartitionId("llm.requests", 1)
R0 = PartitionId("llm.responses", 0)
HOSTILE = ["a:b", "{x}", "t\nnew", "é" * 256, "*", " ", "\x00nul", "../..", "😀"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(retention_s=4000)
        return
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "redis_cluster_url"
    )
    redis = redis_store(url)
    try:
        yield redis
    finally:
        await redis.drop_all()
        await redis.close()


def redis_store(url: str) -> RedisStore:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return RedisStore(
        connect(url), prefix=prefix, bucket_width=WIDTH, counter_ttl_s=4000, user_ttl_s=700
    )


def req(ts: float, user: str, tenant: str | None, blocked: bool = False) -> RequestEvent:
    return RequestEvent(uuid.uuid4().hex, ts, user, blocked, tenant=tenant)


def resp(
    ts: float, user: str, tenant: str | None, safe: bool = True, cost: float = 0.001
) -> ResponseEvent:
    return ResponseEvent(uuid.uuid4().hex, ts, user, safe, cost_usd=cost, tenant=tenant)


def delta_of(events: Sequence[RequestEvent | ResponseEvent]) -> Delta:
    agg = BatchAggregator(WIDTH, tenants=True)
    delta: Delta = {}
    agg.count_requests(delta, [e for e in events if isinstance(e, RequestEvent)])
    agg.count_responses(delta, [e for e in events if isinstance(e, ResponseEvent)])
    return delta


async def put(
    store: Store, part: PartitionId, events: Sequence[RequestEvent | ResponseEvent]
) -> None:
    stored = await store.load_offset(part)
    result = await store.apply(part, stored, (stored or 0) + len(events), delta_of(events))
    assert result.outcome is Outcome.APPLIED


async def test_tenants_ranked_by_short_requests_with_exact_windows(store: Store) -> None:
    await put(
        store, P0, [req(T0 + 10, "u1", "big"), req(T0 + 70, "u2", "big"), req(T0 + 80, "u2", "big")]
    )
    await put(store, P1, [req(T0 + 20, "u3", "small", blocked=True), req(T0 + 30, "u4", None)])
    # an hour-old request: in the spend window, not in the ranking window
    await put(store, P1, [req(T0 - 1000, "u5", "old"), req(T0 - 900, "u5", "small")])
    await put(
        store,
        R0,
        [
            resp(T0 + 15, "u1", "big", cost=0.5),
            resp(T0 - 2000, "u3", "small", safe=False, cost=2.0),
        ],
    )
    found = await store.top_tenants(SHORT, HOUR, 5, 3)
    assert [t.tenant for t in found] == ["big", "small"]  # "old": no request in the short window
    big, small = found
    assert big.short == WindowCounts(3, 0, 1, 1, NANO // 2, 0)
    assert big.hour == big.short
    assert big.top_users == (("u2", 2), ("u1", 1))
    assert small.short == WindowCounts(1, 1, 0, 0, 0, 0)
    assert small.hour == WindowCounts(2, 1, 1, 0, 2 * NANO, 0)
    assert small.top_users == (("u3", 1),)


async def test_partitions_merge_and_ties_go_by_tenant(store: Store) -> None:
    await put(store, P0, [req(T0 + 1, "a", "t2"), req(T0 + 2, "b", "t1")])
    await put(store, P1, [req(T0 + 3, "a", "t2"), req(T0 + 4, "c", "t1"), req(T0 + 5, "d", "t3")])
    found = await store.top_tenants(SHORT, HOUR, 2, 1)
    assert [(t.tenant, t.short.requests) for t in found] == [("t1", 2), ("t2", 2)]
    assert found[1].top_users == (("a", 2),)  # the same user in two partitions, summed


async def test_a_fenced_batch_counts_no_tenant_twice(store: Store) -> None:
    batch = [req(T0 + 1, "a", "t"), resp(T0 + 2, "a", "t")]
    await put(store, P0, batch)
    again = await store.apply(P0, None, 2, delta_of(batch))
    assert again.outcome is Outcome.FENCED
    (t,) = await store.top_tenants(SHORT, HOUR, 3, 3)
    assert (t.short.requests, t.short.responses) == (1, 1)


async def test_hostile_tenant_names_are_counted_as_given(store: Store) -> None:
    events = [req(T0 + i, f"u{i}", name) for i, name in enumerate(HOSTILE)]
    await put(store, P0, events)
    found = await store.top_tenants(SHORT, HOUR, len(HOSTILE), 1)
    assert sorted(t.tenant for t in found) == sorted(HOSTILE)
    assert all(t.short.requests == 1 for t in found)


async def test_no_tenant_no_ranking(store: Store) -> None:
    await put(store, P0, [req(T0 + 1, "a", None), resp(T0 + 2, "a", None)])
    assert await store.top_tenants(SHORT, HOUR, 3, 3) == []
    assert await store.top_tenants(SHORT, HOUR, 0, 3) == []


def _direct(events: Sequence[RequestEvent | ResponseEvent], k: int) -> list[TenantCounts]:
    def counts(lo: int, hi: int, tenant: str) -> WindowCounts:
        mine = [e for e in events if e.tenant == tenant and lo <= e.ts < hi]
        reqs = [e for e in mine if isinstance(e, RequestEvent)]
        resps = [e for e in mine if isinstance(e, ResponseEvent)]
        cost = sum(round((e.cost_usd or 0) * NANO) for e in resps)
        return WindowCounts(
            len(reqs), sum(e.blocked for e in reqs), len(resps), sum(e.safe for e in resps), cost, 0
        )

    ranked = Counter(
        e.tenant
        for e in events
        if isinstance(e, RequestEvent) and e.tenant and SHORT[0] <= e.ts < SHORT[1]
    )
    order = sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    result = []
    for tenant, _ in order:
        users = Counter(
            e.user_id
            for e in events
            if isinstance(e, RequestEvent) and e.tenant == tenant and SHORT[0] <= e.ts < SHORT[1]
        )
        top = tuple(sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))[:2])
        result.append(TenantCounts(tenant, counts(*SHORT, tenant), counts(*HOUR, tenant), top))
    return result


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # partition
            st.integers(-3300, 299),  # seconds from T0
            st.sampled_from(["u1", "u2", "u3"]),
            st.sampled_from(["t1", "t2", "t3", "t4", None]),
            st.booleans(),  # request or response
            st.booleans(),  # blocked / safe
        ),
        max_size=40,
    )
)
async def test_top_tenants_agree_with_a_direct_count(
    store: Store, rows: list[tuple[int, int, str, str | None, bool, bool]]
) -> None:
    await store.drop_all()
    events: list[RequestEvent | ResponseEvent] = []
    for part, dt, user, tenant, is_request, flag in rows:
        event: RequestEvent | ResponseEvent = (
            req(T0 + dt, user, tenant, flag) if is_request else resp(T0 + dt, user, tenant, flag)
        )
        events.append(event)
        await put(store, (P0, P1, R0)[part], [event])
    assert await store.top_tenants(SHORT, HOUR, 3, 2) == _direct(events, 3)
