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
import itertools
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.heartbeat import COMPOSITE
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.redis import RedisStore

from .fakes import Ping, PingLog, WebhookFake
from .harness import (
    PrivateKafka,
    PrivateRedis,
    ServiceProcess,
    assert_exact,
    end_offsets,
    expected_of,
    free_port,
    make_events,
    produce,
    reader_store,
    service_env,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

TICK_S = 2
PARTITIONS = 4
START_TIMEOUT_S = 60.0  # a loaded 2-core machine: Python start-up plus a group join


# -- helpers --------------------------------------------------------------------


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
    svc: ServiceProcess,
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

    def __init__(self, session: aiohttp.ClientSession, svc: ServiceProcess, port: int) -> None:
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


# Each restart waits out the killed member's Kafka session (up to 10 s) before the
# group rebalances, so the kills, not the events, set the run time: ~125 s for
# 10 kills whether over 100k or 500k events. The default run keeps 4 kills;
# the full size runs with `pytest -m faults_long`.
@pytest.mark.parametrize(
    ("n_events", "kills"),
    [
        pytest.param(100_000, 4, id="100k-4kills"),
        pytest.param(
            500_000,
            10,
            id="500k-10kills",
            marks=[pytest.mark.faults_long, pytest.mark.timeout(1800)],
        ),
    ],
)
async def test_sigkills_at_random_points_of_the_stream_lose_and_double_nothing(
    n_events: int,
    kills: int,
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Any,
    redis_ns: Any,
) -> None:
    topics = await _topics(make_topic)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")  # a failure can be replayed with the same kill points
    events = make_events(n_events, now=time.time(), seed=seed)
    expected = expected_of(events)
    env = _env(kafka_bootstrap, redis_url, redis_ns.prefix, topics)
    store = reader_store(redis_url, redis_ns.prefix)
    parts = _parts(topics)
    # the stream is produced while the service is killed and restarted
    producing = asyncio.create_task(produce(kafka_bootstrap, topics, events))
    started = time.monotonic()
    svc = ServiceProcess(env, "svc0")
    kill_points: list[int] = []
    try:
        for k in range(kills):
            # a random point in the k-th of kills + 1 slices of the stream, and
            # after the restarted process has written at least once itself
            point = int(n_events * (k + rng.random()) / (kills + 1))
            floor = kill_points[-1] + 1 if kill_points else 1
            reached = await _wait_stored(store, parts, max(point, floor), svc, timeout=300)
            svc.kill()
            kill_points.append(reached)
            svc.close()
            svc = ServiceProcess(env, f"svc{k + 1}")
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
    assert len(kill_points) == kills and kill_points == sorted(kill_points)
    print(f"{n_events} events, {kills} SIGKILLs at stored offsets {kill_points}, {took:.1f} s")


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
    store = reader_store(redis.url, "p")
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = _env(
            kafka_bootstrap, redis.url, "p", topics,
            SENTINEL_HTTP_PORT=str(port), SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
            **_webhook(0, "hook", hook.url, token, retries="0"),
        )  # fmt: skip
        svc = ServiceProcess(env, "outage")
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
            # what the StreamSentinelStale alert rule reads: the leader's status gauge
            leader_gauge = await probe.metric("stream_sentinel_leader")
            stale_gauge = await probe.metric("stream_sentinel_status", status="stale")
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
    assert leader_gauge == 1 and stale_gauge == 1 and status["leader"] is True
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


# -- 3. Redis restarted empty ------------------------------------------------------


async def test_redis_restarted_empty_is_stale_rebuilding_until_recounted_then_exact(
    kafka_bootstrap: str, make_topic: Any
) -> None:
    redis = PrivateRedis()
    redis.start()
    topics = await _topics(make_topic)
    events = make_events(80_000, now=time.time(), seed=31)
    expected = expected_of(events)
    token, port = secrets.token_hex(16), free_port()
    store = reader_store(redis.url, "p")
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = _env(
            kafka_bootstrap, redis.url, "p", topics,
            SENTINEL_HTTP_PORT=str(port), SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
            **_webhook(0, "hook", hook.url, token, retries="0"),
        )  # fmt: skip
        svc = ServiceProcess(env, "wiped")
        probe = Probe(session, svc, port)
        try:
            await probe.ready()
            await produce(kafka_bootstrap, topics, events[:60_000])
            ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
            await wait_caught_up(store, ends, timeout=240, proc=svc)
            await hook.log.wait_for(
                lambda: any(not p.failure for p in hook.log.of(COMPOSITE)), 30, "an ok push"
            )
            redis.stop()  # no persistence: counts, offsets and the lease are gone
            redis.start()
            wiped_from = len(hook.log.pings)
            producing = asyncio.create_task(produce(kafka_bootstrap, topics, events[60_000:]))
            rebuilding = await hook.log.wait_for(
                lambda: next(
                    (
                        p
                        for p in _composite_after(hook.log, wiped_from)
                        if "rebuilding" in p.message
                    ),
                    None,
                ),
                60,
                "a stale (rebuilding) push",
            )
            await producing
            ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
            await wait_caught_up(store, ends, timeout=240, proc=svc)
            await assert_exact(store, expected)
            rebuilt_from = len(hook.log.pings)
            # once recounted, the pipeline is trusted again by itself
            await hook.log.wait_for(
                lambda: any(not p.failure for p in _composite_after(hook.log, rebuilt_from)),
                60,
                "an ok push after the rebuild",
            )
            status = await probe.until(_status_is(probe, "ok"), "/status ok after the rebuild")
            assert svc.terminate() == 0
        finally:
            svc.close()
            await store.close()
            redis.stop()
    assert status
    assert rebuilding.failure and rebuilding.message.startswith("stale: rebuilding"), rebuilding
    log_text = svc.log.read_text(errors="replace")
    assert log_text.count("rebuilt up to offset") >= 2 * PARTITIONS
    # between the first rebuilding push and the end of the rebuild no tick
    # reported numbers as trusted: every push in between is a stale failure
    after = _composite_after(hook.log, wiped_from)
    first = after.index(rebuilding)
    last_stale = max(i for i, p in enumerate(after) if "rebuilding" in p.message)
    assert all(p.failure and p.message.startswith("stale") for p in after[first : last_stale + 1])
    print(
        f"wipe: {sum('rebuilding' in p.message for p in after)} rebuilding pushes, "
        f"{first} push(es) before the wipe was noticed: {[p.message[:40] for p in after[:first]]}"
    )


def _rebuilding(ping: Ping) -> bool:
    return "rebuilding" in ping.message


# -- 4. the Kafka broker restarted -----------------------------------------------------


async def _private_topics(bootstrap: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    names = {
        "request": (f"f.req.{uuid.uuid4().hex[:8]}", PARTITIONS),
        "response": (f"f.resp.{uuid.uuid4().hex[:8]}", PARTITIONS),
        "dlq": (f"f.dlq.{uuid.uuid4().hex[:8]}", 1),
        "alerts": (f"f.alerts.{uuid.uuid4().hex[:8]}", 1),
    }
    try:
        await admin.create_topics([NewTopic(n, p, 1) for n, p in names.values()])
        async with asyncio.timeout(60):
            for name, partitions in names.values():
                while True:
                    (found,) = await admin.describe_topics([name])
                    if sum(p["leader"] >= 0 for p in found["partitions"]) == partitions:
                        break
                    await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return {key: name for key, (name, _) in names.items()}


@pytest.mark.timeout(600)
async def test_kafka_broker_restarted_mid_stream_consumer_resumes_without_loss(
    redis_url: str, redis_ns: Any
) -> None:
    broker = PrivateKafka()
    store = reader_store(redis_url, redis_ns.prefix)
    svc: ServiceProcess | None = None
    try:
        await broker.start()
        topics = await _private_topics(broker.bootstrap)
        events = make_events(60_000, now=time.time(), seed=41)
        expected = expected_of(events)
        env = _env(broker.bootstrap, redis_url, redis_ns.prefix, topics)
        svc = ServiceProcess(env, "broker")
        await produce(broker.bootstrap, topics, events[:30_000])
        await _wait_stored(store, _parts(topics), 5_000, svc)
        started = time.monotonic()
        broker.stop()  # a clean broker restart keeps its log: nothing produced is lost
        stopped = time.monotonic()
        await broker.start()
        restarted = time.monotonic()
        assert svc.proc.poll() is None, svc.log_tail()
        await produce(broker.bootstrap, topics, events[30_000:])
        ends = await end_offsets(broker.bootstrap, [topics["request"], topics["response"]])
        assert sum(ends.values()) == len(events)
        await wait_caught_up(store, ends, timeout=300, proc=svc)
        resumed = time.monotonic()
        await assert_exact(store, expected)
        assert svc.terminate() == 0
    finally:
        if svc is not None:
            svc.close()
        await store.close()
        broker.close()
    print(
        f"broker down {stopped - started:.1f} s + start {restarted - stopped:.1f} s; "
        f"caught up {resumed - restarted:.1f} s after the restart"
    )


# -- 5. three replicas, one killed and restarted ------------------------------------


async def _count_leaders(
    replicas: Mapping[str, Probe], samples: list[int], stop: asyncio.Event
) -> None:
    """How many live replicas say they lead, sampled until ``stop``."""
    while not stop.is_set():
        leaders = 0
        for probe in list(replicas.values()):
            if probe.svc.proc.poll() is not None:
                continue
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status = await probe.status()
                leaders += bool(status and status.get("leader"))
        samples.append(leaders)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


# Three replicas ingesting together load this 2-core machine: a 2 s tick leaves
# the leader's evaluation too little room, and a late one skips the next tick.
REPLICA_TICK_S = 4


async def test_three_replicas_one_killed_and_restarted_one_leader_per_tick_exact_totals(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    topics = await _topics(make_topic)
    events = make_events(90_000, now=time.time(), seed=51)
    expected = expected_of(events)
    token = secrets.token_hex(16)
    store = reader_store(redis_url, redis_ns.prefix)
    replicas: dict[str, Probe] = {}
    samples: list[int] = []
    sampling_done = asyncio.Event()
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = _env(
            kafka_bootstrap, redis_url, redis_ns.prefix, topics,
            SENTINEL_ALERTING_TICK_SECONDS=str(REPLICA_TICK_S),
            **_webhook(0, "hook", hook.url, token),
        )  # fmt: skip

        def start(name: str) -> Probe:
            port = free_port()
            svc = ServiceProcess({**env, "SENTINEL_HTTP_PORT": str(port)}, name)
            replicas[name] = Probe(session, svc, port)
            return replicas[name]

        try:
            for name in ("a", "b", "c"):
                start(name)
            for probe in replicas.values():
                await probe.ready()
            sampling = asyncio.create_task(_count_leaders(replicas, samples, sampling_done))
            producing = asyncio.create_task(produce(kafka_bootstrap, topics, events))
            first = len(hook.log.pings)
            await hook.log.wait_for(lambda: len(hook.log.pings) > first + 2, 60, "3 pushes")
            await _wait_stored(store, _parts(topics), 20_000, replicas["a"].svc)
            statuses = {n: await p.status() for n, p in replicas.items()}
            (leader,) = [n for n, s in statuses.items() if s and s.get("leader")]
            killed_after = len(hook.log.pings)
            replicas[leader].svc.kill()  # mid-stream, the one that pushes
            await hook.log.wait_for(
                lambda: len(hook.log.pings) > killed_after + 1,
                10 * REPLICA_TICK_S,
                "a takeover push",
            )
            await start(f"{leader}2").ready()
            await producing
            ends = await end_offsets(kafka_bootstrap, [topics["request"], topics["response"]])
            survivor = next(p for n, p in replicas.items() if n != leader)
            await wait_caught_up(store, ends, timeout=300, proc=survivor.svc)
            await assert_exact(store, expected)
            # a few more ticks with the restarted replica in the group
            settled = len(hook.log.pings)
            await hook.log.wait_for(lambda: len(hook.log.pings) > settled + 2, 60, "3 pushes")
            sampling_done.set()
            await sampling
            for name, probe in replicas.items():
                if name != leader:
                    assert probe.svc.terminate() == 0, probe.svc.log_tail()
        finally:
            sampling_done.set()
            for probe in replicas.values():
                probe.svc.close()
            await store.close()

    ats = [p.at for p in hook.log.pings[first:] if p.key == COMPOSITE]
    assert None not in ats and len(set(ats)) == len(ats), ats  # never two leaders for a tick
    gaps = [y - x for x, y in itertools.pairwise(a for a in ats if a is not None)]
    # one push per tick, except the takeover: the lease (1.5 ticks) expires first
    assert sorted(gaps)[:-1] == [REPLICA_TICK_S] * (len(gaps) - 1), gaps
    assert max(gaps) <= 3 * REPLICA_TICK_S, gaps
    assert samples and max(samples) <= 1, samples
    assert hook.log.unknown == 0 and hook.log.malformed == []
    print(
        f"{len(ats)} ticks pushed once each, takeover gap {max(gaps)} s, "
        f"{len(samples)} /status samples, leaders seen {sorted(set(samples))}"
    )


# -- 6. heartbeat monitors that hang, fail or refuse ------------------------------------


class Flaky:
    """A monitor endpoint the test switches between answering, 500 and hanging."""

    def __init__(self, mode: str, port: int = 0) -> None:
        self.mode, self.port = mode, port
        self.hits: dict[str, int] = {}
        self.released = asyncio.Event()  # lets hung requests go when the monitor recovers
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Flaky:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        mode = self.mode
        self.hits[mode] = self.hits.get(mode, 0) + 1
        if mode == "hang":
            await self.released.wait()
        if mode == "error":
            return web.Response(status=500)
        return web.Response(status=204)

    def recover(self) -> None:
        self.mode = "ok"
        self.released.set()

    async def close(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_monitors_that_hang_fail_or_refuse_never_delay_ticks_and_recover(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    topics = await _topics(make_topic)
    token, port, refused_port = secrets.token_hex(16), free_port(), free_port()
    hang, error = await Flaky("hang").start(), await Flaky("error").start()
    back: Flaky | None = None
    grace = min(2.0, TICK_S / 4)  # the service's: ticks start this long after `at`
    async with WebhookFake({COMPOSITE: token}) as hook, aiohttp.ClientSession() as session:
        env = _env(
            kafka_bootstrap, redis_url, redis_ns.prefix, topics,
            SENTINEL_HTTP_PORT=str(port), SENTINEL_ALERTING_TICK_SECONDS=str(TICK_S),
            **_webhook(0, "good", hook.url, token),
            **_webhook(1, "hang", hang.url, token),
            **_webhook(2, "error", error.url, token),
            **_webhook(3, "refused", f"http://127.0.0.1:{refused_port}/hook", token),
        )  # fmt: skip
        svc = ServiceProcess(env, "monitors")
        probe = Probe(session, svc, port)
        # loop time -> wall time, to set arrivals against each tick's `at`
        offset = time.time() - asyncio.get_running_loop().time()
        try:
            await probe.ready()
            await produce(kafka_bootstrap, topics, make_events(2_000, now=time.time(), seed=61))
            first = len(hook.log.pings)
            await hook.log.wait_for(lambda: len(hook.log.pings) >= first + 8, 60, "8 ticks")
            bad_until = len(hook.log.pings)
            failed = {
                name: await probe.metric(
                    "stream_sentinel_heartbeats_total", target=name, result=result
                )
                for name, result in (("hang", "timeout"), ("error", "error"), ("refused", "error"))
            }
            # the monitors come back
            hang.recover()
            error.recover()
            back = await Flaky("ok", refused_port).start()

            async def recovered() -> bool:
                oks = [
                    await probe.metric("stream_sentinel_heartbeats_total", target=n, result="ok")
                    for n in ("hang", "error", "refused")
                ]
                return all(n > 0 for n in oks)

            await probe.until(recovered, "ok pushes to the recovered monitors", 30)
            recovered_at = len(hook.log.pings)
            await hook.log.wait_for(
                lambda: len(hook.log.pings) >= recovered_at + 3, 30, "3 more ticks"
            )
            assert svc.terminate() == 0
        finally:
            svc.close()
            for flaky in (hang, error, back):
                if flaky is not None:
                    await flaky.close()

    pings = hook.log.pings[first:]
    ats = [p.at for p in pings]
    assert None not in ats
    gaps = {y - x for x, y in itertools.pairwise(a for a in ats if a is not None)}
    assert gaps == {TICK_S}, gaps  # no tick skipped or repeated, bad monitors or not
    late = [p.received + offset - p.at for p in pings if p.at is not None]
    bad_late = late[: bad_until - first]
    print(
        f"tick lateness (push arrival - at) with bad monitors: min {min(bad_late):.3f} "
        f"median {statistics.median(bad_late):.3f} max {max(bad_late):.3f} s; "
        f"overall jitter (max - min) {max(late) - min(late):.3f} s over {len(late)} ticks; "
        f"failures counted {failed}"
    )
    # a tick starts `grace` after `at`; a push to the good monitor arrives soon
    # after, however long the others hang: bounded well below the tick period
    assert max(late) <= grace + 1.0, late
    assert all(n > 0 for n in failed.values()), failed
    assert hang.hits.get("hang", 0) > 0 and error.hits.get("error", 0) > 0
    assert back is not None and back.hits.get("ok", 0) > 0
