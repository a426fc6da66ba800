"""Tenant alerts: one per red tenant signal and one per critical tenant, labelled
with the escaped, bounded tenant; resolved when they clear or leave the top;
kept alive by a stale tick; carried across a leader handover."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_ticks import HOSTILE_TENANTS, critical, tenant, tick_with

from stream_sentinel import untrusted
from stream_sentinel.alertmanager import (
    ALERTNAMES,
    ANNOTATION_CHARS,
    RESOLVED_RESEND_S,
    AlertKind,
    Episode,
    advance,
    dump_state,
    firing,
    load_state,
    postable_alerts,
)

TICK_S = 60
NOW = 1_800_000_010.0
SEVERITIES: Mapping[AlertKind, str] = {"signal_red": "warning", "critical": "page", "stale": "page"}


def _posted(episodes: Mapping[str, Episode]) -> list[dict[str, Any]]:
    return postable_alerts(
        episodes,
        static_labels={"service": "gw"},
        severities=SEVERITIES,
        generator_url="",
        now_firing=firing(tick_with([])),
    )


def test_a_critical_tenant_gives_signal_alerts_and_a_critical_alert() -> None:
    conds = firing(tick_with([critical("acme"), tenant("quiet")])).conditions
    labels = sorted((c.kind, tuple(sorted(c.labels.items()))) for c in conds)
    red = ALERTNAMES["tenant_signal_red"]
    assert labels == [
        ("tenant_critical", (("alertname", ALERTNAMES["tenant_critical"]), ("tenant", "acme"))),
        ("tenant_signal_red", (("alertname", red), ("signal", "blocked_pct"), ("tenant", "acme"))),
        ("tenant_signal_red", (("alertname", red), ("signal", "safety_pct"), ("tenant", "acme"))),
    ]
    crit = next(c for c in conds if c.kind == "tenant_critical")
    assert crit.annotations["tenant"] == '"acme"'
    assert crit.annotations["red_signals"] == "blocked_pct, safety_pct"
    assert "baseline 0.1 global" in crit.annotations["description"]
    # its busiest users, escaped as in the global alerts
    assert (
        crit.annotations["top_users"]
        == '"mallory" 0.40 rps, "line\\n\\u003cb\\u003ex\\u003c/b\\u003e" 0.10 rps'
    )


def test_severity_follows_the_tenant_composite() -> None:
    warn = tenant("w", "warning", ("spend_hour",))
    episodes = advance({}, firing(tick_with([warn, critical("c")])), at=1, now=NOW,
                       tick_seconds=TICK_S)  # fmt: skip
    sev = {(a["labels"]["alertname"], a["labels"]["tenant"], a["labels"].get("signal")):
           a["labels"]["severity"] for a in _posted(episodes)}  # fmt: skip
    assert sev == {
        ("LLMSecurityTenantSignalRed", "w", "spend_hour"): "warning",
        ("LLMSecurityTenantSignalRed", "c", "blocked_pct"): "warning",
        ("LLMSecurityTenantSignalRed", "c", "safety_pct"): "warning",
        ("LLMSecurityTenantCritical", "c", None): "page",
    }


def test_hostile_tenants_get_bounded_distinct_labels_and_escaped_annotations() -> None:
    conds = firing(tick_with([critical(n) for n in HOSTILE_TENANTS])).conditions
    crits = [c for c in conds if c.kind == "tenant_critical"]
    assert {c.labels["tenant"] for c in crits} == {untrusted.label(n) for n in HOSTILE_TENANTS}
    assert len({c.key for c in conds}) == len(conds) == 3 * len(HOSTILE_TENANTS)
    for cond in conds:
        label = cond.labels["tenant"]
        assert all(" " <= ch <= "~" for ch in label) and len(label) <= untrusted.LABEL_CHARS
        for text in cond.annotations.values():
            assert len(text) <= ANNOTATION_CHARS
            assert not set(text) & set("<>&\n\r\x00\x1b\u202e")


def test_a_tenant_alert_resolves_when_it_clears_or_leaves_the_top() -> None:
    first = advance({}, firing(tick_with([critical("a"), critical("b")])), at=1, now=NOW,
                    tick_seconds=TICK_S)  # fmt: skip
    assert len(first) == 6
    # a cleared, b left the top: both resolved, neither kept firing
    later = advance(first, firing(tick_with([tenant("a"), tenant("c")])), at=61, now=NOW + 60,
                    tick_seconds=TICK_S)  # fmt: skip
    assert len(later) == 6 and all(e.resolved for e in later.values())
    assert all(e.annotations["summary"].startswith("resolved, was: ") for e in later.values())
    # once resolved long enough, forgotten: the state stays bounded
    gone = advance(later, firing(tick_with([tenant("a")])), at=999, now=NOW + 1000,
                   tick_seconds=TICK_S)  # fmt: skip
    assert gone == {}


def test_a_stale_tick_keeps_tenant_alerts_firing() -> None:
    first = advance({}, firing(tick_with([critical("a")])), at=1, now=NOW, tick_seconds=TICK_S)
    stale = advance(first, firing(tick_with([], status="stale")), at=61, now=NOW + 60,
                    tick_seconds=TICK_S)  # fmt: skip
    kept = [e for e in stale.values() if e.kind.startswith("tenant")]
    assert len(kept) == 3 and not any(e.resolved for e in kept)
    assert all(e.starts_at == 1 and e.ends_at > NOW + 60 for e in kept)


def test_tenant_episodes_survive_dump_and_load() -> None:
    episodes = advance({}, firing(tick_with([critical(n) for n in HOSTILE_TENANTS])), at=1,
                       now=NOW, tick_seconds=TICK_S)  # fmt: skip
    assert load_state(dump_state(episodes)) == episodes
    # the next leader continues them: same starts_at
    again = advance(load_state(dump_state(episodes)),
                    firing(tick_with([critical(n) for n in HOSTILE_TENANTS])), at=61,
                    now=NOW + 60, tick_seconds=TICK_S)  # fmt: skip
    assert {k: e.starts_at for k, e in again.items()} == {k: 1 for k in episodes}


def test_no_tenants_changes_nothing() -> None:
    for status in ("ok", "warning", "critical", "stale"):
        tick = tick_with([], status=status)
        assert not [c for c in firing(tick).conditions if c.kind.startswith("tenant")]


def test_episodes_stay_bounded_while_the_top_churns() -> None:
    top_k = 5
    episodes: dict[str, Episode] = {}
    most = 0
    for i in range(120):  # two hours of ticks, a fresh set of red tenants every tick
        tick = tick_with([critical(f"t{i}-{j}") for j in range(top_k)], at=i * TICK_S)
        episodes = advance(episodes, firing(tick), at=i * TICK_S, now=NOW + i * TICK_S,
                           tick_seconds=TICK_S)  # fmt: skip
        most = max(most, len(episodes))
    # firing now, plus those resolved within RESOLVED_RESEND_S (5 ticks of 60 s)
    per_tick = top_k * 3
    assert most <= per_tick * (1 + RESOLVED_RESEND_S // TICK_S)
    assert len(episodes) == most  # it reached the bound and stays there
