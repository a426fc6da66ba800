"""Replay recorded logs through the live pipeline's code, in event time.

Ticks fall on whole multiples of ``tick_seconds`` of event time and a tick is
evaluated once the watermark (largest ts seen minus the allowed lateness) has
passed it, so events up to that lateness out of order still count. Nobody
sleeps: a day of traffic replays as fast as it can be decoded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .alerts import UNTRACKED, TenantTransitions
from .config import Config
from .evaluate import Evaluator
from .ingest import DeadLetter, Processed
from .ingest_log import LogChunk, feed_chunk
from .model import Status, Tick
from .source_file import read_lines
from .store.base import PartitionId, Store
from .wiring import build_processor

REPLAY_PART = PartitionId("replay", 0)


@dataclass(frozen=True, slots=True)
class Transition:
    at: int
    before: Status | None
    after: Status
    red: tuple[str, ...]
    top_users: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class TenantTransition:
    at: int
    tenant: str  # raw: whoever prints it escapes it (untrusted.label)
    before: Status | None
    after: str  # a Status, or "untracked" when it left the top tenants
    red: tuple[str, ...]


# the console lists a run's first tenant transitions only: a log with
# thousands of tenants flapping must not print thousands of lines
TENANT_TRANSITIONS_KEPT = 20


@dataclass(slots=True)
class ReplaySummary:
    lines: int = 0
    counted: int = 0
    dead_lettered: int = 0
    ticks: int = 0
    seconds: float = 0.0
    transitions: list[Transition] = field(default_factory=list)
    dead_reasons: dict[str, int] = field(default_factory=dict)
    tenant_transitions: list[TenantTransition] = field(default_factory=list)
    tenant_transitions_total: int = 0  # also those not kept

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


class _Run:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        evaluator: Evaluator,
        on_tick: Callable[[Tick], None],
        on_dead: Callable[[DeadLetter], None],
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.evaluator = evaluator
        self.on_tick = on_tick
        self.on_dead = on_dead
        self.proc = build_processor(cfg, event_time=True)
        self.tick_s = cfg.alerting.tick_seconds
        self.lateness = cfg.alerting.lateness_seconds
        self.summary = ReplaySummary()
        self.expected: int | None = None
        self.batch: Processed = Processed({}, 0)
        self.next_at: int | None = None
        self.status: Status | None = None
        self.tenants = TenantTransitions()

    async def flush(self) -> None:
        batch = self.batch
        for dead in batch.dead:
            self.summary.dead_reasons[dead.reason] = (
                self.summary.dead_reasons.get(dead.reason, 0) + 1
            )
            self.on_dead(dead)
        self.summary.dead_lettered += len(batch.dead)
        self.summary.counted += batch.counted
        if batch.delta or batch.next_offset != self.expected:
            await self.store.apply(REPLAY_PART, self.expected, batch.next_offset, batch.delta)
            self.expected = batch.next_offset
        self.batch = Processed({}, batch.next_offset)
        self.batch.max_ts = batch.max_ts

    async def evaluate_until(self, watermark: float) -> None:
        assert self.next_at is not None
        while self.next_at <= watermark:
            tick = await self.evaluator.evaluate(self.next_at)
            self.summary.ticks += 1
            if tick.status != self.status:
                self.summary.transitions.append(
                    Transition(tick.at, self.status, tick.status, tick.red, tick.top_users)
                )
                self.status = tick.status
            self._tenant_transitions(tick)
            self.on_tick(tick)
            self.next_at += self.tick_s

    def _tenant_transitions(self, tick: Tick) -> None:
        for change in self.tenants.update(tick):
            self.summary.tenant_transitions_total += 1
            if len(self.summary.tenant_transitions) < TENANT_TRANSITIONS_KEPT:
                now = change.now
                after = UNTRACKED if now is None else now.status
                red = () if now is None else now.red
                self.summary.tenant_transitions.append(
                    TenantTransition(tick.at, change.tenant, change.previous, after, red)
                )

    async def feed(self, chunk: list[bytes]) -> None:
        lines = LogChunk(self.proc, chunk, self.batch.next_offset)
        # Each stop is a counted event that moved the watermark past the next
        # tick: everything before it is in the batch, nothing after it.
        # Before the first event the first tick is unknown: stop at once.
        while feed_chunk(
            self.proc,
            self.batch,
            REPLAY_PART,
            lines,
            lateness=self.lateness,
            until=-math.inf if self.next_at is None else self.next_at,
        ):
            ts = self.batch.max_ts
            assert ts is not None
            if self.next_at is None:
                self.next_at = (math.floor(ts / self.tick_s) + 1) * self.tick_s
            if ts - self.lateness >= self.next_at:
                await self.flush()
                await self.evaluate_until(ts - self.lateness)
        self.summary.lines += len(chunk)
        # the batch is written when a tick is due (above), not after every
        # block: merging it into the store costs per user, and blocks are
        # several a tick. Dead letters hold raw lines: those go at once, so a
        # log of bad lines between two ticks cannot pile up in memory.
        if self.batch.dead:
            await self.flush()

    async def finish(self) -> None:
        await self.flush()
        max_ts = self.batch.max_ts
        if max_ts is not None:
            # the end of input moves the watermark past the last event's tick
            await self.evaluate_until(math.floor(max_ts / self.tick_s) * self.tick_s + self.tick_s)


async def replay(
    paths: Sequence[str],
    *,
    cfg: Config,
    store: Store,
    evaluator: Evaluator,
    on_tick: Callable[[Tick], None],
    on_dead: Callable[[DeadLetter], None],
    on_bytes: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Raises ``source_file.LogReadError`` for a log that cannot be read to its end."""
    run = _Run(cfg, store, evaluator, on_tick, on_dead)
    started = time.perf_counter()
    for chunk in read_lines(paths, on_bytes):
        await run.feed(chunk)
    await run.finish()
    run.summary.seconds = time.perf_counter() - started
    return run.summary
