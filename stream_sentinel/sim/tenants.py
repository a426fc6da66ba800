"""Tenants for synthetic traffic: who belongs to which team, and how big each team is.

The shape (DESIGN.md "Per-tenant signals" wants a few big tenants and many
small ones): ``team-01``, ``team-02`` and ``team-03`` carry 25, 20 and 15 % of
normal traffic, ``team-04`` .. ``team-07`` 5 % each (the small tenants the
benches attack), and every further tenant an equal part of the last 20 %.
With fewer than 8 tenants the first shares of that list are scaled up to 100 %.

Every normal user belongs to exactly one tenant. Users are handed out
heaviest first to the tenant furthest below its share, so the shares hold
closely even though single users carry up to ~3 % of traffic. The pool's ids
are shuffled by the seed, so the mapping is fixed by the seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .traffic import UserPool

BIG_SHARES = (0.25, 0.20, 0.15)
SMALL_SHARES = (0.05, 0.05, 0.05, 0.05)
TAIL_SHARE = 0.20  # split equally by team-08 onwards


def tenant_names(count: int) -> tuple[str, ...]:
    width = max(2, len(str(count)))
    return tuple(f"team-{i:0{width}d}" for i in range(1, count + 1))


def target_shares(count: int) -> tuple[float, ...]:
    """Each tenant's intended share of normal traffic (sums to 1)."""
    if count <= 0:
        raise ValueError("the number of tenants must be positive")
    head = BIG_SHARES + SMALL_SHARES
    if count <= len(head):
        chosen = head[:count]
        total = sum(chosen)
        return tuple(s / total for s in chosen)
    tail = count - len(head)
    return head + (TAIL_SHARE / tail,) * tail


@dataclass(frozen=True, slots=True)
class TenantPlan:
    """The fixed user -> tenant mapping of one simulated population."""

    names: tuple[str, ...]
    tenant_of: Mapping[str, str]  # every normal user id -> its tenant
    members: Mapping[str, tuple[str, ...]]  # tenant -> its user ids, heaviest first
    shares: Mapping[str, float]  # tenant -> its actual share of normal traffic

    def pick_tenant(self, rng: random.Random) -> str:
        """A tenant drawn by share: the home of a user who is not in the pool."""
        return rng.choices(self.names, weights=[self.shares[n] for n in self.names])[0]

    def attackers(self, tenant: str, count: int, rng: random.Random) -> tuple[str, ...]:
        """``count`` of the tenant's own users (fewer if it has fewer)."""
        users = self.members[tenant]
        return tuple(rng.sample(users, min(count, len(users))))


def plan_tenants(pool: UserPool, count: int) -> TenantPlan:
    names = tenant_names(count)
    targets = target_shares(count)
    shares = pool.shares()
    # heap of (-(target - assigned), index): the tenant furthest below its share first
    deficits = [(-target, i) for i, target in enumerate(targets)]
    heapq.heapify(deficits)
    assigned = [0.0] * count
    tenant_of: dict[str, str] = {}
    members: list[list[str]] = [[] for _ in names]
    for user, share in sorted(zip(pool.ids, shares, strict=True), key=lambda us: -us[1]):
        _, i = heapq.heappop(deficits)
        tenant_of[user] = names[i]
        members[i].append(user)
        assigned[i] += share
        heapq.heappush(deficits, (assigned[i] - targets[i], i))
    return TenantPlan(
        names=names,
        tenant_of=tenant_of,
        members={n: tuple(m) for n, m in zip(names, members, strict=True)},
        shares={n: a for n, a in zip(names, assigned, strict=True)},
    )


def tenants_for(plan: TenantPlan, users: Sequence[str], rng: random.Random) -> dict[str, str]:
    """Each of ``users`` -> its tenant; one from outside the pool (a fresh attacker
    id) gets a tenant drawn by share, as anyone signing up would."""
    return {u: plan.tenant_of.get(u) or plan.pick_tenant(rng) for u in users}
