"""`stream-sentinel run` end to end: the real broker and Redis, the service as a
subprocess, heartbeat monitors as real HTTP servers on loopback, a real Prometheus.

Ticks are shortened to ``TICK_S`` (so buckets are ``TICK_S`` wide); windows
stay 5 minutes of event time, so an attack is produced with timestamps just
inside the window's far end and leaves it on its own a few ticks later.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.app import EXIT_UNAVAILABLE
from stream_sentinel.cli.main import EXIT_CONFIG
from stream_sentinel.heartbeat import COMPOSITE, TOKEN_KEYS
from stream_sentinel.metrics import STATUS_CODES

from .fakes import HealthchecksFake, Ping, PingLog, UptimeKumaFake, WebhookFake
from .harness import (
    START_TIMEOUT_S,
    Probe,
    ServiceProcess,
    create_topics,
    deployment_env,
    free_port,
    produce,
    until,
)

pytestmark = pytest.mark.integration

TICK_S = 2

# Normal traffic: 60 users x 4 requests, all allowed; 240 safe responses at $0.001.
USERS, PER_USER = 60, 4
# The attack: 120 blocked requests from one user and 80 unsafe responses at $0.002,
# all at one timestamp that stays inside the 5-minute window for ATTACK_VISIBLE_S.
ATTACK_BLOCKED, ATTACK_UNSAFE, ATTACK_VISIBLE_S = 120, 80, 10
RED = "; red: blocked_pct, safety_pct"
NORMAL = "blocked=0.00%, safety=100.00%, top_user_rps=0.01, spend_hour=$0.24"
# 120/360 blocked, 240/320 safe, 120 requests / 300 s, $0.24 + 80 x $0.002
ATTACK = "critical: blocked=33.33%, safety=75.00%, top_user_rps=0.40, spend_hour=$0.40" + RED
# clear_ticks = 2: the first tick without the attack still shows red (held)
HELD = "critical: blocked=0.00%, safety=100.00%, top_user_rps=0.01, spend_hour=$0.40" + RED
ATTACK_VALUES = {"blocked_pct": "33.33%", "safety_pct": "75.00%"}
AFTER = "blocked=0.00%, safety=100.00%, top_user_rps=0.01, spend_hour=$0.40"


# -- helpers ------------------------------------------------------------------


def _env(
    kafka: str, redis_url: str, prefix: str, topics: Mapping[str, str], port: int, **extra: str
) -> dict[str, str]:
    return deployment_env(
        kafka,
        redis_url,
        prefix,
        topics,
        group=f"e2e-{uuid.uuid4().hex[:8]}",
        SENTINEL_HTTP_PORT=str(port),
        SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
        SENTINEL_ALERTING_CLEAR_TICKS="2",
        **extra,
    )


async def _signal_and_wait(svc: ServiceProcess, sig: signal.Signals, timeout: float = 30) -> int:
    # waited for in a thread: the loopback monitors live on this event loop
    svc.proc.send_signal(sig)
    return await asyncio.to_thread(svc.proc.wait, timeout)


def _runs(flags: list[bool]) -> list[bool]:
    """``[F, F, T, T, F]`` -> ``[F, T, F]``."""
    return [f for i, f in enumerate(flags) if i == 0 or flags[i - 1] != f]


def _cleared(log: PingLog, key: str) -> bool:
    """A failure push for ``key``, then a success."""
    flags = [p.failure for p in log.of(key)]
    return True in flags and False in flags[flags.index(True) :]


def _has(log: PingLog, key: str, message: str) -> bool:
    return any(p.message == message for p in log.of(key))


def _request(i: int, user: str, ts: float, blocked: bool) -> dict[str, object]:
    return {"event_id": f"q{i}", "type": "request", "ts": ts, "user_id": user, "blocked": blocked}


def _response(i: int, user: str, ts: float, safe: bool, cost: float) -> dict[str, object]:
    return {"event_id": f"r{i}", "type": "response", "ts": ts, "user_id": user, "safe": safe,
            "cost_usd": cost}  # fmt: skip


def _normal_traffic(now: float) -> list[dict[str, object]]:
    rng = random.Random(7)
    events: list[dict[str, object]] = []
    for i in range(USERS * PER_USER):
        user = f"user-{i % USERS:02d}"
        # inside every window for the rest of the test (it leaves at now + 100 s)
        events.append(_request(i, user, round(now - rng.uniform(5, 200), 3), False))
        events.append(_response(i, user, round(now - rng.uniform(5, 200), 3), True, 0.001))
    return events


def _attack(now: float) -> list[dict[str, object]]:
    # at - 300 <= ts holds for ticks up to ts + 300 = now + ATTACK_VISIBLE_S
    ts = now - 300 + ATTACK_VISIBLE_S
    blocked = [_request(10_000 + i, "mallory", ts, True) for i in range(ATTACK_BLOCKED)]
    unsafe = [_response(10_000 + i, "mallory", ts, False, 0.002) for i in range(ATTACK_UNSAFE)]
    return blocked + unsafe


async def _alert_events(
    kafka: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """The alert events on ``topic`` from the start, read until ``done`` says so."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=f"e2e-alerts-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(events):
                batches = await consumer.getmany(timeout_ms=500)
                events += [orjson.loads(r.value) for rs in batches.values() for r in rs]
    except TimeoutError:
        raise AssertionError(f"alert events so far: {events}") from None
    finally:
        await consumer.stop()
    return events


def _critical_then_ok(events: list[dict[str, Any]]) -> bool:
    statuses = [e["status"] for e in events]
    return "critical" in statuses and "ok" in statuses[statuses.index("critical") :]


def _heartbeat_toml(entries: list[Mapping[str, Any]]) -> str:
    out = []
    for entry in entries:
        out.append("[[heartbeat]]")
        for key, value in entry.items():
            if isinstance(value, Mapping):
                inner = ", ".join(f'{k} = "{v}"' for k, v in value.items())
                out.append(f"{key} = {{ {inner} }}")
            else:
                out.append(f"{key} = {orjson.dumps(value).decode()}")
    return "\n".join(out) + "\n"


# -- 1. an attack, seen by two monitors -----------------------------------------


async def test_attack_turns_heartbeats_critical_then_back_to_ok(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any, tmp_path: Path
) -> None:
    topics = await create_topics(make_topic, 2)
    hc_tokens = {key: str(uuid.uuid4()) for key in TOKEN_KEYS}
    kuma_tokens = {key: f"kuma{secrets.token_hex(12)}" for key in TOKEN_KEYS}
    unknown_token = f"kuma{secrets.token_hex(12)}"  # no monitor has it: pushes get 500
    all_tokens = [*hc_tokens.values(), *kuma_tokens.values(), unknown_token]
    # one token comes from a file, as operators are told to provide them
    token_file = tmp_path / "kuma-composite.token"
    token_file.write_text(kuma_tokens[COMPOSITE] + "\n")
    port = free_port()
    async with (
        HealthchecksFake(hc_tokens) as hc,
        UptimeKumaFake(kuma_tokens) as kuma,
        aiohttp.ClientSession() as session,
    ):
        config = tmp_path / "sentinel.toml"
        config.write_text(
            _heartbeat_toml(
                [
                    {"name": "hc", "kind": "healthchecks", "url": hc.url, "tokens": hc_tokens},
                    {
                        "name": "kuma",
                        "kind": "uptime-kuma",
                        "url": kuma.url,
                        "tokens": {k: v for k, v in kuma_tokens.items() if k != COMPOSITE},
                    },
                    {
                        "name": "kuma-unknown",
                        "kind": "uptime-kuma",
                        "url": kuma.url,
                        "retries": 1,
                        "tokens": {COMPOSITE: unknown_token},
                    },
                ]
            )
        )
        env = _env(
            kafka_bootstrap,
            redis_url,
            redis_ns.prefix,
            topics,
            port,
            SENTINEL_CONFIG=str(config),
            SENTINEL_HEARTBEAT_1_TOKENS_COMPOSITE_FILE=str(token_file),
        )
        svc = ServiceProcess(env, "attack")
        try:
            probe = Probe(session, svc, port)
            await probe.ready()
            await produce(kafka_bootstrap, topics, _normal_traffic(time.time()))
            for fake in (hc, kuma):
                await fake.log.wait_for(
                    partial(_has, fake.log, COMPOSITE, NORMAL), 6 * TICK_S, "normal tick"
                )
            await produce(kafka_bootstrap, topics, _attack(time.time()))
            for fake in (hc, kuma):
                for key in (COMPOSITE, "blocked_pct", "safety_pct"):
                    await fake.log.wait_for(
                        partial(_cleared, fake.log, key),
                        ATTACK_VISIBLE_S + 8 * TICK_S,
                        f"{key} failure then success",
                    )
            alerts = await _alert_events(
                kafka_bootstrap, topics["alerts"], _critical_then_ok, 10 * TICK_S
            )
            status = await probe.status()
            _, metrics = await probe.get("/metrics")
            assert await probe.metric("stream_sentinel_heartbeats_total", target="hc") > 0
            unknown = await probe.metric(
                "stream_sentinel_heartbeats_total", target="kuma-unknown", result="error"
            )
        finally:
            rc = await _signal_and_wait(svc, signal.SIGTERM)
            svc.close()
        assert rc == 0, svc.log_tail()

    for fake in (hc, kuma):
        _assert_went_critical_and_back(fake.log)
        assert fake.log.malformed == []
    assert hc.log.unknown == 0
    assert kuma.log.unknown > 0 and unknown > 0  # the refused target failed, visibly

    _assert_alert_events(alerts)
    assert status["status"] == "ok" and status["leader"] is True
    log_text = svc.log.read_text(errors="replace")
    assert "heartbeat kuma-unknown/composite error" in log_text  # the path most likely to leak
    for token in all_tokens:
        assert token not in log_text
        assert token not in orjson.dumps(status).decode()
        assert token not in metrics.decode()
        assert token not in orjson.dumps(alerts).decode()


def _assert_alert_events(events: list[dict[str, Any]]) -> None:
    # one event per composite transition; the first ok tick of a fresh leader is not one
    statuses = [e["status"] for e in events]
    assert statuses[-2:] == ["critical", "ok"] and set(statuses) <= {"warning", "critical", "ok"}
    assert [e["previous"] for e in events] == ["ok", *statuses[:-1]]
    critical = events[-2]
    assert critical["red"] == ["blocked_pct", "safety_pct"]
    for name in ("blocked_pct", "safety_pct"):
        signal = critical["signals"][name]
        assert signal["state"] == "red" and signal["p_value"] < 0.001, signal
    assert critical["top_users"][0][0] == "mallory"
    assert critical["leader_epoch"] >= 1


def _assert_went_critical_and_back(log: PingLog) -> None:
    for key in TOKEN_KEYS:
        pings = log.of(key)
        flags = [p.failure for p in pings]
        if key in ("top_user_rps", "spend_hour"):
            assert _runs(flags) == [False], key  # never red in this attack
            continue
        assert _runs(flags) == [False, True, False], (key, flags)
        first, last = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
        failures = [p.message for p in pings[first : last + 1]]
        if key != COMPOSITE:
            # a signal's push carries its own line: value, baseline, threshold, p-value;
            # the whole attack, then held red at the end (clear_ticks = 2)
            assert all(m.startswith(f"{key} red: value=") and ", p=" in m for m in failures)
            assert failures[-2].startswith(f"{key} red: value={ATTACK_VALUES[key]}, "), failures
            assert pings[last + 1].message.startswith(f"{key} ok: value="), key
            continue
        # partial ingestion of the attack may show first; whole, then held, at the end
        assert failures[-2:] == [ATTACK, HELD], (key, failures)
        assert failures.count(HELD) == 1, (key, failures)  # clear_ticks - 1 held tick
        assert all(m.startswith("critical: ") and m.endswith(RED) for m in failures)
        assert pings[last + 1].message == AFTER, key
        before = pings[first - 1].message
        assert before == NORMAL or before.startswith("warning: "), (key, before)


# -- 2. a real Prometheus scrapes /metrics -----------------------------------------

PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"


async def test_prometheus_scrapes_the_service_and_promtool_accepts_its_metrics(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any, tmp_path: Path
) -> None:
    topics = await create_topics(make_topic, 2)
    port, prom_port = free_port(), free_port()
    svc = ServiceProcess(_env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, port), "prom")
    prom_log = tmp_path / "prometheus.log"
    prom: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            probe = Probe(session, svc, port)
            await probe.ready()
            events = _normal_traffic(time.time())
            await produce(kafka_bootstrap, topics, events)

            async def tick_over_all_traffic() -> dict[str, Any] | None:
                code, body = await probe.get("/status")
                tick: dict[str, Any] = orjson.loads(body)
                volume = tick.get("signals", {}).get("safety_pct", {}).get("volume")
                return tick if code == 200 and volume == USERS * PER_USER else None

            tick = await probe.until(tick_over_all_traffic, "a tick over all the traffic")
            _, metrics = await probe.get("/metrics")
            check = subprocess.run(
                [PROMTOOL, "check", "metrics"], input=metrics, capture_output=True, timeout=30
            )
            assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")

            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                "  - job_name: sentinel\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
            )
            with prom_log.open("wb") as out:
                prom = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

            async def query(expr: str) -> list[dict[str, Any]] | None:
                url = f"http://127.0.0.1:{prom_port}/api/v1/query"
                async with session.get(url, params={"query": expr}) as response:
                    if response.status != 200:
                        return None  # still starting
                    body = await response.json()
                assert body["status"] == "success", body
                result: list[dict[str, Any]] = body["data"]["result"]
                return result or None

            def prom_tail() -> str:
                return prom_log.read_text(errors="replace")[-3000:]

            codes = await until(
                partial(query, "stream_sentinel_status_code"),
                "scraped series",
                proc=prom,
                tail=prom_tail,
            )
            status = await query("stream_sentinel_status == 1")
            counted = await query('sum(stream_sentinel_events_total{result="counted"})')
            up = await query('up{job="sentinel"}')
    finally:
        if prom is not None:
            prom.terminate()
            await asyncio.to_thread(prom.wait, 30)
        svc.close()

    (code,) = codes
    assert code["metric"] == {
        "__name__": "stream_sentinel_status_code",
        "instance": f"127.0.0.1:{port}",
        "job": "sentinel",
    }
    assert float(code["value"][1]) == STATUS_CODES[tick["status"]]
    assert status is not None and [s["metric"]["status"] for s in status] == [tick["status"]]
    assert counted is not None and float(counted[0]["value"][1]) == len(events)
    assert up is not None and float(up[0]["value"][1]) == 1


# -- 3. two replicas in one group ------------------------------------------------


class Replicas:
    """Replicas of one deployment (same group, Redis prefix and webhook target)."""

    def __init__(self, session: aiohttp.ClientSession, env: Mapping[str, str]) -> None:
        self.session, self.env = session, dict(env)
        self.started: list[Probe] = []

    def start(self, name: str) -> Probe:
        port = free_port()
        svc = ServiceProcess({**self.env, "SENTINEL_HTTP_PORT": str(port)}, name)
        self.started.append(Probe(self.session, svc, port))
        return self.started[-1]

    async def follower(self, name: str) -> Probe:
        """A replica that has joined the group and is not the leader."""
        probe = self.start(name)
        await probe.ready()  # partitions assigned: the tick loop runs and competes
        assert (await probe.status())["leader"] is False
        return probe

    def close(self) -> None:
        for probe in self.started:
            probe.svc.close()


async def _deployment(
    kafka: str, redis_url: str, prefix: str, make_topic: Any, hook: WebhookFake, token: str
) -> dict[str, str]:
    return _env(
        kafka,
        redis_url,
        prefix,
        await create_topics(make_topic, 2),
        0,
        SENTINEL_HEARTBEAT_0_NAME="hook",
        SENTINEL_HEARTBEAT_0_KIND="webhook",
        SENTINEL_HEARTBEAT_0_URL=hook.url,
        SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE=token,
    )


async def _next_push(log: PingLog, after: int, timeout: float = 6 * TICK_S) -> Ping:
    """The first push after the first ``after`` ones."""
    await log.wait_for(lambda: len(log.pings) > after, timeout, f"push #{after + 1}")
    return log.pings[after]


async def test_two_replicas_one_leader_pushes_and_survivor_takes_over_after_sigkill(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    token = secrets.token_hex(16)
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = await _deployment(
            kafka_bootstrap, redis_url, redis_ns.prefix, make_topic, hook, token
        )
        replicas = Replicas(session, env)
        try:
            a = replicas.start("a")
            await _next_push(hook.log, 0, START_TIMEOUT_S)  # a leads
            b = await replicas.follower("b")
            steady_from = len(hook.log.pings)
            await _next_push(hook.log, steady_from + 2)
            for probe, leads in ((a, True), (b, False)):
                assert (await probe.status())["leader"] is leads
                assert await probe.metric("stream_sentinel_leader") == int(leads)
                assert (await probe.metric("stream_sentinel_ticks_total") > 0) is leads
                assert (await probe.metric("stream_sentinel_heartbeats_total") > 0) is leads

            before = len(hook.log.pings)
            last = await _next_push(hook.log, before)
            a.svc.kill()
            killed_at = asyncio.get_running_loop().time()
            taken = await _next_push(hook.log, before + 1, 5 * TICK_S)
            assert (await b.status())["leader"] is True
        finally:
            replicas.close()

    ats = [p.at for p in hook.log.pings]
    assert None not in ats and len(set(ats)) == len(ats)  # never two pushes for one tick
    steady = [at for at in ats[steady_from:before] if at is not None]
    # and one for every tick while both ran
    assert {y - x for x, y in itertools.pairwise(steady)} == {TICK_S}
    assert last.at is not None and taken.at is not None
    missed = (taken.at - last.at) // TICK_S - 1
    waited = (taken.received - killed_at) / TICK_S
    print(f"sigkill: {missed} tick(s) without a push, next push {waited:.2f} ticks later")
    assert missed <= 2
    assert hook.log.unknown == 0 and hook.log.malformed == []


async def test_sigterm_drains_exits_0_and_hands_leadership_over_at_once(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    token = secrets.token_hex(16)
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = await _deployment(
            kafka_bootstrap, redis_url, redis_ns.prefix, make_topic, hook, token
        )
        replicas = Replicas(session, env)
        try:
            a = replicas.start("a")
            await _next_push(hook.log, 0, START_TIMEOUT_S)
            b = await replicas.follower("b")
            before = len(hook.log.pings)
            last = await _next_push(hook.log, before)
            stopping = asyncio.create_task(_signal_and_wait(a.svc, signal.SIGTERM))
            taken = await _next_push(hook.log, before + 1, 3 * TICK_S)
            rc = await stopping
            assert (await b.status())["leader"] is True
        finally:
            replicas.close()
    assert rc == 0, a.tail()
    assert "stopped" in a.tail()
    # a lease left to expire (TTL 1.5 ticks, renewed at the last tick) would cost a tick
    assert last.at is not None and taken.at == last.at + TICK_S


async def _lag_series(probe: Probe) -> set[tuple[str, str]]:
    """The (topic, partition) of every consumer-lag series the replica exports."""
    _, body = await probe.get("/metrics")
    return {
        (s.labels["topic"], s.labels["partition"])
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "stream_sentinel_consumer_lag"
    }


async def test_a_rebalance_moves_each_partitions_lag_to_its_new_owner(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    """A replica exports lag only for the partitions it holds: after a second
    replica joins, the first one's series of the partitions it gave up go, or
    sum(lag) over replicas would count those twice (and the lag alert fire)."""
    topics = await create_topics(make_topic, 2)
    every = {(topics[kind], str(p)) for kind in ("request", "response") for p in range(2)}
    async with aiohttp.ClientSession() as session:
        replicas = Replicas(session, _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics, 0))
        try:
            a = replicas.start("lag-a")
            await a.ready()
            # counted on every partition, so each has a stored offset and a lag
            await produce(kafka_bootstrap, topics, _normal_traffic(time.time()))

            async def a_reports_every_partition() -> bool | None:
                return True if await _lag_series(a) == every else None

            await a.until(a_reports_every_partition, "a's lag for all four partitions")
            b = replicas.start("lag-b")
            await b.ready()  # b holds partitions: the group rebalanced
            await produce(kafka_bootstrap, topics, _normal_traffic(time.time()))

            async def split() -> tuple[set[tuple[str, str]], ...] | None:
                held = [await p.metric("stream_sentinel_partitions_assigned") for p in (a, b)]
                series = [await _lag_series(p) for p in (a, b)]
                whole = sum(held) == len(every) and series[0] | series[1] == every
                settled = all(len(s) == n for s, n in zip(series, held, strict=True))
                return tuple(series) if whole and settled and all(held) else None

            left, right = await b.until(split, "one lag series per partition", timeout=120)
        finally:
            replicas.close()
    assert left and right and not left & right


# -- 4. refusing to start ---------------------------------------------------------


async def _cli(cwd: Path, env: Mapping[str, str], *args: str) -> tuple[int, str, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream_sentinel",
        *args,
        cwd=cwd,
        env={**full, "PYTHONPATH": str(Path(__file__).parents[2]), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - started


async def test_bad_config_missing_token_file_and_unreachable_redis_refuse_to_start(
    tmp_path: Path,
) -> None:
    secret = secrets.token_hex(16)
    bad_value = tmp_path / "bad-value.toml"
    bad_value.write_text(
        '[alerting]\ntick_seconds = "fast"\n'
        f'[[heartbeat]]\nurl = "http://127.0.0.1:9/"\ntokens = {{ composite = "{secret}" }}\n'
    )
    bad_token = tmp_path / "bad-token.toml"  # an invalid secret must not be echoed either
    bad_token.write_text(
        f'[[heartbeat]]\nurl = "http://127.0.0.1:9/"\ntokens = {{ composite = "x {secret}" }}\n'
    )
    hb = {
        "SENTINEL_HEARTBEAT_0_KIND": "healthchecks",
        "SENTINEL_HEARTBEAT_0_URL": "http://127.0.0.1:9/",
        "SENTINEL_HEARTBEAT_0_TOKENS_BLOCKED_PCT": secret,
        "SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE_FILE": "/nonexistent",
    }
    password = secrets.token_hex(8)
    no_redis = {
        "SENTINEL_REDIS_URL": f"redis://:{password}@127.0.0.1:{free_port()}/0",
        # no broker either: the topic check is skipped (the service waits for
        # Kafka itself) and the store, checked first, is what stops it
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    value, token, missing, redis = await asyncio.gather(
        _cli(tmp_path, {}, "run", "--config", str(bad_value)),
        _cli(tmp_path, {}, "run", "--config", str(bad_token)),
        _cli(tmp_path, hb, "run"),
        _cli(tmp_path, no_redis, "run"),
    )
    for _rc, out, _took in (value, token, missing, redis):
        assert secret not in out and password not in out and "Traceback" not in out, out

    assert value[0] == EXIT_CONFIG and "config error: alerting.tick_seconds:" in value[1]
    assert token[0] == EXIT_CONFIG and "config error: heartbeat[0].tokens.composite:" in token[1]
    assert missing[0] == EXIT_CONFIG
    assert "config error: SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE_FILE:" in missing[1]
    assert "'/nonexistent'" in missing[1] and "No such file" in missing[1]

    rc, out, took = redis
    assert rc == EXIT_UNAVAILABLE, out
    assert "cannot start: redis unreachable after 10s" in out and "redis.url = redis://" in out
    assert 9 < took < 30  # it waited for the store before giving up
