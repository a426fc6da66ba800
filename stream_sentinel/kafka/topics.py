"""The project's Kafka topics: create them (`topics create`) and say which are missing.

A verb that needs a topic checks first, so a missing one is one line naming it
within seconds, not a client retrying for 40 s and a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_sentinel.config import Config
from stream_sentinel.kafka.clients import client_kwargs

CREATE_COMMAND = "stream-sentinel topics create"
TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code
ADMIN_TIMEOUT_S = 10.0
DEFAULT_REPLICATION = "default.replication.factor"
Role = Literal["requests", "responses", "dead letters", "alerts"]


class TopicsError(Exception):
    """The broker refused or could not be reached; the message is one line for the user
    (without the "error: " the CLI puts before it)."""


@dataclass(frozen=True, slots=True)
class TopicPlan:
    role: Role
    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class TopicOutcome:
    plan: TopicPlan
    created: bool
    partitions: int  # as the broker has it now

    def describe(self) -> str:
        p = self.plan
        count = f"{self.partitions} partition{'' if self.partitions == 1 else 's'}"
        if self.created:
            return f"created {p.name} ({p.role}): {count}"
        note = "" if self.partitions == p.partitions else f"; {p.partitions} asked, left as is"
        return f"exists  {p.name} ({p.role}): {count}{note}"


def plan_topics(cfg: Config, partitions: int | None = None) -> list[TopicPlan]:
    wide = partitions if partitions is not None else cfg.topics.partitions
    k = cfg.kafka
    return [
        TopicPlan("requests", k.request_topic, wide),
        TopicPlan("responses", k.response_topic, wide),
        TopicPlan("dead letters", k.dlq_topic, 1),
        TopicPlan("alerts", k.alerts_topic, 1),
    ]


def admin_client(cfg: Config) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **client_kwargs(cfg),
        request_timeout_ms=int(ADMIN_TIMEOUT_S * 1000),
        client_id="stream-sentinel-admin",
    )


def missing_message(missing: Sequence[str], verb: str) -> str:
    names = ", ".join(missing)
    noun = "topic" if len(missing) == 1 else "topics"
    return (
        f"error: {verb}: Kafka {noun} {names} missing; "
        f"create with `{CREATE_COMMAND}` (or ask whoever runs the brokers)"
    )


async def missing_topics(cfg: Config, names: Iterable[str]) -> list[str]:
    """Which of ``names`` the cluster does not have; TopicsError when it cannot tell."""
    admin = admin_client(cfg)
    try:
        with _client_logs_quiet():
            async with asyncio.timeout(ADMIN_TIMEOUT_S):
                await admin.start()
                existing = set(await admin.list_topics())
    except (KafkaError, OSError, TimeoutError) as exc:
        raise TopicsError(_unreachable(cfg, exc)) from None
    finally:
        await admin.close()
    return [name for name in dict.fromkeys(names) if name not in existing]


async def create_topics(
    cfg: Config,
    plans: Sequence[TopicPlan],
    *,
    replication_factor: int | None,
    retention_hours: int,
) -> list[TopicOutcome]:
    """Create every planned topic that does not exist; existing ones are left untouched."""
    settings = {"retention.ms": str(retention_hours * 3_600_000)}
    admin = admin_client(cfg)
    try:
        with _client_logs_quiet():
            async with asyncio.timeout(ADMIN_TIMEOUT_S * 3):
                await admin.start()
                replicas = replication_factor or await _default_replication(admin)
                created = await _create(admin, plans, replicas, settings)
                described = await admin.describe_topics([p.name for p in plans])
    except (KafkaConnectionError, OSError, TimeoutError) as exc:
        raise TopicsError(_unreachable(cfg, exc)) from None
    except KafkaError as exc:
        raise TopicsError(f"topics create: {type(exc).__name__}") from None
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    return [TopicOutcome(p, p.name in created, counts.get(p.name, 0)) for p in plans]


async def _create(
    admin: AIOKafkaAdminClient, plans: Sequence[TopicPlan], replicas: int, settings: dict[str, str]
) -> set[str]:
    """The names created now; TopicsError when the broker refuses one (other than "exists")."""
    response = await admin.create_topics(
        [NewTopic(p.name, p.partitions, replicas, topic_configs=settings) for p in plans],
        timeout_ms=int(ADMIN_TIMEOUT_S * 1000),
    )
    # (name, error code, error message); the message is there from CreateTopics v1 on
    outcomes = {t[0]: (t[1], t[2] if len(t) > 2 else None) for t in response.topic_errors}
    refused = [
        f"{name}: {message or f'error code {code}'}"
        for name, (code, message) in outcomes.items()
        if code not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if refused:
        raise TopicsError("topics create: the broker refused " + "; ".join(refused))
    return {name for name, (code, _) in outcomes.items() if code == 0}


async def _default_replication(admin: AIOKafkaAdminClient) -> int:
    """The broker's ``default.replication.factor``: aiokafka cannot send CreateTopics'
    "-1 = broker default", so it is read and sent explicitly."""
    cluster = await admin.describe_cluster()
    broker = str(cluster["brokers"][0]["node_id"])
    wanted = ConfigResource(ConfigResourceType.BROKER, broker, {DEFAULT_REPLICATION: None})
    (response,) = await admin.describe_configs([wanted])
    for _code, _message, _type, _name, entries in response.resources:
        for name, value, *_ in entries:
            if name == DEFAULT_REPLICATION:
                return int(value)
    return 1  # Kafka's own default


@contextmanager
def _client_logs_quiet() -> Iterator[None]:
    """aiokafka logs every failed connection at ERROR; here the caller prints one line
    saying the broker is unreachable, so those would only repeat it."""
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_log.setLevel(level)


def _unreachable(cfg: Config, exc: BaseException) -> str:
    # The class name only: messages of connection errors may carry credentials.
    why = f"no answer within {ADMIN_TIMEOUT_S:.0f} s" if isinstance(exc, TimeoutError) else None
    return f"Kafka at {cfg.kafka.bootstrap_servers} unreachable ({why or type(exc).__name__})"
