"""What the leader checks before it trusts the store's windows: has the store
lost its state, and is the whole group's counting moving.

A store that lost its state must never read as "no traffic". It holds a
generation marker (``Store.claim_generation``) that every replica claims at
start-up; the leader looks at it before each tick. The store lost its state
when the marker is gone or replaced (a replica that started after a wipe
wrote a new one), or when it lists no partition (or we had to create the
marker) while the consumer group has committed offsets in Kafka: the group
counted something that the store no longer holds. A first start, or a wipe
while no replica ran before the group ever committed, has no commits: to
Kafka, and so to us, the same.

From then until every partition of the topics, whichever replica owns it,
has its offset stored at or past the end offset it had when the loss was
seen, the store is ``rebuilding``: the replicas recount from Kafka
(``kafka.partitions``) and the leader reads their progress in the store,
where every replica writes it. The same reading tells the leader when any
partition of the group, its own or a follower's, stopped moving while
records wait: Kafka's committed offsets are not needed for that, the store's
offsets are the truth they copy.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ..store.base import PartitionId, Store
from .partitions import part_of

log = logging.getLogger(__name__)

# a Kafka answer that takes longer than this tells us nothing for this tick
KAFKA_TIMEOUT_S = 2.0
# how long a replica that wrote the marker waits at start-up for the group's
# commits (the answer comes once the group has joined: a dead member's
# session timeout, typically 10-45 s)
SETTLE_TIMEOUT_S = 60.0


class StoreWatch:
    def __init__(
        self,
        store: Store,
        topics: Sequence[str],
        *,
        stall_after_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._topics = tuple(topics)
        self._stall_after = stall_after_s
        self._clock = clock
        self.consumer: AIOKafkaConsumer | None = None  # bound once Kafka is up
        self._known: str | None = None
        self._created = False  # we wrote the marker: a first start, or a wipe
        # we wrote it and Kafka has not told yet whether the group counted
        # before: the store cannot be vouched for until it does
        self._unsure = False
        # end offsets to reach before the store's counts are whole again
        self._targets: dict[TopicPartition, int] | None = None
        self._seen: dict[TopicPartition, tuple[int | None, float]] = {}
        self.stalled: tuple[TopicPartition, ...] = ()
        self._lock = asyncio.Lock()
        self.losses = 0  # how many times the store was found to have lost its state
        # a loss no completed check has returned yet: the tick that learns of it
        # is stale even when the replicas recounted before the tick could look
        self._unreported = False
        self._settling = False  # the start-up question to Kafka is in flight
        self._settled_loss: str | None = None  # its answer, for the next check

    @property
    def rebuilding(self) -> bool:
        return self._targets is not None or self._unsure

    @property
    def stalled_note(self) -> str | None:
        if not self.stalled:
            return None
        return "partitions of the group not moving: " + ", ".join(
            f"{tp.topic}:{tp.partition}" for tp in self.stalled
        )

    async def claim(self) -> None:
        """At start-up: adopt the store's generation, or write one. Raises StoreUnavailable."""
        candidate = uuid.uuid4().hex
        self._known = await self._store.claim_generation(candidate)
        self._created = self._known == candidate

    def start_settling(self) -> asyncio.Task[None]:
        """Once the consumer is bound, before this replica's ingest runs: ask
        Kafka, if we wrote the marker, whether the group committed before.

        Asked now, the question is answered at the latest right after the
        group's join (the coordinator answers a member's requests in order),
        well before this replica's first commit (a second after its first
        batch): every commit in the answer was made by replicas that counted
        into a store that is gone, and none at all is a first start. A later
        look would have to tell our own commits from theirs.
        """
        self._settling = self._created
        return asyncio.create_task(self._settle(), name="store-watch-settle")

    async def _settle(self) -> None:
        committed: bool | None = None
        try:
            if self._settling:
                committed = await asyncio.wait_for(self._committed_any(), SETTLE_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            # the ticks' look decides instead (_committed_beyond_store)
            log.info("no answer about the group's commits at start-up (%s)", type(exc).__name__)
        finally:
            self._settling = False
        async with self._lock:
            if not self._created or committed is None:
                return
            self._created = self._unsure = False
            if committed:
                self._settled_loss = "the store is empty while the group has committed offsets"
            else:
                log.info("a new store: the consumer group has no committed offset (a first start)")

    async def unchanged(self) -> bool:
        """Whether the store still holds the generation last seen; raises
        StoreUnavailable."""
        return self._known is not None and await self._store.generation() == self._known

    async def check(self) -> bool:
        """Look at the marker and the group's progress. Raises StoreUnavailable.

        Returns True when the store was found to have lost its state since the
        last check that returned: a check that found the loss and then failed
        leaves it to the next one, so the loss always reaches a tick.
        """
        async with self._lock:
            lost = await self._lost()
            if lost is not None:
                self.losses += 1
                self._unreported = True
                log.warning("the store lost its state (%s): rebuilding from Kafka", lost)
                self._targets = await self._ends() or {}
            await self._follow()
            found, self._unreported = self._unreported, False
            return found

    async def _lost(self) -> str | None:
        if self._known is None:
            await self.claim()
        held = await self._store.generation()
        if held != self._known:
            await self.claim()
            # the marker we may have written replaces one that was lost: known
            # already, no question for the group's commits
            self._created = self._unsure = False
            return "generation marker gone" if held is None else "generation marker replaced"
        if self._settled_loss is not None:
            lost, self._settled_loss = self._settled_loss, None
            return lost
        if self._targets is not None:
            return None  # a loss being rebuilt: empty until recounted, no new loss
        if self._created and self._settling:
            self._unsure = True  # the start-up question answers this one
            return None
        if self._created or not await self._store.registered():
            beyond = await self._committed_beyond_store()
            if beyond is None:  # Kafka did not answer: ask again next tick
                self._unsure = self._created
                return None
            self._created = self._unsure = False
            if beyond:
                return "the group committed offsets the store does not hold"
        return None

    def _partitions(self) -> list[TopicPartition]:
        if self.consumer is None:
            return []
        found: list[TopicPartition] = []
        for topic in self._topics:
            found += [
                TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()
            ]
        return sorted(found)

    async def _ends(self) -> dict[TopicPartition, int] | None:
        tps = self._partitions()
        if not tps or self.consumer is None:
            return None
        try:
            ends: dict[TopicPartition, int] = await asyncio.wait_for(
                self.consumer.end_offsets(tps), KAFKA_TIMEOUT_S
            )
        except (KafkaError, TimeoutError):
            return None
        return ends

    async def _committed_any(self) -> bool:
        """Whether the group committed an offset for any partition. Raises
        KafkaError; waits (bounded by the caller) for the topics' partitions."""
        consumer = self.consumer
        assert consumer is not None  # bound before start_settling
        # aiokafka has no event for "the subscription's metadata arrived"
        while not (tps := self._partitions()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        found = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        return any(offset is not None for offset in found)

    async def _committed_beyond_store(self) -> bool | None:
        """Whether the group committed, for some partition, an offset past what
        the store holds; None: Kafka did not answer.

        Commits copy the store's offsets after the store holds them, so a
        store that kept its state is never behind the group's commits, our own
        included. This misses a loss that the replicas already recounted past
        the commits, which is why the start-up question comes first.
        """
        tps, consumer = self._partitions(), self.consumer
        if not tps or consumer is None:
            return None
        try:
            committed: list[int | None] = await asyncio.wait_for(
                asyncio.gather(*(consumer.committed(tp) for tp in tps)), KAFKA_TIMEOUT_S
            )
        except (KafkaError, TimeoutError):
            return None
        # read after the commits: the store can only have moved on since
        stored = await self._store.load_offsets([part_of(tp) for tp in tps])
        return any(
            offset is not None and (stored[part_of(tp)] or 0) < offset
            for tp, offset in zip(tps, committed, strict=True)
        )

    async def _follow(self) -> None:
        """Where every partition of the group stands in the store."""
        ends = await self._ends()
        if ends is None:
            return
        stored = await self._store.load_offsets([part_of(tp) for tp in ends])
        now = self._clock()
        if self._targets is not None:
            behind = [
                tp for tp, target in self._targets.items() if not _reached(stored, tp, target)
            ]
            if not behind:
                log.info("store rebuilt: every partition of the group recounted")
                self._targets = None
        stalled = []
        for tp, end in ends.items():
            offset = stored[part_of(tp)]
            seen = self._seen.get(tp)
            if seen is None or seen[0] != offset:
                self._seen[tp] = (offset, now)
            elif end > (offset or 0) and now - seen[1] > self._stall_after:
                stalled.append(tp)
        self.stalled = tuple(stalled)


def _reached(stored: Mapping[PartitionId, int | None], tp: TopicPartition, target: int) -> bool:
    offset = stored.get(part_of(tp))
    return offset is not None and offset >= target
