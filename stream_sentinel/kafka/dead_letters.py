"""Dead letters to their topic, at least once, and a partition that waits for it.

A batch's dead letters are published before the store moves the partition's
offset past them; a batch whose dead letters cannot be published is not
written at all. When the topic keeps refusing them (missing, not authorized,
the broker rejecting writes), retrying for ever would stall the partition
without a word. Instead the attempts are bounded: then the partition is
noted here as stalled (the service reports ``stale`` naming the dead-letter
topic), paused and sought back to its stored offset, and offered to the topic
again after a growing pause. Once the topic accepts, the batch is written as
usual: nothing is lost (the records were never skipped) and nothing counted
twice (the store's offset fence, as ever).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ..ingest import DeadLetter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Stall:
    since: float
    retry_at: float
    pause_s: float
    error: str


class DeadLetters:
    def __init__(
        self,
        topic: str,
        *,
        attempts: int = 3,
        send_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.2,
        pause_initial_s: float = 2.0,
        pause_max_s: float = 30.0,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.topic = topic
        self._attempts = attempts
        self._send_timeout = send_timeout_s
        self._backoff = backoff_initial_s
        self._pause = (pause_initial_s, pause_max_s)
        self._clock = clock
        self._rng = rng
        self.producer: AIOKafkaProducer  # bound at start
        self.stalled: dict[TopicPartition, _Stall] = {}

    @property
    def reason(self) -> str | None:
        """Why some partition does not move, for the tick's stale reason."""
        if not self.stalled:
            return None
        return f"dead-letter topic {self.topic} refuses writes"

    async def publish(
        self, tp: TopicPartition, dead: Sequence[DeadLetter], stop: asyncio.Event
    ) -> bool:
        """Whether every one of ``dead`` is in the topic.

        False after the bounded attempts (the partition is then noted as
        stalled), or when stopping: either way the caller must not move the
        partition past them.
        """
        # a partition already waiting for the topic tries once per pause, so
        # the other partitions' rounds are not held up by its retries
        attempts = 1 if tp in self.stalled else self._attempts
        delay = self._backoff
        error = ""
        for attempt in range(attempts):
            try:
                await asyncio.wait_for(self._send(dead), self._send_timeout)
            except (KafkaError, TimeoutError) as exc:
                error = type(exc).__name__
                if stop.is_set():
                    return False
                if attempt + 1 < attempts:
                    await asyncio.sleep(delay / 2 + self._rng.random() * delay / 2)
                    delay *= 2
                continue
            self._accepted(tp)
            return True
        self._refused(tp, error)
        return False

    async def _send(self, dead: Sequence[DeadLetter]) -> None:
        futures = [await self.producer.send(self.topic, dl.to_json()) for dl in dead]
        await asyncio.gather(*futures)

    def _accepted(self, tp: TopicPartition) -> None:
        stall = self.stalled.pop(tp, None)
        if stall is not None:
            log.warning(
                "dead-letter topic %s accepts again: %s moves on after %.0f s",
                self.topic,
                tp,
                self._clock() - stall.since,
            )

    def _refused(self, tp: TopicPartition, error: str) -> None:
        now = self._clock()
        stall = self.stalled.get(tp)
        if stall is None:
            initial, _ = self._pause
            self.stalled[tp] = _Stall(now, now + initial, initial, error)
            log.error(
                "dead-letter topic %s refuses writes (%s): %s waits, retried every %.0f-%.0f s",
                self.topic,
                error,
                tp,
                *self._pause,
            )
            return
        stall.pause_s = min(stall.pause_s * 2, self._pause[1])
        stall.retry_at = now + stall.pause_s
        stall.error = error

    def due(self) -> list[TopicPartition]:
        """Stalled partitions whose next attempt has come."""
        now = self._clock()
        return [tp for tp, stall in self.stalled.items() if stall.retry_at <= now]

    def resume_due(self, consumer: AIOKafkaConsumer, assigned: Container[TopicPartition]) -> None:
        """Offer the topic its waiting batches again, when due: the paused
        partition is fetched again from its stored offset."""
        for tp in self.due():
            if tp in assigned:
                consumer.resume(tp)

    def forget(self, tp: TopicPartition) -> None:
        """``tp`` was revoked: its next owner offers its dead letters itself."""
        self.stalled.pop(tp, None)
