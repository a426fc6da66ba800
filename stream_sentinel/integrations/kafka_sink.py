"""A fire-and-forget path from a host process (an LLM gateway) to the event topics.

The host hands over events with ``offer``, which never waits and never raises:
events go into a bounded queue, and one task in the host's event loop drains
it through one idempotent aiokafka producer. When the queue is full new events
are dropped and counted, so a dead broker costs events, never the host's
latency. An accepted event is retried until Kafka takes it; only a shutdown
that outlasts ``flush_timeout_s`` can lose accepted events, and those are
counted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

_BATCH = 500
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_LOG_EVERY_S = 60.0


class Producer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, value: bytes, *, key: bytes | None = None) -> Any: ...


@dataclass
class SinkStats:
    accepted: int = 0
    sent: int = 0
    dropped_queue_full: int = 0
    dropped_unencodable: int = 0
    lost_at_shutdown: int = 0
    send_failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.extra[name] = self.extra.get(name, 0) + n


class RateLimitedLog:
    """One line per ``every_s`` per kind, saying how many were folded into it."""

    def __init__(self, logger: logging.Logger, every_s: float = _LOG_EVERY_S) -> None:
        self._log = logger
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._folded: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._every_s:
            self._folded[kind] = self._folded.get(kind, 0) + 1
            return
        folded = self._folded.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({folded} more since the last such line)" if folded else ""
        self._log.warning("%s%s", message, suffix)


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    key: bytes | None
    value: bytes


class EventSink:
    """Bounded queue + one background producer task, started by the first ``offer``."""

    def __init__(
        self,
        *,
        topics: Mapping[str, str],
        make_producer: Callable[[], Producer],
        queue_size: int = 10_000,
        flush_timeout_s: float = 10.0,
    ) -> None:
        self._topics = dict(topics)
        self._make_producer = make_producer
        self._queue: asyncio.Queue[_Message] | None = None
        self._queue_size = queue_size
        self._flush_timeout_s = flush_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._flushed = False
        self._producer: Producer | None = None
        self._unsent: list[_Message] = []
        self.stats = SinkStats()
        self._warn = RateLimitedLog(log)

    def offer(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Queue ``events``; returns how many were accepted. Never blocks or raises."""
        if self._closed:
            self.stats.dropped_queue_full += len(events)
            return 0
        queue = self._ensure_running()
        accepted = 0
        for event in events:
            try:
                message = self._message(event)
            except (TypeError, orjson.JSONEncodeError):
                self.stats.dropped_unencodable += 1
                self._warn.warning("unencodable", "an event could not be encoded; dropped")
                continue
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.stats.dropped_queue_full += 1
                self._warn.warning(
                    "queue_full", f"event queue full ({self._queue_size}); dropping new events"
                )
                continue
            accepted += 1
        self.stats.accepted += accepted
        return accepted

    @property
    def pending(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    async def close(self) -> None:
        """Send what is queued (within the flush timeout), then stop the producer."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a task cancelled before its first step never ran its own shutdown
        await self._final_flush()

    def _message(self, event: Mapping[str, Any]) -> _Message:
        value = orjson.dumps(event)
        user = event.get("user_id")
        key = user.encode("utf-8") if isinstance(user, str) else None
        return _Message(self._topics[str(event["type"])], key, value)

    def _ensure_running(self) -> asyncio.Queue[_Message]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._drain(self._queue), name="stream-sentinel-event-sink"
            )
        return self._queue

    async def _drain(self, queue: asyncio.Queue[_Message]) -> None:
        try:
            self._producer = await self._start(self._make_producer)
            while True:
                if not self._unsent:
                    self._unsent.append(await queue.get())
                while len(self._unsent) < _BATCH and not queue.empty():
                    self._unsent.append(queue.get_nowait())
                self._unsent = await self._send(self._producer, self._unsent)
                if self._unsent:
                    await asyncio.sleep(_BACKOFF_S[min(self.stats.send_failures, 4)])
        except asyncio.CancelledError:
            # the host is shutting down (asyncio.run cancels leftover tasks): last flush
            await self._final_flush()
            raise

    async def _start(self, make: Callable[[], Producer]) -> Producer:
        attempt = 0
        while True:
            producer = make()
            try:
                await producer.start()
                return producer
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                self._warn.warning(
                    "start", f"cannot reach Kafka ({type(exc).__name__}); events are held"
                )
                await asyncio.sleep(_BACKOFF_S[min(attempt, 4)])
                attempt += 1

    async def _send(self, producer: Producer, batch: list[_Message]) -> list[_Message]:
        """Sends ``batch``; returns the messages Kafka did not confirm."""
        futures: list[Any] = []
        refused: BaseException | None = None
        for m in batch:
            try:
                futures.append(await producer.send(m.topic, m.value, key=m.key))
            except Exception as exc:
                refused = exc
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [m for m, r in zip(batch, results, strict=False) if isinstance(r, BaseException)]
        failed += batch[len(futures) :]
        self.stats.sent += len(batch) - len(failed)
        if failed:
            self._failed(refused or next(r for r in results if isinstance(r, BaseException)))
        else:
            self.stats.send_failures = 0
        return failed

    def _failed(self, exc: BaseException) -> None:
        self.stats.send_failures += 1
        self._warn.warning("send", f"Kafka send failed ({type(exc).__name__}); retrying")

    async def _final_flush(self) -> None:
        if self._flushed:
            return
        self._flushed = True
        unsent = self._unsent
        if self._queue is not None:
            while not self._queue.empty():
                unsent.append(self._queue.get_nowait())
        producer = self._producer
        try:
            async with asyncio.timeout(self._flush_timeout_s):
                if producer is None and unsent:
                    producer = await self._start(self._make_producer)
                while unsent and producer is not None:
                    unsent = await self._send(producer, unsent)
                    if unsent:
                        await asyncio.sleep(_BACKOFF_S[0])
        except TimeoutError:
            pass
        finally:
            self._unsent = []
            if unsent:
                self.stats.lost_at_shutdown += len(unsent)
                log.error("shutdown: %d accepted events could not be sent to Kafka", len(unsent))
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
