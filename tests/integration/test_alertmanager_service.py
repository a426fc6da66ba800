"""`stream-sentinel run` pushing to a real Alertmanager: events in the real Kafka,
state in the real Redis, the service as a subprocess, Alertmanager's own API read
back at each step, and a real Prometheus whose rule alerts reach the same
Alertmanager.

Ticks are ``TICK_S`` seconds; windows stay 5 minutes of event time, so an attack
is produced with timestamps just inside the window's far end and leaves it on its
own ``*_VISIBLE_S`` seconds later (as in test_e2e_service.py).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from alertmanager_server import by_name
from conftest import AlertmanagerUnderTest
from prometheus_client.parser import text_string_to_metric_families

from .harness import Probe, ServiceProcess, create_topics, deployment_env, free_port, produce

pytestmark = pytest.mark.integration

T = TypeVar("T")
TICK_S = 2
TIMEOUT_S = 60.0
USERS, PER_USER = 60, 4  # normal traffic: 240 allowed requests, 240 safe responses
BLOCKED, UNSAFE = 120, 80
ROOT = Path(__file__).resolve().parents[2]
RED_ALERT = "LLMSecuritySignalRed"
CRITICAL_ALERT = "LLMSecurityCritical"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _env(
    kafka: str, redis_url: str, prefix: str, topics: Mapping[str, str], am_url: str, service: str
) -> dict[str, str]:
    return deployment_env(
        kafka,
        redis_url,
        prefix,
        topics,
        group=f"am-{uuid.uuid4().hex[:8]}",
        SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
        SENTINEL_ALERTING_CLEAR_TICKS="2",
        SENTINEL_ALERTMANAGER_0_NAME="am",
        SENTINEL_ALERTMANAGER_0_URL=am_url,
        SENTINEL_ALERTMANAGER_0_LABELS_SERVICE=service,
        SENTINEL_ALERTMANAGER_0_LABELS_ENV="test",
    )


def _normal(now: float) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(USERS * PER_USER):
        user, ts = f"user-{i % USERS:02d}", round(now - 5 - (i % 190), 3)
        events.append({"event_id": f"q{i}", "type": "request", "ts": ts, "user_id": user,
                       "blocked": False})  # fmt: skip
        events.append({"event_id": f"r{i}", "type": "response", "ts": ts, "user_id": user,
                       "safe": True, "cost_usd": 0.001})  # fmt: skip
    return events


def _blocked(now: float, visible_s: float, tag: str = "b") -> list[dict[str, object]]:
    # in the window of every tick up to now + visible_s
    ts = now - 300 + visible_s
    return [{"event_id": f"{tag}{i}", "type": "request", "ts": ts, "user_id": "mallory",
             "blocked": True} for i in range(BLOCKED)]  # fmt: skip


def _unsafe(now: float, visible_s: float, tag: str = "u") -> list[dict[str, object]]:
    ts = now - 300 + visible_s
    return [{"event_id": f"{tag}{i}", "type": "response", "ts": ts, "user_id": "mallory",
             "safe": False, "cost_usd": 0.002} for i in range(UNSAFE)]  # fmt: skip


def _replica(session: aiohttp.ClientSession, env: Mapping[str, str], name: str) -> Probe:
    port = free_port()
    return Probe(session, ServiceProcess({**env, "SENTINEL_HTTP_PORT": str(port)}, name), port)


async def _am_until(
    am: AlertmanagerUnderTest,
    service: str,
    want: Callable[[dict[tuple[str, str], dict[str, Any]]], bool],
    what: str,
    replica: Probe,
) -> dict[tuple[str, str], dict[str, Any]]:
    async def check() -> dict[tuple[str, str], dict[str, Any]] | None:
        alerts = by_name(await asyncio.to_thread(am.server.alerts, service))
        return alerts if want(alerts) else None

    return await replica.until(check, f"Alertmanager showing {what}", TIMEOUT_S)


async def test_ok_red_critical_ok_as_alertmanager_sees_it(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Any,
    redis_ns: Any,
    alertmanager: AlertmanagerUnderTest,
) -> None:
    topics = await create_topics(make_topic, 2)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    am = alertmanager.server
    # an operator silences the safety signal during the incident
    silence = await asyncio.to_thread(
        am.silence, {"service": service, "alertname": RED_ALERT, "signal": "safety_pct"}
    )
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, am.url, service)
    async with aiohttp.ClientSession() as session:
        replica = _replica(session, env, "am-flow")
        try:
            # 1. ok: normal traffic, nothing in Alertmanager
            await produce(kafka_bootstrap, topics, _normal(time.time()))

            async def ok_over_all_traffic() -> dict[str, Any] | None:
                tick = await replica.status_or_none()
                volume = (tick or {}).get("signals", {}).get("safety_pct", {}).get("volume")
                ok = tick is not None and tick.get("status") == "ok" and volume == USERS * PER_USER
                return tick if ok else None

            await replica.until(ok_over_all_traffic, "an ok tick over the normal traffic")
            assert await asyncio.to_thread(am.alerts, service) == []

            # 2. one red signal: blocked requests from one user -> warning
            await produce(kafka_bootstrap, topics, _blocked(time.time(), visible_s=45))
            warning = await _am_until(
                alertmanager, service, lambda a: (RED_ALERT, "blocked_pct") in a,
                "blocked_pct red", replica,
            )  # fmt: skip
            assert set(warning) == {(RED_ALERT, "blocked_pct")}
            red = warning[(RED_ALERT, "blocked_pct")]
            assert red["labels"] == {
                "alertname": RED_ALERT,
                "signal": "blocked_pct",
                "severity": "warning",
                "service": service,
                "env": "test",
            }
            notes = red["annotations"]
            assert float(notes["value"]) == pytest.approx(100 * BLOCKED / (BLOCKED + 240), 1e-4)
            assert (float(notes["baseline"]), float(notes["threshold"])) == (0.1, 0.2)
            assert float(notes["p_value"]) < 0.001
            assert notes["red_signals"] == "blocked_pct"
            assert notes["top_users"].startswith('"mallory" 0.40 rps')
            assert re.fullmatch(rf"http://[^/]+:{replica.port}/status", red["generatorURL"])
            first_red = red["startsAt"]

            # 3. critical: unsafe responses too
            await produce(kafka_bootstrap, topics, _unsafe(time.time(), visible_s=20))
            critical = await _am_until(
                alertmanager, service, lambda a: (CRITICAL_ALERT, "") in a, "critical", replica
            )
            critical = await _am_until(
                alertmanager, service, lambda a: len(a) == 3, "three alerts", replica
            )
            assert set(critical) == {(RED_ALERT, "blocked_pct"), (RED_ALERT, "safety_pct"),
                                     (CRITICAL_ALERT, "")}  # fmt: skip
            composite = critical[(CRITICAL_ALERT, "")]
            assert composite["labels"]["severity"] == "page"
            assert composite["annotations"]["red_signals"] == "blocked_pct, safety_pct"
            assert composite["annotations"]["summary"].startswith("critical: blocked=")
            assert critical[(RED_ALERT, "blocked_pct")]["startsAt"] == first_red  # kept
            silenced = critical[(RED_ALERT, "safety_pct")]["status"]
            assert (silenced["state"], silenced["silencedBy"]) == ("suppressed", [silence])
            groups = await asyncio.to_thread(am.groups, service)
            assert sum(len(g["alerts"]) for g in groups) == 3

            # 4. back to ok: both attacks leave the window; every alert is resolved
            await replica.until(
                lambda: _none_active(alertmanager, service), "every alert resolved in Alertmanager"
            )
            final = await replica.status_or_none()

            def resolved_notified() -> set[str] | None:
                done = {_name(a) for a in alertmanager.webhook.alerts(service)
                        if a["status"] == "resolved"}  # fmt: skip
                return done if {"blocked_pct", CRITICAL_ALERT} <= done else None

            await replica.until(
                lambda: asyncio.to_thread(resolved_notified), "resolved notifications"
            )
        finally:
            replica.svc.close()
    assert final is not None and final["status"] == "ok"
    notified = {_name(a) for a in alertmanager.webhook.alerts(service)}
    assert notified == {"blocked_pct", CRITICAL_ALERT}  # never the silenced safety_pct
    log = replica.svc.log.read_text(errors="replace")
    assert "alertmanager am" not in log  # no push failed


def _name(alert: Mapping[str, Any]) -> str:
    labels = alert["labels"]
    return str(labels.get("signal", labels["alertname"]))


async def _none_active(am: AlertmanagerUnderTest, service: str) -> bool | None:
    return True if not await asyncio.to_thread(am.server.alerts, service) else None


async def test_starts_at_survives_killing_the_leader(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Any,
    redis_ns: Any,
    alertmanager: AlertmanagerUnderTest,
) -> None:
    topics = await create_topics(make_topic, 2)
    service = f"ha-{uuid.uuid4().hex[:8]}"
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, alertmanager.url, service)
    async with aiohttp.ClientSession() as session:
        replicas = [_replica(session, env, f"am-ha-{i}") for i in range(2)]
        try:
            now = time.time()
            await produce(
                kafka_bootstrap,
                topics,
                _normal(now) + _blocked(now, visible_s=120) + _unsafe(now, visible_s=120),
            )
            before = await _am_until(
                alertmanager, service, lambda a: len(a) == 3, "three alerts", replicas[0]
            )
            starts = {key: alert["startsAt"] for key, alert in before.items()}

            async def leader() -> Probe | None:
                for replica in replicas:
                    status = await replica.status_or_none()
                    if status is not None and status.get("leader") and "status" in status:
                        return replica
                return None

            old = await replicas[0].until(leader, "a leader")
            survivor = next(r for r in replicas if r is not old)
            old.svc.kill()
            killed_at = time.time()

            def pushed_after_kill(alerts: dict[tuple[str, str], dict[str, Any]]) -> bool:
                # endsAt = push time + 3 ticks: only a push after the kill gets this far
                return len(alerts) == 3 and all(
                    _ts(a["endsAt"]) > killed_at + 3 * TICK_S for a in alerts.values()
                )

            after = await _am_until(
                alertmanager, service, pushed_after_kill, "pushes of the new leader", survivor
            )
            status = await survivor.status_or_none()
        finally:
            for replica in replicas:
                replica.svc.close()
    assert status is not None and status["leader"] is True
    assert {key: alert["startsAt"] for key, alert in after.items()} == starts
    handover = survivor.svc.log.read_text(errors="replace")
    assert "leadership acquired" in handover


def _shortened_rules(tmp_path: Path) -> None:
    # the file's expressions and labels, with every `for:` down to 1 s: the real
    # durations (2 to 15 minutes) are what promtool's unit tests check
    text = (ROOT / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8")
    shortened = re.sub(r"(?m)^(\s+for:) \d+m$", r"\1 1s", text)
    assert shortened != text
    (tmp_path / "alerts.yml").write_text(shortened, encoding="utf-8")


async def test_prometheus_rule_alerts_reach_the_same_alertmanager(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Any,
    redis_ns: Any,
    alertmanager: AlertmanagerUnderTest,
    tmp_path: Path,
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "prometheus is missing: `make test` installs it"
    topics = await create_topics(make_topic, 2)
    service = f"prom-{uuid.uuid4().hex[:8]}"
    am = alertmanager.server
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, am.url, service)
    # the compose stack's prometheus.yml, pointed at this test's service and Alertmanager
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s",
                            external_labels={"service": service})  # fmt: skip
    (alerting,) = config["alerting"]["alertmanagers"]
    alerting["static_configs"] = [{"targets": [f"127.0.0.1:{am.port}"]}]
    _shortened_rules(tmp_path)
    prom_port = free_port()
    prom_log = tmp_path / "prometheus.log"
    prom: subprocess.Popen[bytes] | None = None
    async with aiohttp.ClientSession() as session:
        replica = _replica(session, env, "am-prom")
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "stream-sentinel")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{replica.port}"]}]
        config["scrape_configs"] = [job]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        try:
            with prom_log.open("wb") as out:
                prom = subprocess.Popen(
                    [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            now = time.time()
            await produce(
                kafka_bootstrap,
                topics,
                _normal(now) + _blocked(now, visible_s=90) + _unsafe(now, visible_s=90),
            )
            both = await _am_until(
                alertmanager,
                service,
                lambda a: {("StreamSentinelCompositeCritical", ""), (CRITICAL_ALERT, "")} <= set(a),
                "the rule's alert and the direct one",
                replica,
            )
        finally:
            if prom is not None:
                prom.terminate()
                await asyncio.to_thread(prom.wait, 30)
            replica.svc.close()
    rule = both[("StreamSentinelCompositeCritical", "")]
    assert rule["labels"]["job"] == "stream-sentinel"
    assert rule["labels"]["severity"] == "critical"
    assert rule["annotations"]["runbook_url"].endswith(
        "/docs/deployment.md#streamsentinelcompositecritical"
    )
    assert rule["generatorURL"].startswith("http")
    direct = both[(CRITICAL_ALERT, "")]
    assert direct["labels"]["severity"] == "page" and "job" not in direct["labels"]


async def test_a_hanging_alertmanager_delays_no_tick(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    # an Alertmanager that accepts connections and never answers, with a target
    # timeout far longer than a tick: ticks must keep their cadence regardless
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    topics = await create_topics(make_topic, 2)
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, f"http://127.0.0.1:{port}",
               "hang")  # fmt: skip
    env["SENTINEL_ALERTMANAGER_0_TIMEOUT_SECONDS"] = "60"
    async with aiohttp.ClientSession() as session:
        replica = _replica(session, env, "am-hang")
        try:
            await produce(kafka_bootstrap, topics, _normal(time.time()))
            ticks: list[int] = []

            async def five_ticks() -> list[int] | None:
                status = await replica.status_or_none()
                at = (status or {}).get("at")
                if at is not None:
                    stamp = int(_ts(at))
                    if not ticks or ticks[-1] != stamp:
                        ticks.append(stamp)
                return ticks if len(ticks) >= 6 else None

            await replica.until(five_ticks, "six ticks")
            async with session.get(f"http://127.0.0.1:{replica.port}/metrics") as response:
                metrics = await response.text()
        finally:
            replica.svc.close()
            server.close()
            for writer in held:
                writer.close()
    # every tick in turn, none skipped while the pushes hung
    assert [b - a for a, b in itertools.pairwise(ticks)] == [TICK_S] * (len(ticks) - 1)
    timeouts = sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "stream_sentinel_alertmanager_pushes_total"
        and sample.labels == {"target": "am", "result": "timeout"}
    )
    assert timeouts >= 4, metrics
    log = replica.svc.log.read_text(errors="replace")
    assert log.count("alertmanager am: push timeout") == 1, log[-3000:]
