"""``record``: live topics -> a log by event time, which ``replay`` reads with the
same tick values as the original traffic (and as the live service had)."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from integration.harness import ServiceProcess, free_port, produce, service_env

from stream_sentinel.cli.record import parse_time
from stream_sentinel.sim.simulate import simulate, write_log
from stream_sentinel.timestamps import parse_rfc3339

pytestmark = pytest.mark.integration

START = 1_790_000_000.0  # a whole hour, long before the test runs
TICK_S = 2


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_sentinel", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _env(kafka: str, topics: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SENTINEL_KAFKA_REQUEST_TOPIC": topics["request"],
        "SENTINEL_KAFKA_RESPONSE_TOPIC": topics["response"],
        "SENTINEL_KAFKA_DLQ_TOPIC": topics["dlq"],
        **extra,
    }


def _timeline(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _topics(make_topic: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {
        "request": await make_topic(3, "rreq"),
        "response": await make_topic(2, "rresp"),
        "dlq": await make_topic(1, "rdlq"),
    }


async def test_record_then_replay_gives_the_timeline_of_the_original_events(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    topics = await _topics(make_topic)
    events, _ = simulate(start=START, duration_s=3 * 3600, seed=7, base_rps=2.0, jitter_s=5.0)
    events = list(events)
    for event in events[::50]:
        del event["type"]  # the topic implies it; the recorded log must say it
    since, until = START + 3600, START + 2 * 3600
    await _produce_implied(kafka_bootstrap, topics, events)
    out = tmp_path / "recorded.jsonl.gz"
    env = _env(kafka_bootstrap, topics)
    done = _cli("record", "--out", str(out), "--since", "2026-09-21T15:13:20Z",
                "--until", str(until), "--margin-seconds", "1e9", env=env)  # fmt: skip
    assert parse_time("2026-09-21T15:13:20Z") == since
    assert done.returncode == 0, done.stderr
    inside = [e for e in events if since <= e["ts"] < until]
    assert f"recorded {len(inside)} events" in done.stdout
    lines = [orjson.loads(line) for line in gzip.decompress(out.read_bytes()).splitlines()]
    assert all("type" in doc for doc in lines)
    assert [d["ts"] for d in lines] == sorted(d["ts"] for d in lines)
    assert sorted(d["event_id"] for d in lines) == sorted(e["event_id"] for e in inside)

    original = tmp_path / "original.jsonl"
    write_log(
        sorted(
            ({"type": "request" if "blocked" in e else "response", **e} for e in inside),
            key=lambda e: e["ts"],
        ),
        original,
    )
    for log in (out, original):
        done = _cli("replay", str(log), "--timeline", f"{log}.timeline", "--no-progress", env=env)
        assert done.returncode == 0, done.stderr
    recorded = _timeline(Path(f"{out}.timeline"))
    assert len(recorded) > 50
    assert recorded == _timeline(Path(f"{original}.timeline"))


async def _produce_implied(
    bootstrap: str, topics: dict[str, str], events: list[dict[str, Any]]
) -> None:
    """As a producer that relies on the topic for the type would write them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for event in events:
            kind = event.get("type") or ("request" if "blocked" in event else "response")
            futures.append(
                await producer.send(
                    topics[kind], orjson.dumps(event), key=str(event["user_id"]).encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_record_then_replay_matches_the_live_services_tick(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    topics = await _topics(make_topic)
    now = time.time()
    events, _ = simulate(start=now - 240, duration_s=230, seed=3, base_rps=3.0)
    events = list(events)
    await produce(kafka_bootstrap, topics, events)
    newest = max(e["ts"] for e in events)
    port = free_port()
    tick = {"SENTINEL_ALERTING_TICK_SECONDS": str(TICK_S)}
    svc = ServiceProcess(
        service_env(
            bootstrap=kafka_bootstrap, redis_url=redis_url, prefix=f"rec{uuid.uuid4().hex[:8]}",
            requests=topics["request"], responses=topics["response"], dlq=topics["dlq"],
            extra={"SENTINEL_HTTP_PORT": str(port), **tick},
        ),
        "record",
    )  # fmt: skip
    try:
        live = await _first_tick_after(port, newest + 1, svc)
    finally:
        svc.close()
    out = tmp_path / "recorded.jsonl"
    env = _env(kafka_bootstrap, topics, **tick)
    done = _cli("record", "--out", str(out), "--since", str(now - 300), env=env)
    assert done.returncode == 0, done.stderr
    done = _cli("replay", str(out), "--timeline", str(tmp_path / "t.jsonl"), "--no-progress",
                env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = _timeline(tmp_path / "t.jsonl")[-1]
    # the live tick came later, but every event is still inside all its windows
    assert parse_rfc3339(live["at"]) - parse_rfc3339(last["at"]) < 30  # type: ignore[operator]
    for name in ("blocked_pct", "safety_pct", "top_user_rps", "spend_hour"):
        assert last["signals"][name]["value"] == pytest.approx(
            live["signals"][name]["value"], rel=1e-9
        ), name
    assert last["top_users"] == live["top_users"]


async def _first_tick_after(port: int, after: float, svc: ServiceProcess) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert svc.proc.poll() is None, svc.log_tail()
            try:
                async with session.get(f"http://127.0.0.1:{port}/status") as r:
                    status: dict[str, Any] = orjson.loads(await r.read()) if r.status == 200 else {}
            except aiohttp.ClientError:
                status = {}
            at = status.get("at")
            if at is not None and status.get("status") != "stale":
                parsed = parse_rfc3339(at)
                if parsed is not None and parsed > after:
                    return status
            await asyncio.sleep(0.3)
    raise AssertionError(f"no fresh tick:\n{svc.log_tail()}")


def test_bad_times_and_missing_topics_exit_with_one_line(tmp_path: Path) -> None:
    env = {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        "SENTINEL_KAFKA_REQUEST_TOPIC": f"no.such.{uuid.uuid4().hex[:8]}",
    }
    done = _cli("record", "--out", str(tmp_path / "x.jsonl"), "--since", "yesterday", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "yesterday" in done.stderr
    done = _cli("record", "--out", str(tmp_path / "nodir" / "x.jsonl"), env=env)
    assert done.returncode == 1 and "not writable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_topic_names_itself_and_the_command_that_creates_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    missing = f"no.such.{uuid.uuid4().hex[:8]}"
    env = {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SENTINEL_KAFKA_REQUEST_TOPIC": missing,
    }
    done = _cli("record", "--out", str(tmp_path / "x.jsonl"), env=env)
    assert done.returncode == 1, done.stderr
    assert missing in done.stderr and "topics create" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.jsonl").exists()
