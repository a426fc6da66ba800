"""Alert events: one JSON message per composite transition, and one per tenant
whose status moves to or from warning/critical."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import SignalName, SignalReading, Status, TenantTick, Tick, format_at


def alert_event(tick: Tick, previous: Status | None, *, epoch: int, replica: str) -> dict[str, Any]:
    return {
        "type": "stream_sentinel.alert",
        "at": format_at(tick.at),
        "status": tick.status,
        "previous": previous,
        "red": list(tick.red),
        "reason": tick.reason,
        "signals": _signals(tick.signals),
        "top_users": [[u, rps] for u, rps in tick.top_users],
        "leader_epoch": epoch,
        "replica": replica,
    }


def _signals(signals: Mapping[SignalName, SignalReading]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "value": r.value,
            "threshold": r.threshold,
            "baseline": r.baseline,
            "baseline_source": r.baseline_source,
            "p_value": r.p_value,
            "state": r.state,
        }
        for name, r in signals.items()
    }


class TransitionTracker:
    """Remembers the last composite status; says when a new one is a transition."""

    def __init__(self) -> None:
        self.status: Status | None = None

    def update(self, status: Status) -> tuple[bool, Status | None]:
        previous = self.status
        self.status = status
        if previous is None:
            # a fresh leader announces anything that needs attention
            return status not in ("ok", "learning"), None
        return status != previous, previous


# -- tenants ---------------------------------------------------------------------

TENANT_EVENT = "stream_sentinel.tenant_alert"
ATTENTION: tuple[Status, ...] = ("warning", "critical")
# the status of a tenant that needed attention and left the top_k: it is no
# longer evaluated, so nothing is known about it (neither cleared nor red)
UNTRACKED = "untracked"
UNTRACKED_REASON = "left the top tenants by requests: no longer evaluated"


@dataclass(frozen=True, slots=True)
class TenantChange:
    """A tenant's status moved to or from warning/critical between two ticks."""

    tenant: str
    previous: Status | None  # None: not among the last tick's tenants
    now: TenantTick | None  # None: it left the top_k (was warning/critical)


class TenantTransitions:
    """The tenants' statuses of the last evaluated tick: never more than its top_k.

    A tenant that leaves the top is forgotten; if it needed attention, one last
    change says so (``untracked``), so whoever acts on the events is not left
    with an open incident nobody will ever close. A stale tick (no tenants
    evaluated) changes nothing: it says nothing about any tenant.
    """

    def __init__(self) -> None:
        self.statuses: dict[str, Status] = {}

    def update(self, tick: Tick) -> list[TenantChange]:
        if tick.status == "stale":
            return []
        changes: list[TenantChange] = []
        current = {t.tenant: t for t in tick.tenants}
        for tenant in tick.tenants:
            before = self.statuses.get(tenant.tenant)
            if before != tenant.status and (before in ATTENTION or tenant.status in ATTENTION):
                changes.append(TenantChange(tenant.tenant, before, tenant))
        for name, before in self.statuses.items():
            if name not in current and before in ATTENTION:
                changes.append(TenantChange(name, before, None))
        self.statuses = {name: t.status for name, t in current.items()}
        return changes


def tenant_alert_event(
    change: TenantChange, *, at: int, epoch: int, replica: str
) -> dict[str, Any]:
    """One tenant's transition; ``tenant`` is the raw name as a JSON value (the
    consumer of the topic matches it against its own tenants)."""
    now = change.now
    event: dict[str, Any] = {
        "type": TENANT_EVENT,
        "at": format_at(at),
        "tenant": change.tenant,
        "status": UNTRACKED if now is None else now.status,
        "previous": change.previous,
        "red": [] if now is None else list(now.red),
        "requests": None if now is None else now.requests,
        "signals": {} if now is None else _signals(now.signals),
        "top_users": [] if now is None else [[u, rps] for u, rps in now.top_users],
        "leader_epoch": epoch,
        "replica": replica,
    }
    if now is None:
        event["reason"] = UNTRACKED_REASON
    return event
