"""`stream-sentinel produce`: write recorded logs into the Kafka topics.

Messages are keyed by ``user_id`` (so one user's events stay on one
partition, which keeps per-user counts local). ``--shift-to-now`` moves every
timestamp by the same amount so the log plays as live traffic; ``--speed``
paces it in event time (2 = twice real time), otherwise it goes flat out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from .config import Config
from .decode import parse_rfc3339
from .source_file import read_lines

log = logging.getLogger(__name__)


def _ts_of(doc: dict[str, Any]) -> float | None:
    ts = doc.get("ts")
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        return parse_rfc3339(ts)
    return None


class _Pacer:
    def __init__(self, speed: float | None, shift_to_now: bool) -> None:
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.first_ts: float | None = None
        self.started = time.monotonic()
        self.shift = 0.0

    def place(self, ts: float) -> float:
        if self.first_ts is None:
            self.first_ts = ts
            self.started = time.monotonic()
            self.shift = time.time() - ts if self.shift_to_now else 0.0
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
    producer = AIOKafkaProducer(
        bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=10, acks="all"
    )
    await producer.start()
    pacer = _Pacer(speed, shift_to_now)
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
                    ts = _ts_of(doc)
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
