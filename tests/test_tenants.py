"""Per-tenant signals: the pure rules, the hold state, and ticks over a real store."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from stream_sentinel.aggregate import BucketDelta, TenantDelta
from stream_sentinel.baselines import LearnedBaselines
from stream_sentinel.evaluate import Evaluator, StaticBaselines
from stream_sentinel.model import SIGNALS, TenantCounts, Tick, WindowCounts
from stream_sentinel.rules import Baseline, Hysteresis, RulesConfig
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.history import MemoryHistory, TickRecord
from stream_sentinel.store.lease import RedisLease
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.store.redis_client import connect
from stream_sentinel.tenants import TenantHolds, evaluate_tenants, with_global_fallback
from stream_sentinel.ticker import TickLoop

RULES = RulesConfig(clear_ticks=3)
STATIC = {"blocked_pct": 0.1, "safety_pct": 99.5, "top_user_rps": 5.0, "spend_hour": 40.0}
BASE = {name: Baseline(v) for name, v in STATIC.items()}
T0 = 1_790_035_200  # midnight UTC
P = PartitionId("llm.requests", 0)


def counts(tenant: str, requests: int, blocked: int) -> TenantCounts:
    short = WindowCounts(requests, blocked, 0, 0, 0, 0)
    return TenantCounts(tenant, short, short, (("u1", requests // 2),))


def test_a_tenant_is_judged_by_the_global_rules_on_its_own_counts() -> None:
    ticks, holds = evaluate_tenants(
        [counts("big", 6000, 6), counts("small", 300, 9)],
        lambda _: BASE,
        RULES,
        TenantHolds(),
        learning=False,
    )
    big, small = ticks
    assert (big.tenant, big.status, big.red, big.requests) == ("big", "ok", (), 6000)
    # 3 % blocked against 0.1 %: red, and significant at 300 requests
    assert small.status == "warning" and small.red == ("blocked_pct",)
    assert small.signals["blocked_pct"].p_value is not None
    assert small.top_users == (("u1", 0.5),)
    assert set(holds.holds) == {"big", "small"}


def test_a_red_tenant_is_held_and_one_that_leaves_the_top_is_forgotten() -> None:
    _, holds = evaluate_tenants(
        [counts("t", 300, 9)], lambda _: BASE, RULES, TenantHolds(), learning=False
    )
    (calm,), held = evaluate_tenants(
        [counts("t", 300, 0)], lambda _: BASE, RULES, holds, learning=False
    )
    assert calm.status == "warning"  # clear_ticks 3: the first calm tick still holds
    _, gone = evaluate_tenants(
        [counts("other", 300, 0)], lambda _: BASE, RULES, held, learning=False
    )
    assert set(gone.holds) == {"other"}
    (back,), _ = evaluate_tenants(
        [counts("t", 300, 0)], lambda _: BASE, RULES, gone, learning=False
    )
    assert back.status == "ok"


def test_while_learning_a_red_tenant_is_learning() -> None:
    (t,), _ = evaluate_tenants(
        [counts("t", 300, 9)], lambda _: BASE, RULES, TenantHolds(), learning=True
    )
    assert t.status == "learning" and t.red == ("blocked_pct",)


def test_holds_survive_json_and_refuse_garbage() -> None:
    _, holds = evaluate_tenants(
        [counts("a\nb", 300, 9), counts("calm", 300, 0)],
        lambda _: BASE,
        RULES,
        TenantHolds(),
        learning=False,
    )
    again = TenantHolds.from_json(holds.to_json())
    assert again.of("a\nb").hold("blocked_pct").red
    assert "calm" not in again.holds  # nothing held: not saved
    for bad in ([], {"t": []}, {"t": {"blocked_pct": {"red": "yes", "clear_streak": 0}}}):
        with pytest.raises(ValueError):
            TenantHolds.from_json(bad)
    assert TenantHolds().of("x") == Hysteresis()


def test_global_fallback_marks_borrowed_baselines() -> None:
    shared = {
        "blocked_pct": Baseline(0.2, "learned"),
        "safety_pct": Baseline(99.5, "static"),
        "top_user_rps": Baseline(1.0, "floor"),
        "spend_hour": Baseline(3.0, "learning"),
    }
    own = {"blocked_pct": Baseline(2.0, "learned")}
    out = with_global_fallback(own, shared)
    assert out["blocked_pct"] == Baseline(2.0, "learned")
    assert out["safety_pct"] == Baseline(99.5, "static")
    assert out["top_user_rps"] == Baseline(1.0, "global")
    assert out["spend_hour"] == Baseline(3.0, "learning")


def minute(at: int, per_tenant: dict[str, tuple[int, int]]) -> dict[int, BucketDelta]:
    bucket = BucketDelta()
    for tenant, (requests, blocked) in per_tenant.items():
        users = Counter({f"{tenant}-u{i}": requests // 50 for i in range(50)})
        bucket.tenants[tenant] = TenantDelta(requests, blocked, users=users)
        bucket.requests += requests
        bucket.blocked += blocked
        bucket.users.update(users)
    return {at: bucket}


async def test_ticks_carry_the_top_tenants_and_a_globally_invisible_wave() -> None:
    store = MemoryStore(retention_s=7200)
    evaluator = Evaluator(store, RULES, StaticBaselines(STATIC), tenants_top_k=2)
    for m in range(5):
        wave = 9 if m >= 2 else 0  # 3 % of the small tenant's requests, from minute 2
        delta = minute(T0 + 60 * m, {"big": (4000, 2), "mid": (500, 0), "small": (300, wave)})
        await store.apply(P, m or None, m + 1, delta)
    tick = await evaluator.evaluate(T0 + 300)
    assert [t.tenant for t in tick.tenants] == ["big", "mid"]  # top 2 by requests
    evaluator3 = Evaluator(store, RULES, StaticBaselines(STATIC), tenants_top_k=3)
    tick = await evaluator3.evaluate(T0 + 300)
    assert tick.status == "ok"  # 0.10 % blocked over the whole traffic: not red
    small = tick.tenants[2]
    assert (small.tenant, small.status, small.red) == ("small", "warning", ("blocked_pct",))
    assert tick.to_json()["tenants"]["small"]["red"] == ["blocked_pct"]
    off = Evaluator(store, RULES, StaticBaselines(STATIC))
    assert (await off.evaluate(T0 + 300)).tenants == ()
    assert "tenants" not in (await off.evaluate(T0 + 300)).to_json()


async def test_a_stale_tick_judges_no_tenant_and_keeps_the_holds() -> None:
    store = MemoryStore(retention_s=7200)
    evaluator = Evaluator(store, RULES, StaticBaselines(STATIC), tenants_top_k=3)
    await store.apply(P, None, 1, minute(T0, {"small": (300, 9)}))
    first = await evaluator.evaluate(T0 + 60)
    assert first.tenants[0].status == "warning"
    held = evaluator.tenant_holds
    stale = await evaluator.evaluate(T0 + 120, stale_reason="store rebuilding")
    assert stale.status == "stale" and stale.tenants == ()
    assert evaluator.tenant_holds == held


async def test_a_tenant_learns_its_own_baseline_and_borrows_the_global_one_meanwhile() -> None:
    """Tenant "a" blocks 2 % as its normal, 7x the whole traffic's 0.3 %: red
    against the global baseline until it has an hour of its own history."""
    store = MemoryStore(retention_s=7200)
    history = MemoryHistory(keep_s=14 * 86400)
    baselines = LearnedBaselines(history, static={}, learned=SIGNALS, learning_days=0)
    evaluator = Evaluator(store, RULES, baselines, tenants_top_k=5)
    ticks = []
    for m in range(200):
        at = T0 + 60 * m
        b_blocked = 1 if m % 2 else 0
        delta = minute(at, {"a": (50, 1), "b": (450, b_blocked)})
        await store.apply(P, m or None, m + 1, delta)
        ticks.append(await evaluator.evaluate(at + 60))
    early = next(t for t in ticks[10:] if t.tenants)
    a_early = {t.tenant: t for t in early.tenants}["a"]
    assert a_early.signals["blocked_pct"].baseline_source == "global"
    assert a_early.red == ("blocked_pct",)
    late = {t.tenant: t for t in ticks[-1].tenants}
    a_late = late["a"].signals["blocked_pct"]
    assert a_late.baseline_source == "learned"
    assert a_late.baseline == pytest.approx(2.0)
    assert late["a"].status == "ok"
    assert late["b"].signals["blocked_pct"].baseline == pytest.approx(100 / 900, rel=0.05)
    records = await history.records(T0, T0 + 7200 * 2)
    with_tenants = [r for r in records if r.tenants]
    assert with_tenants and all(r.at % 300 == 0 for r in with_tenants)
    assert TickRecord.decode(with_tenants[0].encode()) == with_tenants[0]


async def test_a_new_leader_takes_over_the_tenants_held_red(redis_url: str) -> None:
    store = MemoryStore(retention_s=7200)
    await store.apply(P, None, 1, minute(T0, {"small": (300, 9)}))
    client = connect(redis_url)
    prefix = f"t{uuid.uuid4().hex[:10]}"

    async def healthy() -> None:
        return None

    def loop_for(evaluator: Evaluator, replica: str) -> TickLoop:
        lease = RedisLease(client, prefix=prefix, replica_id=replica, ttl_ms=60_000)

        async def publish(tick: Tick, deadline: float) -> None:
            return None

        return TickLoop(
            evaluator,
            lease,
            tick_seconds=60,
            grace_s=0.0,
            lease_ttl_s=60.0,
            health=healthy,
            publish=publish,
            on_tick=lambda tick, took: None,
        )

    first = Evaluator(store, RULES, StaticBaselines(STATIC), tenants_top_k=3)
    leader = loop_for(first, "a")
    await leader._renew()
    await leader._evaluate(T0 + 60)
    assert first.tenant_holds.of("small").hold("blocked_pct").red
    await leader.drain()
    await leader._lease.release()
    successor = Evaluator(store, RULES, StaticBaselines(STATIC), tenants_top_k=3)
    follower = loop_for(successor, "b")
    await follower._renew()  # takes the lead: restores the saved state
    assert follower.leader
    assert successor.tenant_holds == first.tenant_holds
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    await client.delete(*keys)
    await client.aclose()
    # the calm tick after the handover is still held, as it would have been
    await store.apply(P, 1, 2, minute(T0 + 60, {"small": (300, 0)}))
    tick = await successor.evaluate(T0 + 360)
    assert tick.tenants[0].status == "warning"
