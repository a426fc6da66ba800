"""`stream-sentinel topics create` and the missing-topic checks, on the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_sentinel.cli import exits

from .harness import ServiceProcess, free_port, service_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("REQUEST", "RESPONSE", "DLQ", "ALERTS")
# "within seconds" on a loaded two-core machine: interpreter start-up included
MISSING_EXIT_S = 20.0


@pytest.fixture
async def names(kafka_bootstrap: str) -> AsyncIterator[dict[str, str]]:
    """Fresh topic names (not created); whatever a test creates under them is deleted."""
    run = uuid.uuid4().hex[:10]
    chosen = {role: f"test.ops.{role.lower()}.{run}" for role in ROLES}
    yield chosen
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [n for n in chosen.values() if n in existing]
        if mine:
            await admin.delete_topics(mine, timeout_ms=30_000)
    finally:
        await admin.close()


def _env(bootstrap: str, names: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env.update({f"SENTINEL_KAFKA_{role}_TOPIC": name for role, name in names.items()})
    return env


def _cli(env: Mapping[str, str], *argv: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(env),
        cwd=ROOT,
    )
    return result, time.monotonic() - started


async def _describe(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, int, str]]:
    """topic -> (partitions, replicas of partition 0, retention.ms)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"retention.ms": None}) for t in topics]
        )
    finally:
        await admin.close()
    retention = {}
    for response in configs:
        for _code, _msg, _type, name, entries in response.resources:
            retention[name] = next(v for k, v, *_ in entries if k == "retention.ms")
    return {
        d["topic"]: (
            len(d["partitions"]),
            len(d["partitions"][0]["replicas"]),
            retention[d["topic"]],
        )
        for d in described
    }


async def test_topics_create_is_idempotent_and_says_what_it_did(
    kafka_bootstrap: str, names: dict[str, str]
) -> None:
    env = _env(kafka_bootstrap, names)
    first, _ = _cli(env, "topics", "create", "--partitions", "3", "--retention-hours", "5")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"created {names['REQUEST']} (requests): 3 partitions",
        f"created {names['RESPONSE']} (responses): 3 partitions",
        f"created {names['DLQ']} (dead letters): 1 partition",
        f"created {names['ALERTS']} (alerts): 1 partition",
    ]
    described = await _describe(kafka_bootstrap, list(names.values()))
    five_hours = str(5 * 3_600_000)
    assert described == {
        names["REQUEST"]: (3, 1, five_hours),
        names["RESPONSE"]: (3, 1, five_hours),
        names["DLQ"]: (1, 1, five_hours),
        names["ALERTS"]: (1, 1, five_hours),
    }
    again, _ = _cli({**env, "SENTINEL_TOPICS_PARTITIONS": "4"}, "topics", "create")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == (
        f"exists  {names['REQUEST']} (requests): 3 partitions; 4 asked, left as is"
    )
    assert again.stdout.splitlines()[2] == f"exists  {names['DLQ']} (dead letters): 1 partition"
    assert await _describe(kafka_bootstrap, list(names.values())) == described


async def test_topics_create_reports_a_refusal_in_one_line(
    kafka_bootstrap: str, names: dict[str, str]
) -> None:
    # One broker cannot hold three copies: the broker refuses, the command says so.
    result, _ = _cli(_env(kafka_bootstrap, names), "topics", "create", "--replication-factor", "3")
    assert result.returncode == exits.EXIT_UNAVAILABLE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: topics create: the broker refused ")
    assert names["REQUEST"] in lines[0]


@pytest.mark.parametrize(
    ("argv", "verb", "needs"),
    [
        (("simulate", "--out", "kafka:", "--hours", "0.01"), "simulate", 2),
        (("produce", "examples/demo.jsonl.gz"), "produce", 2),
        (("run",), "run", 3),
    ],
)
async def test_a_verb_needing_a_missing_topic_exits_in_seconds(
    kafka_bootstrap: str, names: dict[str, str], argv: tuple[str, ...], verb: str, needs: int
) -> None:
    result, took = _cli(_env(kafka_bootstrap, names), *argv)
    assert result.returncode == exits.EXIT_TOPIC_MISSING, result.stderr
    assert took < MISSING_EXIT_S
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {verb}: Kafka topic")
    assert "`stream-sentinel topics create`" in line
    wanted = [names[r] for r in ROLES[:needs]]
    assert all(name in line for name in wanted)
    assert names["ALERTS"] not in line


async def test_readyz_names_a_missing_topic(
    kafka_bootstrap: str, redis_url: str, names: dict[str, str], unique_id: str
) -> None:
    env = _env(kafka_bootstrap, names)
    created, _ = _cli(env, "topics", "create", "--partitions", "1")
    assert created.returncode == 0, created.stderr
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([names["ALERTS"]], timeout_ms=30_000)
    finally:
        await admin.close()
    port = free_port()
    svc_env = service_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=f"ops-{unique_id}",
        requests=names["REQUEST"],
        responses=names["RESPONSE"],
        dlq=names["DLQ"],
        extra={"SENTINEL_KAFKA_ALERTS_TOPIC": names["ALERTS"], "SENTINEL_HTTP_PORT": str(port)},
    )
    svc = ServiceProcess(svc_env, "topics")
    try:
        await svc.wait_log(f"alerts topic {names['ALERTS']} missing")
        body = await _ready_body(port, svc)
        assert body["ready"] is False
        assert body["checks"]["topics"] == f"missing: {names['ALERTS']}"
        assert body["checks"]["kafka"] is True
    finally:
        svc.close()


async def _ready_body(port: int, svc: ServiceProcess) -> dict[str, object]:
    """The first /readyz answer once Kafka is reachable (the consumer starts after HTTP)."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            assert svc.proc.poll() is None, svc.log_tail()
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    body: dict[str, object] = orjson.loads(await response.read())
                    checks = body["checks"]
                    if isinstance(checks, dict) and checks.get("kafka") is True:
                        assert response.status == 503
                        return body
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, svc.log_tail()
            await asyncio.sleep(0.2)
