"""Leader lease against a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stream_sentinel.store.base import StoreUnavailable
from stream_sentinel.store.lease import LocalLease, RedisLease
from stream_sentinel.store.redis_client import connect

pytestmark = pytest.mark.integration


async def test_one_holder_renewal_release_and_takeover(any_redis_url: str) -> None:
    prefix = f"lease{uuid.uuid4().hex[:8]}"
    client = connect(any_redis_url)
    a = RedisLease(client, prefix=prefix, replica_id="a", ttl_ms=300)
    b = RedisLease(client, prefix=prefix, replica_id="b", ttl_ms=300)
    try:
        first = await a.acquire()
        assert first >= 1 and a.held
        assert await b.acquire() == 0 and not b.held
        assert await a.acquire() == first  # renewal keeps the epoch
        await a.release()
        assert not a.held
        second = await b.acquire()
        assert second == first + 1  # a new holder always gets a larger fencing epoch
        # b stops renewing (as if killed): a takes over once the lease expires
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (epoch := await a.acquire()) == 0:
            assert loop.time() < deadline, "lease never expired"
            await asyncio.sleep(0.05)
        assert epoch == second + 1
        assert await b.acquire() == 0
    finally:
        await client.delete(f"{prefix}:{{leader}}:holder", f"{prefix}:{{leader}}:epoch")
        await client.aclose()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1/0"])
async def test_unreachable_redis_is_not_leadership(url: str) -> None:
    client = connect(url, socket_connect_timeout=0.5)
    lease = RedisLease(client, prefix="x", replica_id="a", ttl_ms=1000)
    with pytest.raises(StoreUnavailable):
        await lease.acquire()
    assert not lease.held
    await client.aclose()


async def test_local_lease_is_always_held() -> None:
    lease = LocalLease()
    assert await lease.acquire() == 1 and lease.held
    await lease.release()
    assert not lease.held


async def test_evaluator_state_is_handed_over_and_fenced(any_redis_url: str) -> None:
    prefix = f"lease{uuid.uuid4().hex[:8]}"
    client = connect(any_redis_url)
    a = RedisLease(client, prefix=prefix, replica_id="a", ttl_ms=5000)
    b = RedisLease(client, prefix=prefix, replica_id="b", ttl_ms=5000)
    try:
        assert await a.acquire() >= 1
        assert await a.load_state() is None
        await a.save_state(b'{"blocked_pct": {"red": true, "clear_streak": 1}}')
        await b.save_state(b"not the holder")  # a follower cannot overwrite it
        await a.release()
        assert await b.acquire() >= 1
        assert await b.load_state() == b'{"blocked_pct": {"red": true, "clear_streak": 1}}'
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])
        await client.aclose()


async def test_alert_state_is_kept_beside_the_lease_and_fenced(any_redis_url: str) -> None:
    # The Alertmanager episodes (when each alert started) outlive a leader; only
    # the holder writes them, and on a Cluster the fenced write is one slot.
    prefix = f"lease{uuid.uuid4().hex[:8]}"
    client = connect(any_redis_url)
    a = RedisLease(client, prefix=prefix, replica_id="a", ttl_ms=5000)
    b = RedisLease(client, prefix=prefix, replica_id="b", ttl_ms=5000)
    try:
        assert await a.load_alert_state() is None
        assert await a.acquire() >= 1
        assert await a.save_alert_state(b'{"v": 1}') is True
        assert await b.acquire() == 0
        assert await b.save_alert_state(b"forged") is False  # not the holder
        assert await b.load_alert_state() == b'{"v": 1}'
        await a.release()
        assert await b.acquire() >= 1
        assert await b.load_alert_state() == b'{"v": 1}'  # the new leader continues
        assert await b.save_alert_state(b'{"v": 2}') is True
        assert await a.load_alert_state() == b'{"v": 2}'
    finally:
        await client.delete(
            *(f"{prefix}:{{leader}}:{k}" for k in ("holder", "epoch", "state", "alertmanager"))
        )
        await client.aclose()


async def test_alert_state_read_from_an_unreachable_store_raises() -> None:
    client = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    lease = RedisLease(client, prefix="x", replica_id="a", ttl_ms=1000)
    with pytest.raises(StoreUnavailable):
        await lease.load_alert_state()
    assert await lease.save_alert_state(b"{}") is False
    await client.aclose()


async def test_local_lease_keeps_the_alert_state_in_memory() -> None:
    lease = LocalLease()
    assert await lease.load_alert_state() is None
    assert await lease.save_alert_state(b"x") is True
    assert await lease.load_alert_state() == b"x"
