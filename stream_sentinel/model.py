"""Shared value types: window counts read from the store and the result of a tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SignalName = Literal["blocked_pct", "safety_pct", "top_user_rps", "spend_hour"]
SIGNALS: tuple[SignalName, ...] = ("blocked_pct", "safety_pct", "top_user_rps", "spend_hour")

State = Literal["ok", "red", "insufficient_data"]
Status = Literal["ok", "warning", "critical", "learning", "stale"]
# "floor": learning is over but the comparison set is too thin (baseline_math),
# so the rules' floor stands in; "learning": provisional, alerts suppressed;
# "global": a tenant's own history is too thin, so the global baseline stands in
BaselineSource = Literal["static", "learned", "floor", "learning", "global"]

NANO = 1_000_000_000  # cost is counted in integer nano-USD so sums are exact and order-free


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Exact sums of the counters over one window ``[start, end)``."""

    requests: int = 0
    blocked: int = 0
    responses: int = 0
    safe: int = 0
    cost_nanousd: int = 0
    cost_unknown: int = 0

    def __add__(self, other: WindowCounts) -> WindowCounts:
        return WindowCounts(
            self.requests + other.requests,
            self.blocked + other.blocked,
            self.responses + other.responses,
            self.safe + other.safe,
            self.cost_nanousd + other.cost_nanousd,
            self.cost_unknown + other.cost_unknown,
        )

    @property
    def cost_usd(self) -> float:
        return self.cost_nanousd / NANO


@dataclass(frozen=True, slots=True)
class SignalReading:
    name: SignalName
    value: float | None  # None only when the window has no events
    baseline: float
    threshold: float
    state: State
    p_value: float | None = None
    volume: int = 0  # events in the window the value was computed from
    baseline_source: BaselineSource = "static"

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "baseline": self.baseline,
            "threshold": self.threshold,
            "state": self.state,
            "p_value": self.p_value,
            "volume": self.volume,
            "baseline_source": self.baseline_source,
        }


def format_at(at: int) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TenantCounts:
    """One tenant's windows as read from the store (DESIGN.md "Per-tenant signals")."""

    tenant: str
    short: WindowCounts  # the 5-minute window
    hour: WindowCounts  # the 60-minute window (spend)
    top_users: tuple[tuple[str, int], ...] = ()  # its heaviest users in the 5-minute window


@dataclass(frozen=True, slots=True)
class TenantTick:
    """One tenant's evaluation within a tick: the global rules on its own windows."""

    tenant: str
    status: Status  # never "stale": a stale tick evaluates no tenant
    red: tuple[SignalName, ...]
    signals: Mapping[SignalName, SignalReading]
    requests: int  # in the 5-minute window: what ranked it
    top_users: tuple[tuple[str, float], ...] = ()  # its busiest users, requests per second

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "red": list(self.red),
            "requests": self.requests,
            "signals": {name: s.to_json() for name, s in self.signals.items()},
            "top_users": [[u, r] for u, r in self.top_users],
        }


@dataclass(frozen=True, slots=True)
class Tick:
    """One evaluation; ``to_json`` is DESIGN.md's timeline line."""

    at: int  # exclusive end of every window, Unix seconds
    status: Status
    red: tuple[SignalName, ...]
    signals: Mapping[SignalName, SignalReading]
    top_users: tuple[tuple[str, float], ...] = ()
    reason: str | None = None  # why ``stale`` / ``learning``
    extra: Mapping[str, Any] = field(default_factory=dict)
    # the top_k tenants by requests, most first; empty unless [tenants] is on
    tenants: tuple[TenantTick, ...] = ()

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "at": format_at(self.at),
            "status": self.status,
            "red": list(self.red),
            "signals": {name: s.to_json() for name, s in self.signals.items()},
            "top_users": [[u, r] for u, r in self.top_users],
        }
        if self.reason is not None:
            line["reason"] = self.reason
        if self.tenants:
            line["tenants"] = {t.tenant: t.to_json() for t in self.tenants}
        line.update(self.extra)
        return line
