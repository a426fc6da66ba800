"""The live tick loop: whole multiples of ``tick_seconds`` of wall-clock time.

Only the lease holder evaluates. Publishing (heartbeats, alerts) runs in the
background under a deadline before the next tick, so a slow or failing
target never delays the next evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from .bucketing import tick_floor
from .evaluate import Evaluator
from .leader import Lease
from .model import Tick
from .rules import Hysteresis
from .store import StoreUnavailable

log = logging.getLogger(__name__)

Publish = Callable[[Tick, float], Coroutine[Any, Any, None]]  # (tick, deadline on loop time)


class TickLoop:
    def __init__(
        self,
        evaluator: Evaluator,
        lease: Lease,
        *,
        tick_seconds: int,
        grace_s: float,
        lease_ttl_s: float,
        health: Callable[[], str | None],
        publish: Publish,
        on_tick: Callable[[Tick, float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._evaluator = evaluator
        self._lease = lease
        self._tick = tick_seconds
        self._grace = grace_s
        self._lease_ttl = lease_ttl_s
        self._health = health
        self._publish = publish
        self._on_tick = on_tick
        self._clock = clock
        self._held_until = 0.0  # wall time our lease surely lasts to
        self._publishing: set[asyncio.Task[None]] = set()
        self.leader = False
        self._last_at = 0  # the last tick evaluated here or by a previous leader
        self.epoch = 0  # fencing epoch of our lease; grows with every change of holder

    async def run(self, stop: asyncio.Event) -> None:
        renew_every = max(0.2, self._lease_ttl / 3)
        while not stop.is_set():
            now = self._clock()
            at = tick_floor(now, self._tick) + self._tick
            # renew the lease while we wait for the tick, so a dead leader is
            # replaced within its TTL rather than at the next boundary
            while not stop.is_set() and (wait := at + self._grace - self._clock()) > 0:
                await self._renew()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(wait, renew_every))
            if stop.is_set():
                break
            await self._renew()
            if self.leader and at > self._last_at:
                await self._evaluate(at)
        await self.drain()
        await self._lease.release()
        self.leader = False

    async def _renew(self) -> None:
        try:
            epoch = await self._lease.acquire()
        except StoreUnavailable:
            # we cannot prove we hold it; keep leading only while it surely lasts
            self.leader = self._clock() < self._held_until
            return
        was = self.leader
        self.leader = epoch > 0
        self.epoch = epoch
        if self.leader:
            self._held_until = self._clock() + self._lease_ttl * 0.9
        if self.leader != was:
            log.info("leadership %s (epoch %d)", "acquired" if self.leader else "lost", epoch)
        if self.leader and not was:
            await self._restore_state()

    async def _restore_state(self) -> None:
        """Take over the held reds, so a failover neither clears nor invents one."""
        raw = await self._lease.load_state()
        state, last_at = Hysteresis(), 0
        try:
            saved = orjson.loads(raw) if raw else {}
            state = Hysteresis.from_json(saved.get("hysteresis", {}))
            last_at = int(saved.get("at", 0))
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            log.warning("ignoring unreadable evaluator state left by the previous leader")
        self._evaluator.hysteresis = state
        # a tick the previous leader already pushed (it let go right after
        # evaluating it) is not pushed twice
        self._last_at = max(self._last_at, last_at)

    async def _evaluate(self, at: int) -> None:
        started = time.perf_counter()
        stale = self._health()
        try:
            tick = await self._evaluator.evaluate(at, stale_reason=stale)
        except StoreUnavailable:
            tick = Tick(at, "stale", (), {}, (), "store unreachable")
        else:
            state = {"at": at, "hysteresis": self._evaluator.hysteresis.to_json()}
            await self._lease.save_state(orjson.dumps(state))
        self._last_at = at
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.5, (at + self._tick) - self._clock() - 0.25)
        self._on_tick(tick, time.perf_counter() - started)
        task = asyncio.create_task(self._publish(tick, deadline))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def drain(self) -> None:
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
