"""Fault suite: real broker, real Redis, the service as real processes.

Every case ends by comparing the exact totals per bucket and per user held in
Redis with what was produced (``assert_exact``). Faults: SIGKILLs of the
service at random points, Redis unreachable for 30 s, Redis restarted empty,
the Kafka broker restarted, a replica of three killed and restarted, and
heartbeat monitors that hang, fail or refuse connections.

Tests that kill, pause or restart a server use a private one (``PrivateRedis``,
``PrivateKafka``): other tests share the default ones. The full-size SIGKILL
run (500k events) is marked ``faults_long`` and left out of the default run:

    pytest -m faults_long tests/integration/test_faults.py
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.heartbeat import COMPOSITE
from stream_sentinel.store import PartitionId
from stream_sentinel.store_redis import RedisStore

from .fakes import Ping, PingLog, WebhookFake
from .harness import (
    WIDTH,
    PrivateRedis,
    Service,
    assert_exact,
    end_offsets,
    expected_of,
    free_port,
    make_events,
    produce,
    service_env,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

TICK_S = 2
PARTITIONS = 4
START_TIMEOUT_S = 60.0  # a loaded 2-core machine: Python start-up plus a group join


# -- helpers --------------------------------------------------------------------


def _store(url: str, prefix: str) -> RedisStore:
    return RedisStore.from_url(
        url, prefix=prefix, bucket_width=WIDTH, counter_ttl_s=4000, user_ttl_s=700
    )


async def _topics(make_topic: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {
        "request": await make_topic(PARTITIONS, "req"),
        "response": await make_topic(PARTITIONS, "resp"),
        "dlq": await make_topic(1, "dlq"),
        "alerts": await make_topic(1, "alerts"),
    }


def _parts(topics: Mapping[str, str]) -> list[PartitionId]:
    return [PartitionId(topics[t], p) for t in ("request", "response") for p in range(PARTITIONS)]


def _env(
    kafka: str, redis_url: str, prefix: str, topics: Mapping[str, str], **extra: str
) -> dict[str, str]:
    return service_env(
        bootstrap=kafka,
        redis_url=redis_url,
        prefix=prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=topics["dlq"],
        extra={
            "SENTINEL_KAFKA_ALERTS_TOPIC": topics["alerts"],
            # small batches: a fault lands between many store writes
            "SENTINEL_INGEST_BATCH_MAX_RECORDS": "500",
            # baselines of make_events' traffic, so a healthy pipeline reports ok
            "SENTINEL_BASELINES_BLOCKED_PCT": "2.0",
            "SENTINEL_BASELINES_SAFETY_PCT": "99.0",
            "SENTINEL_BASELINES_SPEND_HOUR": "1000000",
            **extra,
        },
    )


def _webhook(index: int, name: str, url: str, token: str, **extra: str) -> dict[str, str]:
    env = {
        f"SENTINEL_HEARTBEAT_{index}_NAME": name,
        f"SENTINEL_HEARTBEAT_{index}_KIND": "webhook",
        f"SENTINEL_HEARTBEAT_{index}_URL": url,
        f"SENTINEL_HEARTBEAT_{index}_TOKENS_COMPOSITE": token,
    }
    env.update({f"SENTINEL_HEARTBEAT_{index}_{k.upper()}": v for k, v in extra.items()})
    return env


async def _stored_total(store: RedisStore, parts: Sequence[PartitionId]) -> int:
    try:
        stored = await store.load_offsets(list(parts))
    except Exception:  # the store may be down on purpose
        return -1
    return sum(v or 0 for v in stored.values())


async def _wait_stored(
    store: RedisStore,
    parts: Sequence[PartitionId],
    minimum: int,
    svc: Service,
    timeout: float = 180,
) -> int:
    """Poll the store (another process writes it) until ``minimum`` offsets are stored."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (total := await _stored_total(store, parts)) < minimum:
        assert svc.proc.poll() is None, f"service exited:\n{svc.log_tail()}"
        assert loop.time() < deadline, f"stored {total} < {minimum}:\n{svc.log_tail()}"
        await asyncio.sleep(0.05)
    return total


class Probe:
    """HTTP access to one service process on its own port."""

    def __init__(self, session: aiohttp.ClientSession, svc: Service, port: int) -> None:
        self.session, self.svc, self.port = session, svc, port

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(
            f"http://127.0.0.1:{self.port}{path}", timeout=aiohttp.ClientTimeout(total=10)
        ) as r:
            return r.status, await r.read()

    async def status(self) -> dict[str, Any] | None:
        code, body = await self.get("/status")
        if code != 200:
            return None  # 503 "starting": no tick yet
        parsed: dict[str, Any] = orjson.loads(body)
        return parsed

    async def metric(self, name: str, **labels: str) -> float:
        _, body = await self.get("/metrics")
        return sum(
            s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )

    async def until(
        self, check: Callable[[], Awaitable[Any]], what: str, timeout: float = START_TIMEOUT_S
    ) -> Any:
        """Poll ``check`` (state of another process) until it gives a truthy value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            assert self.svc.proc.poll() is None, f"service exited:\n{self.svc.log_tail()}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if found := await check():
                    return found
            assert loop.time() < deadline, f"no {what} within {timeout:g} s:\n{self.svc.log_tail()}"
            await asyncio.sleep(0.1)

    async def ready(self) -> None:
        async def check() -> bool:
            return (await self.get("/readyz"))[0] == 200

        await self.until(check, "/readyz 200")


def _composite_after(log: PingLog, start: int) -> list[Ping]:
    return [p for p in log.pings[start:] if p.key == COMPOSITE]


# -- 1. SIGKILLs at random points -------------------------------------------------

KILLS = 10


@pytest.mark.parametrize(
    "n_events",
    [
        pytest.param(100_000, id="100k"),
        pytest.param(
            500_000, id="500k", marks=[pytest.mark.faults_long, pytest.mark.timeout(1800)]
        ),
    ],
)
async def test_ten_sigkills_at_random_points_of_the_stream_lose_and_double_nothing(
    n_events: int, kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    topics = await _topics(make_topic)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")  # a failure can be replayed with the same kill points
    events = make_events(n_events, now=time.time(), seed=seed)
    expected = expected_of(events)
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics)
    store = _store(redis_url, redis_ns.prefix)
    parts = _parts(topics)
    # the stream is produced while the service is killed and restarted
    producing = asyncio.create_task(produce(kafka_bootstrap, topics, events))
    started = time.monotonic()
    svc = Service(env, "svc0")
    kill_points: list[int] = []
    try:
        for k in range(KILLS):
            # a random point in the k-th of KILLS + 1 slices of the stream, and
            # after the restarted process has written at least once itself
            point = int(n_events * (k + rng.random()) / (KILLS + 1))
            floor = kill_points[-1] + 1 if kill_points else 1
            reached = await _wait_stored(store, parts, max(point, floor), svc, timeout=300)
            svc.kill()
            kill_points.append(reached)
            svc.close()
            svc = Service(env, f"svc{k + 1}")
        await producing
        ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
        assert sum(ends.values()) == n_events
        await wait_caught_up(store, ends, timeout=600, proc=svc)
        took = time.monotonic() - started
        await assert_exact(store, expected)
        assert svc.terminate() == 0
    finally:
        producing.cancel()
        svc.close()
        await store.close()
    assert len(kill_points) == KILLS and kill_points == sorted(kill_points)
    print(f"{n_events} events, {KILLS} SIGKILLs at stored offsets {kill_points}, {took:.1f} s")


# -- 2. Redis unreachable for 30 s --------------------------------------------------

OUTAGE_S = 30.0


async def test_redis_unreachable_30s_reports_stale_loses_nothing_and_recovers(
    kafka_bootstrap: str, make_topic: Any
) -> None:
    redis = PrivateRedis()
    redis.start()
    topics = await _topics(make_topic)
    events = make_events(40_000, now=time.time(), seed=21)
    expected = expected_of(events)
    token, port = secrets.token_hex(16), free_port()
    store = _store(redis.url, "p")
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = _env(
            kafka_bootstrap, redis.url, "p", topics,
            SENTINEL_HTTP_PORT=str(port), SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
            **_webhook(0, "hook", hook.url, token, retries="0"),
        )  # fmt: skip
        svc = Service(env, "outage")
        probe = Probe(session, svc, port)
        try:
            await probe.ready()
            await produce(kafka_bootstrap, topics, events[:20_000])
            await _wait_stored(store, _parts(topics), 2_000, svc)
            await hook.log.wait_for(
                lambda: any(not p.failure for p in hook.log.of(COMPOSITE)), 30, "an ok push"
            )
            before = len(hook.log.pings)
            redis.pause()  # unreachable, data kept: connections hang until timeouts
            loop = asyncio.get_running_loop()
            paused_at = loop.time()
            # the rest of the stream arrives while the store is unreachable
            await produce(kafka_bootstrap, topics, events[20_000:])
            stale = await hook.log.wait_for(
                lambda: next(
                    (p for p in _composite_after(hook.log, before) if "stale" in p.message), None
                ),
                OUTAGE_S - 5,
                "a stale push while Redis is down",
            )
            status = await probe.until(_stale_status(probe), "/status stale", OUTAGE_S - 5)
            # the outage's length is the fault being tested, not a synchronisation
            await asyncio.sleep(max(0.0, paused_at + OUTAGE_S - loop.time()))
            during = _composite_after(hook.log, before)
            assert svc.proc.poll() is None, svc.log_tail()
            redis.resume()
            resumed_at, resumed_from = loop.time(), len(hook.log.pings)
            ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
            await wait_caught_up(store, ends, timeout=240, proc=svc)
            await assert_exact(store, expected)
            # recovery by itself: an ok push and an ok /status after the outage
            back = await hook.log.wait_for(
                lambda: next(
                    (p for p in _composite_after(hook.log, resumed_from) if not p.failure), None
                ),
                60,
                "an ok push after the outage",
            )
            await probe.until(_status_is(probe, "ok"), "/status ok after the outage")
            errors = await probe.metric("stream_sentinel_store_errors_total")
            assert svc.terminate() == 0
        finally:
            svc.close()
            await store.close()
            redis.stop()
    assert stale.failure and stale.message.startswith("stale: store unreachable"), stale
    assert status["status"] == "stale" and status["reason"] == "store unreachable", status
    assert errors > 0
    # the monitors heard about it all along: a stale failure per tick, give or
    # take the ticks that straddle the pause and the resume
    stale_pushes = [p for p in during if p.failure and "store unreachable" in p.message]
    assert len(stale_pushes) >= OUTAGE_S / TICK_S - 3, [(p.at, p.message) for p in during]
    assert all(p.failure for p in during if p.received > stale.received)
    print(
        f"stale pushed {stale.received - paused_at:.1f} s after the pause, "
        f"{len(stale_pushes)} stale pushes in {OUTAGE_S:g} s, "
        f"ok again {back.received - resumed_at:.1f} s after the resume"
    )


def _stale_status(probe: Probe) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def check() -> dict[str, Any] | None:
        status = await probe.status()
        return status if status is not None and status.get("status") == "stale" else None

    return check


def _status_is(probe: Probe, want: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        status = await probe.status()
        return status is not None and status.get("status") == want

    return check
