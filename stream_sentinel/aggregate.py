"""Pure batch aggregation: decoded events -> per-bucket increments.

Shaped like a Quix Streams window aggregator (``initialize / agg / result``)
so storage and commit order stay in the store and the consumer: this module
never does I/O and never decides when anything is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .events import Event, RequestEvent
from .model import NANO, WindowCounts


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1,000 tokens, used when a response carries no ``cost_usd``."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0


@dataclass(slots=True)
class BucketDelta:
    requests: int = 0
    blocked: int = 0
    responses: int = 0
    safe: int = 0
    cost_nanousd: int = 0
    cost_unknown: int = 0
    users: Counter[str] = field(default_factory=Counter)  # requests per user id

    def counts(self) -> WindowCounts:
        return WindowCounts(
            self.requests,
            self.blocked,
            self.responses,
            self.safe,
            self.cost_nanousd,
            self.cost_unknown,
        )

    def merge(self, other: BucketDelta) -> None:
        self.requests += other.requests
        self.blocked += other.blocked
        self.responses += other.responses
        self.safe += other.safe
        self.cost_nanousd += other.cost_nanousd
        self.cost_unknown += other.cost_unknown
        self.users.update(other.users)


MAX_PRICED_USD = 1_000_000.0

# bucket start (Unix seconds) -> increments; one per partition per batch
Delta = dict[int, BucketDelta]


def cost_nanousd(
    cost_usd: float | None,
    model: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    prices: Mapping[str, ModelPrice],
) -> int | None:
    """Cost in integer nano-USD, or None when it cannot be known.

    Integers make the sums exact and independent of event order, so two
    replicas (or replay vs live) agree to the last digit.
    """
    if cost_usd is not None:
        return round(cost_usd * NANO)  # the decoder caps cost_usd at MAX_COST_USD
    price = prices.get(model) if model is not None else None
    if price is None or (prompt_tokens is None and completion_tokens is None):
        return None
    usd = (
        (prompt_tokens or 0) * price.prompt_per_1k
        + (completion_tokens or 0) * price.completion_per_1k
    ) / 1000.0
    if not usd <= MAX_PRICED_USD:
        # absurd token counts must not overflow the store's 64-bit counters
        return None
    return round(usd * NANO)


class BatchAggregator:
    """Folds decoded events into per-bucket increments for one batch."""

    def __init__(self, bucket_width: int, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._width = bucket_width
        self._prices: Mapping[str, ModelPrice] = prices or {}

    def initialize(self) -> Delta:
        return {}

    def agg(self, delta: Delta, event: Event) -> None:
        # bucket_of(event.ts, width), inlined: this runs once per event
        width = self._width
        start = int(event.ts // width) * width  # as bucketing.bucket_of
        bucket = delta.get(start)
        if bucket is None:
            bucket = delta[start] = BucketDelta()
        if isinstance(event, RequestEvent):
            bucket.requests += 1
            if event.blocked:
                bucket.blocked += 1
            bucket.users[event.user_id] += 1
            return
        bucket.responses += 1
        if event.safe:
            bucket.safe += 1
        cost_usd = event.cost_usd
        if cost_usd is not None:
            # cost_nanousd's first case, without the call
            bucket.cost_nanousd += round(cost_usd * NANO)
            return
        nano = cost_nanousd(
            None, event.model, event.prompt_tokens, event.completion_tokens, self._prices
        )
        if nano is None:
            bucket.cost_unknown += 1
        else:
            bucket.cost_nanousd += nano

    def result(self, delta: Delta) -> Delta:
        return delta

    def aggregate(self, events: Iterable[Event]) -> Delta:
        delta = self.initialize()
        for event in events:
            self.agg(delta, event)
        return self.result(delta)
