"""The one door into ``store/``: a deployment's counters, tick history and leader lease.

``open_storage`` turns ``StorageSettings`` into the three parts and closes
what it opened when the ``async with`` block ends. With a Redis URL they share
one client (one connection pool, closed once, on shutdown); without one they
are the embedded in-memory parts of a single process. Code above ``store/``
holds the parts by their protocols (``Store``, ``History``, ``Lease``) and never
learns which kind it has (tests/test_layering.py keeps it so).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .base import ReadAhead, Store
from .history import History, MemoryHistory, RedisHistory
from .lease import Lease, LocalLease, RedisLease
from .memory import MemoryStore
from .redis import RedisStore
from .redis_client import RedisClient, check_url, connect

__all__ = ["Storage", "StorageSettings", "check_url", "open_storage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    url: str | None  # a Redis URL (see ``check_url``), or None for the embedded store
    prefix: str  # every Redis key of the deployment starts with "prefix:"
    bucket_width: int
    counter_ttl_s: int  # how long counted buckets live (the embedded store: in event time)
    user_ttl_s: int  # how long per-user counts live
    history_keep_s: int  # how long tick history is kept for learned baselines
    # the embedded store's history file (``[learning] history_file``); Redis keeps its own
    history_file: str | None = None


@dataclass(frozen=True, slots=True)
class Storage:
    store: Store
    history: History
    # the store's speed hint for the next tick's windows, when it has one
    read_ahead: ReadAhead | None
    _client: RedisClient | None
    _prefix: str

    def lease(self, *, replica_id: str, ttl_ms: int) -> Lease:
        """Leader election among the replicas sharing this storage (one process: always)."""
        if self._client is None:
            return LocalLease()
        return RedisLease(self._client, prefix=self._prefix, replica_id=replica_id, ttl_ms=ttl_ms)


@asynccontextmanager
async def open_storage(settings: StorageSettings) -> AsyncIterator[Storage]:
    if settings.url is None:
        path = Path(settings.history_file) if settings.history_file else None
        yield Storage(
            MemoryStore(retention_s=settings.counter_ttl_s),
            MemoryHistory(settings.history_keep_s, path=path),
            None,
            None,
            settings.prefix,
        )
        return
    # the timeouts bound one call; the lease and the tick bound theirs tighter
    client = connect(
        settings.url, socket_timeout=5.0, socket_connect_timeout=3.0, health_check_interval=10
    )
    try:
        store = RedisStore(
            client,
            prefix=settings.prefix,
            bucket_width=settings.bucket_width,
            counter_ttl_s=settings.counter_ttl_s,
            user_ttl_s=settings.user_ttl_s,
        )
        history = RedisHistory(client, prefix=settings.prefix, keep_s=settings.history_keep_s)
        if settings.history_file:
            log.warning("learning.history_file is ignored: the history lives in Redis")
        yield Storage(store, history, store, client, settings.prefix)
    finally:
        await client.aclose()
