"""Whether the leader's tick may trust what it reads: the stale reasons.

Asked before each tick (``Health.reason``) and again after its reads
(``Health.recheck``): the store's generation and the whole group's progress
(``kafka.store_watch``), this replica's own ingestion (store reachable,
partitions rebuilding, dead letters refused, lag that does not move).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from .kafka.source import KafkaIngest
from .kafka.store_watch import StoreWatch
from .store.base import StoreUnavailable

# a tick's look at the store's generation and the group's progress
WATCH_TIMEOUT_S = 3.0


class Health:
    def __init__(self, watch: StoreWatch, ingest: KafkaIngest, *, stall_after_s: float) -> None:
        self._watch = watch
        self._ingest = ingest
        self._stall_after_s = stall_after_s

    async def reason(self) -> str | None:
        """Why the pipeline cannot be trusted right now, or None; a wipe is
        stale from the very next tick. Raises StoreUnavailable when the store
        does not answer: no reading then."""
        lost = await self._watched(self._watch.check())
        if lost:
            self._ingest.check_now = True  # our own partitions: rebuild now
        ingest = self._ingest
        stalled_for = time.time() - ingest.last_progress
        return stale_reason(
            store_ok=ingest.store_ok,
            # a loss is stale in the tick that learns of it, even when every
            # partition was recounted before it (the state was gone meanwhile)
            rebuilding=lost or ingest.rebuilding or self._watch.rebuilding,
            dead_letters=ingest.dead_letters.reason,
            stalled=bool(self._watch.stalled)
            or (ingest.total_lag() > 0 and stalled_for > self._stall_after_s),
        )

    async def recheck(self) -> str | None:
        """After a tick's reads: None while the store holds the generation the
        check before them saw; else the reason, which then finds the loss (a
        wipe between the check and the reads is no quiet window)."""
        if await self._watched(self._watch.unchanged()):
            return None
        return await self.reason() or "rebuilding"

    async def _watched(self, call: Coroutine[Any, Any, bool]) -> bool:
        try:
            return await asyncio.wait_for(call, WATCH_TIMEOUT_S)
        except TimeoutError:
            raise StoreUnavailable("store watch: no answer in time") from None


def stale_reason(
    *, store_ok: bool, rebuilding: bool, stalled: bool, dead_letters: str | None = None
) -> str | None:
    """Every reason that holds, rebuilding first: a Redis restarted empty is
    both unreachable for a while and rebuilt, and the rebuild is what lasts
    and what the operator must see (it may end while the store still flaps).
    A dead-letter topic that refuses writes names itself."""
    reasons = [
        reason
        for reason, holds in (("rebuilding", rebuilding), ("store unreachable", not store_ok))
        if holds
    ]
    if dead_letters:
        reasons.append(dead_letters)
    if not reasons and stalled:  # a stall follows from any of the others
        reasons.append("consumer stalled")
    return ", ".join(reasons) or None
