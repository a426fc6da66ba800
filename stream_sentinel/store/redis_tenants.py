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
lists all it has. Candidates whose most possible total (their listed counts
plus the m-th of every full partition not listing them) is below the k-th
largest least total are not asked for. A tenant's heaviest users are chosen
the same way among its users' per-partition lists (each partition's first
``users``), asked only of the partitions where the ranking found the
tenant's requests, in the same round trip as the chosen tenants' counters.
The lists alone settle it when every partition listed all of the tenant's
users, or when the chosen users are listed by every full partition and no
other user can reach the n-th total; else the candidates' totals are read
everywhere the tenant is. When that bound does not settle it either and a
candidate is counted in two partitions, that tenant's users are merged
whole; otherwise the candidates are taken as they are, which is
``RedisStore.top_users``'s guarantee (its docstring tells what it cannot see).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..aggregate import Delta
from ..model import TenantCounts, WindowCounts
from .base import top_k

# one read of a partition's running window: start, end, keep per-user
# totals, what to answer and its argument (see redis_scripts.POSITION)
Read = tuple[int, int, bool, str, str]


@dataclass(frozen=True, slots=True)
class WindowAsk:
    """``redis_scripts.POSITION`` on one partition: one answer per read."""

    part: str
    reads: tuple[Read, ...]


@dataclass(frozen=True, slots=True)
class UsersAsk:
    """``redis_tenant_scripts.TENANT_USERS`` on one partition, over [start, end):
    one answer per asked [tenant hash, argument]."""

    part: str
    start: int
    end: int
    want: str
    asked: list[list[Any]]


Ask = WindowAsk | UsersAsk
# runs the asks together (one round trip on a single node): replies in order
Batch = Callable[[Sequence[Ask]], Awaitable[list[Any]]]
# what a partition listed of a tenant's users: the partition, its first n
# flat (user, -requests, ...), and how many users the tenant has there
Listing = tuple[str, list[Any], int]

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
    batch: Batch,
    parts: list[str],
    windows: tuple[tuple[int, int], tuple[int, int]],
    k: int,
    users: int,
) -> list[TenantCounts]:
    """``Store.top_tenants`` over these partitions (see the module docstring)."""
    short, hour = windows
    if not parts or k <= 0 or short[1] <= short[0]:
        return []
    ranked, held = await _ranked(batch, parts, short, k)
    if not ranked:
        return []
    chosen = [tenant for tenant, _ in ranked]
    hashes = [tenant_hash(t) for t in chosen]
    named = orjson.dumps(chosen).decode()
    reads: tuple[Read, ...] = ((*short, True, "C", named), (*hour, False, "C", named))
    asks: list[Ask] = [WindowAsk(part, reads) for part in parts]
    # the counters and the users' first round together: neither needs the
    # other; a partition is asked for the users of the tenants it holds only
    holding: dict[str, list[int]] = {}
    if users > 0:
        for i, tenant in enumerate(chosen):
            for part in held[tenant]:
                holding.setdefault(part, []).append(i)
        for part, mine in holding.items():
            asks.append(UsersAsk(part, *short, "t", [[hashes[i], users] for i in mine]))
    replies = await batch(asks)
    sums = [[[0] * 6 for _ in chosen] for _ in reads]
    for answers in replies[: len(parts)]:
        for window, flat in zip(sums, answers, strict=True):
            for i, value in enumerate(flat):
                if value is not None:
                    window[i // 6][i % 6] += int(value)
    firsts: list[list[Listing]] = [[] for _ in chosen]
    for (part, mine), answers in zip(holding.items(), replies[len(parts) :], strict=True):
        for i, (flat, card) in zip(mine, answers, strict=True):
            firsts[i].append((part, flat, int(card)))
    heaviest = await _heaviest_users(batch, short, hashes, firsts, users)
    return [
        TenantCounts(
            tenant, WindowCounts(*sums[0][i]), WindowCounts(*sums[1][i]), tuple(heaviest[i])
        )
        for i, tenant in enumerate(chosen)
    ]


async def _ranked(
    batch: Batch, parts: list[str], short: tuple[int, int], k: int
) -> tuple[list[tuple[str, int]], dict[str, list[str]]]:
    """The first k tenants by requests (exact), and the partitions holding each."""
    m = max(_FIRST_M, 2 * k)
    while True:
        asked = [WindowAsk(part, ((*short, True, "T", str(m)),)) for part in parts]
        firsts = [answers[0] for answers in await batch(asked)]
        listed = [part for part, flat in zip(parts, firsts, strict=True) if flat]
        names, bound = _candidates(firsts, m, k)
        if not names:
            return [], {}
        totals = dict.fromkeys(names, 0)
        held: dict[str, list[str]] = {name: [] for name in names}
        read: Read = (*short, True, "S", orjson.dumps(names).decode())
        replies = await batch([WindowAsk(part, (read,)) for part in listed])
        for part, answers in zip(listed, replies, strict=True):
            for name, score in zip(names, answers[0], strict=True):
                if score is not None:
                    totals[name] -= int(float(score))
                    held[name].append(part)
        ranked = [(t, n) for t, n in top_k(totals, k) if n > 0]
        if bound == 0 or (len(ranked) == k and ranked[-1][1] > bound):
            return ranked, held
        m *= 4


def _candidates(firsts: list[list[Any]], m: int, k: int) -> tuple[list[str], int]:
    """The tenants listed in some partition's first m that can still be among
    the first k, and the most a tenant listed nowhere can have.

    A listed tenant has at least the sum of its listed counts, and at most
    that plus the m-th count of each full partition that does not list it:
    one whose most is below the k-th largest least cannot make the cut.
    """
    least: dict[str, int] = {}
    capped: dict[str, int] = {}  # the m-th counts of full partitions listing it
    bound = 0
    for flat in firsts:
        # a partition that listed m has more: its m-th caps the rest
        mth = -int(float(flat[-1])) if len(flat) == 2 * m else 0
        bound += mth
        for i in range(0, len(flat), 2):
            name = flat[i].decode()
            least[name] = least.get(name, 0) - int(float(flat[i + 1]))
            capped[name] = capped.get(name, 0) + mth
    cut = heapq.nlargest(k, least.values())[-1] if len(least) >= k else 0
    names = sorted(t for t, n in least.items() if n + bound - capped[t] >= cut)
    return names, bound


async def _heaviest_users(
    batch: Batch, short: tuple[int, int], hashes: list[str], firsts: list[list[Listing]], n: int
) -> list[list[tuple[str, int]]]:
    if n <= 0:
        return [[] for _ in hashes]
    result: list[list[tuple[str, int]]] = []
    unsettled: list[int] = []
    candidates: list[list[str]] = []
    for i, listings in enumerate(firsts):
        seen: dict[str, int] = {}
        for _, flat, _ in listings:
            for j in range(0, len(flat), 2):
                user = flat[j].decode()
                seen[user] = seen.get(user, 0) - int(float(flat[j + 1]))
        ranked = top_k(seen, n)
        # in one partition only: its first n are the tenant's, exact
        result.append(ranked)
        candidates.append(sorted(seen))
        if len(listings) > 1 and not _settled_by_firsts(listings, seen, ranked, n):
            unsettled.append(i)
    if unsettled:
        await _settle(batch, short, hashes, n, unsettled, candidates, firsts, result)
    return result


def _settled_by_firsts(
    listings: list[Listing], seen: dict[str, int], ranked: list[tuple[str, int]], n: int
) -> bool:
    """Whether the first n lists alone give a tenant's first n users exactly.

    A partition with at most n of the tenant's users listed them all; a user
    not listed by a fuller partition has there at most its n-th count. The
    ranking is exact when each chosen user is listed by every full partition
    and no other user, seen or not, can reach the n-th total.
    """
    full = [
        ({flat[j].decode() for j in range(0, len(flat), 2)}, -int(float(flat[-1])))
        for _, flat, card in listings
        if card > n
    ]
    if not full:
        return True  # every user of the tenant was listed: the sums are exact
    if len(ranked) < n:
        return False

    def unlisted(user: str) -> int:
        return sum(nth for names, nth in full if user not in names)

    last = ranked[-1][1]
    chosen = {user for user, _ in ranked}
    if any(unlisted(user) for user in chosen) or sum(nth for _, nth in full) >= last:
        return False
    return all(total + unlisted(u) < last for u, total in seen.items() if u not in chosen)


async def _settle(
    batch: Batch,
    short: tuple[int, int],
    hashes: list[str],
    n: int,
    unsettled: list[int],
    candidates: list[list[str]],
    firsts: list[list[Listing]],
    result: list[list[tuple[str, int]]],
) -> None:
    """Exact totals of the candidates; a tenant whose first n the bound does not
    settle and whose candidates are split over partitions is merged whole."""
    holding: dict[str, list[int]] = {}
    for i in unsettled:
        for part, _, _ in firsts[i]:
            holding.setdefault(part, []).append(i)
    asks = [
        UsersAsk(part, *short, "s", [[hashes[i], candidates[i]] for i in mine])
        for part, mine in holding.items()
    ]
    totals = {i: dict.fromkeys(candidates[i], 0) for i in unsettled}
    holders = {i: dict.fromkeys(candidates[i], 0) for i in unsettled}
    for mine, answers in zip(holding.values(), await batch(asks), strict=True):
        for i, scores in zip(mine, answers, strict=True):
            for user, score in zip(candidates[i], scores, strict=True):
                if score is not None:
                    totals[i][user] -= int(float(score))
                    holders[i][user] += 1
    merge: list[int] = []
    for i in unsettled:
        bound = sum(-int(float(flat[-1])) for _, flat, card in firsts[i] if card > n)
        ranked = top_k(totals[i], n)
        settled = bound == 0 or (len(ranked) == n and ranked[-1][1] > bound)
        if settled or all(h == 1 for h in holders[i].values()):
            result[i] = ranked
        else:
            merge.append(i)
    if merge:
        holding = {}
        for i in merge:
            for part, _, _ in firsts[i]:
                holding.setdefault(part, []).append(i)
        asks = [
            UsersAsk(part, *short, "a", [[hashes[i], ""] for i in mine])
            for part, mine in holding.items()
        ]
        merged: dict[int, dict[str, int]] = {i: {} for i in merge}
        for mine, answers in zip(holding.values(), await batch(asks), strict=True):
            for i, flat in zip(mine, answers, strict=True):
                for j in range(0, len(flat), 2):
                    user = flat[j].decode()
                    merged[i][user] = merged[i].get(user, 0) - int(float(flat[j + 1]))
        for i in merge:
            result[i] = top_k(merged[i], n)
