"""The pusher against a real Alertmanager (Debian's prometheus-alertmanager):
what arrives, learning and stale, a slow target, TLS with basic auth, and the
episodes handed from one leader to the next through Redis."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alertmanager_server import AlertmanagerProcess, by_name, free_port, wait_for
from conftest import AlertmanagerUnderTest
from tenant_ticks import critical, tenant, tick_with

from stream_sentinel import untrusted
from stream_sentinel.alertmanager import to_rfc3339
from stream_sentinel.alertmanager_push import AlertmanagerPusher, AlertmanagerTarget, Result
from stream_sentinel.model import SIGNALS, SignalName, SignalReading, Status, Tick
from stream_sentinel.store.lease import LocalLease, RedisLease
from stream_sentinel.store.redis_client import connect

TICK_S = 2
STATUS_URL = "http://sentinel.test:9464/status"


def make_tick(status: Status, red: Sequence[SignalName] = (), *, at: int) -> Tick:
    readings = {
        name: SignalReading(name, 40.0 if name in red else 0.05, 0.1, 0.2,
                            "red" if name in red else "ok", p_value=1e-9, volume=400)
        for name in SIGNALS
    }  # fmt: skip
    return Tick(at, status, tuple(red), readings, (("mallory", 0.4),), None)


def target(url: str, service: str, name: str = "am", **kw: Any) -> AlertmanagerTarget:
    return AlertmanagerTarget(
        name=name, url=url, labels={"service": service}, generator_url=STATUS_URL, **kw
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _now_tick() -> int:
    # real time: Alertmanager judges endsAt against its own clock
    return int(time.time())


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_alerts_arrive_with_their_labels_and_resolve(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession
) -> None:
    service = f"push-{uuid.uuid4().hex[:8]}"
    results: list[tuple[str, str]] = []
    pusher = AlertmanagerPusher(
        [target(alertmanager.url, service)],
        session,
        LocalLease(),
        tick_seconds=TICK_S,
        on_result=lambda name, result: results.append((name, result)),
    )
    am = alertmanager.server
    at = _now_tick()
    for i in range(3):
        tick = make_tick("critical", ["blocked_pct", "safety_pct"], at=at + i * TICK_S)
        assert await pusher.push(tick, deadline=_deadline()) == {"am": "ok"}
    pushed = time.time()
    alerts = by_name(await asyncio.to_thread(am.alerts, service))
    assert set(alerts) == {
        ("LLMSecuritySignalRed", "blocked_pct"),
        ("LLMSecuritySignalRed", "safety_pct"),
        ("LLMSecurityCritical", ""),
    }
    red = alerts[("LLMSecuritySignalRed", "blocked_pct")]
    assert red["labels"] == {
        "alertname": "LLMSecuritySignalRed",
        "signal": "blocked_pct",
        "severity": "warning",
        "service": service,
    }
    assert red["annotations"]["value"] == "40" and red["annotations"]["threshold"] == "0.2"
    assert red["annotations"]["top_users"] == '"mallory" 0.40 rps'
    assert red["generatorURL"] == STATUS_URL
    assert red["status"]["state"] == "active"
    for alert in alerts.values():
        assert _ts(alert["startsAt"]) == at  # the first red tick, not the latest
        assert pushed < _ts(alert["endsAt"]) <= pushed + 3 * TICK_S
    assert alerts[("LLMSecurityCritical", "")]["labels"]["severity"] == "page"
    groups = await asyncio.to_thread(am.groups, service)
    assert sorted(len(g["alerts"]) for g in groups) == [1, 1, 1]
    assert {g["receiver"]["name"] for g in groups} == {"webhook"}

    def notified(status: str) -> set[str] | None:
        done = {
            a["labels"].get("signal", a["labels"]["alertname"])
            for a in alertmanager.webhook.alerts(service)
            if a["status"] == status
        }
        return done if len(done) == 3 else None

    everything = {"blocked_pct", "safety_pct", "LLMSecurityCritical"}
    assert await wait_for(lambda: notified("firing"), "three notifications", 30) == everything

    # the attack ends: every alert is sent resolved and leaves the active list
    await pusher.push(make_tick("ok", at=at + 3 * TICK_S), deadline=_deadline())
    assert await asyncio.to_thread(am.alerts, service) == []
    assert results == [("am", "ok")] * 4

    resolved = await wait_for(lambda: notified("resolved"), "resolved notifications", 30)
    assert resolved == everything


async def test_learning_sends_nothing_and_stale_does(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession
) -> None:
    service = f"learn-{uuid.uuid4().hex[:8]}"
    pusher = AlertmanagerPusher(
        [target(alertmanager.url, service)], session, LocalLease(), tick_seconds=60
    )
    at = _now_tick()
    learning = make_tick("learning", ["blocked_pct", "safety_pct"], at=at)
    assert await pusher.push(learning, deadline=_deadline()) == {}
    assert pusher.episodes == {}
    stale = Tick(at + 60, "stale", (), {}, (), "consumer stalled")
    assert await pusher.push(stale, deadline=_deadline()) == {"am": "ok"}
    alerts = by_name(await asyncio.to_thread(alertmanager.server.alerts, service))
    assert set(alerts) == {("StreamSentinelStale", "")}
    stale_alert = alerts[("StreamSentinelStale", "")]
    assert stale_alert["annotations"]["reason"] == "consumer stalled"
    assert stale_alert["labels"]["severity"] == "page"


async def _blackhole() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers: an Alertmanager that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_hanging_or_refusing_target_costs_one_deadline_and_one_log_line(
    alertmanager: AlertmanagerUnderTest,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = f"slow-{uuid.uuid4().hex[:8]}"
    server, port = await _blackhole()
    counted: list[tuple[str, str]] = []
    slow = target(f"http://127.0.0.1:{port}", service, "slow", timeout_s=30.0)
    pusher = AlertmanagerPusher(
        [slow, target(alertmanager.url, service, "real")],
        session,
        LocalLease(),
        tick_seconds=60,
        on_result=lambda name, result: counted.append((name, result)),
    )
    caplog.set_level(logging.INFO, logger="stream_sentinel.alertmanager_push")
    loop = asyncio.get_running_loop()
    try:
        for i in range(3):
            started = loop.time()
            results = await pusher.push(
                make_tick("warning", ["spend_hour"], at=_now_tick() + i), deadline=_deadline(1.0)
            )
            took = loop.time() - started
            assert results == {"slow": "timeout", "real": "ok"}
            assert took < 3.0, took  # the deadline, not the target's 30 s timeout
    finally:
        server.close()
        await server.wait_closed()
    # the sibling target got its alert in the same pushes
    alerts = await asyncio.to_thread(alertmanager.server.alerts, service)
    assert [a["labels"].get("signal") for a in alerts] == ["spend_hour"]
    assert counted.count(("slow", "timeout")) == 3
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "alertmanager slow: push timeout" in warned[0].getMessage()

    # now refused outright: a new failure, logged once more; then it recovers
    refused = free_port()
    pusher2 = AlertmanagerPusher(
        [target(f"http://127.0.0.1:{refused}", service, "slow")],
        session,
        LocalLease(),
        tick_seconds=60,
        on_result=lambda name, result: counted.append((name, result)),
    )
    caplog.clear()
    outcomes: list[Result] = []
    for _ in range(2):
        outcomes += (await pusher2.push(make_tick("warning", ["spend_hour"], at=_now_tick()),
                                        deadline=_deadline())).values()  # fmt: skip
    assert outcomes == ["error", "error"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the stdlib's bcrypt, for Alertmanager's basic_auth_users

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_with_a_ca_file_and_basic_auth(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    import base64

    good = "Basic " + base64.b64encode(b"sentinel:right-password").decode()
    bad = "Basic " + base64.b64encode(b"sentinel:wrong-password").decode()
    am = AlertmanagerProcess(
        "route: {receiver: none}\nreceivers: [{name: none}]\n",
        "alertmanager-tls",
        web_config=(
            f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}\n"
            f"basic_auth_users: {{sentinel: '{_bcrypt('right-password')}'}}\n"
        ),
        ssl_context=ssl.create_default_context(cafile=str(cert)),
        authorization=good,
    )
    am.start()
    try:
        service = f"tls-{uuid.uuid4().hex[:8]}"
        targets = [
            target(am.url, service, "good", authorization=good, ssl_cafile=str(cert)),
            target(am.url, service, "bad-password", authorization=bad, ssl_cafile=str(cert)),
            target(am.url, service, "unknown-ca", authorization=good),
        ]
        pusher = AlertmanagerPusher(targets, session, LocalLease(), tick_seconds=60)
        results = await pusher.push(make_tick("warning", ["top_user_rps"], at=_now_tick()),
                                    deadline=_deadline())  # fmt: skip
        assert results == {"good": "ok", "bad-password": "rejected", "unknown-ca": "error"}
        alerts = await asyncio.to_thread(am.alerts, service)
        assert [a["labels"]["signal"] for a in alerts] == ["top_user_rps"]
    finally:
        am.stop()


async def test_a_new_leader_keeps_the_start_of_every_alert(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession, any_redis_url: str
) -> None:
    service = f"handover-{uuid.uuid4().hex[:8]}"
    prefix = f"am{uuid.uuid4().hex[:8]}"
    client = connect(any_redis_url)
    leases = [RedisLease(client, prefix=prefix, replica_id=r, ttl_ms=10_000) for r in ("a", "b")]
    pushers = [
        AlertmanagerPusher([target(alertmanager.url, service)], session, lease,
                           tick_seconds=TICK_S)
        for lease in leases
    ]  # fmt: skip
    try:
        assert await leases[0].acquire() >= 1
        at = _now_tick()
        attack = make_tick("critical", ["blocked_pct", "safety_pct"], at=at)
        await pushers[0].push(attack, deadline=_deadline())
        await leases[0].release()  # a handover: the old leader is gone
        assert await leases[1].acquire() >= 1
        later = make_tick("critical", ["blocked_pct", "safety_pct"], at=at + TICK_S)
        await pushers[1].push(later, deadline=_deadline())
        (episode, *_) = pushers[1].episodes.values()
        alerts = await asyncio.to_thread(alertmanager.server.alerts, service)
        assert len(alerts) == 3
        for alert in alerts:
            assert alert["startsAt"] == to_rfc3339(at)  # from the first leader's first tick
            assert _ts(alert["endsAt"]) == pytest.approx(episode.ends_at, abs=0.001)
    finally:
        await client.delete(
            *(f"{prefix}:{{leader}}:{k}" for k in ("holder", "epoch", "state", "alertmanager"))
        )
        await client.aclose()


async def test_silence_mutes_the_notification_not_the_push(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession
) -> None:
    service = f"silence-{uuid.uuid4().hex[:8]}"
    am = alertmanager.server
    silence = await asyncio.to_thread(
        am.silence, {"service": service, "alertname": "LLMSecuritySignalRed"}
    )
    pusher = AlertmanagerPusher([target(alertmanager.url, service)], session, LocalLease(),
                                tick_seconds=60)  # fmt: skip
    await pusher.push(make_tick("critical", ["blocked_pct", "safety_pct"], at=_now_tick()),
                      deadline=_deadline())  # fmt: skip
    alerts = by_name(await asyncio.to_thread(am.alerts, service))
    assert len(alerts) == 3  # the push went through
    for key in (("LLMSecuritySignalRed", "blocked_pct"), ("LLMSecuritySignalRed", "safety_pct")):
        assert alerts[key]["status"]["state"] == "suppressed"
        assert alerts[key]["status"]["silencedBy"] == [silence]
    assert alerts[("LLMSecurityCritical", "")]["status"]["state"] == "active"

    # the unsilenced alert is notified; by then the silenced ones would have been too
    def notified(alertname: str) -> list[dict[str, Any]] | None:
        sent = alertmanager.webhook.alerts(service)
        return sent if any(a["labels"]["alertname"] == alertname for a in sent) else None

    await wait_for(lambda: notified("LLMSecurityCritical"), "critical notified", 30)
    # a later alert, notified after its own group_wait: by then any notification of
    # the silenced alerts (flushed with the critical one) would have arrived
    stale = Tick(_now_tick() + 60, "stale", (), {}, (), "consumer stalled")
    await pusher.push(stale, deadline=_deadline())
    sent = await wait_for(lambda: notified("StreamSentinelStale"), "stale notified", 30)
    assert {a["labels"]["alertname"] for a in sent} == {
        "LLMSecurityCritical",
        "StreamSentinelStale",
    }


async def test_a_red_tenant_arrives_with_its_tenant_label_and_resolves(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession
) -> None:
    service = f"tenant-{uuid.uuid4().hex[:8]}"
    pusher = AlertmanagerPusher(
        [target(alertmanager.url, service)], session, LocalLease(), tick_seconds=TICK_S
    )
    hostile = 'team\n"x"{=}' + "ü" * 300  # newline, quotes, braces, long, non-ASCII
    label = untrusted.label(hostile)
    at = _now_tick()
    for i in range(2):
        tick = tick_with([critical(hostile), tenant("calm")], at=at + i * TICK_S)
        assert await pusher.push(tick, deadline=_deadline()) == {"am": "ok"}
    alerts = await asyncio.to_thread(alertmanager.server.alerts, service)
    got = {(a["labels"]["alertname"], a["labels"].get("signal", "")): a for a in alerts}
    assert set(got) == {
        ("LLMSecurityTenantSignalRed", "blocked_pct"),
        ("LLMSecurityTenantSignalRed", "safety_pct"),
        ("LLMSecurityTenantCritical", ""),
    }
    for alert in alerts:
        assert alert["labels"]["tenant"] == label
        assert alert["startsAt"] == to_rfc3339(at)
    assert got[("LLMSecurityTenantCritical", "")]["labels"]["severity"] == "page"
    assert got[("LLMSecurityTenantSignalRed", "blocked_pct")]["labels"]["severity"] == "warning"

    def notified(status: str) -> set[str] | None:
        done = {
            a["labels"]["alertname"] + a["labels"].get("signal", "")
            for a in alertmanager.webhook.alerts(service)
            if a["status"] == status and a["labels"].get("tenant") == label
        }
        return done if len(done) == 3 else None

    await wait_for(lambda: notified("firing"), "tenant notifications", 30)
    # the tenant recovers: its alerts are sent resolved and leave the active list
    await pusher.push(tick_with([tenant(hostile)], at=at + 2 * TICK_S), deadline=_deadline())
    assert await asyncio.to_thread(alertmanager.server.alerts, service) == []
    await wait_for(lambda: notified("resolved"), "tenant resolved notifications", 30)


async def test_a_new_leader_keeps_the_start_of_tenant_alerts(
    alertmanager: AlertmanagerUnderTest, session: aiohttp.ClientSession, any_redis_url: str
) -> None:
    service = f"thandover-{uuid.uuid4().hex[:8]}"
    prefix = f"am{uuid.uuid4().hex[:8]}"
    client = connect(any_redis_url)
    leases = [RedisLease(client, prefix=prefix, replica_id=r, ttl_ms=10_000) for r in ("a", "b")]
    pushers = [
        AlertmanagerPusher([target(alertmanager.url, service)], session, lease,
                           tick_seconds=TICK_S)
        for lease in leases
    ]  # fmt: skip
    try:
        assert await leases[0].acquire() >= 1
        at = _now_tick()
        await pushers[0].push(tick_with([critical("acme")], at=at), deadline=_deadline())
        await leases[0].release()
        assert await leases[1].acquire() >= 1
        later = tick_with([critical("acme")], at=at + TICK_S)
        await pushers[1].push(later, deadline=_deadline())
        alerts = await asyncio.to_thread(alertmanager.server.alerts, service)
        assert len(alerts) == 3
        for alert in alerts:
            assert alert["labels"]["tenant"] == "acme"
            assert alert["startsAt"] == to_rfc3339(at)  # from the first leader's first tick
    finally:
        await client.delete(
            *(f"{prefix}:{{leader}}:{k}" for k in ("holder", "epoch", "state", "alertmanager"))
        )
        await client.aclose()
