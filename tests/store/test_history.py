"""One contract, two histories: MemoryHistory and RedisHistory must behave the same."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from stream_sentinel.model import SIGNALS, SignalName
from stream_sentinel.store.base import StoreUnavailable
from stream_sentinel.store.history import History, MemoryHistory, Point, RedisHistory, TickRecord
from stream_sentinel.store.redis_client import connect

T0 = 1_790_000_040  # a whole minute
KEEP_S = 3600


def record(at: int, value: float | None = 1.0, **points: Point) -> TickRecord:
    base: dict[str, Point] = {name: Point(value, 100, "ok") for name in SIGNALS}
    base.update(points)
    return TickRecord(at, {name: base[name] for name in SIGNALS})


HistoryFactory = Callable[[], History]


@pytest.fixture(params=["memory", "redis", "cluster"])
async def factory(request: pytest.FixtureRequest) -> AsyncIterator[HistoryFactory]:
    """Makes history objects over one backend: a second object is another
    replica (Redis) or, for memory, the same process's history."""
    if request.param == "memory":
        shared = MemoryHistory(KEEP_S)
        yield lambda: shared
        return
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    redis_url: str = request.getfixturevalue(name)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = connect(redis_url)
    yield lambda: RedisHistory(client, prefix=prefix, keep_s=KEEP_S)
    doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if doomed:
        await client.delete(*doomed)
    await client.aclose()


async def test_first_start_is_set_once(factory: HistoryFactory) -> None:
    h = factory()
    assert await h.first_start(T0) == T0
    assert await h.first_start(T0 + 86400) == T0
    # a restarted process or another replica sees the same first start
    assert await factory().first_start(T0 + 2 * 86400) == T0


async def test_records_round_trip_in_order_half_open(factory: HistoryFactory) -> None:
    h = factory()
    odd = Point(None, 0, "insufficient_data", judged=False)
    red = Point(12.5, 7, "red", judged=True)
    for at in (T0 + 120, T0, T0 + 60):  # out of order on purpose
        await h.append(record(at, float(at - T0), blocked_pct=odd, spend_hour=red))
    got = await h.records(T0, T0 + 120)
    assert [r.at for r in got] == [T0, T0 + 60]
    assert got[1].points["safety_pct"] == Point(60.0, 100, "ok", True)
    assert got[1].points["blocked_pct"] == odd
    assert got[1].points["spend_hour"] == red
    assert [r.at for r in await factory().records(T0 - 1, T0 + 121)] == [T0, T0 + 60, T0 + 120]
    assert await h.records(T0 + 121, T0 + 10_000) == []


async def test_same_tick_written_twice_is_replaced(factory: HistoryFactory) -> None:
    h = factory()
    await h.append(record(T0, 1.0))
    await h.append(record(T0, 2.0))
    (only,) = await h.records(T0, T0 + 1)
    assert only.points["blocked_pct"].value == 2.0


async def test_trimmed_by_time_on_write(factory: HistoryFactory) -> None:
    h = factory()
    for i in range(200):  # 200 minutes, keep is 60
        await h.append(record(T0 + 60 * i))
    kept = await h.records(0, T0 + 10**6)
    newest = T0 + 60 * 199
    assert [r.at for r in kept] == list(range(newest - KEEP_S, newest + 1, 60))


async def test_empty_history_has_no_records(factory: HistoryFactory) -> None:
    assert await factory().records(0, 2**40) == []


async def test_redis_keys_share_one_slot_and_expire(any_redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = connect(any_redis_url)
    try:
        h = RedisHistory(client, prefix=prefix, keep_s=KEEP_S)
        await h.first_start(T0)
        await h.append(record(T0))
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
        assert keys == [f"{prefix}:{{history}}:first", f"{prefix}:{{history}}:ticks"]
        assert len({key_slot(k.encode()) for k in keys}) == 1
        for key in keys:
            assert 0 < await client.ttl(key) <= KEEP_S
    finally:
        doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if doomed:
            await client.delete(*doomed)
        await client.aclose()


async def test_redis_skips_malformed_members(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        h = RedisHistory(client, prefix=prefix, keep_s=KEEP_S)
        await h.append(record(T0))
        await client.zadd(h.ticks_key, {b"not json": T0 + 1, b'[1, "x"]': T0 + 2})
        assert [r.at for r in await h.records(T0, T0 + 10)] == [T0]
    finally:
        await client.delete(h.ticks_key, h.first_key)
        await client.aclose()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # no retries: the default backoff would only make the test slow
    client = aioredis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    h = RedisHistory(client, prefix="t", keep_s=KEEP_S)
    try:
        with pytest.raises(StoreUnavailable) as err:
            await h.first_start(T0)
        assert str(port) not in str(err.value)
        with pytest.raises(StoreUnavailable):
            await h.append(record(T0))
        with pytest.raises(StoreUnavailable):
            await h.records(0, T0)
    finally:
        await client.aclose()


values = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False)
points = st.builds(
    Point,
    values,
    st.integers(0, 10**9),
    st.sampled_from(["ok", "red", "insufficient_data"]),
    st.booleans(),
)


@given(st.integers(0, 2**40), st.dictionaries(st.sampled_from(SIGNALS), points))
def test_encode_decode_round_trip(at: int, pts: dict[SignalName, Point]) -> None:
    assert TickRecord.decode(TickRecord(at, pts).encode()) == TickRecord(at, pts)


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[1]",
        b'["1", {}]',
        b"[1, []]",
        b'[1, {"blocked_pct": [1, 2, "ok"]}]',
        b'[1, {"blocked_pct": [1, 2, "purple", true]}]',
        b'[1, {"blocked_pct": ["1", 2, "ok", true]}]',
        b'[1, {"blocked_pct": [1, 2.5, "ok", true]}]',
        b'[1, {"blocked_pct": [1, 2, "ok", 1]}]',
        b'[1, {"blocked_pct": [true, 2, "ok", true]}]',
    ],
)
def test_decode_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(ValueError):
        TickRecord.decode(raw)
