"""Per-tenant counts in Redis: what ``RedisStore.apply`` sends, and ``top_tenants``.

The keys and the Lua that writes and moves them are in ``redis_scripts``
(tenant counters and request totals run with the partition's windows) and
``redis_tenant_scripts`` (a chosen tenant's users).

Ranking across partitions: producers key by user id, so every tenant's
requests are spread over the partitions and no partition's first k holds the
global first k. The threshold algorithm makes them compose: take each
partition's first ``m`` tenants, fetch the candidates' totals from every
partition (exact), and accept when the k-th exact total is above the sum of
each partition's ``m``-th total (a tenant outside every first ``m`` has at
most that); else ask again with ``m`` four times larger, until a partition
lists all it has. A tenant's heaviest users are chosen the same way among
its users' per-partition lists (each partition's first ``users``, then their
totals everywhere). When the bound does not settle it and a candidate is
counted in two partitions, that tenant's users are merged whole; otherwise
the candidates are taken as they are, which is ``RedisStore.top_users``'s
guarantee (its docstring tells what it cannot see).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from ..aggregate import Delta
from ..model import TenantCounts, WindowCounts
from .base import top_k

# one read of a partition's running window: start, end, keep per-user
# totals, what to answer and its argument (see redis_scripts.POSITION)
Read = tuple[int, int, bool, str, str]
PerPartition = Callable[[Sequence[Read], list[str]], Awaitable[list[list[Any]]]]
# TENANT_USERS on each listed partition: (parts, start, end, want, asked)
UsersOf = Callable[[list[str], int, int, str, list[list[Any]]], Awaitable[list[list[Any]]]]

_FIRST_M = 16


def tenant_hash(tenant: str) -> str:
    """The fixed-length stand-in for a tenant in a key name (never the name itself)."""
    raw = tenant.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def apply_argument(delta: Delta) -> bytes | None:
    """The APPLY script's tenant argument, or None when the batch carries no
    tenant (then the script's arguments are what they were before tenants)."""
    by_bucket: dict[str, list[list[Any]]] = {}
    for bucket, inc in delta.items():
        if not inc.tenants:
            continue
        rows = by_bucket[str(bucket)] = []
        for name, part in inc.tenants.items():
            counters = (
                part.requests,
                part.blocked,
                part.responses,
                part.safe,
                part.cost_nanousd,
                part.cost_unknown,
            )
            rows.append([name, tenant_hash(name), *map(str, counters), part.users])
    return orjson.dumps(by_bucket) if by_bucket else None


async def top_tenants(
    per_partition: PerPartition,
    users_of: UsersOf,
    parts: list[str],
    windows: tuple[tuple[int, int], tuple[int, int]],
    k: int,
    users: int,
) -> list[TenantCounts]:
    """``Store.top_tenants`` over these partitions (see the module docstring)."""
    short, hour = windows
    if not parts or k <= 0 or short[1] <= short[0]:
        return []
    ranked, listed = await _ranked(per_partition, parts, short, k)
    if not ranked:
        return []
    chosen = [tenant for tenant, _ in ranked]
    named = orjson.dumps(chosen).decode()
    reads: list[Read] = [(*short, True, "C", named), (*hour, False, "C", named)]
    sums = [[[0] * 6 for _ in chosen] for _ in reads]
    # the counters and the users together: neither needs the other
    replies, heaviest = await asyncio.gather(
        per_partition(reads, parts), _heaviest_users(users_of, listed, short, chosen, users)
    )
    for answers in replies:
        for window, flat in zip(sums, answers, strict=True):
            for i, value in enumerate(flat):
                if value is not None:
                    window[i // 6][i % 6] += int(value)
    return [
        TenantCounts(
            tenant, WindowCounts(*sums[0][i]), WindowCounts(*sums[1][i]), tuple(heaviest[i])
        )
        for i, tenant in enumerate(chosen)
    ]


async def _ranked(
    per_partition: PerPartition, parts: list[str], short: tuple[int, int], k: int
) -> tuple[list[tuple[str, int]], list[str]]:
    """The first k tenants by requests (exact), and the partitions holding any."""
    m = max(_FIRST_M, 2 * k)
    while True:
        firsts = [a[0] for a in await per_partition([(*short, True, "T", str(m))], parts)]
        listed = [part for part, flat in zip(parts, firsts, strict=True) if flat]
        candidates: set[str] = set()
        bound = 0
        for flat in firsts:
            candidates.update(flat[i].decode() for i in range(0, len(flat), 2))
            if len(flat) == 2 * m:  # the partition has more: its m-th caps the rest
                bound -= int(float(flat[-1]))
        if not candidates:
            return [], []
        names = sorted(candidates)
        totals = dict.fromkeys(names, 0)
        read: Read = (*short, True, "S", orjson.dumps(names).decode())
        for answers in await per_partition([read], listed):
            for name, score in zip(names, answers[0], strict=True):
                if score is not None:
                    totals[name] -= int(float(score))
        ranked = [(t, n) for t, n in top_k(totals, k) if n > 0]
        if bound == 0 or (len(ranked) == k and ranked[-1][1] > bound):
            return ranked, listed
        m *= 4


async def _heaviest_users(
    users_of: UsersOf, listed: list[str], short: tuple[int, int], chosen: list[str], n: int
) -> list[list[tuple[str, int]]]:
    if n <= 0 or not listed:
        return [[] for _ in chosen]
    hashes = [tenant_hash(t) for t in chosen]
    firsts = await users_of(listed, *short, "t", [[h, n] for h in hashes])
    result: list[list[tuple[str, int]]] = []
    unsettled: list[int] = []
    candidates: list[list[str]] = []
    for i in range(len(chosen)):
        seen: dict[str, int] = {}
        holders = 0
        for replies in firsts:
            flat, card = replies[i]
            holders += card > 0
            for j in range(0, len(flat), 2):
                user = flat[j].decode()
                seen[user] = seen.get(user, 0) - int(float(flat[j + 1]))
        # in one partition only: its first n are the tenant's, exact
        result.append(top_k(seen, n))
        candidates.append(sorted(seen))
        if holders > 1:
            unsettled.append(i)
    if unsettled:
        await _settle(users_of, listed, short, hashes, n, unsettled, candidates, firsts, result)
    return result


async def _settle(
    users_of: UsersOf,
    listed: list[str],
    short: tuple[int, int],
    hashes: list[str],
    n: int,
    unsettled: list[int],
    candidates: list[list[str]],
    firsts: list[list[Any]],
    result: list[list[tuple[str, int]]],
) -> None:
    """Exact totals of the candidates; a tenant whose first n the bound does not
    settle and whose candidates are split over partitions is merged whole."""
    asked = [[hashes[i], candidates[i]] for i in unsettled]
    scored = await users_of(listed, *short, "s", asked)
    merge: list[int] = []
    for slot, i in enumerate(unsettled):
        totals = dict.fromkeys(candidates[i], 0)
        holders = dict.fromkeys(candidates[i], 0)
        for replies in scored:
            for user, score in zip(candidates[i], replies[slot], strict=True):
                if score is not None:
                    totals[user] -= int(float(score))
                    holders[user] += 1
        bound = 0
        for replies in firsts:
            flat, card = replies[i]
            if card > n:
                bound -= int(float(flat[-1]))
        ranked = top_k(totals, n)
        settled = bound == 0 or (len(ranked) == n and ranked[-1][1] > bound)
        if settled or all(h == 1 for h in holders.values()):
            result[i] = ranked
        else:
            merge.append(i)
    if merge:
        everything = await users_of(listed, *short, "a", [[hashes[i], ""] for i in merge])
        for slot, i in enumerate(merge):
            merged: dict[str, int] = {}
            for replies in everything:
                flat = replies[slot]
                for j in range(0, len(flat), 2):
                    user = flat[j].decode()
                    merged[user] = merged.get(user, 0) - int(float(flat[j + 1]))
            result[i] = top_k(merged, n)
