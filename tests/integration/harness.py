"""Shared tools for end-to-end ingestion tests: traffic with known totals,
the service as a real subprocess, a private redis-server we may pause or kill."""

from __future__ import annotations

import asyncio
import base64
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_sentinel.kafka.source import KafkaIngest, KafkaSettings
from stream_sentinel.model import NANO, WindowCounts
from stream_sentinel.store.base import PartitionId, Store
from stream_sentinel.store.redis import RedisStore

WIDTH = 60


@dataclass
class Expected:
    """Totals computed from what was produced, independently of the code under test."""

    buckets: dict[int, WindowCounts] = field(default_factory=dict)
    users: dict[int, Counter[str]] = field(default_factory=dict)

    def add(self, event: Mapping[str, object]) -> None:
        ts = float(event["ts"])  # type: ignore[arg-type]
        bucket = int(ts // WIDTH) * WIDTH
        if event["type"] == "request":
            inc = WindowCounts(requests=1, blocked=int(bool(event["blocked"])))
            self.users.setdefault(bucket, Counter())[str(event["user_id"])] += 1
        else:
            cost = event.get("cost_usd")
            inc = WindowCounts(
                responses=1,
                safe=int(bool(event["safe"])),
                cost_nanousd=0 if cost is None else round(float(cost) * NANO),  # type: ignore[arg-type]
                cost_unknown=int(cost is None),
            )
        self.buckets[bucket] = self.buckets.get(bucket, WindowCounts()) + inc


def expected_of(events: Iterable[Mapping[str, object]]) -> Expected:
    expected = Expected()
    for event in events:
        expected.add(event)
    return expected


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``stream-sentinel run`` as a real subprocess, configured by environment
    (the service inside it is ``app.Service``)."""

    def __init__(self, env: Mapping[str, str], name: str = "svc") -> None:
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
