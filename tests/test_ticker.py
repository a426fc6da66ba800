"""The tick loop survives a failing evaluation: logged, and the tick goes out stale."""

from __future__ import annotations

import logging

import pytest

from stream_sentinel.evaluate import Evaluator, StaticBaselines
from stream_sentinel.model import Tick
from stream_sentinel.rules import RulesConfig
from stream_sentinel.store.lease import LocalLease
from stream_sentinel.store.memory import MemoryStore
from stream_sentinel.ticker import TickLoop

T0 = 1_790_035_200


class BrokenStore(MemoryStore):
    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        raise RuntimeError("a bug")


async def test_an_unexpected_error_is_logged_and_published_as_stale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Tick] = []
    published: list[Tick] = []

    async def healthy() -> None:
        return None

    async def publish(tick: Tick, deadline: float) -> None:
        published.append(tick)

    evaluator = Evaluator(BrokenStore(3600), RulesConfig(), StaticBaselines({}))
    loop = TickLoop(
        evaluator,
        LocalLease(),
        tick_seconds=60,
        grace_s=0.0,
        lease_ttl_s=60.0,
        health=healthy,
        publish=publish,
        on_tick=lambda tick, took: seen.append(tick),
    )
    await loop._renew()
    with caplog.at_level(logging.ERROR, logger="stream_sentinel.ticker"):
        await loop._evaluate(T0)
        await loop._evaluate(T0 + 60)  # and the next tick is evaluated too
    await loop.drain()
    assert [t.status for t in seen] == ["stale", "stale"]
    assert seen[0].reason == "evaluation failed: RuntimeError"
    assert [t.at for t in published] == [T0, T0 + 60]
    assert "evaluation failed" in caplog.text and "RuntimeError: a bug" in caplog.text
