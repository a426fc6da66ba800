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
    return [{"tenant": t.tenant, **t.to_json()} for t in tenants_ranked(tenants)]


def tenants_ranked(tenants: Iterable[TenantTick]) -> list[TenantTick]:
    """Those with a red signal first, then by requests, most first."""
    return sorted(tenants, key=lambda t: (not t.red, -t.requests))


def tenant_log_fields(tenants: Iterable[TenantTick]) -> dict[str, dict[str, Any]]:
    """The tenants as a tick's log line carries them: keyed by their escaped,
    bounded label (a log line never holds a raw tenant), status and red signals only."""
    return {
        untrusted.label(t.tenant): {"status": t.status, "red": list(t.red), "requests": t.requests}
        for t in tenants
    }


RED_TENANTS_NAMED = 3  # in a tick's text log line; the rest are counted


def red_tenants_note(tenants: Iterable[TenantTick]) -> str:
    """`` red tenants: <label> critical (blocked_pct,safety_pct), ... (+N more)``
    for a tick's text log line; empty when no tenant has a red signal."""
    red = [t for t in tenants_ranked(tenants) if t.red]
    if not red:
        return ""
    named = ", ".join(
        f"{untrusted.label(t.tenant)} {t.status} ({','.join(t.red)})"
        for t in red[:RED_TENANTS_NAMED]
    )
    more = f" (+{len(red) - RED_TENANTS_NAMED} more)" if len(red) > RED_TENANTS_NAMED else ""
    return f" red tenants: {named}{more}"


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
