"""``stream-sentinel record``: the live topics' events, by event time, into a log ``replay`` reads.

"Record a normal week, replay it with other thresholds" (docs/tuning.md): the
request and response topics are read from the offsets Kafka gives for
``since - margin`` (message timestamps are the producer's clock, not the events'
own time) up to the end offsets seen at start, kept when ``since <= ts < until``,
and written in event-time order, so a replay evaluates every tick with all of
its events as the live service did. Memory stays bounded: events are sorted in
runs on disk and merged. A message that is not a valid event is kept when its
Kafka timestamp falls in the range, so the replay dead-letters it as live did.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import heapq
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..config import Config
from ..kafka.clients import client_kwargs
from ..timestamps import parse_rfc3339
from .produce import event_ts

EXIT_INPUT: Final = 1
EXIT_USAGE: Final = 2
RUN_LINES: Final = 100_000


class RecordError(Exception):
    """One line for the operator; the verb exits 1."""


def parse_time(text: str) -> float:
    """Unix seconds or an RFC 3339 date-time with an offset."""
    try:
        value = float(text)
    except ValueError:
        parsed = parse_rfc3339(text)
        if parsed is None:
            raise ValueError(
                f"not Unix seconds or an RFC 3339 time with an offset: {text!r}"
            ) from None
        return parsed
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a time: {text!r}")
    return value


class _Runs:
    """Lines sorted by time in bounded runs on disk, merged at the end."""

    def __init__(self, workdir: str) -> None:
        self._dir = workdir
        self._buffer: list[tuple[float, bytes]] = []
        self._files: list[str] = []
        self.count = 0

    def add(self, ts: float, line: bytes) -> None:
        self._buffer.append((ts, line))
        self.count += 1
        if len(self._buffer) >= RUN_LINES:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort(key=lambda item: item[0])
        fd, path = tempfile.mkstemp(dir=self._dir, suffix=".run")
        with os.fdopen(fd, "wb") as out:
            for ts, line in self._buffer:
                out.write(b"%r\t%s\n" % (ts, line))
        self._files.append(path)
        self._buffer = []

    def merged(self) -> Iterator[bytes]:
        if self._buffer:
            self._spill()
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(p, "rb")) for p in self._files]
            streams = [_read_run(f) for f in files]
            for _, line in heapq.merge(*streams, key=lambda item: item[0]):
                yield line


def _read_run(f: IO[bytes]) -> Iterator[tuple[float, bytes]]:
    for raw in f:
        ts, _, line = raw.rstrip(b"\n").partition(b"\t")
        yield float(ts), line


def _line(value: bytes, topic_type: str) -> tuple[float | None, bytes]:
    """The log line of one message and its event time (None: not a valid time)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, value.replace(b"\n", b" ").replace(b"\r", b" ")
    if not isinstance(doc, dict):
        return None, orjson.dumps(doc)
    ts = event_ts(doc)
    if "type" not in doc:
        # the topic implied the type; a log line must say it
        doc["type"] = topic_type
        return ts, orjson.dumps(doc)
    if b"\n" in value or b"\r" in value:
        return ts, orjson.dumps(doc)
    return ts, value


async def record_topics(
    cfg: Config, out: Path, *, since: float | None, until: float, margin_s: float
) -> tuple[int, int]:
    """Writes the log; returns (events written, messages read)."""
    types = {cfg.kafka.request_topic: "request", cfg.kafka.response_topic: "response"}
    partitions = await _partitions(cfg, list(types))
    tps = [TopicPartition(t, p) for t in types for p in sorted(partitions[t])]
    consumer = AIOKafkaConsumer(
        **client_kwargs(cfg), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if since is None:
            starts = await consumer.beginning_offsets(tps)
        else:
            found = await consumer.offsets_for_times(
                {tp: max(0, int((since - margin_s) * 1000)) for tp in tps}
            )
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in tps}
        todo = {tp for tp in tps if starts[tp] < ends[tp]}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        with tempfile.TemporaryDirectory(prefix="sentinel-record-") as workdir:
            runs = _Runs(workdir)
            read = 0
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, records in batches.items():
                    for rec in records:
                        if rec.offset >= ends[tp]:
                            break
                        read += 1
                        ts, line = _line(rec.value or b"", types[tp.topic])
                        at = ts if ts is not None else rec.timestamp / 1000
                        if (since is None or at >= since) and at < until:
                            runs.add(at, line)
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
            _write(out, runs.merged())
            return runs.count, read
    finally:
        await consumer.stop()


async def _partitions(cfg: Config, topics: list[str]) -> dict[str, set[int]]:
    admin = AIOKafkaAdminClient(**client_kwargs(cfg))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    found: dict[str, set[int]] = {}
    for topic in described:
        parts = {p["partition"] for p in topic["partitions"]}
        if topic["error_code"] == 0 and parts:
            found[topic["topic"]] = parts
    for name in topics:
        if name not in found:
            raise RecordError(
                f"topic {name} does not exist (create it with `stream-sentinel topics create`)"
            )
    return found


def _write(out: Path, lines: Iterator[bytes]) -> None:
    tmp = out.with_name(f".{out.name}.partial")
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(tmp, "wb") as f:
        for line in lines:
            f.write(line + b"\n")
    os.replace(tmp, out)


async def record_command(args: argparse.Namespace, cfg: Config) -> int:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else time.time()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        print(f"error: cannot write {out}: its folder is missing or not writable", file=sys.stderr)
        return EXIT_INPUT
    try:
        written, read = await record_topics(
            cfg, out, since=since, until=until, margin_s=args.margin_seconds
        )
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"recorded {written} events into {out} ({read} messages read)")
    return 0


def describe(p: Any) -> None:
    """The verb's arguments, for cli.main."""
    p.add_argument("--out", required=True, help="the log to write (.jsonl or .jsonl.gz)")
    p.add_argument("--since", help="first event time kept: Unix seconds or RFC 3339 (default: all)")
    p.add_argument(
        "--until", help="event time to stop before: Unix seconds or RFC 3339 (default: now)"
    )
    p.add_argument(
        "--margin-seconds",
        type=float,
        default=3600.0,
        help="start reading this much before --since by Kafka timestamp, "
        "for events produced after their own time (default 3600)",
    )
    p.add_argument("--config", help="TOML config (default: sentinel.toml if present)")
