"""One evaluation at ``at``: read the windows, apply the rules.

The same object runs live (ticks on wall-clock time) and in replay (ticks on
event time); only the caller's clock differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Protocol

from .bucketing import SAFETY_WINDOW_S, SPEND_WINDOW_S, TOP_USER_WINDOW_S
from .model import SignalName, TenantCounts, Tick
from .rules import Baseline, Hysteresis, RulesConfig, evaluate_tick
from .store.base import ReadAhead, Store
from .tenants import TENANT_TOP_USERS, TenantHolds, evaluate_tenants


class BaselineProvider(Protocol):
    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        """Baselines in force at ``at`` and, while learning, a note such as "day 3 of 7"."""

    async def record(self, tick: Tick) -> None:
        """Remember a finished tick (learned baselines keep history)."""

    def tenant_baselines(
        self, tenant: str, at: int, shared: Mapping[SignalName, Baseline]
    ) -> Mapping[SignalName, Baseline]:
        """A tenant's baselines at ``at``, after ``baselines(at)``: its own learned
        ones where it has enough history, else ``shared`` (the global ones in force)."""


class StaticBaselines:
    def __init__(self, values: Mapping[SignalName, float]) -> None:
        self._baselines = {name: Baseline(v, "static") for name, v in values.items()}

    async def baselines(self, at: int) -> tuple[Mapping[SignalName, Baseline], str | None]:
        return self._baselines, None

    def tenant_baselines(
        self, tenant: str, at: int, shared: Mapping[SignalName, Baseline]
    ) -> Mapping[SignalName, Baseline]:
        return shared

    async def record(self, tick: Tick) -> None:
        return None


class Evaluator:
    def __init__(
        self,
        store: Store,
        rules: RulesConfig,
        baselines: BaselineProvider,
        *,
        read_ahead: ReadAhead | None = None,
        tenants_top_k: int = 0,
    ) -> None:
        self._store = store
        self._read_ahead = read_ahead
        self._rules = rules
        self._baselines = baselines
        self._hysteresis = Hysteresis()
        self._tenants_top_k = tenants_top_k  # 0: per-tenant signals off
        self._tenant_holds = TenantHolds()

    @property
    def rules(self) -> RulesConfig:
        return self._rules

    @property
    def hysteresis(self) -> Hysteresis:
        """Which signals are held red; handed from leader to leader."""
        return self._hysteresis

    @hysteresis.setter
    def hysteresis(self, state: Hysteresis) -> None:
        self._hysteresis = state

    @property
    def tenant_holds(self) -> TenantHolds:
        """Which tenants' signals are held red; handed over like ``hysteresis``."""
        return self._tenant_holds

    @tenant_holds.setter
    def tenant_holds(self, state: TenantHolds) -> None:
        self._tenant_holds = state

    async def prepare(self, at: int) -> None:
        """Let the store get the windows of the tick at ``at`` ready (when it
        takes the hint); raises StoreUnavailable."""
        if self._read_ahead is None:
            return
        await self._read_ahead.prepare(
            [
                (at - SAFETY_WINDOW_S, at, False),
                (at - SPEND_WINDOW_S, at, False),
                (at - TOP_USER_WINDOW_S, at, True),
            ]
        )

    async def evaluate(
        self,
        at: int,
        *,
        stale_reason: str | None = None,
        recheck: Callable[[], Awaitable[str | None]] | None = None,
    ) -> Tick:
        """Evaluate the windows ending (exclusive) at ``at``; raises StoreUnavailable.

        ``recheck``, asked after the reads when nothing was stale before them,
        says whether what was read can still be trusted (a store can lose its
        state between a health check and the reads): a reason makes the tick
        stale, so it neither moves the held reds nor enters baseline history.
        """
        # all 5-minute signals share one window
        # concurrent: a store's round trips overlap instead of queueing
        (short, hour), top, tenants = await asyncio.gather(
            self._store.windows([(at - SAFETY_WINDOW_S, at), (at - SPEND_WINDOW_S, at)]),
            self._store.top_users(at - TOP_USER_WINDOW_S, at, self._rules.top_k),
            self._top_tenants(at),
        )
        baselines, learning_note = await self._baselines.baselines(at)
        if stale_reason is None and recheck is not None:
            stale_reason = await recheck()
        tick, self._hysteresis = evaluate_tick(
            at,
            short,
            hour,
            top,
            baselines,
            self._rules,
            self._hysteresis,
            learning=learning_note is not None,
            learning_note=learning_note,
            stale_reason=stale_reason,
        )
        if tenants and tick.status != "stale":

            def baselines_of(tenant: str) -> Mapping[SignalName, Baseline]:
                return self._baselines.tenant_baselines(tenant, at, baselines)

            judged, self._tenant_holds = evaluate_tenants(
                tenants,
                baselines_of,
                self._rules,
                self._tenant_holds,
                learning=learning_note is not None,
            )
            tick = replace(tick, tenants=judged)
        elif not tenants and tick.status != "stale":
            self._tenant_holds = TenantHolds()  # no tenant in the window: none is held
        # stale ticks too: the history shows the gap, and learning leaves them out
        await self._baselines.record(tick)
        return tick

    async def _top_tenants(self, at: int) -> list[TenantCounts]:
        if not self._tenants_top_k:
            return []
        return await self._store.top_tenants(
            (at - TOP_USER_WINDOW_S, at),
            (at - SPEND_WINDOW_S, at),
            self._tenants_top_k,
            TENANT_TOP_USERS,
        )
