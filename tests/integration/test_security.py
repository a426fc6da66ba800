"""Managed-Kafka and managed-Redis connectivity against real servers.

The broker's SASL_SSL listener (SCRAM-SHA-512) and its SSL listener requiring a
client certificate (mutual TLS), and a TLS-only Redis with an ACL user that may
touch nothing outside one key prefix, all from scripts/services. The service,
`produce` and the test's own clients connect through them only; the plain
listener is never used here.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from conftest import SecureKafka, TlsRedis
from redis.exceptions import NoPermissionError

from stream_sentinel.cli.main import EXIT_CONFIG
from stream_sentinel.config import load_config
from stream_sentinel.kafka.clients import client_options
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect

from .harness import WIDTH, ServiceProcess, assert_exact, expected_of, free_port, service_env

pytestmark = pytest.mark.integration

TICK_S = 2
EVENT_PARTITIONS = 2
DEADLINE_S = 90.0
BAD_LINES = [b"not json at all", b'{"type": "request", "ts": "yesterday"}', b"[1, 2, 3]"]


# -- connection settings ----------------------------------------------------------


def scram_env(kafka: SecureKafka, password: str | None = None) -> dict[str, str]:
    return {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_ssl_bootstrap,
        "SENTINEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SENTINEL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SENTINEL_KAFKA_SASL_USERNAME": kafka.scram_username,
        "SENTINEL_KAFKA_SASL_PASSWORD": password or kafka.scram_password,
        "SENTINEL_KAFKA_SSL_CAFILE": str(kafka.ca),
    }


def mtls_env(kafka: SecureKafka) -> dict[str, str]:
    return {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka.ssl_bootstrap,
        "SENTINEL_KAFKA_SECURITY_PROTOCOL": "SSL",
        "SENTINEL_KAFKA_SSL_CAFILE": str(kafka.ca),
        "SENTINEL_KAFKA_SSL_CERTFILE": str(kafka.client_cert),
        "SENTINEL_KAFKA_SSL_KEYFILE": str(kafka.client_key),
    }


def options_of(env: Mapping[str, str]) -> dict[str, Any]:
    """The test's own clients connect exactly as the code under test does."""
    return client_options(load_config(None, env).kafka)


# -- the test's own Kafka clients, over the secure listener ----------------------------


@pytest.fixture
async def secure_topics(secure_kafka: SecureKafka) -> AsyncIterator[dict[str, str]]:
    """Fresh request (2 partitions), response (2), DLQ and alerts topics, made
    and deleted through the SASL_SSL listener."""
    tag = uuid.uuid4().hex[:10]
    topics = {
        "request": f"test.sec.req.{tag}",
        "response": f"test.sec.resp.{tag}",
        "dlq": f"test.sec.dlq.{tag}",
        "alerts": f"test.sec.alerts.{tag}",
    }
    admin = AIOKafkaAdminClient(**options_of(scram_env(secure_kafka)))
    await admin.start()
    try:
        parts = {"request": EVENT_PARTITIONS, "response": EVENT_PARTITIONS, "dlq": 1, "alerts": 1}
        await admin.create_topics(
            [NewTopic(topics[k], n, 1) for k, n in parts.items()], timeout_ms=30_000
        )
        async with asyncio.timeout(30):
            while True:
                described = await admin.describe_topics(list(topics.values()))
                if all(
                    d["error_code"] == 0 and all(p["leader"] >= 0 for p in d["partitions"])
                    for d in described
                ):
                    break
                await asyncio.sleep(0.1)
        yield topics
    finally:
        try:
            await admin.delete_topics(list(topics.values()), timeout_ms=30_000)
        finally:
            await admin.close()


async def read_messages(
    options: Mapping[str, Any], topic: str, enough: Any, timeout: float = DEADLINE_S
) -> list[dict[str, Any]]:
    """JSON messages of ``topic`` from the start until ``enough(messages)``."""
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        group_id=f"sec-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while not enough(found):
                batches = await consumer.getmany(timeout_ms=500)
                found += [orjson.loads(r.value) for rs in batches.values() for r in rs]
    except TimeoutError:
        raise AssertionError(f"{topic}: only {found}") from None
    finally:
        await consumer.stop()
    return found


async def end_offsets(options: Mapping[str, Any], topics: Iterable[str]) -> dict[PartitionId, int]:
    consumer = AIOKafkaConsumer(
        **options, group_id=f"sec-probe-{uuid.uuid4().hex[:8]}", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(EVENT_PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {PartitionId(tp.topic, tp.partition): n for tp, n in ends.items()}


# -- traffic ------------------------------------------------------------------------


def traffic(now: float) -> list[dict[str, object]]:
    """Normal traffic from 40 users and, in the same 5-minute window, an attack
    (blocked requests, unsafe responses) that turns two signals red."""
    rng = random.Random(19)
    events: list[dict[str, object]] = []
    for i in range(200):
        user, ts = f"user-{i % 40:02d}", round(now - rng.uniform(5, 200), 3)
        events.append({"event_id": f"q{i}", "type": "request", "ts": ts, "user_id": user,
                       "blocked": False})  # fmt: skip
        events.append({"event_id": f"r{i}", "type": "response", "ts": ts, "user_id": user,
                       "safe": True, "cost_usd": 0.001})  # fmt: skip
    for i in range(120):
        ts = round(now - 60, 3)
        events.append({"event_id": f"qa{i}", "type": "request", "ts": ts, "user_id": "mallory",
                       "blocked": True})  # fmt: skip
        if i < 80:
            events.append({"event_id": f"ra{i}", "type": "response", "ts": ts,
                           "user_id": "mallory", "safe": False, "cost_usd": 0.002})  # fmt: skip
    return events


def produce_cli(
    env: Mapping[str, str], log: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`stream-sentinel produce LOG` as an operator runs it, configured by environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "produce", str(log)],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def http_get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def wait_stored(
    store: RedisStore, ends: Mapping[PartitionId, int], svc: ServiceProcess
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while await store.load_offsets(list(ends)) != dict(ends):
        assert svc.proc.poll() is None, f"service exited:\n{svc.log_tail()}"
        assert time.monotonic() < deadline, f"not caught up:\n{svc.log_tail()}"
        await asyncio.sleep(0.2)


# -- the service end to end over each secure path ---------------------------------------


@pytest.mark.parametrize("kafka_mode", ["sasl_ssl-scram-sha-512", "mutual-tls"])
async def test_service_ingests_dead_letters_and_alerts_over_secure_kafka_and_tls_redis_acl(
    kafka_mode: str,
    secure_kafka: SecureKafka,
    tls_redis: TlsRedis,
    secure_topics: dict[str, str],
    tmp_path: Path,
) -> None:
    kafka_env = scram_env(secure_kafka) if kafka_mode.startswith("sasl") else mtls_env(secure_kafka)
    options = options_of(kafka_env)
    prefix = f"{tls_redis.acl_prefix}:t{uuid.uuid4().hex[:10]}"
    if kafka_mode.startswith("sasl"):
        # credentials in the URL, as a managed Redis's connection string gives them
        user, password = quote(tls_redis.acl_username), quote(tls_redis.acl_password, safe="")
        redis_env = {
            "SENTINEL_REDIS_URL": tls_redis.url.replace(
                "rediss://", f"rediss://{user}:{password}@"
            ),
            "SENTINEL_REDIS_SSL_CAFILE": str(tls_redis.ca),
        }
    else:
        # user and password file beside the URL, and a client certificate too
        secret = tmp_path / "redis-password"
        secret.write_text(tls_redis.acl_password + "\n")
        redis_env = {
            "SENTINEL_REDIS_URL": tls_redis.url,
            "SENTINEL_REDIS_USERNAME": tls_redis.acl_username,
            "SENTINEL_REDIS_PASSWORD_FILE": str(secret),
            "SENTINEL_REDIS_SSL_CAFILE": str(tls_redis.ca),
            "SENTINEL_REDIS_SSL_CERTFILE": str(secure_kafka.client_cert),
            "SENTINEL_REDIS_SSL_KEYFILE": str(secure_kafka.client_key),
        }
    port = free_port()
    env = service_env(
        bootstrap=kafka_env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"],
        redis_url=redis_env["SENTINEL_REDIS_URL"],
        prefix=prefix,
        requests=secure_topics["request"],
        responses=secure_topics["response"],
        dlq=secure_topics["dlq"],
        extra={
            **kafka_env,
            **redis_env,
            "SENTINEL_KAFKA_ALERTS_TOPIC": secure_topics["alerts"],
            "SENTINEL_HTTP_PORT": str(port),
            "SENTINEL_ALERTING_TICK_SECONDS": str(TICK_S),
            # every client's debug lines too: none may carry a secret
            "SENTINEL_LOG_LEVEL": "DEBUG",
        },
    )
    events = traffic(time.time())
    log = tmp_path / "traffic.jsonl"
    log.write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in events) + b"\n".join(BAD_LINES) + b"\n"
    )

    # the ACL is real: the service's own Redis settings cannot write outside its prefix...
    redis_cfg = load_config(None, redis_env).redis
    assert redis_cfg.url is not None
    acl_client = connect(redis_cfg.url.get_secret_value(), **redis_cfg.client_options())
    try:
        with pytest.raises(NoPermissionError):
            await acl_client.set(f"outside-{uuid.uuid4().hex[:8]}", 1)
    finally:
        await acl_client.aclose()
    # ...so a service that counts everything through it touched nothing else
    reader = RedisStore.from_url(
        tls_redis.url,
        client_options={"ssl_ca_certs": str(tls_redis.ca)},
        prefix=prefix,
        bucket_width=WIDTH,
        counter_ttl_s=4000,
        user_ttl_s=700,
    )
    svc = ServiceProcess(env, f"secure-{kafka_mode}")
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + DEADLINE_S
            while (await _ready(session, port)) != 200:
                assert svc.proc.poll() is None, f"service exited:\n{svc.log_tail()}"
                assert time.monotonic() < deadline, f"never ready:\n{svc.log_tail()}"
                await asyncio.sleep(0.2)
            produced = produce_cli({**kafka_env, **_topic_env(secure_topics)}, log)
            assert produced.returncode == 0, produced.stderr
            assert f"produced {len(events) + len(BAD_LINES)} messages" in produced.stdout

            ends = await end_offsets(options, [secure_topics["request"], secure_topics["response"]])
            assert sum(ends.values()) == len(events) + len(BAD_LINES)
            await wait_stored(reader, ends, svc)
            await assert_exact(reader, expected_of(events))

            dead = await read_messages(
                options, secure_topics["dlq"], lambda found: len(found) >= len(BAD_LINES)
            )
            alerts = await read_messages(
                options,
                secure_topics["alerts"],
                lambda found: any(a["status"] == "critical" for a in found),
            )
            status_code, status = await http_get(session, port, "/status")
            _, metrics = await http_get(session, port, "/metrics")
    finally:
        await reader.close()
        if svc.proc.poll() is None:
            svc.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(svc.proc.wait, 30)
        svc.close()
    assert svc.proc.returncode == 0, svc.log_tail()
    assert sorted(base64.b64decode(d["value_b64"]) for d in dead) == sorted(BAD_LINES)
    critical = next(a for a in alerts if a["status"] == "critical")
    assert set(critical["red"]) >= {"blocked_pct", "safety_pct"}
    assert status_code == 200 and orjson.loads(status)["status"] in ("critical", "warning")

    secrets = [
        secure_kafka.scram_password,
        tls_redis.acl_password,
        quote(tls_redis.acl_password, safe=""),
    ]
    service_log = svc.log.read_text(errors="replace")
    assert " DEBUG aiokafka" in service_log  # the clients' debug lines are there
    for where, text in {
        "service log": service_log,
        "produce output": produced.stdout + produced.stderr,
        "/status": status,
        "/metrics": metrics,
    }.items():
        for secret in secrets:
            assert secret not in text, f"a secret in the {where}"


async def _ready(session: aiohttp.ClientSession, port: int) -> int:
    try:
        return (await http_get(session, port, "/readyz"))[0]
    except aiohttp.ClientError:
        return 0


def _topic_env(topics: Mapping[str, str]) -> dict[str, str]:
    return {
        "SENTINEL_KAFKA_REQUEST_TOPIC": topics["request"],
        "SENTINEL_KAFKA_RESPONSE_TOPIC": topics["response"],
    }


# -- settings the brokers refuse: one line and exit 2, never a retry loop -------------


def _other_ca(tmp_path: Path) -> Path:
    """A CA that signed nothing the broker holds."""
    ca = tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(tmp_path / "other-ca.key"), "-out", str(ca), "-days", "2",
         "-subj", "/CN=some other CA"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return ca


def _refused_settings(case: str, kafka: SecureKafka, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Settings one mistake away from working, and what the error must say."""
    if case == "wrong-password":
        return scram_env(kafka, password=f"wrong-{uuid.uuid4().hex}"), (
            f"SASL authentication failed for user {kafka.scram_username!r} (SCRAM-SHA-512)"
        )
    if case == "unknown-ca":
        env = {**scram_env(kafka), "SENTINEL_KAFKA_SSL_CAFILE": str(_other_ca(tmp_path))}
        return env, "the broker's certificate is not trusted"
    if case == "plaintext-client-on-tls-port":
        env = {"SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_ssl_bootstrap}
        return env, "the listener speaks TLS, but security_protocol is PLAINTEXT"
    assert case == "mutual-tls-without-client-certificate"
    env = {k: v for k, v in mtls_env(kafka).items() if "CERTFILE" not in k and "KEYFILE" not in k}
    return env, "the broker refused the client certificate"


@pytest.mark.parametrize("verb", ["run", "produce"])
@pytest.mark.parametrize(
    "case",
    [
        "wrong-password",
        "unknown-ca",
        "plaintext-client-on-tls-port",
        "mutual-tls-without-client-certificate",
    ],
)
def test_refused_settings_exit_2_with_one_line_naming_the_problem(
    case: str, verb: str, secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    env, expected = _refused_settings(case, secure_kafka, tmp_path)
    log = tmp_path / "one.jsonl"
    log.write_bytes(orjson.dumps(traffic(time.time())[0]) + b"\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    full |= {**env, "SENTINEL_HTTP_PORT": "0"}  # run: the embedded store, any port
    args = ["run"] if verb == "run" else ["produce", str(log)]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert time.monotonic() - started < 60  # not a retry loop that gave up
    assert "Traceback" not in done.stderr
    # INFO lines (the service starting, the CA file loaded) may precede it
    problems = [line for line in done.stderr.splitlines() if " INFO " not in line and line.strip()]
    host, _, port = env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")
    assert problems == [problems[0]] and problems[0].startswith(f"error: kafka {host}:{port}: ")
    assert expected in problems[0], problems[0]
    assert secure_kafka.scram_password not in done.stdout + done.stderr
    if "SENTINEL_KAFKA_SASL_PASSWORD" in env:
        assert env["SENTINEL_KAFKA_SASL_PASSWORD"] not in done.stdout + done.stderr


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_the_other_mechanisms_work_and_keep_the_password_out_of_debug_logs(
    mechanism: str, secure_kafka: SecureKafka, secure_topics: dict[str, str], tmp_path: Path
) -> None:
    # SASL PLAIN sends the password itself, and aiokafka logs what it sends at DEBUG
    env = {
        **scram_env(secure_kafka),
        **_topic_env(secure_topics),
        "SENTINEL_KAFKA_SASL_MECHANISM": mechanism,
        "SENTINEL_LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "one.jsonl"
    log.write_bytes(orjson.dumps(traffic(time.time())[0]) + b"\n")
    done = produce_cli(env, log)
    assert done.returncode == 0, done.stderr
    assert "produced 1 messages" in done.stdout
    assert "SaslAuthenticateRequest" in done.stderr  # the login was logged...
    assert secure_kafka.scram_password not in done.stdout + done.stderr  # ...without the password


async def test_following_the_documented_local_sasl_ssl_example_sends_events(
    secure_kafka: SecureKafka, secure_topics: dict[str, str]
) -> None:
    from test_docs_connectivity import blocks

    (script,) = [b for b in blocks("sh") if "KAFKA_SASL_SSL_BOOTSTRAP" in b]
    # what `eval "$(scripts/services start)"` exported, as the fixture read it
    exported = {
        "KAFKA_SASL_SSL_BOOTSTRAP": secure_kafka.sasl_ssl_bootstrap,
        "KAFKA_SCRAM_USERNAME": secure_kafka.scram_username,
        "KAFKA_SCRAM_PASSWORD": secure_kafka.scram_password,
        "SERVICES_TLS_DIR": str(secure_kafka.tls_dir),
    }
    env: dict[str, str] = {}
    commands = []
    for line in script.splitlines():
        if assignment := re.fullmatch(r"export (\w+)=(.*)", line):
            (value,) = shlex.split(assignment[2])
            env[assignment[1]] = re.sub(r"\$(\w+)", lambda m: exported[m[1]], value)
        elif line.startswith("stream-sentinel "):
            commands.append(shlex.split(line)[1:])
    assert env["SENTINEL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and commands
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    # fresh topics instead of llm.*: `topics create` finds them all there
    full |= {
        **env,
        **_topic_env(secure_topics),
        "SENTINEL_KAFKA_DLQ_TOPIC": secure_topics["dlq"],
        "SENTINEL_KAFKA_ALERTS_TOPIC": secure_topics["alerts"],
    }
    for argv in commands:
        done = subprocess.run(
            [sys.executable, "-m", "stream_sentinel", *argv],
            env=full,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
    simulated = re.search(r"simulated (\d+) events", done.stdout)
    assert simulated, done.stdout
    options = options_of(env)
    ends = await end_offsets(options, [secure_topics["request"], secure_topics["response"]])
    assert sum(ends.values()) == int(simulated[1]) > 0


@pytest.mark.parametrize("case", ["wrong-password", "unknown-ca"])
async def test_redis_refusals_exit_2_at_once_naming_the_problem(
    case: str,
    tls_redis: TlsRedis,
    secure_kafka: SecureKafka,
    secure_topics: dict[str, str],
    tmp_path: Path,
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = {
        # `run` checks its topics before it opens the store
        **scram_env(secure_kafka),
        **_topic_env(secure_topics),
        "SENTINEL_KAFKA_DLQ_TOPIC": secure_topics["dlq"],
        "SENTINEL_KAFKA_ALERTS_TOPIC": secure_topics["alerts"],
        "SENTINEL_REDIS_URL": tls_redis.url,
        "SENTINEL_REDIS_USERNAME": tls_redis.acl_username,
        "SENTINEL_REDIS_PASSWORD": wrong if case == "wrong-password" else tls_redis.acl_password,
        "SENTINEL_REDIS_SSL_CAFILE": str(
            _other_ca(tmp_path) if case == "unknown-ca" else tls_redis.ca
        ),
        "SENTINEL_HTTP_PORT": "0",
    }
    expected = {
        "wrong-password": "authentication failed: check redis.username and redis.password",
        "unknown-ca": "the server's certificate is not trusted",
    }[case]
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "run"],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "Traceback" not in done.stderr
    problems = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(problems) == 1 and "cannot start: redis refused the connection: " in problems[0]
    assert expected in problems[0], problems[0]
    # not the unreachable server's wait: refused settings do not get better with time
    assert "unreachable after" not in done.stderr
    for secret in (tls_redis.acl_password, wrong, secure_kafka.scram_password):
        assert secret not in done.stdout + done.stderr


async def test_record_reads_back_over_mutual_tls_what_produce_sent_over_sasl_ssl(
    secure_kafka: SecureKafka, secure_topics: dict[str, str], tmp_path: Path
) -> None:
    events = traffic(time.time())[:40]
    log = tmp_path / "sent.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    sent = produce_cli({**scram_env(secure_kafka), **_topic_env(secure_topics)}, log)
    assert sent.returncode == 0, sent.stderr
    out = tmp_path / "recorded.jsonl"
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "record", "--out", str(out)],
        env={**full, **mtls_env(secure_kafka), **_topic_env(secure_topics)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    recorded = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    key = lambda e: str(e["event_id"])  # noqa: E731
    assert sorted(recorded, key=key) == sorted(events, key=key)
