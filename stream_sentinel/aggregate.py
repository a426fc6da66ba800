"""Pure batch aggregation: decoded events -> per-bucket increments.

This module never does I/O and never decides when anything is written:
storage and commit order stay in the store and the consumer. Counting is done
per batch, with the per-event work in C loops; the value rules it applies
(bucket start, cost) are ``bucketing``'s and ``contract``'s.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter, le
from typing import Protocol, TypeVar

from .bucketing import bucket_of
from .contract import Costed, ModelPrice, Pricing
from .model import WindowCounts

__all__ = ["BatchAggregator", "BucketDelta", "Delta", "ModelPrice", "TenantDelta"]


@dataclass(slots=True)
class _Counters:
    """The six counters and the requests per user id of one bucket, for all
    events (``BucketDelta``) or one tenant's (``TenantDelta``)."""

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

    def _add(self, other: _Counters) -> None:
        self.requests += other.requests
        self.blocked += other.blocked
        self.responses += other.responses
        self.safe += other.safe
        self.cost_nanousd += other.cost_nanousd
        self.cost_unknown += other.cost_unknown
        self.users.update(other.users)


@dataclass(slots=True)
class TenantDelta(_Counters):
    """One tenant's share of a bucket: the global counters, kept per tenant."""

    def merge(self, other: TenantDelta) -> None:
        self._add(other)


@dataclass(slots=True)
class BucketDelta(_Counters):
    # per tenant, only when [tenants] is on; events without a tenant count globally only
    tenants: dict[str, TenantDelta] = field(default_factory=dict)

    def merge(self, other: BucketDelta) -> None:
        self._add(other)
        for tenant, part in other.tenants.items():
            mine = self.tenants.get(tenant)
            if mine is None:
                mine = self.tenants[tenant] = TenantDelta()
            mine.merge(part)


class RequestLike(Protocol):
    """What ``count_requests`` reads: a ``RequestEvent`` or a ``decode_rows.RequestRow``."""

    @property
    def ts(self) -> float: ...
    @property
    def user_id(self) -> str: ...
    @property
    def blocked(self) -> bool: ...
    @property
    def tenant(self) -> str | None: ...


class ResponseLike(Costed, Protocol):
    """What ``count_responses`` reads; ``safe`` already resolved."""

    @property
    def ts(self) -> float: ...
    @property
    def safe(self) -> bool | None: ...
    @property
    def tenant(self) -> str | None: ...


Row = TypeVar("Row", bound="RequestLike | ResponseLike")

_TS = attrgetter("ts")
_USER = attrgetter("user_id")
_BLOCKED = attrgetter("blocked")
_SAFE = attrgetter("safe")
_TENANT = attrgetter("tenant")

# bucket start (Unix seconds) -> increments; one per partition per batch
Delta = dict[int, BucketDelta]


class BatchAggregator:
    """Folds decoded events into per-bucket increments for one batch."""

    __slots__ = ("_pricing", "_tenants", "_width")

    def __init__(
        self,
        bucket_width: int,
        prices: Mapping[str, ModelPrice] | None = None,
        *,
        tenants: bool = False,
    ) -> None:
        self._width = bucket_width
        self._pricing = Pricing(prices or {})
        self._tenants = tenants  # count per tenant too ([tenants] enabled)

    def count_requests(self, delta: Delta, rows: Sequence[RequestLike]) -> None:
        for start, part in self._buckets(rows):
            bucket = delta.get(start)
            if bucket is None:
                bucket = delta[start] = BucketDelta()
            bucket.requests += len(part)
            bucket.blocked += sum(map(_BLOCKED, part))
            bucket.users.update(map(_USER, part))
            if self._tenants:
                for tenant, rows in _by_tenant(part).items():
                    into = _tenant_of(bucket, tenant)
                    into.requests += len(rows)
                    into.blocked += sum(map(_BLOCKED, rows))
                    into.users.update(map(_USER, rows))

    def count_responses(self, delta: Delta, rows: Sequence[ResponseLike]) -> None:
        """Responses whose ``safe`` is resolved."""
        for start, part in self._buckets(rows):
            bucket = delta.get(start)
            if bucket is None:
                bucket = delta[start] = BucketDelta()
            bucket.responses += len(part)
            bucket.safe += sum(map(_SAFE, part))
            nanos, unknown = self._pricing.total(part)
            bucket.cost_nanousd += nanos
            bucket.cost_unknown += unknown
            if self._tenants:
                for tenant, rows in _by_tenant(part).items():
                    into = _tenant_of(bucket, tenant)
                    into.responses += len(rows)
                    into.safe += sum(map(_SAFE, rows))
                    nanos, unknown = self._pricing.total(rows)
                    into.cost_nanousd += nanos
                    into.cost_unknown += unknown

    def _buckets(self, rows: Sequence[Row]) -> Iterator[tuple[int, Sequence[Row]]]:
        """(bucket start, its rows) for each bucket ``rows`` touch, by ``bucket_of``.

        Split by bisection on time-ordered rows (a partition's events mostly
        are; others are sorted first), so the cost is per bucket, not per row.
        """
        width = self._width
        tss = list(map(_TS, rows))
        if not tss:
            return
        first = bucket_of(min(tss), width)
        if first == bucket_of(max(tss), width):
            yield first, rows
            return
        if not all(map(le, tss, islice(tss, 1, None))):
            rows = sorted(rows, key=_TS)
            tss.sort()
        i, n = 0, len(tss)
        while i < n:
            start = bucket_of(tss[i], width)
            j = bisect_right(tss, start, i, n, key=lambda ts: bucket_of(ts, width))
            yield start, rows[i:j]
            i = j


def _by_tenant(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """``rows`` grouped by tenant; rows without one belong to no group."""
    groups: dict[str, list[Row]] = {}
    for row, tenant in zip(rows, map(_TENANT, rows), strict=True):
        if tenant is not None:
            group = groups.get(tenant)
            if group is None:
                groups[tenant] = [row]
            else:
                group.append(row)
    return groups


def _tenant_of(bucket: BucketDelta, tenant: str) -> TenantDelta:
    part = bucket.tenants.get(tenant)
    if part is None:
        part = bucket.tenants[tenant] = TenantDelta()
    return part
