"""Hand-built ticks carrying tenants, and the hostile tenant names every output
of them is tested with (a tenant is untrusted input: 1..256 chars of anything)."""

from __future__ import annotations

from collections.abc import Sequence

from stream_sentinel.model import SIGNALS, SignalName, SignalReading, Status, TenantTick, Tick

AT = 1_800_000_000
HOSTILE_TENANTS: tuple[str, ...] = (
    "team-a",
    "line\nbreak\r\nX-Injected: 1",
    "quo\"te's",
    "x" * 256,
    "y" * 255 + "z",  # shares 255 characters with a neighbour: must not share its label
    "👩‍👩‍👧 ünï©ødé",
    "{",
    "}",
    '{tenant="x"}',
    "a=b,c=d",
    "\x00\x01\x1b[31mctl\x7f",
    "\u202eevil\u202c",
    "back\\slash",
    "<script>alert(1)</script>&amp;",
    "[link](http://evil.test)",
)


def readings(red: Sequence[SignalName]) -> dict[SignalName, SignalReading]:
    return {
        name: SignalReading(
            name,
            40.0 if name in red else 0.05,
            0.1,
            0.2,
            "red" if name in red else "ok",
            p_value=1e-9,
            volume=400,
            baseline_source="global",
        )
        for name in SIGNALS
    }


def tenant(
    name: str, status: Status = "ok", red: Sequence[SignalName] = (), requests: int = 100
) -> TenantTick:
    users = (("mallory", 0.4), ("line\n<b>x</b>", 0.1)) if red else ()
    return TenantTick(name, status, tuple(red), readings(red), requests, users)


def tick_with(tenants: Sequence[TenantTick], *, status: Status = "ok", at: int = AT) -> Tick:
    return Tick(at, status, (), readings(()), (("u1", 0.5),), None, {}, tuple(tenants))


def critical(name: str, requests: int = 100) -> TenantTick:
    return tenant(name, "critical", ("blocked_pct", "safety_pct"), requests)
