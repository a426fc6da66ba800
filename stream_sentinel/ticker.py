"""The live tick loop: whole multiples of ``tick_seconds`` of wall-clock time.

Only the lease holder evaluates. Publishing (heartbeats, alerts) runs in the
background under a deadline before the next tick, so a slow or failing
target never delays the next evaluation.

When the store (which holds the lease) becomes unreachable, the replica that
led until then cannot prove it still leads, and no other replica can take the
lease either. Rather than let every monitor go silent, that last leader keeps
ticking and reports ``stale`` ("store unreachable") each tick, until it can
reach the store again and either renews the lease or sees another holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from .bucketing import tick_floor
from .evaluate import Evaluator
from .model import Tick
from .rules import Hysteresis
from .store.base import StoreUnavailable
from .store.lease import Lease
from .tenants import TenantHolds

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
        # why the tick cannot be trusted, or None; raises StoreUnavailable
        health: Callable[[], Awaitable[str | None]],
        # after a trusted tick's reads: still trusted (None), or why not
        recheck: Callable[[], Awaitable[str | None]] | None = None,
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
        self._recheck = recheck
        self._publish = publish
        self._on_tick = on_tick
        self._clock = clock
        self._held_until = 0.0  # wall time our lease surely lasts to
        self._publishing: set[asyncio.Task[None]] = set()
        self.leader = False
        # we led when the store went out of reach: report stale until it is back
        self.orphaned = False
        # a lease call to a hung store must not hold the tick back for the
        # client's socket timeout (3 s); a slow one still has a second, and a
        # missed renewal only costs the lead once held_until has passed
        self._renew_timeout = max(1.0, min(lease_ttl_s / 3, 3.0))
        self._last_at = 0  # the last tick evaluated here or by a previous leader
        self.epoch = 0  # fencing epoch of our lease; grows with every change of holder

    @property
    def reporting(self) -> bool:
        """Whether this replica's ticks are the deployment's: the lease holder's,
        or the last holder's stale ones while nobody can reach the store. What
        ``/status`` and ``stream_sentinel_leader`` show, so alert rules that read
        the leader's status see the stale one."""
        return self.leader or self.orphaned

    async def run(self, stop: asyncio.Event) -> None:
        renew_every = max(0.2, self._lease_ttl / 3)
        while not stop.is_set():
            now = self._clock()
            at = tick_floor(now, self._tick) + self._tick
            # renew the lease while we wait for the tick, so a dead leader is
            # replaced within its TTL rather than at the next boundary
            while not stop.is_set() and at + self._grace - self._clock() > 0:
                await self._renew()
                # measured after the renewal, which may have waited on a hung store
                wait = at + self._grace - self._clock()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(wait, renew_every))
            if stop.is_set():
                break
            if not self.orphaned:  # orphaned, the renewals above watch for the store
                await self._renew()
            if self.leader and at > self._last_at:
                await self._evaluate(at)
            elif self.orphaned and at > self._last_at:
                self._report_unreachable(at)
        await self.drain()
        await self._lease.release()
        self.leader = self.orphaned = False

    async def _renew(self) -> None:
        try:
            epoch = await asyncio.wait_for(self._lease.acquire(), self._renew_timeout)
        except (StoreUnavailable, TimeoutError):
            # we cannot prove we hold it; keep leading only while it surely lasts
            was = self.leader
            self.leader = self._clock() < self._held_until
            if was and not self.leader:
                self.orphaned = True
                log.warning("leadership unproven: store unreachable; reporting stale meanwhile")
            return
        if self.orphaned:
            self.orphaned = False
            log.info("store reachable again")
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
        state, tenants, last_at = Hysteresis(), TenantHolds(), 0
        try:
            saved = orjson.loads(raw) if raw else {}
            state = Hysteresis.from_json(saved.get("hysteresis", {}))
            tenants = TenantHolds.from_json(saved.get("tenants", {}))
            last_at = int(saved.get("at", 0))
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            log.warning("ignoring unreadable evaluator state left by the previous leader")
        self._evaluator.hysteresis = state
        self._evaluator.tenant_holds = tenants
        # a tick the previous leader already pushed (it let go right after
        # evaluating it) is not pushed twice
        self._last_at = max(self._last_at, last_at)

    async def _evaluate(self, at: int) -> None:
        started = time.perf_counter()
        try:
            # a store that does not answer the health check is not read at all:
            # one wait on it per tick, not two
            stale = await self._health()
            tick = await self._evaluator.evaluate(at, stale_reason=stale, recheck=self._recheck)
        except StoreUnavailable:
            tick = Tick(at, "stale", (), {}, (), "store unreachable")
        except Exception as exc:
            # a bug must not end the loop in silence (the monitors would only
            # see heartbeats stop): it is logged, and the tick goes out stale
            log.exception("tick at %d: evaluation failed", at)
            tick = Tick(at, "stale", (), {}, (), f"evaluation failed: {type(exc).__name__}")
        else:
            state = {
                "at": at,
                "hysteresis": self._evaluator.hysteresis.to_json(),
                "tenants": self._evaluator.tenant_holds.to_json(),
            }
            await self._lease.save_state(orjson.dumps(state))
        self._last_at = at
        self._on_tick(tick, time.perf_counter() - started)
        self._start_publish(tick, at)
        # the store moves its running totals to the next tick's windows now,
        # while the pushes are in flight, rather than at the next tick
        # (a hint: bounded like a renewal, so a hung store cannot hold the loop)
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await asyncio.wait_for(self._evaluator.prepare(at + self._tick), self._renew_timeout)

    def _report_unreachable(self, at: int) -> None:
        """A stale tick built without the store, published like an evaluated one."""
        self._last_at = at
        tick = Tick(at, "stale", (), {}, (), "store unreachable")
        self._on_tick(tick, 0.0)
        self._start_publish(tick, at)

    def _start_publish(self, tick: Tick, at: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.5, (at + self._tick) - self._clock() - 0.25)
        task = asyncio.create_task(self._publish(tick, deadline))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def drain(self) -> None:
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
