"""The event contract's value rules, each written once (DESIGN.md, "Event contract").

Every path that decodes or counts events calls these: the per-record decoder
(``decode``), the batch rows (``decode_rows``), the log feeder (``ingest_log``),
the aggregation (``aggregate``) and the simulator. A rule has one definition
here; where a batch needs it many times at once, the batch form beside it is
built from the same definition, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, mul
from typing import Protocol

from .model import NANO

# one response costing more than this is a broken producer, and its nano-USD
# sum would overflow the store's 64-bit counters
MAX_COST_USD = 1_000_000.0


_COST = attrgetter("cost_usd")


class Costed(Protocol):
    """What pricing reads of a response (``ResponseEvent`` or a decoded row)."""

    @property
    def cost_usd(self) -> float | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def prompt_tokens(self) -> int | None: ...
    @property
    def completion_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class TsWindow:
    """Which event times a clock admits: from ``retention_s`` behind it to
    ``max_future_s`` ahead of it, both ends included."""

    retention_s: float
    max_future_s: float

    def admits(self, ts: float, now: float) -> bool:
        return now - self.retention_s <= ts <= now + self.max_future_s

    def admits_all(self, tss: Sequence[float], now: float) -> bool:
        """``admits`` for every ts, found from the two extremes."""
        return self.admits(min(tss), now) and self.admits(max(tss), now)

    def admits_each(self, tss: Iterable[float], clocks: Iterable[float]) -> list[bool]:
        """``admits`` of each ts against its own clock."""
        return list(map(self.admits, tss, clocks))

    def describe(self, ts: float, now: float) -> str:
        """Why ``ts`` is out of range, for a dead letter (no user data)."""
        return (
            f"ts is {ts - now:+.6g} s from now; "
            f"allowed -{self.retention_s:.0f}..+{self.max_future_s:.0f} s"
        )


def safe_from_score(safety_score: float, threshold: float) -> bool:
    """A response without ``safe`` is safe when its score reaches the threshold."""
    return safety_score >= threshold


def nanousd(usd: float) -> int:
    """USD as integer nano-USD: integer sums are exact and order-free, so two
    replicas (or replay vs live) agree to the last digit."""
    return round(usd * NANO)


def nanousd_sum(usds: Iterable[float]) -> int:
    """The sum of ``nanousd`` of each, with the same two operations in C loops
    (``tests/test_aggregate.py`` checks it against ``nanousd``)."""
    return sum(map(round, map(mul, usds, repeat(NANO))))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1,000 tokens, used when a response carries no ``cost_usd``."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0

    def usd(self, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        return (
            (prompt_tokens or 0) * self.prompt_per_1k
            + (completion_tokens or 0) * self.completion_per_1k
        ) / 1000.0


class Pricing:
    """Cost of responses: their ``cost_usd``, else tokens x their model's price,
    else unknown (counted as ``cost_unknown``)."""

    __slots__ = ("_prices",)

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = prices

    def nanousd(
        self,
        cost_usd: float | None,
        model: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
    ) -> int | None:
        """Cost in integer nano-USD, or None when it cannot be known."""
        if cost_usd is not None:
            return nanousd(cost_usd)  # the decoder caps cost_usd at MAX_COST_USD
        price = self._prices.get(model) if model is not None else None
        if price is None or (prompt_tokens is None and completion_tokens is None):
            return None
        usd = price.usd(prompt_tokens, completion_tokens)
        if not usd <= MAX_COST_USD:
            # absurd token counts must not overflow the store's 64-bit counters
            return None
        return nanousd(usd)

    def total(self, responses: Sequence[Costed]) -> tuple[int, int]:
        """(nano-USD, cost-unknown count) of many responses: ``nanousd`` summed,
        with the costed ones (nearly all) converted in one pass."""
        costs = list(map(_COST, responses))
        # filter(None) drops the unknown costs and the zero ones, which add 0
        nanos = nanousd_sum(filter(None, costs))
        if None not in costs:
            return nanos, 0
        unknown = 0
        for row in responses:
            if row.cost_usd is None:
                nano = self.nanousd(None, row.model, row.prompt_tokens, row.completion_tokens)
                if nano is None:
                    unknown += 1
                else:
                    nanos += nano
        return nanos, unknown
