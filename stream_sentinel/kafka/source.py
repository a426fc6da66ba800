"""Kafka -> store: the live ingestion loop, exactly once per event.

Exactly-once comes from the store, not from Kafka: each batch's increments
and the partition's next offset are written in one fenced, atomic store call,
and an assigned partition resumes from the offset in the store
(``kafka/partitions``). Kafka commits are still made, after the store write,
for lag tooling only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from ..events import EventType
from ..ingest import BatchProcessor, Processed
from ..store.base import Outcome, PartitionId, Store, StoreUnavailable
from .clients import check_access
from .dead_letters import DeadLetters
from .partitions import Partitions, PartitionState, part_of
from .records import Fetched, use_lean_records

log = logging.getLogger(__name__)


class IngestObserver(Protocol):
    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None: ...
    def store_error(self, op: str) -> None: ...
    def lag(self, part: PartitionId, lag: int) -> None: ...
    def assignment_changed(
        self, assigned: Sequence[PartitionId], revoked: Sequence[PartitionId]
    ) -> None:
        """``assigned``: every partition this consumer owns now; ``revoked``:
        those it just let go of (their lag is no longer ours to report)."""


class _NoObserver:
    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None:
        pass

    def store_error(self, op: str) -> None:
        pass

    def lag(self, part: PartitionId, lag: int) -> None:
        pass

    def assignment_changed(
        self, assigned: Sequence[PartitionId], revoked: Sequence[PartitionId]
    ) -> None:
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
    # objects die young (see kafka.records.Fetched)
    fetch_records: int = 1_000
    # aiokafka's parsed records without a ConsumerRecord each (kafka.records)
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
    # TLS and SASL arguments from kafka.clients.client_options; empty: plaintext
    security: Mapping[str, Any] = field(default_factory=dict)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: KafkaIngest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # the lock waits for an in-flight batch to be written before we let go
        async with self._ingest.lock:
            await self._ingest.commit_pending()
            let_go = self._ingest.partitions.revoke(revoked)
            for tp in revoked:
                self._ingest.dead_letters.forget(tp)
        self._ingest.observer.assignment_changed(self._ingest.assigned_parts(), let_go)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        async with self._ingest.lock:
            await self._ingest.resume(list(assigned))
        self._ingest.observer.assignment_changed(self._ingest.assigned_parts(), [])


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
        self.partitions = Partitions(
            store,
            rebuild_lookback_s=settings.rebuild_lookback_s,
            clock=clock,
            lag=self.observer.lag,
        )
        self._types: dict[str, EventType] = {
            settings.request_topic: "request",
            settings.response_topic: "response",
        }
        self._consumer_options = consumer_options or {}
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.dead_letters = DeadLetters(
            settings.dlq_topic,
            backoff_initial_s=settings.backoff_initial_s,
            clock=clock,
            rng=self._rng,
        )
        self.store_ok = True
        # set by whoever finds the store lost its state: check our offsets now
        self.check_now = False
        self.lean = False  # whether the consumer hands out parsed records
        self.started = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        # clients are made here, not in __init__: a service that exits before
        # starting them (store unreachable, bad config) leaves nothing unclosed
        settings = self.settings
        options = {**settings.security, "bootstrap_servers": settings.bootstrap_servers}
        # before any client exists: a refused login or certificate exits with
        # one line, where the clients would retry it for ever
        await check_access(options)
        self.consumer = AIOKafkaConsumer(
            **options,
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
        self.partitions.consumer = self.consumer
        self.producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
        self.dead_letters.producer = self.producer
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
                seeks = self.partitions.seeks  # before the fetch: see _handle
                batches = await self._fetch()
                if batches:
                    async with self.lock:
                        await self._handle_all(batches, stop, seeks)
                if self.clock() >= next_commit:
                    await self.commit_pending()
                    next_commit = self.clock() + self.settings.commit_interval_s
                if self.clock() >= next_check or self.check_now:
                    self.check_now = False
                    async with self.lock:
                        await self._check_offsets()
                    next_check = self.clock() + self.settings.offset_check_interval_s
                self.dead_letters.resume_due(self.consumer, self.assigned)
                self.partitions.report_lag()
            except asyncio.CancelledError:
                raise
            except Exception:  # no exception escapes the loop; the next round retries
                log.exception("ingest loop error; retrying")
                self.partitions.seek_to_stored()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
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

    # -- assignment and the store's offsets ---------------------------------

    async def resume(self, tps: list[TopicPartition]) -> None:
        """Seek each newly assigned partition to the offset the store holds."""
        parts = [part_of(tp) for tp in tps]
        stored = await self._retry_store(lambda: self.store.take_over(parts), "load_offsets")
        await self.partitions.resume(
            {
                tp: stored.get(part) if stored is not None else None
                for tp, part in zip(tps, parts, strict=True)
            }
        )

    async def _check_offsets(self) -> None:
        """Between rounds: a store that lost our offsets, transaction markers."""
        try:
            await self.partitions.verify_offsets()
            await self.partitions.skip_markers()
        except StoreUnavailable as exc:
            if self.store_ok:
                log.warning("store unavailable while checking offsets (%s)", exc)
            self.store_ok = False
            return
        self.store_ok = True

    async def commit_pending(self) -> None:
        await self.partitions.commit_pending()

    @property
    def assigned(self) -> dict[TopicPartition, PartitionState]:
        return self.partitions.assigned

    def assigned_parts(self) -> list[PartitionId]:
        return sorted(part_of(tp) for tp in self.partitions.assigned)

    @property
    def rebuilding(self) -> bool:
        return self.partitions.rebuilding

    @property
    def last_progress(self) -> float:
        return self.partitions.last_progress

    def total_lag(self) -> int:
        return self.partitions.total_lag()

    # -- one batch -----------------------------------------------------------

    async def _handle_all(
        self, batches: dict[TopicPartition, Fetched], stop: asyncio.Event, seeks: int
    ) -> None:
        """Every partition's batch, their store writes in flight together.

        Each ``_handle`` decodes its batch before its first await, so the
        round trips to the store overlap instead of queueing one per partition.
        """
        tps = list(batches)
        results = await asyncio.gather(
            *(self._handle(tp, batches[tp], stop, seeks) for tp in tps), return_exceptions=True
        )
        for result in results:  # the others' writes stand: they are in the store
            if isinstance(result, BaseException):
                raise result

    async def _handle(
        self, tp: TopicPartition, records: Fetched, stop: asyncio.Event, seeks: int
    ) -> None:
        state = self.assigned.get(tp)
        if state is None:  # revoked while the batch was in flight
            return
        if state.sought > seeks:  # sought since the fetch: old-position records
            # count twice (below ours) or leave a gap (above, after a rebuild)
            state.sought = self.partitions.seek(tp, state.position)  # re-read
            return
        records = records.since(state.position)
        if not records:
            return
        part = part_of(tp)
        topic_type = self._types.get(tp.topic)
        processed = self.processor.process(
            part=part,
            topic_type=topic_type,
            offsets=records.offsets,
            values=records.values,
            now=self.clock(),
        )
        if processed.dead and not await self.dead_letters.publish(tp, processed.dead, stop):
            # not written: read again from the stored offset once the topic
            # is offered them again (or by whoever gets the partition)
            if self.assigned.get(tp) is state:
                state.sought = self.partitions.seek(tp, state.position)
                if not stop.is_set():
                    self.consumer.pause(tp)
            return
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
            await self.partitions.fenced(tp, state, result.stored_offset)
            return
        self.partitions.advanced(tp, state, processed.next_offset)
        self.observer.batch_done(part, processed, time.perf_counter() - started)

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
        costs latency, never events. Returns None when the partition was lost."""
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

    def _jitter(self, delay: float) -> float:
        return delay / 2 + self._rng.random() * delay / 2
