"""/status's tenants section: red first, then by requests; hostile names only
ever as JSON values, never in a header; no tenants, no change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import orjson
import pytest
from tenant_ticks import HOSTILE_TENANTS, critical, tenant, tick_with

from stream_sentinel import untrusted
from stream_sentinel.httpserver import build_http_app, start_http
from stream_sentinel.metrics import Metrics
from stream_sentinel.status_doc import (
    RED_TENANTS_NAMED,
    red_tenants_note,
    status_document,
    tenant_log_fields,
    tenants_section,
)


def test_red_tenants_first_then_by_requests() -> None:
    tenants = [
        tenant("big", requests=900),
        tenant("warn", "warning", ("spend_hour",), requests=50),
        tenant("mid", requests=400),
        critical("crit", requests=80),
    ]
    section = tenants_section(tenants)
    assert [t["tenant"] for t in section] == ["crit", "warn", "big", "mid"]
    crit = section[0]
    assert crit["status"] == "critical" and crit["red"] == ["blocked_pct", "safety_pct"]
    assert crit["requests"] == 80
    # the signals as the global ones are shown
    assert crit["signals"]["blocked_pct"] == tenants[3].signals["blocked_pct"].to_json()
    assert crit["signals"]["blocked_pct"]["baseline_source"] == "global"


def test_no_tenants_leaves_the_document_as_it_was() -> None:
    tick = tick_with([])
    doc = status_document(tick, leader=True, replica="r1", age_s=1.23456)
    assert doc == {**tick.to_json(), "leader": True, "replica": "r1", "last_tick_age_s": 1.235}
    assert "tenants" not in doc
    assert status_document(None, leader=False, replica="r1", age_s=None) == {
        "leader": False,
        "replica": "r1",
        "last_tick_age_s": None,
    }


def test_tenants_replace_the_timeline_mapping_with_a_list() -> None:
    tick = tick_with([tenant("a", requests=5), critical("b", requests=1)])
    assert set(tick.to_json()["tenants"]) == {"a", "b"}  # the timeline keys them by name
    doc = status_document(tick, leader=True, replica="r", age_s=0.0)
    assert [t["tenant"] for t in doc["tenants"]] == ["b", "a"]


def test_log_fields_carry_labels_never_raw_names() -> None:
    fields = tenant_log_fields([critical(name) for name in HOSTILE_TENANTS])
    assert set(fields) == {untrusted.label(name) for name in HOSTILE_TENANTS}
    for key in fields:
        assert all(" " <= c <= "~" for c in key) and len(key) <= untrusted.LABEL_CHARS
    assert fields[untrusted.label("x" * 256)]["red"] == ["blocked_pct", "safety_pct"]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_hostile_tenants_served_as_json_values_only(
    client: aiohttp.ClientSession,
) -> None:
    tenants = [critical(name, requests=i + 1) for i, name in enumerate(HOSTILE_TENANTS)]
    tick = tick_with(tenants, status="warning")

    def provider() -> Mapping[str, object]:
        return status_document(tick, leader=True, replica="r", age_s=0.5)

    app = build_http_app(
        metrics=Metrics(process_metrics=False),
        status_provider=provider,
        ready_checks=_ready,
        status_token=None,
    )
    server, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with client.get(f"http://127.0.0.1:{port}/status") as resp:
            body = await resp.read()
            headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            assert resp.status == 200
    finally:
        await server.cleanup()
    doc = orjson.loads(body)
    assert [t["tenant"] for t in doc["tenants"]] == list(reversed(HOSTILE_TENANTS))
    assert b"\n" not in body  # every newline of a name is escaped in the JSON
    for name in HOSTILE_TENANTS:
        assert name not in headers
    assert "X-Injected" not in headers


async def _ready() -> Mapping[str, bool | str]:
    return {"kafka": True}


def test_the_text_log_note_names_red_tenants_by_label_bounded() -> None:
    assert red_tenants_note([]) == ""
    assert red_tenants_note([tenant("calm")]) == ""
    note = red_tenants_note(
        [tenant("calm", requests=999)] + [critical(n) for n in HOSTILE_TENANTS[1:]]
    )
    shown = untrusted.label(HOSTILE_TENANTS[1])
    assert note.startswith(f" red tenants: {shown} critical (blocked_pct,safety_pct), ")
    assert note.endswith(f" (+{len(HOSTILE_TENANTS) - 1 - RED_TENANTS_NAMED} more)")
    assert "calm" not in note and all(" " <= c <= "~" for c in note)
