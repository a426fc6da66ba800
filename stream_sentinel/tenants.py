"""Per-tenant signals (DESIGN.md "Per-tenant signals"): the global rules on each
top tenant's own windows. Pure: the store ranks and counts, baselines come in.

Choices DESIGN.md leaves open:

* A tenant is held red (``clear_ticks``) like a global signal, but only while
  it stays among the ``top_k``: a tenant that leaves the top is forgotten with
  its holds, so state stays bounded by ``top_k`` whatever the number of
  tenants. Coming back, it is judged afresh.
* A stale tick evaluates no tenant and keeps the holds as they were, as it
  does for the global signals.
* While the deployment is learning every tenant is ``learning`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import Field

from .config_types import Section
from .model import SignalName, TenantCounts, TenantTick
from .rules import (
    Baseline,
    Hysteresis,
    RulesConfig,
    apply_hysteresis,
    composite,
    evaluate_signals,
    top_user_rates,
)

TENANT_TOP_USERS = 3  # a tenant's busiest users shown beside its signals (attribution)


class TenantsConfig(Section):
    """Per-tenant signals: the four signals also for the busiest tenants (events'
    `tenant` field: team, API key or application)."""

    enabled: bool = False
    """Count per tenant and evaluate the `top_k` tenants each tick."""
    top_k: int = Field(20, ge=1, le=1000)
    """How many tenants (most requests in the 5-minute window) are evaluated per
    tick; also the bound on per-tenant series in `/metrics`."""


@dataclass(frozen=True)
class TenantHolds:
    """The hysteresis of each evaluated tenant, carried from tick to tick
    (and from leader to leader, inside the evaluator's saved state)."""

    holds: Mapping[str, Hysteresis] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "holds", MappingProxyType(dict(self.holds)))

    def of(self, tenant: str) -> Hysteresis:
        return self.holds.get(tenant, Hysteresis())

    def to_json(self) -> dict[str, Any]:
        return {tenant: h.to_json() for tenant, h in self.holds.items() if h.holds}

    @classmethod
    def from_json(cls, data: object) -> TenantHolds:
        """Inverse of ``to_json``; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("tenant holds must be an object")
        return cls({str(t): Hysteresis.from_json(h) for t, h in data.items()})


TenantBaselines = Callable[[str], Mapping[SignalName, Baseline]]


def evaluate_tenants(
    counts: Sequence[TenantCounts],
    baselines_of: TenantBaselines,
    cfg: RulesConfig,
    state: TenantHolds,
    *,
    learning: bool,
) -> tuple[tuple[TenantTick, ...], TenantHolds]:
    """Each tenant of ``counts`` (the store's ranking, kept) judged as the global
    signals are, and the holds of exactly these tenants for the next tick."""
    ticks: list[TenantTick] = []
    holds: dict[str, Hysteresis] = {}
    for tenant in counts:
        raw = evaluate_signals(
            tenant.short, tenant.hour, tenant.top_users, baselines_of(tenant.tenant), cfg
        )
        shown, holds[tenant.tenant] = apply_hysteresis(raw, state.of(tenant.tenant), cfg)
        status, red = composite(shown, cfg, learning=learning, stale_reason=None)
        users = top_user_rates(tenant.top_users, TENANT_TOP_USERS)
        ticks.append(TenantTick(tenant.tenant, status, red, shown, tenant.short.requests, users))
    return tuple(ticks), TenantHolds(holds)


def with_global_fallback(
    own: Mapping[SignalName, Baseline], shared: Mapping[SignalName, Baseline]
) -> dict[SignalName, Baseline]:
    """A tenant's baselines: its own where it has them, else the global one in
    force, marked ``global`` (a static one stays ``static``: it is the same
    value for every tenant by definition, and ``learning`` stays ``learning``)."""
    out: dict[SignalName, Baseline] = {}
    for name, baseline in shared.items():
        if name in own:
            out[name] = own[name]
        elif baseline.source in ("static", "learning"):
            out[name] = baseline
        else:
            out[name] = Baseline(baseline.value, "global")
    return out
