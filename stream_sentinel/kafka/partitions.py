"""Our assigned partitions against the store: where each resumes, what is rebuilt.

The store holds, per partition, the offset after the last counted record;
that is the truth. This module keeps the consumer in line with it: seeks to
the stored offset on assignment, rebuilds a partition the store lost (Kafka
is the source of truth, the store only derived state), moves the stored
offset past transaction markers, and commits to Kafka for lag tooling only.
``kafka.source.KafkaIngest`` owns the loop and the store writes of batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from ..store.base import Outcome, PartitionId, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PartitionState:
    """Where one of our assigned partitions stands against the store."""

    expected: int | None  # offset the store holds for us (None: nothing stored)
    # where we sought to, then the next offset after each write: records below
    # it (fetched before a seek) are never counted
    position: int
    rebuild_until: int | None = None  # end offset to reach before counts are whole
    # ``Partitions.seeks`` at our last seek: a batch whose fetch began before
    # it may hold records from the old position, above ours, and is not counted
    sought: int = 0


def part_of(tp: TopicPartition) -> PartitionId:
    return PartitionId(tp.topic, tp.partition)


class Partitions:
    """The assigned partitions' bookkeeping; the consumer is bound at start."""

    def __init__(
        self,
        store: Store,
        *,
        rebuild_lookback_s: float,
        clock: Callable[[], float],
        lag: Callable[[PartitionId, int], None],
    ) -> None:
        self.store = store
        self.rebuild_lookback_s = rebuild_lookback_s
        self.clock = clock
        self._lag = lag
        self.consumer: AIOKafkaConsumer
        # the partitions this consumer owns now ("assigned" means this, and only this)
        self.assigned: dict[TopicPartition, PartitionState] = {}
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self.last_progress = clock()
        self.seeks = 0  # grows with every seek of any partition

    @property
    def rebuilding(self) -> bool:
        return any(a.rebuild_until is not None for a in self.assigned.values())

    def revoke(self, tps: Sequence[TopicPartition]) -> list[PartitionId]:
        """Let go of ``tps``; the ones we held."""
        return [part_of(tp) for tp in tps if self.assigned.pop(tp, None) is not None]

    async def resume(self, stored: Mapping[TopicPartition, int | None]) -> None:
        """Seek each newly assigned partition to the offset the store holds."""
        missing: list[TopicPartition] = []
        for tp, offset in stored.items():
            if offset is None:
                missing.append(tp)
            else:
                self.assigned[tp] = PartitionState(offset, offset, sought=self.seek(tp, offset))
        if missing:
            await self.rebuild(missing)

    async def rebuild(self, tps: list[TopicPartition]) -> None:
        """Count a partition again from (now - longest window - lateness).

        Used on a first start and when the store lost our offset (Redis came
        back empty): Kafka is the source of truth, Redis only derived state.
        """
        since_ms = int((self.clock() - self.rebuild_lookback_s) * 1000)
        # the end offsets are read first: a partition with no record since
        # `since_ms` starts at its end, and an end read after the time lookup
        # would skip whatever producers appended between the two queries
        ends = await self.consumer.end_offsets(tps)
        found = await self.consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            hit = found.get(tp)
            start = hit.offset if hit is not None else ends[tp]
            until = ends[tp] if ends[tp] > start else None
            self.assigned[tp] = PartitionState(None, start, until, self.seek(tp, start))
            log.warning(
                "rebuilding %s from offset %d (no stored offset), end %d", tp, start, ends[tp]
            )

    async def fenced(self, tp: TopicPartition, state: PartitionState, stored: int | None) -> None:
        """A write met the store's fence: follow what the store holds."""
        log.warning("%s fenced: store holds %s, expected %s", part_of(tp), stored, state.expected)
        if stored is None:
            await self.rebuild([tp])
        else:
            state.sought = self.seek(tp, stored)
            state.expected = state.position = stored

    def seek(self, tp: TopicPartition, offset: int) -> int:
        """Seek ``tp``; the new ``seeks`` count, for its ``PartitionState.sought``."""
        self.consumer.seek(tp, offset)
        self.seeks += 1
        return self.seeks

    def seek_to_stored(self) -> None:
        """Seek every partition back to what the store holds.

        aiokafka's position has moved past whatever getmany returned; records
        of a failed round that were not written would otherwise be skipped by
        the next write (its fence only checks the stored offset).
        """
        for tp, state in self.assigned.items():
            state.sought = self.seek(tp, state.position)

    async def verify_offsets(self) -> None:
        """Notice a store that lost our offsets even on partitions with no
        traffic; raises StoreUnavailable."""
        tps = [tp for tp, a in self.assigned.items() if a.expected is not None]
        if not tps:
            return
        stored = await self.store.load_offsets([part_of(tp) for tp in tps])
        lost = [tp for tp in tps if stored[part_of(tp)] is None]
        if lost:
            await self.rebuild(lost)

    async def skip_markers(self) -> None:
        """Move the stored offset past records that carry no event; raises
        StoreUnavailable.

        A partition with nothing stored yet (a first start, a rebuild) stores
        its position here too, so every partition of the group shows in the
        store where it stands, traffic or not.

        A transactional producer's commit and abort markers take offsets of
        their own; aiokafka's position moves past them and hands out nothing,
        so no batch moves the stored offset there. A partition that ends with
        a marker would show a lag of one for good: "consumer stalled" once
        traffic pauses, and "rebuilding" for ever after a rebuild. Run
        between rounds, under the ingest lock: every record below the
        position has then been written, or the position was sought back to
        the store's.
        """
        for tp, state in list(self.assigned.items()):
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
            except (TimeoutError, KafkaError, AssertionError):
                continue  # no valid position yet, or no longer assigned
            if self.assigned.get(tp) is not state:
                continue
            # a rebuilt partition with nothing left to count stores its
            # position at once: the leader reads the rebuild's end in the store
            if position < state.position or (
                position == state.position and state.expected is not None
            ):
                continue
            result = await self.store.apply(part_of(tp), state.expected, position, {})
            if result.outcome is Outcome.FENCED:
                continue  # the next batch's write meets the fence and handles it
            self.advanced(tp, state, position)

    def advanced(self, tp: TopicPartition, state: PartitionState, to: int) -> None:
        """The store holds ``to`` for ``tp``: our bookkeeping follows."""
        state.expected = state.position = to
        self._uncommitted[tp] = OffsetAndMetadata(to, "")
        if state.rebuild_until is not None and to >= state.rebuild_until:
            state.rebuild_until = None
            log.info("%s rebuilt up to offset %d", part_of(tp), to)
        self.last_progress = self.clock()

    async def commit_pending(self) -> None:
        """Commit the offsets written to the store since the last commit, if any."""
        offsets = {tp: om for tp, om in self._uncommitted.items() if tp in self.assigned}
        self._uncommitted.clear()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # lag tooling only; the store holds the truth
            log.info("kafka commit skipped: %s", type(exc).__name__)

    def report_lag(self) -> None:
        for tp, state in self.assigned.items():
            high = self.consumer.highwater(tp)
            if high is not None and state.expected is not None:
                self._lag(part_of(tp), max(0, high - state.expected))

    def total_lag(self) -> int:
        total = 0
        for tp, state in self.assigned.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                total += max(0, high - (state.expected or 0))
        return total
