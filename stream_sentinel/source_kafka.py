"""Kafka -> store: the live ingestion loop, exactly once per event.

Exactly-once comes from the store, not from Kafka: each batch's increments
and the partition's next offset are written in one fenced, atomic store call,
and an assigned partition resumes from the offset in the store. Kafka commits
are still made, after the store write, for lag tooling only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from .events import EventType
from .ingest import BatchProcessor, Processed
from .kafka_records import Fetched, use_lean_records
from .store import Outcome, PartitionId, Store, StoreUnavailable

log = logging.getLogger(__name__)


class IngestObserver(Protocol):
    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None: ...
    def store_error(self, op: str) -> None: ...
    def lag(self, part: PartitionId, lag: int) -> None: ...
    def assigned(self, count: int) -> None: ...


class _NoObserver:
    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None:
        pass

    def store_error(self, op: str) -> None:
        pass

    def lag(self, part: PartitionId, lag: int) -> None:
        pass

    def assigned(self, count: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str
    group_id: str
    request_topic: str
    response_topic: str
    dlq_topic: str
    # records per store write (per round of writes, across partitions)
    max_records: int = 20_000
    # records per getmany: taken from aiokafka in small steps, so its record
    # objects die young (see kafka_records.Fetched)
    fetch_records: int = 1_000
    # aiokafka's parsed records without a ConsumerRecord each (kafka_records)
    lean_records: bool = True
    # aiokafka's default (1 MiB) caps a partition's fetch at ~4,000 contract
    # events, so a getmany rarely held more than that per partition: 4 MiB
    # makes the per-partition batches (one store write each) ~4x larger
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    # how far back a partition with no stored offset is counted again
    rebuild_lookback_s: float = 3600 + 30 + 60
    offset_check_interval_s: float = 2.0
    # Kafka's committed offsets only feed lag tooling (the store holds the
    # truth), so they are sent at most this often, not after every batch
    commit_interval_s: float = 1.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


@dataclass(slots=True)
class _Assigned:
    expected: int | None  # offset the store holds for us (None: nothing stored)
    # where we sought to, then the next offset after each write: records below
    # it (fetched before a seek) are never counted
    position: int
    rebuild_until: int | None = None  # end offset to reach before counts are whole


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: KafkaIngest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # the lock waits for an in-flight batch to be written before we let go
        async with self._ingest.lock:
            await self._ingest.commit_pending()
            for tp in revoked:
                self._ingest.assigned.pop(tp, None)
        self._ingest.observer.assigned(len(self._ingest.assigned))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        async with self._ingest.lock:
            await self._ingest.resume(list(assigned))
        self._ingest.observer.assigned(len(self._ingest.assigned))


class KafkaIngest:
    def __init__(
        self,
        settings: KafkaSettings,
        store: Store,
        processor: BatchProcessor,
        *,
        observer: IngestObserver | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.processor = processor
        self.observer: IngestObserver = observer or _NoObserver()
        self.clock = clock
        self._rng = rng or random.Random()
        self.lock = asyncio.Lock()
        self.assigned: dict[TopicPartition, _Assigned] = {}
        self._types: dict[str, EventType] = {
            settings.request_topic: "request",
            settings.response_topic: "response",
        }
        self._consumer_options = consumer_options or {}
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.store_ok = True
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self.lean = False  # whether the consumer hands out parsed records
        self.last_progress = clock()
        self.started = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        # clients are made here, not in __init__: a service that exits before
        # starting them (store unreachable, bad config) leaves nothing unclosed
        settings = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # an aborted transaction's events did not happen (its producer
            # sends them again): counting them would count them twice
            isolation_level="read_committed",
            **{
                "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
                **self._consumer_options,
            },
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
        )
        try:
            await self.producer.start()
            await self.consumer.start()
            self.lean = settings.lean_records and use_lean_records(self.consumer)
            if settings.lean_records and not self.lean:
                log.warning(
                    "this aiokafka's record internals are not the expected ones; "
                    "reading its stock records (slower)"
                )
        except BaseException:
            await self.producer.stop()
            await self.consumer.stop()
            raise
        self.consumer.subscribe(
            topics=[self.settings.request_topic, self.settings.response_topic],
            listener=_Listener(self),
        )
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        # leaving the group runs on_partitions_revoked, which waits for the lock
        await self.consumer.stop()
        await self.producer.stop()
        self.started = False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is always finished."""
        next_check = self.clock() + self.settings.offset_check_interval_s
        next_commit = self.clock() + self.settings.commit_interval_s
        while not stop.is_set():
            try:
                batches = await self._fetch()
                if batches:
                    async with self.lock:
                        await self._handle_all(batches, stop)
                if self.clock() >= next_commit:
                    await self.commit_pending()
                    next_commit = self.clock() + self.settings.commit_interval_s
                if self.clock() >= next_check:
                    async with self.lock:
                        await self._verify_offsets()
                        await self._skip_markers()
                    next_check = self.clock() + self.settings.offset_check_interval_s
                self._report_lag()
            except asyncio.CancelledError:
                raise
            except Exception:  # no exception escapes the loop; the next round retries
                log.exception("ingest loop error; retrying")
                self._fetch_again()
                await self._sleep(1.0, stop)
        await self.commit_pending()

    async def _fetch(self) -> dict[TopicPartition, Fetched]:
        """Up to ``max_records`` records, taken from aiokafka in steps of
        ``fetch_records`` and reduced to offsets and values at each step
        (see ``Fetched``): large store writes, short-lived records."""
        most = self.settings.max_records
        step = min(self.settings.fetch_records, most)
        got = await self.consumer.getmany(timeout_ms=300, max_records=step)
        fetched: dict[TopicPartition, Fetched] = {}
        total = 0
        while got:
            for tp, records in got.items():
                if tp not in fetched:
                    fetched[tp] = Fetched()
                fetched[tp].add(records)
                total += len(records)
            if total >= most:
                break
            got = await self.consumer.getmany(timeout_ms=0, max_records=min(step, most - total))
        return fetched

    def _fetch_again(self) -> None:
        """Seek every partition back to what the store holds.

        aiokafka's position has moved past whatever getmany returned; records
        of a failed round that were not written would otherwise be skipped by
        the next write (its fence only checks the stored offset).
        """
        for tp, state in self.assigned.items():
            self.consumer.seek(tp, state.position)

    # -- assignment ----------------------------------------------------------

    async def resume(self, tps: list[TopicPartition]) -> None:
        """Seek each newly assigned partition to the offset the store holds."""
        parts = [PartitionId(tp.topic, tp.partition) for tp in tps]
        stored = await self._retry_store(lambda: self.store.load_offsets(parts), "load_offsets")
        missing: list[TopicPartition] = []
        for tp, part in zip(tps, parts, strict=True):
            offset = stored.get(part) if stored is not None else None
            if offset is None:
                missing.append(tp)
            else:
                self.consumer.seek(tp, offset)
                self.assigned[tp] = _Assigned(offset, offset)
        if missing:
            await self._rebuild(missing)

    async def _rebuild(self, tps: list[TopicPartition]) -> None:
        """Count a partition again from (now - longest window - lateness).

        Used on a first start and when the store lost our offset (Redis came
        back empty): Kafka is the source of truth, Redis only derived state.
        """
        since_ms = int((self.clock() - self.settings.rebuild_lookback_s) * 1000)
        # the end offsets are read first: a partition with no record since
        # `since_ms` starts at its end, and an end read after the time lookup
        # would skip whatever producers appended between the two queries
        ends = await self.consumer.end_offsets(tps)
        found = await self.consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            hit = found.get(tp)
            start = hit.offset if hit is not None else ends[tp]
            self.consumer.seek(tp, start)
            until = ends[tp] if ends[tp] > start else None
            self.assigned[tp] = _Assigned(None, start, until)
            log.warning(
                "rebuilding %s from offset %d (no stored offset), end %d", tp, start, ends[tp]
            )

    @property
    def rebuilding(self) -> bool:
        return any(a.rebuild_until is not None for a in self.assigned.values())

    # -- one batch -----------------------------------------------------------

    async def _handle_all(
        self, batches: dict[TopicPartition, Fetched], stop: asyncio.Event
    ) -> None:
        """Every partition's batch, their store writes in flight together.

        Each ``_handle`` decodes its batch before its first await, so the
        round trips to the store overlap instead of queueing one per partition.
        """
        tps = list(batches)
        results = await asyncio.gather(
            *(self._handle(tp, batches[tp], stop) for tp in tps), return_exceptions=True
        )
        for result in results:  # the others' writes stand: they are in the store
            if isinstance(result, BaseException):
                raise result

    async def _handle(self, tp: TopicPartition, records: Fetched, stop: asyncio.Event) -> None:
        state = self.assigned.get(tp)
        if state is None:  # revoked while the batch was in flight
            return
        # fetched before a seek: counting it could double it, or (after a
        # rebuild seek) move the stored offset past records not yet counted
        records = records.since(state.position)
        if not records:
            return
        part = PartitionId(tp.topic, tp.partition)
        topic_type = self._types.get(tp.topic)
        now, next_offset = self.clock(), records.offsets[-1] + 1
        processed = self.processor.process_values(
            topic_type, records.values, now=now, next_offset=next_offset
        )
        if processed is None:  # some record needs the per-record decoder
            processed = self.processor.process(
                part,
                topic_type,
                zip(records.offsets, records.values, strict=True),
                now=now,
                next_offset=next_offset,
            )
        if processed.dead and not await self._publish_dead_letters(processed, stop):
            return  # stopping with Kafka down: not written, so re-read later
        started = time.perf_counter()
        result = await self._retry_store(
            lambda: self.store.apply(part, state.expected, processed.next_offset, processed.delta),
            "apply",
            # when stopping with the store down we let go unwritten: whoever
            # gets the partition re-reads it from the stored offset
            stop=stop,
            still_ours=lambda: self.assigned.get(tp) is state,
        )
        if result is None:
            return
        if result.outcome is Outcome.FENCED:
            log.warning(
                "%s fenced: store holds %s, expected %s", part, result.stored_offset, state.expected
            )
            if result.stored_offset is None:
                await self._rebuild([tp])
            else:
                self.consumer.seek(tp, result.stored_offset)
                state.expected = state.position = result.stored_offset
            return
        self._advanced(tp, part, state, processed.next_offset)
        self.observer.batch_done(part, processed, time.perf_counter() - started)

    async def _publish_dead_letters(self, processed: Processed, stop: asyncio.Event) -> bool:
        # at least once: published before the store moves the offset past them
        delay = self.settings.backoff_initial_s
        while True:
            try:
                futures = [
                    await self.producer.send(self.settings.dlq_topic, dl.to_json())
                    for dl in processed.dead
                ]
                await asyncio.gather(*futures)
                return True
            except KafkaError as exc:
                log.warning("dead-letter publish failed (%s); retrying", type(exc).__name__)
                if stop.is_set():
                    return False
                await asyncio.sleep(self._jitter(delay))
                delay = min(delay * 2, self.settings.backoff_max_s)

    async def _retry_store(
        self,
        call: Callable[[], Any],
        op: str,
        *,
        stop: asyncio.Event | None = None,
        still_ours: Callable[[], bool] | None = None,
    ) -> Any:
        """Retry a store call with capped, jittered backoff while it is unreachable.

        Nothing is fetched meanwhile (the caller holds the batch), so an outage
        costs latency, never events. Returns None when the partition was lost.
        """
        delay = self.settings.backoff_initial_s
        while True:
            try:
                value = await call()
            except StoreUnavailable as exc:
                self.store_ok = False
                self.observer.store_error(op)
                log.warning("store unavailable during %s (%s); retrying in %.1fs", op, exc, delay)
                await asyncio.sleep(self._jitter(delay))
                delay = min(delay * 2, self.settings.backoff_max_s)
                if (stop is not None and stop.is_set()) or (
                    still_ours is not None and not still_ours()
                ):
                    return None
                continue
            self.store_ok = True
            return value

    async def _verify_offsets(self) -> None:
        """Notice a store that lost our offsets even on partitions with no traffic."""
        tps = [tp for tp, a in self.assigned.items() if a.expected is not None]
        if not tps:
            return
        parts = [PartitionId(tp.topic, tp.partition) for tp in tps]
        try:
            stored = await self.store.load_offsets(parts)
        except StoreUnavailable as exc:
            if self.store_ok:
                log.warning("store unavailable while checking offsets (%s)", exc)
            self.store_ok = False
            return
        self.store_ok = True
        lost = [tp for tp, p in zip(tps, parts, strict=True) if stored[p] is None]
        if lost:
            await self._rebuild(lost)

    async def _skip_markers(self) -> None:
        """Move the stored offset past records that carry no event.

        A transactional producer's commit and abort markers take offsets of
        their own; aiokafka's position moves past them and hands out nothing,
        so no batch moves the stored offset there. A partition that ends with
        a marker would show a lag of one for good: "consumer stalled" once
        traffic pauses, and "rebuilding" for ever after a rebuild. Runs
        between rounds, under the lock: every record below the position has
        then been written, or the position was sought back to the store's.
        """
        for tp, state in list(self.assigned.items()):
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
            except (TimeoutError, KafkaError, AssertionError):
                continue  # no valid position yet, or no longer assigned
            if position <= state.position or self.assigned.get(tp) is not state:
                continue
            part = PartitionId(tp.topic, tp.partition)
            try:
                result = await self.store.apply(part, state.expected, position, {})
            except StoreUnavailable:
                self.store_ok = False
                return
            if result.outcome is Outcome.FENCED:
                continue  # the next batch's write meets the fence and handles it
            self._advanced(tp, part, state, position)

    def _advanced(self, tp: TopicPartition, part: PartitionId, state: _Assigned, to: int) -> None:
        """The store holds ``to`` for ``tp``: our bookkeeping follows."""
        state.expected = state.position = to
        self._uncommitted[tp] = OffsetAndMetadata(to, "")
        if state.rebuild_until is not None and to >= state.rebuild_until:
            state.rebuild_until = None
            log.info("%s rebuilt up to offset %d", part, to)
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

    def _report_lag(self) -> None:
        for tp, state in self.assigned.items():
            high = self.consumer.highwater(tp)
            if high is not None and state.expected is not None:
                self.observer.lag(
                    PartitionId(tp.topic, tp.partition), max(0, high - state.expected)
                )

    def total_lag(self) -> int:
        total = 0
        for tp, state in self.assigned.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                total += max(0, high - (state.expected or 0))
        return total

    def _jitter(self, delay: float) -> float:
        return delay / 2 + self._rng.random() * delay / 2

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
