"""One contract, two histories: MemoryHistory and RedisHistory must behave the same."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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


@pytest.fixture(params=["memory", "file", "redis", "cluster"])
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HistoryFactory]:
    """Makes history objects over one backend: a second object is another
    replica (Redis), a restarted process (file) or, for memory, the same
    process's history."""
    if request.param == "memory":
        shared = MemoryHistory(KEEP_S)
        yield lambda: shared
        return
    if request.param == "file":
        path = tmp_path / "history.jsonl"
        yield lambda: MemoryHistory(KEEP_S, path=path)
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


async def test_visible_since_is_set_once(factory: HistoryFactory) -> None:
    h = factory()
    assert await h.visible_since(None) is None
    assert await h.visible_since(T0 - 3600) == T0 - 3600
    assert await h.visible_since(T0) == T0 - 3600
    assert await factory().visible_since(None) == T0 - 3600


async def test_counts_and_stale_ticks_round_trip(factory: HistoryFactory) -> None:
    h = factory()
    blocked = Point(0.05, 6000, "ok", True, 3)
    await h.append(TickRecord(T0, {"blocked_pct": blocked}, stale=True))
    (got,) = await factory().records(T0, T0 + 1)
    assert got == TickRecord(T0, {"blocked_pct": blocked}, stale=True)


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
        await h.visible_since(T0)
        await h.append(record(T0))
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
        tag = f"{prefix}:{{history}}"
        assert keys == [f"{tag}:first", f"{tag}:since", f"{tag}:ticks"]
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


LEGACY = b'[%d, {"blocked_pct": [0.05, 6000, "ok", true], "safety_pct": [99.8, 5000, "ok", true],'
LEGACY += b' "spend_hour": [4.5, 900, "ok", false]}]'


def check_legacy(got: list[TickRecord]) -> None:
    (one,) = got
    assert one.at == T0 and not one.stale
    assert one.points["blocked_pct"] == Point(0.05, 6000, "ok", True, 3)
    assert one.points["safety_pct"] == Point(99.8, 5000, "ok", True, 10)
    assert one.points["spend_hour"] == Point(4.5, 900, "ok", False, None)


async def test_redis_reads_records_written_before_window_counts(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        h = RedisHistory(client, prefix=prefix, keep_s=KEEP_S)
        await client.zadd(h.ticks_key, {LEGACY % T0: T0})
        with caplog.at_level(logging.INFO):
            check_legacy(await h.records(T0, T0 + 10))
        assert "1 records in" in caplog.text and "predate window counts" in caplog.text
    finally:
        await client.delete(h.ticks_key)
        await client.aclose()


def test_file_reads_records_written_before_window_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.jsonl"
    header = b'{"format": "stream-sentinel-history", "first_start": %d, "visible_since": null}'
    path.write_bytes(header % T0 + b"\n" + LEGACY % T0 + b"\n" + b"garbage\n")
    with caplog.at_level(logging.INFO):
        h = MemoryHistory(KEEP_S, path=path)
    check_legacy(h._records)
    assert "predate window counts" in caplog.text
    assert "skipped 1 malformed records" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff\n",
        b'{"format": "other"}\n',
        b"[1, {}]\n",
        b'{"format": "stream-sentinel-history", "first_start": "x"}\n',
    ],
)
async def test_an_unreadable_file_starts_afresh_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(content)
    h = MemoryHistory(KEEP_S, path=path)
    assert len(h) == 0 and await h.visible_since(None) is None
    assert "learning starts afresh" in caplog.text
    await h.append(record(T0))  # and the next write replaces it with a good file
    assert len(MemoryHistory(KEEP_S, path=path)) == 1


async def test_file_is_replaced_whole_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    h = MemoryHistory(KEEP_S, path=path)
    await h.first_start(T0)
    for i in range(300):  # 300 minutes, keep is 60
        await h.append(record(T0 + 60 * i))
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1 + KEEP_S // 60 + 1  # header + the kept hour (both ends)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.jsonl"]  # no temp file left


async def test_an_unwritable_file_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "h.jsonl"
    h = MemoryHistory(KEEP_S, path=path)
    await h.append(record(T0))
    await h.append(record(T0 + 60))
    assert len(h) == 2  # memory is still right
    assert caplog.text.count("not written (FileNotFoundError)") == 1


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
    st.none() | st.integers(0, 10**9),
)


@given(st.integers(0, 2**40), st.dictionaries(st.sampled_from(SIGNALS), points), st.booleans())
def test_encode_decode_round_trip(at: int, pts: dict[SignalName, Point], stale: bool) -> None:
    record = TickRecord(at, pts, stale)
    assert TickRecord.decode(record.encode()) == record


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
        b'{"v": 2, "at": 1, "stale": false, "signals": {"blocked_pct": [1, 2, "ok", true]}}',
        b'{"v": 2, "at": 1, "stale": false, "signals": {"blocked_pct": [1, 2, "ok", true, 1.5]}}',
        b'{"v": 2, "at": 1, "stale": 0, "signals": {}}',
        b'{"v": 2, "at": "1", "stale": false, "signals": {}}',
        b'{"v": 3, "at": 1, "stale": false, "signals": {}}',
        b'{"at": 1, "stale": false, "signals": {}}',
    ],
)
def test_decode_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(ValueError):
        TickRecord.decode(raw)
