"""The body of ``GET /status`` (the last tick, who reports it, its tenants), and
the tick's tenants as its log line shows them.

The tick is shown as its timeline line, except ``tenants``: the timeline keys
tenants by name, /status lists them (red ones first, then by requests) with the
name as a JSON value. Tenant names are untrusted: here they are only ever JSON
string values, escaped by the encoder, never a header or a key of ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import untrusted
from .model import TenantTick, Tick


def tenants_section(tenants: Iterable[TenantTick]) -> list[dict[str, Any]]:
    """Each tenant as ``{"tenant": name, "status", "red", "requests", "signals"}``:
    those with a red signal first, then by requests, most first."""
    ranked = sorted(tenants, key=lambda t: (not t.red, -t.requests))
    return [{"tenant": t.tenant, **t.to_json()} for t in ranked]


def tenant_log_fields(tenants: Iterable[TenantTick]) -> dict[str, dict[str, Any]]:
    """The tenants as a tick's log line carries them: keyed by their escaped,
    bounded label (a log line never holds a raw tenant), status and red signals only."""
    return {
        untrusted.label(t.tenant): {"status": t.status, "red": list(t.red), "requests": t.requests}
        for t in tenants
    }


def status_document(
    tick: Tick | None, *, leader: bool, replica: str, age_s: float | None
) -> dict[str, Any]:
    """``tick`` as /status shows it; a replica with no tick yet shows who it is."""
    if tick is None:
        return {"leader": leader, "replica": replica, "last_tick_age_s": None}
    body = tick.to_json()
    if tick.tenants:
        body["tenants"] = tenants_section(tick.tenants)
    body["leader"] = leader
    body["replica"] = replica
    body["last_tick_age_s"] = None if age_s is None else round(age_s, 3)
    return body
