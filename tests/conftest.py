"""Fixtures for tests that talk to the real Kafka broker and Redis server.

`make test` starts them through scripts/services and exports
KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and REDIS_CLUSTER_URL. A test that needs them and finds them
unset fails: a skipped integration test would let a green run hide that nothing
was tested.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from alertmanager_server import ALERTMANAGER, TEST_CONFIG, AlertmanagerProcess, WebhookSink
from redis.asyncio import Redis

SERVICE_FIXTURES = frozenset({"kafka_bootstrap", "redis_url", "redis_cluster_url", "any_redis_url"})
TOPIC_READY_TIMEOUT_S = 30.0

TopicFactory = Callable[..., Awaitable[str]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever needs a real server is an integration test, whether or not its
    # author remembered the marker, so `-m "not integration"` never reaches a server.
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            f"{name} is not set. Integration tests run against the real services: "
            'use `make test`, or `eval "$(scripts/services start)"` before pytest.',
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the real broker, e.g. ``127.0.0.1:9092``."""
    return _required_env("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server, e.g. ``redis://127.0.0.1:6379/0``."""
    return _required_env("REDIS_URL")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """URL of the real 3-master Redis Cluster, ``redis+cluster://127.0.0.1:7001/0``."""
    return _required_env("REDIS_CLUSTER_URL")


@pytest.fixture(params=["redis", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """The single-node Redis, then the 3-master Cluster: for tests of code that
    must work on both (every multi-key operation within one hash slot)."""
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def unique_id() -> str:
    """A short random id for names (consumer groups...) that concurrent tests must not share."""
    return uuid.uuid4().hex[:12]


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    # CreateTopics returns once the controller has committed the topic; the
    # broker may still be loading it. Producing before every partition has a
    # leader works only thanks to client retries, which would blur test timings.
    async with asyncio.timeout(TOPIC_READY_TIMEOUT_S):
        while True:
            (described,) = await admin.describe_topics([topic])
            led = [p for p in described["partitions"] if p["leader"] >= 0]
            if described["error_code"] == 0 and len(led) == partitions:
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def make_topic(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Factory ``await make_topic(partitions, prefix="t") -> name``.

    Each call creates a uniquely named topic (replication factor 1, since the
    broker is a single node) and waits until all its partitions have a leader.
    Every topic created is deleted when the test ends.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def make(partitions: int = 1, prefix: str = "t") -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:12]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=30_000)
        for topic_error in response.topic_errors:
            if topic_error[1] != 0:
                raise RuntimeError(f"creating topic {name!r} failed: {topic_error!r}")
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield make
    finally:
        try:
            if created:
                await admin.delete_topics(created, timeout_ms=30_000)
        finally:
            await admin.close()


@dataclass(frozen=True)
class RedisNamespace:
    """A Redis client plus a key prefix no other test uses.

    Tests run concurrently against one server, so nothing may FLUSHDB: a test
    writes only keys containing `prefix` (pass it as the store's key_prefix),
    and the fixture deletes exactly those afterwards.
    """

    client: Redis
    prefix: str

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))


@pytest.fixture
async def redis_ns(redis_url: str) -> AsyncIterator[RedisNamespace]:
    client = Redis.from_url(redis_url)
    namespace = RedisNamespace(client=client, prefix=f"test{uuid.uuid4().hex[:12]}")
    try:
        yield namespace
    finally:
        try:
            # The prefix may sit inside a {hash tag}, so match it anywhere in the key.
            doomed = [key async for key in client.scan_iter(match=f"*{namespace.prefix}*")]
            if doomed:
                await client.delete(*doomed)
        finally:
            await client.aclose()


@dataclass(frozen=True)
class AlertmanagerUnderTest:
    """The session's real Alertmanager and the webhook receiver it notifies."""

    server: AlertmanagerProcess
    webhook: WebhookSink

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[AlertmanagerUnderTest]:
    """Debian's prometheus-alertmanager on a free port, notifying a loopback webhook
    (group_wait and group_interval 1 s); tests tell their alerts apart by a
    ``service`` label of their own."""
    if not os.path.exists(ALERTMANAGER):
        pytest.fail(
            f"{ALERTMANAGER} is missing: `make test` installs prometheus-alertmanager",
            pytrace=False,
        )
    webhook = WebhookSink()
    webhook.start()
    server = AlertmanagerProcess(TEST_CONFIG.format(url=webhook.url))
    try:
        server.start()
        yield AlertmanagerUnderTest(server, webhook)
    finally:
        server.stop()
        webhook.stop()
