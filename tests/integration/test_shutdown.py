"""Every client the service opens is closed on shutdown.

The service runs in this process (``run_service``, stopped by the SIGTERM its
own handler takes), after it led, counted and pushed a tick: so its store,
lease, Kafka and HTTP clients were all used. Then every Redis connection,
Kafka connection and aiohttp session that did not exist before it started
must be closed. Nothing is asked of the service's internals: the objects are
found through the garbage collector, whoever opened them.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import time
from typing import Any

import aiohttp
import pytest
from aiokafka.conn import AIOKafkaConnection
from redis.asyncio.connection import AbstractConnection

from stream_sentinel.app import run_service
from stream_sentinel.config import load_config
from stream_sentinel.heartbeat import COMPOSITE

from .fakes import WebhookFake
from .harness import create_topics, deployment_env, make_events, produce

pytestmark = pytest.mark.integration


def _open_clients() -> dict[int, str]:
    """Every open Redis connection, Kafka connection and aiohttp session, by id."""
    found: dict[int, str] = {}
    for obj in gc.get_objects():
        if isinstance(obj, AbstractConnection) and obj.is_connected:
            found[id(obj)] = f"redis {obj!r}"
        elif isinstance(obj, AIOKafkaConnection) and obj.connected():
            found[id(obj)] = f"kafka {obj!r}"
        elif isinstance(obj, aiohttp.ClientSession) and not obj.closed:
            found[id(obj)] = "aiohttp session"
    return found


async def test_sigterm_after_leading_counting_and_pushing_leaves_no_client_open(
    kafka_bootstrap: str, redis_url: str, make_topic: Any, redis_ns: Any
) -> None:
    topics = await create_topics(make_topic, 1)
    token = secrets.token_hex(16)
    async with WebhookFake({COMPOSITE: token}) as hook:
        env = deployment_env(
            kafka_bootstrap, redis_url, redis_ns.prefix, topics,
            SENTINEL_ALERTING_TICK_SECONDS="2",
            SENTINEL_HEARTBEAT_0_NAME="hook", SENTINEL_HEARTBEAT_0_KIND="webhook",
            SENTINEL_HEARTBEAT_0_URL=hook.url, SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE=token,
        )  # fmt: skip
        before = _open_clients()
        running = asyncio.create_task(run_service(load_config(None, env)))
        try:
            await produce(kafka_bootstrap, topics, make_events(500, now=time.time(), seed=91))
            # led (the lease's client), counted (store, Kafka) and pushed (HTTP)
            await hook.log.wait_for(lambda: len(hook.log.pings) >= 2, 60, "2 pushes")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the service's own handler: a clean stop
            code = await asyncio.wait_for(running, 60)
    assert code == 0
    gc.collect()
    left = {i: what for i, what in _open_clients().items() if i not in before}
    assert not left, left
