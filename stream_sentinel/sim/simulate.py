"""Synthetic traffic with labelled attacks, for backtests and demos.

``simulate`` returns a lazy iterator of contract-v1 event dicts in ``ts``
order (two days at 20 rps is ~7M events, so nothing is materialised) and the
attack windows a scorer should find. One seed, one byte-identical log.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from ..model import SignalName
from .tenants import TenantPlan, plan_tenants, tenants_for
from .traffic import (
    EXPENSIVE_MODEL,
    PEAK_FACTOR,
    TrafficSpec,
    UserPool,
    diurnal_factor,
    jittered,
    merge_streams,
    normal_users,
    traffic,
)
from .truth import AttackWindow, expected_status_for

ScenarioKind = Literal[
    "injection", "jailbreak", "dos", "cost", "injection_jailbreak", "subtle_injection"
]

NORMAL_P_BLOCKED = 0.0005
NORMAL_P_UNSAFE = 0.002
NORMAL_TOP_USER_RPS = 1.0  # at peak; the cap of the heavy tail


@dataclass(frozen=True, slots=True)
class Scenario:
    """An attack of ``kind`` running over ``[start, start + duration_s)``."""

    kind: ScenarioKind
    start: float
    duration_s: float
    name: str = ""
    intensity: float = 1.0  # scales the attack's request rate
    tenant: str | None = None  # aimed at this tenant's users only; None: everyone

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.kind}:{self.tenant}" if self.tenant is not None else self.kind

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass(frozen=True, slots=True)
class _Attack:
    """How one attacking stream behaves; rates are shares of normal traffic or fixed rps."""

    share: float = 0.0  # extra requests as a fraction of the normal rate right now
    rps: float = 0.0  # or a fixed rate (attack tooling ignores the time of day)
    attackers: int = 1
    p_blocked: float = NORMAL_P_BLOCKED
    p_unsafe: float = NORMAL_P_UNSAFE
    block_reason: str | None = None
    model: str | None = None
    hijack_user: bool = False  # a real user's id (runaway client) rather than new ones
    stop_early_s: float = 0.0  # this part of the attack ends before the scenario does


# Most injection attempts are caught by the pre-filter; those that slip through
# are answered harmlessly. Jailbreaks pass the pre-filter by design and show up
# only in the post-filter. Rates are chosen so each wave is unmistakable within
# a few ticks at any time of day, and the subtle one lands at 0.3-0.4 % blocked.
_INJECTION = _Attack(share=0.08, attackers=60, p_blocked=0.9, block_reason="prompt_injection")
_JAILBREAK = _Attack(share=0.05, attackers=40, p_blocked=0.0, p_unsafe=0.8)
_ATTACKS: Mapping[ScenarioKind, tuple[_Attack, ...]] = {
    "injection": (_INJECTION,),
    "jailbreak": (_JAILBREAK,),
    "dos": (_Attack(rps=40.0, hijack_user=True),),
    "cost": (_Attack(rps=1.5, attackers=25, model=EXPENSIVE_MODEL),),
    # The jailbreak half stops 3 min early. Hysteresis holds a signal red for
    # clear_ticks after its window is clean again; if both halves ended
    # together, that hold could put critical ticks just past the scored
    # window (end + 5 min) although nothing new is happening.
    "injection_jailbreak": (_INJECTION, replace(_JAILBREAK, stop_early_s=180.0)),
    "subtle_injection": (
        _Attack(share=0.0032, attackers=5, p_blocked=0.95, block_reason="prompt_injection"),
    ),
}
# Aimed at one tenant, an attack is sized against the GLOBAL traffic (shares
# of the whole normal rate, so they follow the time of day and --rps): small
# enough that the global signals stay under 2x their baselines, which is the
# point of per-tenant signals. How fast the tenant itself turns red then
# depends on its size and the volume (docs/detection.md, "Per-tenant signals").
# The attackers are the tenant's own users: a compromised key or a team's
# misbehaving app, not strangers.
_TENANT_ATTACKS: Mapping[ScenarioKind, tuple[_Attack, ...]] = {
    "injection": (
        _Attack(share=0.00025, attackers=5, p_blocked=0.9, block_reason="prompt_injection"),
    ),
    "jailbreak": (_Attack(share=0.0015, attackers=5, p_blocked=0.0, p_unsafe=0.8),),
    "cost": (_Attack(share=0.0008, attackers=3, model=EXPENSIVE_MODEL),),
}
TENANT_KINDS: tuple[ScenarioKind, ...] = tuple(_TENANT_ATTACKS)

EXPECTED_SIGNALS: Mapping[ScenarioKind, tuple[SignalName, ...]] = {
    "injection": ("blocked_pct",),
    "jailbreak": ("safety_pct",),
    "dos": ("top_user_rps",),
    "cost": ("spend_hour",),
    "injection_jailbreak": ("blocked_pct", "safety_pct"),
    "subtle_injection": ("blocked_pct",),
}


def attack_window(scenario: Scenario, *, clip_end: float | None = None) -> AttackWindow:
    signals = EXPECTED_SIGNALS[scenario.kind]
    end = scenario.end if clip_end is None else min(scenario.end, clip_end)
    return AttackWindow(
        name=scenario.label,
        start=scenario.start,
        end=end,
        expected_signals=signals,
        expected_status=expected_status_for(signals),
        kind=scenario.kind,
        tenant=scenario.tenant,
    )


def default_suite(start: float, days: float = 2) -> list[Scenario]:
    """The six labelled attacks, spread evenly with quiet gaps between them.

    The subtle injection takes the slot nearest the daily peak, where its
    volume gives a significance test the most to work with.
    """
    span = days * 86400.0
    slots = [start + span * (i + 1) / 7.0 for i in range(6)]
    # start 7 s past a whole minute: attacks rarely align with ticks
    slots = [(s // 60.0) * 60.0 + 7.0 for s in slots]
    # by index: in a run of a few minutes several slots fall on the same minute
    subtle_slot = max(range(len(slots)), key=lambda i: diurnal_factor(slots[i]))
    subtle = slots[subtle_slot]
    others = [s for i, s in enumerate(slots) if i != subtle_slot]
    plan: list[tuple[ScenarioKind, float]] = [
        ("injection", 20 * 60),
        ("jailbreak", 20 * 60),
        ("dos", 15 * 60),
        ("cost", 15 * 60),
        ("injection_jailbreak", 20 * 60),
    ]
    suite = [Scenario(kind, at, dur) for (kind, dur), at in zip(plan, others, strict=True)]
    suite.append(Scenario("subtle_injection", subtle, 45 * 60))
    return sorted(suite, key=lambda s: s.start)


def simulate(
    *,
    start: float,
    duration_s: float,
    seed: int,
    base_rps: float = 20.0,
    scenarios: Sequence[Scenario] | None = None,
    users: int = 2000,
    jitter_s: float = 0.0,
    tenants: int = 0,
) -> tuple[Iterator[dict[str, Any]], list[AttackWindow]]:
    """Events over ``[start, start + duration_s)`` and the windows of the attacks in it.

    ``jitter_s`` > 0 delivers events up to that many seconds out of ``ts``
    order, as network paths do; keep it under the replay's allowed lateness.
    ``tenants`` > 0 puts every user in one of that many tenants
    (``sim.tenants``) and every event carries its ``tenant``; 0 leaves the
    log exactly as without tenants.
    """
    if duration_s <= 0 or base_rps <= 0 or users <= 0 or tenants < 0:
        raise ValueError("duration_s, base_rps and users must be positive, tenants >= 0")
    end = start + duration_s
    chosen = [s for s in (scenarios or ()) if s.start < end and s.end > start]
    pool_rng = random.Random(f"{seed}:users")
    pool = _population(pool_rng, users, base_rps)
    plan = plan_tenants(pool, tenants) if tenants else None
    for scenario in chosen:
        check_tenant(scenario, plan)

    def normal_rate(ts: float) -> float:
        return base_rps * diurnal_factor(ts)

    specs = [
        TrafficSpec(
            tag=f"s{seed}n-",
            start=start,
            end=end,
            rate=normal_rate,
            users=pool,
            p_blocked=NORMAL_P_BLOCKED,
            p_unsafe=NORMAL_P_UNSAFE,
            tenant_of=None if plan is None else plan.tenant_of,
        )
    ]
    for i, scenario in enumerate(chosen):
        kinds = _ATTACKS if scenario.tenant is None else _TENANT_ATTACKS
        for j, attack in enumerate(kinds[scenario.kind]):
            tag = f"s{seed}a{i}.{j}-"
            spec = _attack_spec(tag, scenario, attack, pool, normal_rate, pool_rng, start, end)
            if plan is not None:
                spec = _with_tenant(spec, scenario, attack, plan, random.Random(f"{seed}:t{tag}"))
            specs.append(spec)
    streams = [traffic(random.Random(f"{seed}:{spec.tag}"), spec) for spec in specs]
    events = jittered(merge_streams(streams), random.Random(f"{seed}:jitter"), jitter_s)
    return events, [attack_window(s, clip_end=end) for s in chosen]


def _attack_spec(
    tag: str,
    scenario: Scenario,
    attack: _Attack,
    pool: UserPool,
    normal_rate: Callable[[float], float],
    rng: random.Random,
    start: float,
    end: float,
) -> TrafficSpec:
    if attack.hijack_user:
        users = UserPool.uniform([rng.choice(pool.ids)])
    else:
        # fresh ids shaped like real ones: attackers do not announce themselves
        first = rng.randrange(100_000, 900_000)
        users = UserPool.uniform([f"u{first + k:06d}" for k in range(attack.attackers)])
    share, rps, k = attack.share, attack.rps, scenario.intensity

    def rate(ts: float) -> float:
        return k * (rps if rps > 0 else share * normal_rate(ts))

    return TrafficSpec(
        tag=tag,
        start=max(scenario.start, start),
        end=min(scenario.end - attack.stop_early_s, end),
        rate=rate,
        users=users,
        p_blocked=attack.p_blocked,
        p_unsafe=attack.p_unsafe,
        block_reason=attack.block_reason,
        model=attack.model,
    )


def _population(rng: random.Random, users: int, base_rps: float) -> UserPool:
    return normal_users(rng, users, max_share=NORMAL_TOP_USER_RPS / (PEAK_FACTOR * base_rps))


def simulation_tenants(
    *, seed: int, tenants: int, base_rps: float = 20.0, users: int = 2000
) -> TenantPlan:
    """The tenants ``simulate`` builds for the same arguments."""
    return plan_tenants(_population(random.Random(f"{seed}:users"), users, base_rps), tenants)


def check_tenant(scenario: Scenario, plan: TenantPlan | None) -> None:
    """Refuse an attack aimed at a tenant that is not simulated or of a kind
    that cannot be aimed (a DoS is one user, visible globally by nature)."""
    if scenario.tenant is None:
        return
    if scenario.kind not in _TENANT_ATTACKS:
        raise ValueError(
            f"{scenario.kind} cannot be aimed at a tenant (one of {', '.join(TENANT_KINDS)})"
        )
    if plan is None or not plan.members.get(scenario.tenant):
        known = "no tenants are simulated" if plan is None else f"{len(plan.names)} tenants"
        raise ValueError(f"unknown tenant {scenario.tenant!r} ({known})")


def _with_tenant(
    spec: TrafficSpec, scenario: Scenario, attack: _Attack, plan: TenantPlan, rng: random.Random
) -> TrafficSpec:
    if scenario.tenant is None:
        return replace(spec, tenant_of=tenants_for(plan, spec.users.ids, rng))
    own = plan.attackers(scenario.tenant, attack.attackers, rng)
    return replace(spec, users=UserPool.uniform(own), tenant_of={u: scenario.tenant for u in own})


def write_log(events: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write events as JSON lines (``.jsonl`` or ``.jsonl.gz``); returns how many."""
    target = Path(path)
    count = 0
    chunk: list[bytes] = []
    dumps = orjson.dumps
    with ExitStack() as stack:
        raw = stack.enter_context(target.open("wb"))
        out: IO[bytes] | gzip.GzipFile = raw
        if target.name.endswith(".gz"):
            # mtime=0 and no file name in the header: same events, same bytes.
            # Level 6 (gzip's own default) is ~3x faster than 9 for ~10 % more bytes.
            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            stack.callback(out.close)
        for event in events:
            chunk.append(dumps(event))
            count += 1
            if len(chunk) >= 4096:
                out.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
    return count
