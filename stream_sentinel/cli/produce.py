"""`stream-sentinel produce`: write recorded logs into the Kafka topics.

Messages are keyed by ``user_id`` (so one user's events stay on one
partition, which keeps per-user counts local). ``--speed`` paces sends in
event time (2 = twice real time), otherwise they go flat out.
``--shift-to-now`` moves every timestamp by the same amount so the log plays
as live traffic (see ``_Pacer`` for where "now" lands).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from ..config import Config
from ..source_file import read_lines, total_bytes
from ..timestamps import parse_rfc3339

log = logging.getLogger(__name__)


def event_ts(doc: dict[str, Any]) -> float | None:
    """An event's time as a number, or None when it has none the contract accepts."""
    ts = doc.get("ts")
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        return parse_rfc3339(ts)
    return None


def last_ts(paths: Sequence[str]) -> float | None:
    """The newest timestamp in the logs (one extra pass; not for stdin)."""
    newest: float | None = None
    for chunk in read_lines(paths):
        for raw in chunk:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            ts = event_ts(doc) if isinstance(doc, dict) else None
            if ts is not None and (newest is None or ts > newest):
                newest = ts
    return newest


class _Pacer:
    """Paces sends in event time and computes the shift to wall-clock time.

    Paced (``--speed``), the first event lands at now and the rest follow as
    the clock moves. Flat out, the whole log is moved so its newest event is
    now: the log reads as traffic that just happened, all of it inside the
    live windows and none of it in the future.
    """

    def __init__(self, speed: float | None, shift_to_now: bool, newest: float | None) -> None:
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.newest = newest
        self.first_ts: float | None = None
        self.started = time.monotonic()
        self.shift = 0.0

    def place(self, ts: float) -> float:
        if self.first_ts is None:
            self.first_ts = ts
            self.started = time.monotonic()
            if self.shift_to_now:
                anchor = self.newest if self.speed is None and self.newest is not None else ts
                self.shift = time.time() - anchor
        return ts + self.shift

    def delay(self, ts: float) -> float:
        if self.speed is None or self.first_ts is None:
            return 0.0
        due = self.started + (ts - self.first_ts) / self.speed
        return due - time.monotonic()


async def produce_logs(
    cfg: Config, paths: Sequence[str], *, speed: float | None, shift_to_now: bool
) -> int:
    if speed is not None and speed <= 0:
        log.error("--speed must be positive")
        return 2
    topics = {"request": cfg.kafka.request_topic, "response": cfg.kafka.response_topic}
    # first: a missing log fails here, before connecting to Kafka
    total_bytes(paths)
    from .commands import require_topics

    needed = [cfg.kafka.request_topic, cfg.kafka.response_topic]
    if (code := await require_topics(cfg, needed, "produce")) is not None:
        return code
    newest = last_ts(paths) if shift_to_now and speed is None and "-" not in paths else None
    producer = AIOKafkaProducer(
        bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=10, acks="all"
    )
    await producer.start()
    pacer = _Pacer(speed, shift_to_now, newest)
    sent = unparsed = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for chunk in read_lines(paths):
            for raw in chunk:
                value, topic, key = raw.rstrip(b"\r\n"), topics["request"], None
                try:
                    doc = orjson.loads(value)
                except orjson.JSONDecodeError:
                    doc = None
                if isinstance(doc, dict):
                    topic = topics.get(doc.get("type"), topics["request"])  # type: ignore[arg-type]
                    user = doc.get("user_id")
                    key = user.encode() if isinstance(user, str) else None
                    ts = event_ts(doc)
                    if ts is not None:
                        wait = pacer.delay(ts)
                        if wait > 0:
                            await asyncio.gather(*pending)
                            pending.clear()
                            await asyncio.sleep(wait)
                        if shift_to_now:
                            doc["ts"] = round(pacer.place(ts), 6)
                            value = orjson.dumps(doc)
                        else:
                            pacer.place(ts)
                else:
                    # still sent: the consumer dead-letters it, as it would live
                    unparsed += 1
                pending.append(await producer.send(topic, value, key=key))
                sent += 1
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(f"produced {sent} messages ({unparsed} not JSON objects, sent as they were)")
    return 0
