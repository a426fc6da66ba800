"""Shared tools for the integration tests, each written once: traffic with
known totals, topics and the service's environment (``create_topics``,
``deployment_env``), the service as a real subprocess (``ServiceProcess``,
``running_service``) and HTTP access to it (``Probe``), waiting on another
process's state (``until``, ``wait_stored_total``, ``wait_caught_up``), a
private redis-server and Kafka broker we may pause, kill or restart."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.kafka.source import KafkaIngest, KafkaSettings
from stream_sentinel.model import NANO, TenantCounts, WindowCounts
from stream_sentinel.store.base import PartitionId, Store
from stream_sentinel.store.redis import RedisStore

WIDTH = 60
# a loaded 2-core machine: Python start-up plus a group join, or a rebalance
# (a deadline for a condition, not a wait: it costs nothing when things go well)
START_TIMEOUT_S = 120.0


@dataclass
class Expected:
    """Totals computed from what was produced, independently of the code under test."""

    buckets: dict[int, WindowCounts] = field(default_factory=dict)
    users: dict[int, Counter[str]] = field(default_factory=dict)
    # per bucket, per tenant: its counts and its requests per user
    tenants: dict[int, dict[str, WindowCounts]] = field(default_factory=dict)
    tenant_users: dict[int, dict[str, Counter[str]]] = field(default_factory=dict)

    def add(self, event: Mapping[str, object]) -> None:
        ts = float(event["ts"])  # type: ignore[arg-type]
        bucket = int(ts // WIDTH) * WIDTH
        inc = self._counts(event)
        self.buckets[bucket] = self.buckets.get(bucket, WindowCounts()) + inc
        if event["type"] == "request":
            self.users.setdefault(bucket, Counter())[str(event["user_id"])] += 1
        tenant = event.get("tenant")
        if tenant is not None:
            mine = self.tenants.setdefault(bucket, {})
            mine[str(tenant)] = mine.get(str(tenant), WindowCounts()) + inc
            if event["type"] == "request":
                users = self.tenant_users.setdefault(bucket, {})
                users.setdefault(str(tenant), Counter())[str(event["user_id"])] += 1

    @staticmethod
    def _counts(event: Mapping[str, object]) -> WindowCounts:
        if event["type"] == "request":
            return WindowCounts(requests=1, blocked=int(bool(event["blocked"])))
        cost = event.get("cost_usd")
        return WindowCounts(
            responses=1,
            safe=int(bool(event["safe"])),
            cost_nanousd=0 if cost is None else round(float(cost) * NANO),  # type: ignore[arg-type]
            cost_unknown=int(cost is None),
        )


def expected_of(events: Iterable[Mapping[str, object]]) -> Expected:
    expected = Expected()
    for event in events:
        expected.add(event)
    return expected


HOSTILE_TENANT = "{evil}|tenant:*\nX-Injected: 1"


def with_tenants(events: list[dict[str, object]], tenants: int) -> list[dict[str, object]]:
    """The events with a ``tenant`` field: user ``user-N``'s is ``team-(N % tenants)``
    (every user in one tenant, each tenant's users over every partition), the
    hostile user's a hostile name, and every seventh event carries none."""
    for i, event in enumerate(events):
        user = str(event["user_id"])
        if i % 7 == 0:
            continue
        number = user.rsplit("-", 1)[-1]
        event["tenant"] = f"team-{int(number) % tenants}" if number.isdigit() else HOSTILE_TENANT
    return events


def make_events(n: int, *, now: float, seed: int, users: int = 300) -> list[dict[str, object]]:
    """``n`` contract events (half requests, half responses) from the last 40 minutes."""
    rng = random.Random(seed)
    events: list[dict[str, object]] = []
    for i in range(n):
        user = f"user-{rng.randrange(users)}" if i % 97 else "{evil}|user:*"
        ts = round(now - rng.uniform(0, 2400), 3)
        if i % 2 == 0:
            events.append(
                {
                    "event_id": f"e{seed}-{i}",
                    "type": "request",
                    "ts": ts,
                    "user_id": user,
                    "blocked": rng.random() < 0.02,
                }
            )
        else:
            events.append(
                {
                    "event_id": f"e{seed}-{i}",
                    "type": "response",
                    "ts": ts,
                    "user_id": user,
                    "safe": rng.random() > 0.01,
                    **({"cost_usd": round(rng.uniform(0, 0.02), 6)} if i % 5 else {}),
                }
            )
    return events


async def produce(
    bootstrap: str, topics: Mapping[str, str], events: Iterable[Mapping[str, object]]
) -> None:
    """Write events keyed by user id; ``topics`` maps event type to topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for event in events:
            topic = topics[str(event["type"])]
            futures.append(
                await producer.send(topic, orjson.dumps(event), key=str(event["user_id"]).encode())
            )
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_raw(bootstrap: str, topic: str, values: Iterable[bytes | None]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            # a tombstone needs a key
            await producer.send_and_wait(
                topic, value, key=b"k" if value is None else None, partition=0
            )
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[PartitionId, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    assert tps, f"no partitions for {topics}"
    # a group id: aiokafka 0.14's group-less consumer raises CancelledError from stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"probe-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        return {PartitionId(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await consumer.stop()


def reader_store(url: str, prefix: str) -> RedisStore:
    """The test's own view of what a service wrote (reads find buckets of any width)."""
    return RedisStore.from_url(
        url, prefix=prefix, bucket_width=WIDTH, counter_ttl_s=4000, user_ttl_s=700
    )


def ingest_settings(bootstrap: str, topics: Mapping[str, str]) -> KafkaSettings:
    """An in-process ``KafkaIngest``'s settings: a fresh group over ``topics``."""
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        request_topic=topics["request"],
        response_topic=topics["response"],
        dlq_topic=f"{topics['request']}.dlq",
    )


async def wait_stored(store: Store, ends: Mapping[PartitionId, int], timeout: float) -> None:
    """Poll until ``store`` holds exactly the end offsets (an in-process ingest writes it)."""
    async with asyncio.timeout(timeout):
        while await store.load_offsets(list(ends)) != ends:
            await asyncio.sleep(0.1)


async def ingest_until_stored(
    ingest: KafkaIngest,
    store: Store,
    ends: Mapping[PartitionId, int],
    *,
    timeout: float = 120,
    while_running: Callable[[], None] | None = None,
) -> None:
    """Start ``ingest``, run it until ``store`` holds ``ends``, then stop it;
    ``while_running`` checks the ingest before it stops."""
    stop = asyncio.Event()
    await ingest.start()
    runner = asyncio.create_task(ingest.run(stop))
    try:
        await wait_stored(store, ends, timeout=timeout)
        if while_running is not None:
            while_running()
    finally:
        stop.set()
        await runner
        await ingest.stop()


async def produce_transactions(
    bootstrap: str,
    topics: Mapping[str, str],
    transactions: Sequence[tuple[Sequence[Mapping[str, object]], bool]],
) -> None:
    """Each (events, commit) as one transaction of a transactional producer,
    keyed by user id; ``commit`` False aborts it."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        for events, commit in transactions:
            await producer.begin_transaction()
            for event in events:
                await producer.send(
                    topics[str(event["type"])],
                    orjson.dumps(event),
                    key=str(event["user_id"]).encode(),
                )
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int) -> list[dict]:  # type: ignore[type-arg]
    """The first ``count`` JSON messages of ``topic`` (dead letters), within 60 s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"dlq-reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict] = []  # type: ignore[type-arg]
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(out) < count:
            assert asyncio.get_running_loop().time() < deadline, out
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def wait_caught_up(
    store: RedisStore,
    ends: Mapping[PartitionId, int],
    timeout: float,
    proc: ServiceProcess | None = None,
) -> None:
    """Poll the store's offsets until every partition reached its end offset."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            stored = await store.load_offsets(list(ends))
        except Exception:  # the store may be paused by the test
            stored = {}
        if all(stored.get(p) == end for p, end in ends.items()):
            return
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"service exited {proc.proc.returncode}:\n{proc.log_tail()}")
        if loop.time() > deadline:
            tail = proc.log_tail() if proc else ""
            raise AssertionError(f"not caught up: stored={stored} ends={dict(ends)}\n{tail}")
        await asyncio.sleep(0.2)


async def assert_exact(store: RedisStore, expected: Expected) -> None:
    for bucket, counts in sorted(expected.buckets.items()):
        got = await store.window(bucket, bucket + WIDTH)
        assert got == counts, f"bucket {bucket}: {got} != {counts}"
    for bucket, users in sorted(expected.users.items()):
        top = await store.top_users(bucket, bucket + WIDTH, 10**6)
        assert dict(top) == dict(users), f"users of bucket {bucket}"
    lo, hi = min(expected.buckets), max(expected.buckets) + WIDTH
    total = WindowCounts()
    for counts in expected.buckets.values():
        total += counts
    assert await store.window(lo - 3600, hi + 3600) == total


async def assert_tenants_exact(store: RedisStore, expected: Expected) -> None:
    """Every bucket's tenants as ``top_tenants`` ranks them (all of them, all
    their users), equal to what was produced; then the whole stream at once."""
    assert expected.tenants, "no event carried a tenant"
    for bucket, tenants in sorted(expected.tenants.items()):
        span = (bucket, bucket + WIDTH)
        got = await store.top_tenants(span, span, 10**6, 10**6)
        assert got == _expected_tenants(tenants, tenants, expected.tenant_users.get(bucket, {})), (
            f"tenants of bucket {bucket}"
        )
    whole: dict[str, WindowCounts] = {}
    users: dict[str, Counter[str]] = {}
    for bucket, tenants in expected.tenants.items():
        for name, counts in tenants.items():
            whole[name] = whole.get(name, WindowCounts()) + counts
        for name, mine in expected.tenant_users.get(bucket, {}).items():
            users.setdefault(name, Counter()).update(mine)
    lo, hi = min(expected.tenants), max(expected.tenants) + WIDTH
    got = await store.top_tenants((lo, hi), (lo - 3600, hi + 3600), 5, 3)
    assert got == _expected_tenants(whole, whole, users, top_users=3)[:5]


def _expected_tenants(
    short: Mapping[str, WindowCounts],
    hour: Mapping[str, WindowCounts],
    users: Mapping[str, Counter[str]],
    top_users: int = 10**6,
) -> list[TenantCounts]:
    ranked = sorted(
        ((name, c.requests) for name, c in short.items() if c.requests > 0),
        key=lambda kv: (-kv[1], kv[0]),
    )
    return [
        TenantCounts(
            name,
            short[name],
            hour[name],
            tuple(sorted(users[name].items(), key=lambda kv: (-kv[1], kv[0]))[:top_users]),
        )
        for name, _ in ranked
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``stream-sentinel run`` as a real subprocess, configured by environment
    (the service inside it is ``app.ServiceProcess``)."""

    def __init__(self, env: Mapping[str, str], name: str = "svc") -> None:
        self.env = dict(env)
        self.log = Path(tempfile.mkdtemp(prefix="ss-svc-")) / f"{name}.log"
        self._log_file = self.log.open("wb")
        full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
        full.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_sentinel", "run"],
            env=full,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def wait_log(self, text: str, timeout: float = 60) -> None:
        """Wait until the service has logged ``text`` (it runs in another process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None, f"service exited:\n{self.log_tail()}"
            assert loop.time() < deadline, f"no {text!r} in the log:\n{self.log_tail()}"
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._log_file.close()


def service_env(
    *,
    bootstrap: str,
    redis_url: str,
    prefix: str,
    requests: str,
    responses: str,
    dlq: str,
    group: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SENTINEL_KAFKA_GROUP_ID": group or f"g-{uuid.uuid4().hex[:8]}",
        "SENTINEL_KAFKA_REQUEST_TOPIC": requests,
        "SENTINEL_KAFKA_RESPONSE_TOPIC": responses,
        "SENTINEL_KAFKA_DLQ_TOPIC": dlq,
        "SENTINEL_REDIS_URL": redis_url,
        "SENTINEL_REDIS_KEY_PREFIX": prefix,
        "SENTINEL_HTTP_PORT": "0",
        "SENTINEL_BASELINES_BLOCKED_PCT": "0.1",
        "SENTINEL_BASELINES_SAFETY_PCT": "99.5",
        "SENTINEL_BASELINES_TOP_USER_RPS": "5.0",
        "SENTINEL_BASELINES_SPEND_HOUR": "41.67",
    }
    env.update(extra or {})
    return env


TopicFactory = Callable[..., Awaitable[str]]


async def create_topics(
    make_topic: TopicFactory, partitions: int = 4, *, alerts: bool = True
) -> dict[str, str]:
    """Fresh topics of one deployment: request, response, dlq (and alerts)."""
    made = {
        "request": await make_topic(partitions, "req"),
        "response": await make_topic(partitions, "resp"),
        "dlq": await make_topic(1, "dlq"),
    }
    if alerts:
        made["alerts"] = await make_topic(1, "alerts")
    return made


def stream_parts(topics: Mapping[str, str], partitions: int = 4) -> list[PartitionId]:
    return [PartitionId(topics[t], p) for t in ("request", "response") for p in range(partitions)]


def deployment_env(
    kafka: str,
    redis_url: str,
    prefix: str,
    topics: Mapping[str, str],
    *,
    group: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The service's environment for ``create_topics``' topics; ``extra``: more SENTINEL_* keys."""
    settings = dict(extra)
    if "alerts" in topics:
        settings.setdefault("SENTINEL_KAFKA_ALERTS_TOPIC", topics["alerts"])
    return service_env(
        bootstrap=kafka,
        redis_url=redis_url,
        prefix=prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=topics["dlq"],
        group=group,
        extra=settings,
    )


async def wait_group_committed(
    bootstrap: str, group: str, ends: Mapping[PartitionId, int], timeout: float = 30
) -> None:
    """Wait until the consumer group has committed ``ends`` in Kafka (the
    service commits about once a second, after the store holds the offsets)."""
    want = {(p.topic, p.partition): offset for p, offset in ends.items()}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            got = {(tp.topic, tp.partition): om.offset for tp, om in committed.items()}
            if got == want:
                return
            assert asyncio.get_running_loop().time() < deadline, (got, want)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def until(
    check: Callable[[], Awaitable[Any]],
    what: str,
    *,
    proc: subprocess.Popen[bytes],
    tail: Callable[[], str],
    timeout: float = START_TIMEOUT_S,
) -> Any:
    """Poll ``check`` (state of another process: nothing to await) until it
    gives a value other than None or False (an empty dict is an answer);
    fail when ``proc`` exits or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited {proc.returncode}:\n{tail()}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            found = await check()
            if found is not None and found is not False:
                return found
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s:\n{tail()}")
        await asyncio.sleep(0.1)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


class Probe:
    """HTTP access to one service process on its own port."""

    def __init__(self, session: aiohttp.ClientSession, svc: ServiceProcess, port: int) -> None:
        self.session, self.svc, self.port = session, svc, port

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(
            f"http://127.0.0.1:{self.port}{path}", timeout=aiohttp.ClientTimeout(total=10)
        ) as r:
            return r.status, await r.read()

    async def status_or_none(self) -> dict[str, Any] | None:
        """The latest tick; None while /status answers 503 "starting" or the
        process does not answer at all."""
        try:
            code, body = await self.get("/status")
        except (aiohttp.ClientError, TimeoutError):
            return None
        if code != 200:
            return None
        parsed: dict[str, Any] = orjson.loads(body)
        return parsed

    async def status(self) -> dict[str, Any]:
        found = await self.status_or_none()
        assert found is not None, f"/status not 200:\n{self.tail()}"
        return found

    async def status_is(self, want: str) -> dict[str, Any] | None:
        found = await self.status_or_none()
        return found if found is not None and found.get("status") == want else None

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        code, body = await self.get("/readyz")
        parsed: dict[str, Any] = orjson.loads(body)
        return code, parsed

    async def metric(self, name: str, **labels: str) -> float:
        _, body = await self.get("/metrics")
        return metric_value(body.decode(), name, **labels)

    async def until(
        self, check: Callable[[], Awaitable[Any]], what: str, timeout: float = START_TIMEOUT_S
    ) -> Any:
        return await until(check, what, proc=self.svc.proc, tail=self.tail, timeout=timeout)

    async def ready(self, timeout: float = START_TIMEOUT_S) -> None:
        async def check() -> bool:
            return (await self.get("/readyz"))[0] == 200

        await self.until(check, "/readyz 200", timeout)

    def restart(self, name: str, *, kill: bool = True) -> None:
        """SIGKILL the process (or let it be) and start another with its environment."""
        if kill:
            self.svc.kill()
        self.svc.close()
        self.svc = ServiceProcess(self.svc.env, name)

    def tail(self) -> str:
        return self.svc.log_tail(60)


@contextlib.asynccontextmanager
async def running_service(
    env: Mapping[str, str],
    name: str = "svc",
    *,
    session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[Probe]:
    """``stream-sentinel run`` for the body of an ``async with``, on its own
    HTTP port (``env``'s, or a free one), killed at the end if still running."""
    port = int(env.get("SENTINEL_HTTP_PORT", "0")) or free_port()
    own = session is None
    http = aiohttp.ClientSession() if session is None else session
    probe = Probe(http, ServiceProcess({**env, "SENTINEL_HTTP_PORT": str(port)}, name), port)
    try:
        yield probe
    finally:
        probe.svc.close()
        if own:
            await http.close()


async def stored_total(store: Store, parts: Sequence[PartitionId]) -> int:
    """The sum of the stored offsets of ``parts``; -1 while the store cannot answer."""
    try:
        stored = await store.load_offsets(list(parts))
    except Exception:  # the store may be down on purpose
        return -1
    return sum(v or 0 for v in stored.values())


async def wait_stored_total(
    store: Store,
    parts: Sequence[PartitionId],
    minimum: int,
    svc: ServiceProcess,
    timeout: float = 180,
) -> int:
    """Poll the store (another process writes it) until ``minimum`` offsets are stored."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (total := await stored_total(store, parts)) < minimum:
        assert svc.proc.poll() is None, f"service exited:\n{svc.log_tail()}"
        assert loop.time() < deadline, f"stored {total} < {minimum}:\n{svc.log_tail()}"
        await asyncio.sleep(0.05)
    return total


class PrivateRedis:
    """A redis-server of our own, so a test may pause, kill and restart it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ss-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            subprocess.run(["sleep", "0.05"], check=True)
        raise RuntimeError("private redis-server did not start")

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


REPO = Path(__file__).resolve().parents[2]
KAFKA_CACHE = Path(os.environ.get("STREAM_SENTINEL_CACHE", Path.home() / ".cache/stream-sentinel"))


class PrivateKafka:
    """A single-node KRaft broker of our own, so a test may stop and restart it.

    Runs the jars ``scripts/services`` resolved (it must have started the shared
    broker once) on free ports with its own data dir. Unlike ``scripts/services``,
    :meth:`start` after :meth:`stop` keeps the data dir: a restart, not a new cluster.
    """

    def __init__(self) -> None:
        libs = sorted(KAFKA_CACHE.glob("kafka-*/lib"))
        assert libs, f"no broker jars under {KAFKA_CACHE}: run scripts/services start once"
        self.classpath = f"{libs[-1]}/*"
        self.port, self.controller_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ss-kafka-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "kafka.log"
        props = self.dir / "kafka.properties"
        props.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={self.dir / 'data'}\nauto.create.topics.enable=false\n"
            "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=4\n"
            "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
            "transaction.state.log.num.partitions=2\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\nnum.network.threads=2\nnum.io.threads=2\n"
        )
        self.props = props
        self._jvm = [
            f"-Dlog4j2.configurationFile={REPO / 'services/kafka/log4j2.properties'}",
            "-Djava.awt.headless=true",
        ]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id.startswith("-"):  # the tool would take it for an option
            cluster_id = "A" + cluster_id[1:]
        subprocess.run(
            ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", self.classpath, *self._jvm,
             "-Dkafka.log.level=WARN", "kafka.tools.StorageTool", "format",
             "--cluster-id", cluster_id, "--config", str(props)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 120) -> None:
        """Start the broker and wait until it answers a metadata request."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["java", "-Xms128m", "-Xmx384m", "-XX:+UseG1GC", *self._jvm,
                 "-Dkafka.log.level=INFO", "-cp", self.classpath, "kafka.Kafka", str(self.props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            assert self.proc.poll() is None, f"broker exited:\n{self.log_tail()}"
            assert loop.time() < deadline, f"broker did not answer:\n{self.log_tail()}"
            try:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
                await admin.start()
                try:
                    await admin.describe_cluster()
                    return
                finally:
                    await admin.close()
            except Exception:  # not up yet: any client error
                await asyncio.sleep(0.5)

    def stop(self, timeout: float = 60) -> None:
        """A clean broker shutdown (SIGTERM), its data kept for the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
