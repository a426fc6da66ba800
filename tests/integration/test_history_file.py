"""A single-process `run` (embedded store, real Kafka) keeps its learning across SIGKILL.

The history file is seeded with three days of ticks, so the learning day
count ("day 4 of 7") and the learned baselines say something a fresh start
could not fake; the service then records ticks of its own into the file, is
killed with SIGKILL, and a restarted process must report the same day count
and the same baselines, having lost none of what the file held.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from stream_sentinel.model import SIGNALS
from stream_sentinel.store.history import MemoryHistory, Point, TickRecord

from .harness import ServiceProcess, free_port, make_events, produce

pytestmark = pytest.mark.integration

TICK_S = 2
DAY_S = 86400
TIMEOUT_S = 60.0
# seeded normal: 0.05 % blocked, 0.2 % unsafe, top user 0.5 rps, $7.50 an hour
SEED_POINTS = {
    "blocked_pct": Point(0.05, 6000, "ok", False, 3),
    "safety_pct": Point(99.8, 5000, "ok", False, 10),
    "top_user_rps": Point(0.5, 6000, "ok", False),
    "spend_hour": Point(7.5, 60000, "ok", False),
}


def seed_history(path: Path, now: int) -> int:
    """Three days of one-minute ticks; returns the first start written."""
    first = (now - 3 * DAY_S - 600) // 60 * 60
    header = {"format": "stream-sentinel-history", "first_start": first, "visible_since": first}
    lines = [orjson.dumps(header)]
    lines += [TickRecord(at, SEED_POINTS).encode() for at in range(first + 3600, now - 300, 60)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return first


async def until(check: Callable[[], Awaitable[Any]], what: str, svc: ServiceProcess) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        assert svc.proc.poll() is None, f"service exited:\n{svc.log_tail()}"
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{svc.log_tail()}"
        await asyncio.sleep(0.2)


async def status(session: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with session.get(f"http://127.0.0.1:{port}/status") as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = orjson.loads(await response.read())
            return body if body.get("signals") else None
    except aiohttp.ClientError:
        return None


async def settled_status(session: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    """A tick after the restart's rebuild: the embedded store comes back empty, so
    the first ticks are stale (rebuilding) until Kafka has been recounted."""
    tick = await status(session, port)
    if tick is None or tick["status"] == "stale":
        return None
    return tick


def baselines_of(tick: dict[str, Any]) -> dict[str, tuple[float, str]]:
    return {n: (s["baseline"], s["baseline_source"]) for n, s in tick["signals"].items()}


async def test_sigkill_and_restart_keep_the_learning_day_and_the_baselines(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    requests, responses = await make_topic(1, "req"), await make_topic(1, "resp")
    dlq = await make_topic(1, "dlq")
    history = tmp_path / "state" / "history.jsonl"
    history.parent.mkdir()
    first = seed_history(history, int(time.time()))
    seeded = len(MemoryHistory(14 * DAY_S, path=history))
    topics = {"request": requests, "response": responses}
    await produce(kafka_bootstrap, topics, make_events(400, now=time.time(), seed=3))
    port = free_port()
    env = {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SENTINEL_KAFKA_GROUP_ID": f"hist-{uuid.uuid4().hex[:8]}",
        "SENTINEL_KAFKA_REQUEST_TOPIC": requests,
        "SENTINEL_KAFKA_RESPONSE_TOPIC": responses,
        "SENTINEL_KAFKA_DLQ_TOPIC": dlq,
        "SENTINEL_REDIS_URL": "",  # the embedded store
        "SENTINEL_HTTP_PORT": str(port),
        "SENTINEL_ALERTING_TICK_SECONDS": str(TICK_S),
        "SENTINEL_LEARNING_DAYS": "7",
        "SENTINEL_LEARNING_HISTORY_FILE": str(history),
    }
    async with aiohttp.ClientSession() as session:
        svc = ServiceProcess(env, name="first")
        try:
            before = await until(lambda: status(session, port), "a tick in /status", svc)

            async def recorded() -> bool:
                # the first process has written ticks of its own into the file
                return len(MemoryHistory(14 * DAY_S, path=history)) >= seeded + 5

            await until(recorded, "ticks recorded in the history file", svc)
            svc.kill()
        finally:
            svc.close()
        kept = MemoryHistory(14 * DAY_S, path=history)
        assert await kept.first_start(0) == first
        assert len(kept) >= seeded + 5  # nothing lost, not even the newest ticks
        svc = ServiceProcess(env, name="second")
        try:
            after = await until(
                lambda: settled_status(session, port), "a tick after the rebuild", svc
            )
        finally:
            svc.close()
    for tick in (before, after):
        assert tick["status"] == "learning" and tick["reason"] == "day 4 of 7", tick
    assert set(baselines_of(after)) == set(SIGNALS)
    for name in SIGNALS:
        value, source = baselines_of(after)[name]
        assert source == "learning"
        assert value == pytest.approx(baselines_of(before)[name][0], rel=1e-3)
    assert baselines_of(after)["spend_hour"][0] == 7.5  # the seeded median, not the floor
    assert baselines_of(after)["blocked_pct"][0] == pytest.approx(0.05, rel=1e-2)
