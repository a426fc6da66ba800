"""simulate with tenants: the shape, the fixed mapping, and attacks aimed at one tenant
that turn the tenant red by the contract's rules while the global signals stay calm."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from stream_sentinel.model import NANO, SignalName, WindowCounts
from stream_sentinel.signal_math import Baseline, RulesConfig, evaluate_signals
from stream_sentinel.sim.simulate import Scenario, simulate, simulation_tenants
from stream_sentinel.sim.tenants import target_shares, tenant_names
from stream_sentinel.sim.traffic import diurnal_factor

DAY0 = 1_793_059_200.0  # 2026-10-27T00:00:00Z
PEAK = DAY0 + 14.5 * 3600

Event = dict[str, Any]


def _events(**kw: Any) -> list[Event]:
    events, _ = simulate(**kw)
    return list(events)


# -- shape and mapping ----------------------------------------------------------


def test_the_documented_shape() -> None:
    shares = target_shares(20)
    assert shares[:3] == (0.25, 0.20, 0.15)
    assert shares[3:7] == (0.05,) * 4
    assert shares[7:] == pytest.approx((0.20 / 13,) * 13)
    assert sum(shares) == pytest.approx(1.0)
    # fewer tenants than the named head: the head scaled up to 100 %
    assert target_shares(2) == pytest.approx((0.25 / 0.45, 0.20 / 0.45))
    assert target_shares(1) == (1.0,)
    with pytest.raises(ValueError):
        target_shares(0)
    assert tenant_names(3) == ("team-01", "team-02", "team-03")
    assert tenant_names(120)[-1] == "team-120" and tenant_names(120)[0] == "team-001"


def test_the_mapping_reaches_the_shares_and_is_fixed_by_the_seed() -> None:
    plan = simulation_tenants(seed=1, tenants=20)
    for name, target in zip(plan.names, target_shares(20), strict=True):
        assert plan.shares[name] == pytest.approx(target, abs=0.002), name
        assert plan.members[name], name
    assert sum(len(m) for m in plan.members.values()) == len(plan.tenant_of) == 2000
    again = simulation_tenants(seed=1, tenants=20)
    other = simulation_tenants(seed=2, tenants=20)
    assert again.tenant_of == plan.tenant_of
    assert other.tenant_of != plan.tenant_of


def test_every_event_carries_its_users_one_tenant() -> None:
    scenarios = [Scenario("injection", PEAK + 60, 120), Scenario("dos", PEAK + 200, 60)]
    events = _events(
        start=PEAK, duration_s=400, seed=3, base_rps=10, tenants=20, scenarios=scenarios
    )
    plan = simulation_tenants(seed=3, base_rps=10, tenants=20)
    seen: dict[str, str] = {}
    requests: dict[str, Event] = {}
    for e in events:
        tenant = e["tenant"]
        assert tenant in plan.names
        assert seen.setdefault(e["user_id"], tenant) == tenant, "a user in two tenants"
        if e["user_id"] in plan.tenant_of:
            assert plan.tenant_of[e["user_id"]] == tenant
        if e["type"] == "request":
            requests[e["event_id"]] = e
        else:
            assert requests[e["request_id"]]["tenant"] == tenant
    # the global injection's fresh attackers got tenants too
    assert any(u not in plan.tenant_of for u in seen)


def test_tenants_only_add_the_field() -> None:
    kw: dict[str, Any] = {
        "start": PEAK,
        "duration_s": 300,
        "seed": 4,
        "base_rps": 10,
        "scenarios": [Scenario("cost", PEAK + 60, 120)],
    }
    plain = _events(**kw)
    assert _events(**kw, tenants=0) == plain
    assert all("tenant" not in e for e in plain)
    tagged = _events(**kw, tenants=7)
    assert [{k: v for k, v in e.items() if k != "tenant"} for e in tagged] == plain


def test_traffic_follows_the_shares(normal_peak: list[Event]) -> None:
    per_tenant = Counter(e["tenant"] for e in normal_peak if e["type"] == "request")
    total = sum(per_tenant.values())
    for name, target in zip(tenant_names(20), target_shares(20), strict=True):
        # a single user carries up to ~3 % of traffic, so an hour wobbles a little
        assert per_tenant[name] / total == pytest.approx(target, rel=0.25, abs=0.004), name


# -- attacks aimed at one tenant ------------------------------------------------
#
# A pure stand-in for the evaluator: the tenant's and the global 5-minute and
# 60-minute windows at each whole minute, judged by signal_math (the contract's
# rules: 2x the baseline AND p < 0.001) against baselines measured on the same
# hour of normal traffic.

RPS = 60.0  # the detection bench's volume (docs/detection.md, "Per-tenant signals")
Key = str  # a tenant, or "*" for the global windows
Minute = int


@pytest.fixture(scope="module")
def normal_peak() -> list[Event]:
    return _events(start=PEAK - 1800, duration_s=3600, seed=5, tenants=20, base_rps=20)


def _per_minute(
    events: Iterable[Event],
) -> tuple[dict[Minute, dict[Key, list[int]]], dict[Minute, dict[Key, Counter[str]]]]:
    counts: dict[Minute, dict[Key, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * 5))
    users: dict[Minute, dict[Key, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for e in events:
        minute = int(e["ts"] // 60)
        for key in ("*", e["tenant"]):
            c = counts[minute][key]
            if e["type"] == "request":
                c[0] += 1
                c[1] += e["blocked"]
                users[minute][key][e["user_id"]] += 1
            else:
                c[2] += 1
                c[3] += bool(e["safe"]) if "safe" in e else e["safety_score"] >= 0.5
                c[4] += round(e.get("cost_usd", 0.0) * NANO)
    return counts, users


class Windows:
    def __init__(self, events: Iterable[Event]) -> None:
        self.counts, self.users = _per_minute(events)

    def at(self, key: Key, end: Minute, minutes: int) -> tuple[WindowCounts, Counter[str]]:
        total = [0] * 5
        users: Counter[str] = Counter()
        for m in range(end - minutes, end):
            c = self.counts.get(m, {}).get(key)
            if c is not None:
                total = [a + b for a, b in zip(total, c, strict=True)]
            users.update(self.users.get(m, {}).get(key, Counter()))
        return WindowCounts(*total), users

    def baselines(self, key: Key, first: Minute, last: Minute) -> dict[SignalName, Baseline]:
        """Pooled proportions over non-overlapping windows, medians of tick values."""
        req = blocked = resp = unsafe = 0
        spends: list[float] = []
        tops: list[float] = []
        for end in range(first, last, 5):
            short, users = self.at(key, end, 5)
            hour, _ = self.at(key, end, 60)
            req, blocked = req + short.requests, blocked + short.blocked
            resp, unsafe = resp + short.responses, unsafe + short.responses - short.safe
            spends.append(hour.cost_usd)
            tops.append(max(users.values(), default=0) / 300)
        return {
            "blocked_pct": Baseline(100 * blocked / req, "learned"),
            "safety_pct": Baseline(100 - 100 * unsafe / resp, "learned"),
            "top_user_rps": Baseline(statistics.median(tops), "learned"),
            "spend_hour": Baseline(statistics.median(spends), "learned"),
        }


def _worse(signal: SignalName, value: float | None) -> float:
    """A reading on the scale where higher is worse (the failure rate of safety_pct)."""
    return 100.0 - (value or 100.0) if signal == "safety_pct" else value or 0.0


@pytest.fixture(scope="module")
def learn() -> Windows:
    """Normal traffic around the peak one day (the attacks come the next)."""
    return Windows(_events(start=PEAK - 3600, duration_s=7200, seed=8, tenants=20, base_rps=RPS))


def _attacked(kind: str, tenant: str, minutes: int) -> tuple[Windows, float]:
    start = PEAK + 86400 - 3600
    attack_at = start + 3600 + 7
    scenario = Scenario(kind, attack_at, minutes * 60, tenant=tenant)  # type: ignore[arg-type]
    events, truth = simulate(
        start=start, duration_s=7200, seed=9, tenants=20, base_rps=RPS, scenarios=[scenario]
    )
    (window,) = truth
    assert window.tenant == tenant and window.name == f"{kind}:{tenant}"
    return Windows(events), attack_at


# Within how many ticks the tenant turns red. The cost attack meets the
# issue's 3 ticks. The injection cannot, at this volume, while the global
# blocked_pct stays under 2x: a 5-minute window of a 5 % tenant holds ~1,300
# requests, so the test needs ~5 extra blocked ones, while the global window
# turns red (2x and significant) at ~13 extra; 3 ticks hold only 3/5 of the
# wave's window. docs/detection.md, "Per-tenant signals", has the numbers.
@pytest.mark.parametrize(
    ("kind", "tenant", "signal", "minutes", "within"),
    [
        ("injection", "team-05", "blocked_pct", 20, 10),
        ("jailbreak", "team-04", "safety_pct", 20, 3),
        ("cost", "team-06", "spend_hour", 10, 3),
    ],
)
def test_a_tenant_attack_turns_the_tenant_red_and_not_the_world(
    learn: Windows, kind: str, tenant: str, signal: SignalName, minutes: int, within: int
) -> None:
    attacked, attack_at = _attacked(kind, tenant, minutes)
    first = int((PEAK - 3600) // 60) + 65
    cfg = RulesConfig()
    base = {key: learn.baselines(key, first, first + 60) for key in ("*", tenant)}
    attack_minute = int(attack_at // 60)
    tenant_red: list[int] = []
    global_ratios: list[float] = []
    for end in range(attack_minute + 1, attack_minute + minutes + 6):
        readings = {}
        for key in ("*", tenant):
            short, users = attacked.at(key, end, 5)
            hour, _ = attacked.at(key, end, 60)
            readings[key] = evaluate_signals(short, hour, list(users.items()), base[key], cfg)
        if readings[tenant][signal].state == "red":
            tenant_red.append(end - attack_minute)
        g = readings["*"][signal]
        assert g.state != "red", (end - attack_minute, g)
        # how many times the baseline (of the failure rate, for safety_pct)
        global_ratios.append(2.0 * _worse(signal, g.value) / _worse(signal, g.threshold))
    assert tenant_red and tenant_red[0] <= within, tenant_red
    # and it stays found while the attack lasts
    assert set(range(tenant_red[0], minutes + 1)) <= set(tenant_red), tenant_red
    assert statistics.mean(global_ratios) < 1.6, global_ratios
    assert max(global_ratios) < 2.0, global_ratios
    assert diurnal_factor(attack_at) > 1.3  # what this volume means: daytime


def test_attackers_are_the_tenants_own_users() -> None:
    plan = simulation_tenants(seed=10, tenants=20)
    scenario = Scenario("injection", PEAK + 60, 600, tenant="team-07", intensity=20.0)
    events = _events(start=PEAK, duration_s=700, seed=10, tenants=20, scenarios=[scenario])
    attack = [e for e in events if e["event_id"].startswith("s10a0.0-")]
    assert len(attack) > 50
    assert {e["tenant"] for e in attack} == {"team-07"}
    assert {e["user_id"] for e in attack} <= set(plan.members["team-07"])
    assert sum(e["type"] == "request" and e["blocked"] for e in attack) > 0.8 * sum(
        e["type"] == "request" for e in attack
    )


@pytest.mark.parametrize(
    ("tenants", "scenario", "says"),
    [
        (0, Scenario("injection", PEAK, 60, tenant="team-01"), "no tenants are simulated"),
        (5, Scenario("injection", PEAK, 60, tenant="team-06"), "unknown tenant"),
        (5, Scenario("dos", PEAK, 60, tenant="team-01"), "cannot be aimed"),
        (5, Scenario("subtle_injection", PEAK, 60, tenant="team-01"), "cannot be aimed"),
    ],
)
def test_impossible_tenant_attacks_are_refused(tenants: int, scenario: Scenario, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        simulate(start=PEAK, duration_s=120, seed=1, tenants=tenants, scenarios=[scenario])


def test_negative_tenants_are_refused() -> None:
    with pytest.raises(ValueError):
        simulate(start=PEAK, duration_s=10, seed=1, tenants=-1)
