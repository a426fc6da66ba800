"""One tenant's attack through the whole service, as each output shows it:
`stream-sentinel run` as a subprocess on the real Kafka and Redis, with
``[tenants]`` on, pushing to a real Alertmanager (Debian's). The attacked
tenant has a hostile name (newline, quotes, braces, markup, 200 non-ASCII
characters): Alertmanager gets its escaped, bounded label and sees the alert
resolve; /status lists it first; /metrics has its series and parses; the
alerts topic carries its raw name as a JSON value; the log never holds it raw.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import AlertmanagerUnderTest
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel import untrusted
from stream_sentinel.alerts import TENANT_EVENT

from .harness import Probe, ServiceProcess, create_topics, deployment_env, free_port, produce

pytestmark = pytest.mark.integration

TICK_S = 2
TIMEOUT_S = 90.0
USERS, PER_USER = 60, 4
HOSTILE = 'small\n"t"{=}<b>x</b>' + "é" * 200
RAW_MARK = '"t"{=}<b>x</b>'  # what a raw copy of the name would show in a log
BLOCKED = 120
TENANT_RED = "LLMSecurityTenantSignalRed"


def _tenant_of(user: int) -> str:
    return "big" if user < 50 else HOSTILE  # the hostile tenant: a sixth of the users


def _normal(now: float) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(USERS * PER_USER):
        user, ts = i % USERS, round(now - 5 - (i % 190), 3)
        tenant = _tenant_of(user)
        who = {"user_id": f"user-{user:02d}", "tenant": tenant, "ts": ts}
        events.append({"event_id": f"q{i}", "type": "request", "blocked": False, **who})
        events.append(
            {"event_id": f"r{i}", "type": "response", "safe": True, "cost_usd": 0.001, **who}
        )
    return events


def _blocked(now: float, visible_s: float) -> list[dict[str, object]]:
    ts = now - 300 + visible_s  # in the window of every tick up to now + visible_s
    return [{"event_id": f"b{i}", "type": "request", "ts": ts, "user_id": "mallory",
             "blocked": True, "tenant": HOSTILE} for i in range(BLOCKED)]  # fmt: skip


async def _tenant_alerts(am: AlertmanagerUnderTest, service: str) -> list[dict[str, Any]]:
    alerts = await asyncio.to_thread(am.server.alerts, service)
    return [a for a in alerts if a["labels"]["alertname"].startswith("LLMSecurityTenant")]


async def _read_events(bootstrap: str, topic: str, want: int) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"alerts-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while sum(e.get("type") == TENANT_EVENT for e in out) < want:
            assert asyncio.get_running_loop().time() < deadline, out
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def test_a_tenant_attack_through_every_output(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Any,
    redis_ns: Any,
    alertmanager: AlertmanagerUnderTest,
) -> None:
    topics = await create_topics(make_topic, 2)
    service = f"tenants-{uuid.uuid4().hex[:8]}"
    env = deployment_env(
        kafka_bootstrap,
        redis_url,
        redis_ns.prefix,
        topics,
        group=f"tn-{uuid.uuid4().hex[:8]}",
        SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
        SENTINEL_ALERTING_CLEAR_TICKS="2",
        SENTINEL_TENANTS_ENABLED="true",
        SENTINEL_TENANTS_TOP_K="5",
        SENTINEL_ALERTMANAGER_0_NAME="am",
        SENTINEL_ALERTMANAGER_0_URL=alertmanager.server.url,
        SENTINEL_ALERTMANAGER_0_LABELS_SERVICE=service,
        # the embedded store: Redis' per-tenant counting (store/redis.py's
        # top_tenants) is its own branch; every output read here is the same
        SENTINEL_REDIS_URL="",
    )
    label = untrusted.label(HOSTILE)
    port = free_port()
    async with aiohttp.ClientSession() as session:
        replica = Probe(
            session, ServiceProcess({**env, "SENTINEL_HTTP_PORT": str(port)}, "tn"), port
        )
        try:
            await produce(kafka_bootstrap, topics, _normal(time.time()))

            async def two_calm_tenants() -> dict[str, Any] | None:
                tick = await replica.status_or_none()
                tenants = (tick or {}).get("tenants") or []
                calm = len(tenants) == 2 and all(t["status"] == "ok" for t in tenants)
                return tick if calm else None

            calm = await replica.until(two_calm_tenants, "an ok tick with both tenants", TIMEOUT_S)
            assert [t["tenant"] for t in calm["tenants"]] == ["big", HOSTILE]  # by requests

            await produce(kafka_bootstrap, topics, _blocked(time.time(), visible_s=30))

            async def tenant_red() -> list[dict[str, Any]] | None:
                found = await _tenant_alerts(alertmanager, service)
                return found or None

            (alert,) = await replica.until(tenant_red, "the tenant's alert", TIMEOUT_S)
            assert alert["labels"]["alertname"] == TENANT_RED
            assert alert["labels"]["signal"] == "blocked_pct"
            assert alert["labels"]["tenant"] == label
            assert alert["labels"]["severity"] == "warning"
            assert alert["annotations"]["top_users"].startswith('"mallory"')

            # /status: the red tenant first, raw name as a JSON value
            status = await replica.status()
            first = status["tenants"][0]
            if first["red"]:  # still red at this tick (it may just have cleared)
                assert first["tenant"] == HOSTILE and "blocked_pct" in first["red"]
            # /metrics: its series under the label, nothing beyond top_k, parses
            _, body = await replica.get("/metrics")
            tenants_seen = {
                s.labels["tenant"]
                for family in text_string_to_metric_families(body.decode())
                for s in family.samples
                if s.name.startswith("stream_sentinel_tenant_") and "tenant" in s.labels
            }
            assert tenants_seen == {"big", label}

            async def resolved() -> bool | None:
                return await _tenant_alerts(alertmanager, service) == [] or None

            await replica.until(resolved, "the tenant's alert resolved", TIMEOUT_S)

            def notified_resolved() -> bool | None:
                done = [
                    a
                    for a in alertmanager.webhook.alerts(service)
                    if a["status"] == "resolved" and a["labels"].get("tenant") == label
                ]
                return bool(done) or None

            await replica.until(
                lambda: asyncio.to_thread(notified_resolved), "the resolved notification", TIMEOUT_S
            )
            events = await _read_events(kafka_bootstrap, topics["alerts"], want=2)

            async def both_counted() -> bool | None:
                sent = [
                    await replica.metric("stream_sentinel_tenant_alerts_total", status=status)
                    for status in ("warning", "ok")
                ]
                return sent == [1.0, 1.0] or None

            await replica.until(both_counted, "both tenant events counted", TIMEOUT_S)
        finally:
            replica.svc.close()
    mine = [e for e in events if e.get("type") == TENANT_EVENT]
    assert [(e["tenant"], e["previous"], e["status"]) for e in mine[:2]] == [
        (HOSTILE, "ok", "warning"),
        (HOSTILE, "warning", "ok"),
    ]
    assert mine[0]["red"] == ["blocked_pct"]
    assert mine[0]["signals"]["blocked_pct"]["state"] == "red"
    log = replica.svc.log.read_text(errors="replace")
    assert RAW_MARK not in log and "é" * 20 not in log
    assert label in log  # the tick lines name it by its label
