"""Tenant events on the alerts topic: one per move to or from warning/critical,
state bounded by the tick's tenants, a red tenant leaving the top says so once."""

from __future__ import annotations

import orjson
from tenant_ticks import HOSTILE_TENANTS, critical, tenant, tick_with

from stream_sentinel.alerts import (
    TENANT_EVENT,
    UNTRACKED,
    TenantTransitions,
    tenant_alert_event,
)
from stream_sentinel.model import Tick


def _moves(tracker: TenantTransitions, tick: Tick) -> list[tuple[str, str | None, str]]:
    return [
        (c.tenant, c.previous, UNTRACKED if c.now is None else c.now.status)
        for c in tracker.update(tick)
    ]


def test_moves_to_and_from_attention_only() -> None:
    tracker = TenantTransitions()
    assert _moves(tracker, tick_with([tenant("a"), tenant("b", "learning")])) == []
    assert _moves(tracker, tick_with([tenant("a", "learning"), tenant("b")])) == []
    warn = tenant("a", "warning", ("spend_hour",))
    assert _moves(tracker, tick_with([warn, tenant("b")])) == [("a", "learning", "warning")]
    assert _moves(tracker, tick_with([warn, tenant("b")])) == []  # unchanged: nothing
    assert _moves(tracker, tick_with([critical("a"), tenant("b")])) == [
        ("a", "warning", "critical")
    ]
    assert _moves(tracker, tick_with([tenant("a"), tenant("b")])) == [("a", "critical", "ok")]


def test_a_fresh_tracker_announces_tenants_that_need_attention() -> None:
    tracker = TenantTransitions()
    moves = _moves(tracker, tick_with([critical("a"), tenant("b")]))
    assert moves == [("a", None, "critical")]


def test_a_red_tenant_that_leaves_the_top_is_untracked_once_then_forgotten() -> None:
    tracker = TenantTransitions()
    tracker.update(tick_with([critical("a"), tenant("b")]))
    assert _moves(tracker, tick_with([tenant("b"), tenant("c")])) == [("a", "critical", UNTRACKED)]
    assert set(tracker.statuses) == {"b", "c"}
    assert _moves(tracker, tick_with([tenant("b"), tenant("c")])) == []
    # an ok tenant leaving says nothing; coming back red is news again
    assert _moves(tracker, tick_with([tenant("b"), critical("a")])) == [("a", None, "critical")]


def test_state_never_exceeds_the_tick_tenants_whatever_the_churn() -> None:
    tracker = TenantTransitions()
    for i in range(200):
        top = [critical(f"t{i}-{j}") if j % 2 else tenant(f"t{i}-{j}") for j in range(5)]
        tracker.update(tick_with(top))
        assert len(tracker.statuses) <= 5


def test_a_stale_tick_says_nothing_about_tenants() -> None:
    tracker = TenantTransitions()
    tracker.update(tick_with([critical("a")]))
    assert tracker.update(tick_with([], status="stale")) == []
    assert tracker.statuses == {"a": "critical"}
    assert _moves(tracker, tick_with([tenant("a")])) == [("a", "critical", "ok")]


def test_no_tenants_no_events() -> None:
    tracker = TenantTransitions()
    for status in ("ok", "warning", "critical", "learning", "stale"):
        assert tracker.update(tick_with([], status=status)) == []
    assert tracker.statuses == {}


def test_event_carries_the_raw_tenant_as_a_json_value() -> None:
    tracker = TenantTransitions()
    changes = tracker.update(tick_with([critical(n) for n in HOSTILE_TENANTS]))
    assert len(changes) == len(HOSTILE_TENANTS)
    for change in changes:
        raw = orjson.dumps(tenant_alert_event(change, at=1_800_000_060, epoch=3, replica="r"))
        assert b"\n" not in raw
        event = orjson.loads(raw)
        assert event["tenant"] == change.tenant  # round-trips exactly
        assert event["type"] == TENANT_EVENT
        assert (event["status"], event["previous"]) == ("critical", None)
        assert event["red"] == ["blocked_pct", "safety_pct"]
        assert event["signals"]["blocked_pct"]["value"] == 40.0
        assert event["signals"]["blocked_pct"]["baseline_source"] == "global"
        assert event["at"] == "2027-01-15T08:01:00Z"
        assert event["top_users"] == [["mallory", 0.4], ["line\n<b>x</b>", 0.1]]
        assert (event["leader_epoch"], event["replica"], event["requests"]) == (3, "r", 100)


def test_an_untracked_event_says_why_and_carries_no_readings() -> None:
    tracker = TenantTransitions()
    tracker.update(tick_with([critical("a")]))
    (change,) = tracker.update(tick_with([tenant("b")]))
    event = tenant_alert_event(change, at=1_800_000_000, epoch=1, replica="r")
    assert event["status"] == UNTRACKED and event["previous"] == "critical"
    assert event["signals"] == {} and event["red"] == [] and event["requests"] is None
    assert event["top_users"] == []
    assert "no longer evaluated" in event["reason"]
