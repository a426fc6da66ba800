"""Tick history for learned baselines: one record per evaluated tick, kept for days.

Two implementations pass one contract (tests/store/test_history.py): ``MemoryHistory``
(replay and the embedded store; lives as long as the process) and
``RedisHistory`` (the service; survives restarts and is shared by replicas).

Redis key layout (``P`` = key prefix; one hash tag, so a write that touches
both keys is Cluster safe)::

    P:{history}:ticks   sorted set, score = tick time, member = encoded record
    P:{history}:first   time of the first start (SET NX: never moves once set)

Nothing from events (user ids, models) is ever part of a key or a record:
records hold only the four signals' values, volumes and states.

Records are trimmed by time on every write (``keep_s`` behind the record
written), so the set stays bounded whatever the event rate. Both keys also
carry a TTL of ``keep_s`` refreshed on every write: a deployment switched off
for longer than its history forgets its first start too and learns afresh,
and the keys of an abandoned prefix do not stay in Redis for ever.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..model import SIGNALS, SignalName, State
from .base import StoreUnavailable
from .redis_client import REDIS_ERRORS, RedisClient

log = logging.getLogger(__name__)

_STATES: frozenset[str] = frozenset(("ok", "red", "insufficient_data"))


@dataclass(frozen=True, slots=True)
class Point:
    """One signal at one tick.

    ``judged`` says whether ``state`` was decided against a real baseline
    (static or learned) rather than a provisional one (source ``learning``):
    only judged reds are left out of medians. Reds while learning say little:
    a median learned from the first (night) hours makes every busy afternoon
    tick "red", and leaving those out would keep the baseline at the night's
    level for ever. The median itself is what keeps a short attack during
    learning from moving the baseline.
    """

    value: float | None
    volume: int
    state: State
    judged: bool = True


@dataclass(frozen=True, slots=True)
class TickRecord:
    at: int
    points: Mapping[SignalName, Point]

    def encode(self) -> bytes:
        signals = {name: [p.value, p.volume, p.state, p.judged] for name, p in self.points.items()}
        return orjson.dumps([self.at, signals])

    @classmethod
    def decode(cls, raw: bytes | str) -> TickRecord:
        """Inverse of ``encode``; raises ``ValueError`` on anything malformed."""
        data = orjson.loads(raw)
        if not (isinstance(data, list) and len(data) == 2 and type(data[0]) is int):
            raise ValueError("a tick record is [at, {signal: point}]")
        if not isinstance(data[1], dict):
            raise ValueError("a tick record's signals must be an object")
        points = {name: _point(data[1][name]) for name in SIGNALS if name in data[1]}
        return cls(data[0], points)


def _point(item: Any) -> Point:
    if not (isinstance(item, list) and len(item) == 4):
        raise ValueError("a point is [value, volume, state, judged]")
    value, volume, state, judged = item
    ok_value = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok_value or type(volume) is not int or state not in _STATES:
        raise ValueError("malformed point")
    if not isinstance(judged, bool):
        raise ValueError("malformed point")
    return Point(None if value is None else float(value), volume, state, judged)


class History(Protocol):
    async def first_start(self, at: int) -> int:
        """Record ``at`` as the first start unless one is recorded; return the recorded one."""

    async def append(self, record: TickRecord) -> None:
        """Store ``record`` (replacing one at the same time) and drop records older
        than ``record.at - keep_s``."""

    async def records(self, start: int, end: int) -> list[TickRecord]:
        """Records with ``start <= at < end``, oldest first."""


class MemoryHistory:
    """Event-time history for replay and the embedded store."""

    def __init__(self, keep_s: int) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        self._keep = keep_s
        self._first: int | None = None
        self._ats: list[int] = []
        self._records: list[TickRecord] = []

    async def first_start(self, at: int) -> int:
        if self._first is None:
            self._first = at
        return self._first

    async def append(self, record: TickRecord) -> None:
        i = bisect.bisect_left(self._ats, record.at)
        if i < len(self._ats) and self._ats[i] == record.at:
            self._records[i] = record
        else:
            self._ats.insert(i, record.at)
            self._records.insert(i, record)
        cut = bisect.bisect_left(self._ats, record.at - self._keep)
        if cut:
            del self._ats[:cut]
            del self._records[:cut]

    async def records(self, start: int, end: int) -> list[TickRecord]:
        lo = bisect.bisect_left(self._ats, start)
        hi = bisect.bisect_left(self._ats, end)
        return self._records[lo:hi]

    def __len__(self) -> int:
        return len(self._records)


class RedisHistory:
    """History in Redis, next to the counters; see the module docstring for keys."""

    def __init__(self, client: RedisClient, *, prefix: str, keep_s: int) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        self._r = client
        self._keep = keep_s
        tag = f"{prefix}:{{history}}"
        self.ticks_key = f"{tag}:ticks"
        self.first_key = f"{tag}:first"

    async def first_start(self, at: int) -> int:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(self.first_key, at, nx=True, ex=self._keep)
                pipe.get(self.first_key)
                _, stored = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc
        return int(stored)

    async def append(self, record: TickRecord) -> None:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                # the same tick evaluated twice (a new leader, a retried tick) replaces
                pipe.zremrangebyscore(self.ticks_key, record.at, record.at)
                pipe.zadd(self.ticks_key, {record.encode(): record.at})
                pipe.zremrangebyscore(self.ticks_key, "-inf", f"({record.at - self._keep}")
                pipe.expire(self.ticks_key, self._keep)
                pipe.expire(self.first_key, self._keep)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def records(self, start: int, end: int) -> list[TickRecord]:
        try:
            raw = await self._r.zrangebyscore(self.ticks_key, start, f"({end}")
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc
        found: list[TickRecord] = []
        bad = 0
        for member in raw:
            try:
                if not isinstance(member, bytes):
                    raise ValueError("not a plain member")
                found.append(TickRecord.decode(member))
            except ValueError:  # orjson.JSONDecodeError is a ValueError too
                bad += 1
        if bad:
            # a foreign or corrupt member must not stop learning from the rest
            log.warning("history: skipped %d malformed records in %s", bad, self.ticks_key)
        return found


def _unavailable(exc: Exception) -> StoreUnavailable:
    # the type name only: messages of connection errors can carry the URL
    return StoreUnavailable(f"history: redis error: {type(exc).__name__}")
