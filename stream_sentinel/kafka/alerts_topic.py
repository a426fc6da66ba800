"""The alerts topic: one event per status transition, never waited on in vain.

A topic that does not exist cannot take an event however long the producer
waits for its metadata. So whether it exists is asked at start-up, by
``/readyz`` and again at most every ``recheck_s`` while it is missing; the
operator gets one warning when it goes missing and one line when it is back,
and meanwhile a transition's event is dropped at once (counted, never
queued: a status that changed ten minutes ago is not news).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class AlertsTopic:
    def __init__(
        self,
        topic: str,
        *,
        clock: Callable[[], float],
        send_timeout_s: float = 10.0,
        recheck_s: float = 30.0,
        lookup_timeout_s: float = 3.0,
    ) -> None:
        self.topic = topic
        self._clock = clock
        self._send_timeout = send_timeout_s
        self._recheck = recheck_s
        self._lookup_timeout = lookup_timeout_s
        self.missing = False
        self._checked_at = float("-inf")
        self.dropped = 0  # events not sent because the topic was missing

    @property
    def warning(self) -> str | None:
        return f"alerts topic {self.topic} does not exist" if self.missing else None

    async def check(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether the topic exists; an unanswered lookup keeps the last answer."""
        try:
            topics = await asyncio.wait_for(consumer.topics(), self._lookup_timeout)
        except (KafkaError, TimeoutError):
            return not self.missing
        self._checked_at = self._clock()
        missing = self.topic not in topics
        if missing and not self.missing:
            log.warning(
                "alerts topic %s does not exist: status transitions are not published "
                "until it is created (kafka.alerts_topic)",
                self.topic,
            )
        elif self.missing and not missing:
            log.info("alerts topic %s exists now: transitions are published again", self.topic)
        self.missing = missing
        return not missing

    async def send(
        self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, event: bytes
    ) -> bool:
        """Publish one event; False when it was dropped or not acknowledged in time."""
        recheck_due = self._clock() - self._checked_at >= self._recheck
        if self.missing and not (recheck_due and await self.check(consumer)):
            self.dropped += 1
            return False
        try:
            await asyncio.wait_for(producer.send_and_wait(self.topic, event), self._send_timeout)
        except Exception as exc:  # an alert topic outage must not stop the service
            log.warning("alert event not sent: %s", type(exc).__name__)
            return False
        return True
