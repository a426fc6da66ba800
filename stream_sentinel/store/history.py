"""Tick history for learned baselines: one record per evaluated tick, kept for days.

Two implementations pass one contract (tests/store/test_history.py): ``MemoryHistory``
(replay and the embedded store; lives as long as the process, or in a file
with ``[learning] history_file``, see ``history_file``) and ``RedisHistory``
(the service; survives restarts and is shared by replicas).

Redis key layout (``P`` = key prefix; one hash tag, so a write that touches
several keys is Cluster safe)::

    P:{history}:ticks   sorted set, score = tick time, member = encoded record
    P:{history}:first   time of the first start (SET NX: never moves once set)
    P:{history}:since   earliest event time the sentinel could see (SET NX)

Nothing from events (user ids, models) is ever part of a key or a record:
records hold only the four signals' values, window counts and states, and,
with per-tenant signals on, the same for each evaluated tenant under its name
(a JSON string inside the record, never a key: at most ``top_k`` per record).
Records of format 1 (before window counts were kept) are still read, their
ratio numerators rebuilt from value x volume; malformed ones are skipped;
either way with one log line, never an error.

Records are trimmed by time on every write (``keep_s`` behind the record
written), so the set stays bounded whatever the event rate. All keys also
carry a TTL of ``keep_s`` refreshed on every write: a deployment switched off
for longer than its history forgets its first start too and learns afresh,
and the keys of an abandoned prefix do not stay in Redis for ever.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..model import SIGNALS, SignalName, State
from .base import StoreUnavailable
from .history_file import HistoryFile, SavedHistory
from .redis_client import REDIS_ERRORS, RedisClient

log = logging.getLogger(__name__)

FORMAT = 2  # 1: [at, {signal: [value, volume, state, judged]}], no stale ticks, no counts
RATIO_SIGNALS: frozenset[SignalName] = frozenset(("blocked_pct", "safety_pct"))
_STATES: frozenset[str] = frozenset(("ok", "red", "insufficient_data"))


@dataclass(frozen=True, slots=True)
class Point:
    """One signal at one tick.

    ``judged`` says whether ``state`` was decided against a real baseline
    (static, learned or floor) rather than a provisional one (source
    ``learning``): only judged reds are left out of learning. Reds while
    learning say little: a baseline learned from the first (night) hours makes
    every busy afternoon tick "red", and leaving those out would keep the
    baseline at the night's level for ever.

    ``hits`` is the numerator of a ratio signal's window (blocked requests for
    ``blocked_pct``, unsafe responses for ``safety_pct``; ``volume`` is the
    denominator), so a pooled proportion can be learned; None for the others.
    """

    value: float | None
    volume: int
    state: State
    judged: bool = True
    hits: int | None = None


def ratio_hits(name: SignalName, value: float | None, volume: int) -> int | None:
    """The numerator behind a ratio signal's value; None for the other signals.

    ``value`` is ``100 * k / n`` (``100 * (n - k) / n`` for ``safety_pct``), so
    rounding recovers ``k`` exactly for any realistic ``n``.
    """
    if value is None or name not in RATIO_SIGNALS:
        return None
    rate = (100.0 - value) if name == "safety_pct" else value
    return min(volume, max(0, round(rate * volume / 100.0)))


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One evaluated tick; ``stale`` ticks are kept (to show the gap) but never learned from."""

    at: int
    points: Mapping[SignalName, Point]
    stale: bool = False
    # the evaluated tenants' points (the top_k of this tick), by tenant
    tenants: Mapping[str, Mapping[SignalName, Point]] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "v": FORMAT,
            "at": self.at,
            "stale": self.stale,
            "signals": _encode_points(self.points),
        }
        if self.tenants:
            doc["tenants"] = {t: _encode_points(p) for t, p in self.tenants.items()}
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, raw: bytes | str) -> TickRecord:
        """Inverse of ``encode`` (reads format 1 too); ``ValueError`` on anything malformed."""
        return decode_record(raw)[0]


def decode_record(raw: bytes | str) -> tuple[TickRecord, bool]:
    """A record and whether it was written in format 1 (before window counts were kept).

    Format 1 (``[at, {signal: [value, volume, state, judged]}]``) is read with
    the ratio numerators rebuilt from value x volume, and as not stale (stale
    ticks were not recorded then).
    """
    data = orjson.loads(raw)
    if isinstance(data, list):
        if not (len(data) == 2 and type(data[0]) is int and isinstance(data[1], dict)):
            raise ValueError("a format 1 tick record is [at, {signal: point}]")
        points = {name: _point(name, data[1][name], 4) for name in SIGNALS if name in data[1]}
        return TickRecord(data[0], points), True
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        raise ValueError(f"a tick record is an object of format {FORMAT}")
    at, stale, signals = data.get("at"), data.get("stale"), data.get("signals")
    if type(at) is not int or not isinstance(stale, bool) or not isinstance(signals, dict):
        raise ValueError("a tick record has an int at, a bool stale and a signals object")
    points = _decode_points(signals)
    tenants = data.get("tenants", {})
    if not isinstance(tenants, dict) or not all(isinstance(p, dict) for p in tenants.values()):
        raise ValueError("a tick record's tenants are an object of signal objects")
    by_tenant = {str(t): _decode_points(p) for t, p in tenants.items()}
    return TickRecord(at, points, stale, by_tenant), False


def _encode_points(points: Mapping[SignalName, Point]) -> dict[str, list[Any]]:
    return {name: [p.value, p.volume, p.state, p.judged, p.hits] for name, p in points.items()}


def _decode_points(signals: Mapping[str, Any]) -> dict[SignalName, Point]:
    return {name: _point(name, signals[name], 5) for name in SIGNALS if name in signals}


def _point(name: SignalName, item: Any, size: int) -> Point:
    if not (isinstance(item, list) and len(item) == size):
        raise ValueError("a point is [value, volume, state, judged, hits]")
    value, volume, state, judged = item[:4]
    ok_value = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok_value or type(volume) is not int or state not in _STATES:
        raise ValueError("malformed point")
    if not isinstance(judged, bool):
        raise ValueError("malformed point")
    number = None if value is None else float(value)
    if size == 4:
        return Point(number, volume, state, judged, ratio_hits(name, number, volume))
    hits = item[4]
    if hits is not None and type(hits) is not int:
        raise ValueError("malformed point")
    return Point(number, volume, state, judged, hits)


def decode_all(raws: Iterable[bytes | str], where: str) -> list[TickRecord]:
    """Decode stored records, skipping malformed ones; one log line per kind of problem."""
    found: list[TickRecord] = []
    bad = legacy = 0
    for raw in raws:
        try:
            record, old = decode_record(raw)
        except ValueError:  # orjson.JSONDecodeError is a ValueError too
            bad += 1
            continue
        legacy += old
        found.append(record)
    if bad:
        # a foreign or corrupt member must not stop learning from the rest
        log.warning("history: skipped %d malformed records in %s", bad, where)
    if legacy:
        log.info(
            "history: %d records in %s predate window counts (format 1); "
            "their ratio counts are rebuilt from value x volume",
            legacy,
            where,
        )
    return found


class History(Protocol):
    async def first_start(self, at: int) -> int:
        """Record ``at`` as the first start unless one is recorded; return the recorded one."""

    async def visible_since(self, ts: int | None) -> int | None:
        """The earliest event time the sentinel could see (warm-up ends one window later).

        With ``ts``, record it unless one is recorded; return the recorded one,
        None when nothing is recorded.
        """

    async def append(self, record: TickRecord) -> None:
        """Store ``record`` (replacing one at the same time) and drop records older
        than ``record.at - keep_s``."""

    async def records(self, start: int, end: int) -> list[TickRecord]:
        """Records with ``start <= at < end``, oldest first."""


class MemoryHistory:
    """Event-time history for replay and the embedded store.

    With ``path`` it is kept in that file too (see ``history_file``): loaded
    here, rewritten atomically after every change.
    """

    def __init__(self, keep_s: int, *, path: Path | None = None) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        self._keep = keep_s
        self._file = HistoryFile(path) if path is not None else None
        saved = self._file.load() if self._file is not None else SavedHistory()
        self._first: int | None = saved.first_start
        self._since: int | None = saved.visible_since
        loaded = decode_all(saved.lines, str(path)) if saved.lines else []
        self._records: list[TickRecord] = sorted(loaded, key=lambda r: r.at)
        self._ats: list[int] = [r.at for r in self._records]

    async def first_start(self, at: int) -> int:
        if self._first is None:
            self._first = at
            await self._save()
        return self._first

    async def visible_since(self, ts: int | None) -> int | None:
        if self._since is None and ts is not None:
            self._since = ts
            await self._save()
        return self._since

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
        await self._save()

    async def records(self, start: int, end: int) -> list[TickRecord]:
        lo = bisect.bisect_left(self._ats, start)
        hi = bisect.bisect_left(self._ats, end)
        return self._records[lo:hi]

    async def _save(self) -> None:
        if self._file is not None:
            snapshot = tuple(self._records)
            await self._file.save(self._first, self._since, lambda: (r.encode() for r in snapshot))

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
        self.since_key = f"{tag}:since"

    async def first_start(self, at: int) -> int:
        stored = await self._set_once(self.first_key, at)
        assert stored is not None
        return stored

    async def visible_since(self, ts: int | None) -> int | None:
        return await self._set_once(self.since_key, ts)

    async def _set_once(self, key: str, value: int | None) -> int | None:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                if value is not None:
                    pipe.set(key, value, nx=True, ex=self._keep)
                pipe.get(key)
                stored = (await pipe.execute())[-1]
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc
        return None if stored is None else int(stored)

    async def append(self, record: TickRecord) -> None:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                # the same tick evaluated twice (a new leader, a retried tick) replaces
                pipe.zremrangebyscore(self.ticks_key, record.at, record.at)
                pipe.zadd(self.ticks_key, {record.encode(): record.at})
                pipe.zremrangebyscore(self.ticks_key, "-inf", f"({record.at - self._keep}")
                for key in (self.ticks_key, self.first_key, self.since_key):
                    pipe.expire(key, self._keep)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def records(self, start: int, end: int) -> list[TickRecord]:
        try:
            raw = await self._r.zrangebyscore(self.ticks_key, start, f"({end}")
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from exc
        members = [m if isinstance(m, bytes) else b"" for m in raw]
        return decode_all(members, self.ticks_key)


def _unavailable(exc: Exception) -> StoreUnavailable:
    # the type name only: messages of connection errors can carry the URL
    return StoreUnavailable(f"history: redis error: {type(exc).__name__}")
