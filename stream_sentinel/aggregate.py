"""Pure batch aggregation: decoded events -> per-bucket increments.

Shaped like a Quix Streams window aggregator (``initialize / agg / result``)
so storage and commit order stay in the store and the consumer: this module
never does I/O and never decides when anything is written.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import add, attrgetter, le, mul, truediv
from typing import Protocol, TypeVar

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


class RequestLike(Protocol):
    """What ``agg_requests`` reads: a ``RequestEvent`` or a ``decode_rows.RequestRow``."""

    @property
    def ts(self) -> float: ...
    @property
    def user_id(self) -> str: ...
    @property
    def blocked(self) -> bool: ...


class ResponseLike(Protocol):
    """What ``agg_responses`` reads; ``safe`` already resolved."""

    @property
    def ts(self) -> float: ...
    @property
    def safe(self) -> bool | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def prompt_tokens(self) -> int | None: ...
    @property
    def completion_tokens(self) -> int | None: ...


Row = TypeVar("Row", bound="RequestLike | ResponseLike")

_TS = attrgetter("ts")
_USER = attrgetter("user_id")
_BLOCKED = attrgetter("blocked")
_SAFE = attrgetter("safe")
_COST = attrgetter("cost_usd")
_MODEL = attrgetter("model")
_PROMPT = attrgetter("prompt_tokens")
_COMPLETION = attrgetter("completion_tokens")

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
        # per-model price columns, so a run of responses is priced with C loops
        self._prompt_price = {m: p.prompt_per_1k for m, p in self._prices.items()}
        self._completion_price = {m: p.completion_per_1k for m, p in self._prices.items()}

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

    def agg_requests(self, delta: Delta, rows: Sequence[RequestLike]) -> None:
        """``agg`` for many requests at once, with the per-event work in C loops."""
        for start, part in self._buckets(rows):
            bucket = delta.get(start)
            if bucket is None:
                bucket = delta[start] = BucketDelta()
            bucket.requests += len(part)
            bucket.blocked += sum(map(_BLOCKED, part))
            bucket.users.update(map(_USER, part))

    def agg_responses(self, delta: Delta, rows: Sequence[ResponseLike]) -> None:
        """``agg`` for many responses at once (``safe`` resolved); same sums as ``agg``."""
        for start, part in self._buckets(rows):
            bucket = delta.get(start)
            if bucket is None:
                bucket = delta[start] = BucketDelta()
            bucket.responses += len(part)
            bucket.safe += sum(map(_SAFE, part))
            costs = list(map(_COST, part))
            if None not in costs:
                bucket.cost_nanousd += sum(map(round, map(mul, costs, repeat(NANO))))
                continue
            # some carry no cost: those are priced from tokens, the rest as above
            uncosted = [row for row, cost in zip(part, costs, strict=True) if cost is None]
            if len(uncosted) < len(costs):
                costed = [cost for cost in costs if cost is not None]
                bucket.cost_nanousd += sum(map(round, map(mul, costed, repeat(NANO))))
            priced = self._priced(uncosted)
            if priced is not None:
                bucket.cost_nanousd += priced[0]
                bucket.cost_unknown += priced[1]
                continue
            for row in uncosted:
                nano = cost_nanousd(
                    None, row.model, row.prompt_tokens, row.completion_tokens, self._prices
                )
                if nano is None:
                    bucket.cost_unknown += 1
                else:
                    bucket.cost_nanousd += nano

    def _priced(self, rows: Sequence[ResponseLike]) -> tuple[int, int] | None:
        """(nano-USD, cost-unknown count) of responses that carry no cost, from
        tokens x price with ``cost_nanousd``'s arithmetic. None unless no model
        is priced, or every one is and has both token counts: the per-row loop
        handles a mix."""
        models = list(map(_MODEL, rows))
        prompt_prices = list(map(self._prompt_price.get, models))
        if prompt_prices.count(None) == len(prompt_prices):
            return 0, len(rows)
        completion_prices = list(map(self._completion_price.get, models))
        prompts = list(map(_PROMPT, rows))
        completions = list(map(_COMPLETION, rows))
        if None in prompt_prices or None in prompts or None in completions:
            return None
        prompt_usd = map(mul, prompts, prompt_prices)
        completion_usd = map(mul, completions, completion_prices)
        usd: list[float] = list(map(truediv, map(add, prompt_usd, completion_usd), repeat(1000.0)))
        if not max(usd) <= MAX_PRICED_USD:
            return None
        nanos: int = sum(map(round, map(mul, usd, repeat(NANO))))
        return nanos, 0

    def _buckets(self, rows: Sequence[Row]) -> Iterator[tuple[int, Sequence[Row]]]:
        """(bucket start, its rows) for each bucket ``rows`` touch, as ``agg`` assigns them.

        Split by bisection on time-ordered rows (a partition's events mostly
        are; others are sorted first), so the cost is per bucket, not per row.
        """
        width = self._width
        tss = list(map(_TS, rows))
        if not tss:
            return
        if min(tss) // width == max(tss) // width:
            yield int(tss[0] // width) * width, rows
            return
        if not all(map(le, tss, islice(tss, 1, None))):
            rows = sorted(rows, key=_TS)
            tss.sort()
        i, n = 0, len(tss)
        while i < n:
            key = tss[i] // width
            j = bisect_right(tss, key, i, n, key=lambda ts: ts // width)
            yield int(key) * width, rows[i:j]
            i = j

    def result(self, delta: Delta) -> Delta:
        return delta

    def aggregate(self, events: Iterable[Event]) -> Delta:
        delta = self.initialize()
        for event in events:
            self.agg(delta, event)
        return self.result(delta)
