"""Evaluator tick latency on a full Redis: an hour of buckets, 100k users per window.

    eval "$(scripts/services start)"
    .venv/bin/python bench/evaluator.py [--users N] [--partitions P] [--ticks T]
                                        [--tenants N]

Needs the real Redis (REDIS_URL). Writes, under a fresh key prefix and
through ``RedisStore.apply`` (so the key layout is the real one), one hour
of 60 s buckets for P request partitions and P response partitions. Every
user id lives in one request partition (producers key by user id), is active
in 2 of every 5 buckets, so every 5-minute window holds all N users, mostly
with 1-3 requests each and a few heavy ones. Then times, over T ticks:

- ``Evaluator.evaluate(at)``, built as the ``run`` verb builds it (rules from
  the config, DESIGN.md's static baselines);
- the store reads alone: ``window`` (5 min), ``window`` (1 h), ``top_users``.

With ``--tenants N`` every user belongs to one of N tenants (5 big ones with
4 % of the users each, the rest spread evenly over the others), requests and
responses carry the tenant, and the tick is timed as it runs with
``[tenants]`` on: ``evaluate`` and ``store.top_tenants(5 min, 1 h, 20, 3)``
together, then ``top_tenants`` alone; its answers are checked against
per-tenant counts kept while writing, and the memory of the tenant keys
(MEMORY USAGE) is printed per tenant.

Ticks cycle over the last five minute boundaries of the hour, so both page
alignments of the 5-minute window are read. Prints p50/p99/max for each and
checks every tick's windows and top users against counts kept while writing.
Keys are removed afterwards. Target: tick p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

from stream_sentinel.aggregate import BucketDelta, TenantDelta
from stream_sentinel.bucketing import SAFETY_WINDOW_S, SPEND_WINDOW_S, TOP_USER_WINDOW_S
from stream_sentinel.config import load_config
from stream_sentinel.evaluate import Evaluator, StaticBaselines
from stream_sentinel.model import NANO, TenantCounts, WindowCounts
from stream_sentinel.store.base import PartitionId, top_k
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import RedisClient, connect
from stream_sentinel.store.redis_tenants import Call
from stream_sentinel.wiring import build_rules, storage_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import STATIC

SEED = 1
WIDTH = 60
BUCKETS = SPEND_WINDOW_S // WIDTH
REQUESTS = "llm.requests"
RESPONSES = "llm.responses"
TENANT_K = 20
TENANT_USERS = 3
BIG_TENANTS = 5
# the key kinds that hold tenants: the outbox (store/redis_scripts.py) and
# the shards' (store/redis_tenant_scripts.py)
TENANT_KEYS = ("tx", "f", "b", "tc", "tr", "tu")


@dataclass
class Truth:
    """What was written, counted independently of the store."""

    buckets: dict[int, WindowCounts] = field(default_factory=dict)
    users: dict[int, Counter[str]] = field(default_factory=dict)
    tenants: dict[int, dict[str, TenantDelta]] = field(default_factory=dict)

    def add_tenants(self, bucket: int, parts: list[BucketDelta]) -> None:
        mine = self.tenants.setdefault(bucket, {})
        for inc in parts:
            for name, part in inc.tenants.items():
                mine.setdefault(name, TenantDelta()).merge(part)

    def top_tenants(
        self, short: tuple[int, int], hour: tuple[int, int], k: int, n: int
    ) -> list[TenantCounts]:
        def inside(span: tuple[int, int]) -> list[dict[str, TenantDelta]]:
            return [t for b, t in self.tenants.items() if span[0] <= b < span[1]]

        requests: Counter[str] = Counter()
        for tenants in inside(short):
            for name, part in tenants.items():
                requests[name] += part.requests
        found = []
        for name, _ in top_k(dict(requests), k):
            windows = []
            for span in (short, hour):
                total = TenantDelta()
                for tenants in inside(span):
                    if name in tenants:
                        total.merge(tenants[name])
                windows.append(total)
            top = tuple(top_k(dict(windows[0].users), n))
            found.append(TenantCounts(name, windows[0].counts(), windows[1].counts(), top))
        return found

    def window(self, start: int, end: int) -> WindowCounts:
        total = WindowCounts()
        for bucket, counts in self.buckets.items():
            if start <= bucket < end:
                total += counts
        return total

    def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        totals: Counter[str] = Counter()
        for bucket, users in self.users.items():
            if start <= bucket < end:
                totals.update(users)
        return top_k(dict(totals), k)


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f'{name} is not set: eval "$(scripts/services start)" first')
    return value


def user_requests(rng: random.Random, heavy: bool) -> int:
    if heavy:
        return rng.randint(20, 120)
    return 1 + min(int(rng.expovariate(1.5)), 20)  # mostly 1, a short tail


class Writer:
    """Writes buckets one at a time for P + P partitions, as the consumer would.

    User ``j`` is active in bucket ``b`` when ``(j - b) % period < active``:
    with the defaults every 5-minute window holds every user.
    """

    def __init__(
        self,
        store: RedisStore,
        users: int,
        partitions: int,
        *,
        period: int = 5,
        active: int = 2,
        keep_truth: bool = True,
        tenants: int = 0,
    ) -> None:
        self.store = store
        self.rng = random.Random(SEED)
        self.ids = [f"user-{i:07d}" for i in range(users)]
        self.home = [hash_partition(uid, partitions) for uid in self.ids]
        self.heavy = set(self.rng.sample(range(users), 50))
        self.partitions = partitions
        self.period = period
        self.active = active
        self.offsets: dict[PartitionId, int | None] = {}
        self.truth = Truth()
        self.keep_truth = keep_truth
        self.tenant_of = tenant_names(users, tenants)

    async def _write(self, part: PartitionId, bucket: int, inc: BucketDelta) -> None:
        prev = self.offsets.get(part)
        nxt = (prev or 0) + inc.requests + inc.responses
        await self.store.apply(part, prev, nxt, {bucket: inc})
        self.offsets[part] = nxt

    async def bucket(self, bucket: int) -> None:
        rng, users = self.rng, len(self.ids)
        b = bucket // WIDTH
        reqs = [BucketDelta() for _ in range(self.partitions)]
        for i in range(b % self.period, users, self.period):
            for j in range(i, i + self.active):
                j %= users
                n = user_requests(rng, j in self.heavy)
                inc = reqs[self.home[j]]
                inc.requests += n
                inc.blocked += rng.random() < 0.001 * n
                inc.users[self.ids[j]] += n
                if self.tenant_of:
                    part = inc.tenants.get(self.tenant_of[j])
                    if part is None:
                        part = inc.tenants[self.tenant_of[j]] = TenantDelta()
                    part.requests += n
                    part.users[self.ids[j]] += n
        resps = []
        for inc in reqs:
            out = BucketDelta(responses=inc.requests)
            out.safe = out.responses - rng.randint(0, max(1, out.responses // 200))
            out.cost_unknown = rng.randint(0, 3)
            price = rng.randint(100_000, 3_000_000)  # $0.0001-0.003 per request
            out.cost_nanousd = inc.requests * price
            for name, part in inc.tenants.items():
                # the tenant's responses: all answered and safe, at the partition's price
                n = part.requests
                out.tenants[name] = TenantDelta(responses=n, safe=n, cost_nanousd=n * price)
            resps.append(out)
        await asyncio.gather(
            *(self._write(PartitionId(REQUESTS, p), bucket, inc) for p, inc in enumerate(reqs)),
            *(self._write(PartitionId(RESPONSES, p), bucket, out) for p, out in enumerate(resps)),
        )
        if not self.keep_truth:
            return
        total = WindowCounts()
        users_here: Counter[str] = Counter()
        for inc in reqs + resps:
            total += inc.counts()
            users_here.update(inc.users)
        self.truth.buckets[bucket] = total
        self.truth.users[bucket] = users_here
        if self.tenant_of:
            self.truth.add_tenants(bucket, reqs + resps)
            # per-tenant users are only asked of the 5-minute window
            for old in range(bucket - TOP_USER_WINDOW_S - 5 * WIDTH, bucket - TOP_USER_WINDOW_S):
                for part in self.truth.tenants.get(old, {}).values():
                    part.users.clear()
        # only the last hour is ever asked for
        for old in [t for t in self.truth.buckets if t < bucket - SPEND_WINDOW_S]:
            del self.truth.buckets[old]
            self.truth.users.pop(old, None)
            self.truth.tenants.pop(old, None)


def tenant_names(users: int, tenants: int) -> list[str]:
    """User j's tenant: a few big tenants, many small (none when ``tenants`` is 0)."""
    if tenants <= 0:
        return []
    rng = random.Random(SEED + 1)
    big = min(BIG_TENANTS, tenants - 1)
    names = [f"team-{i:05d}" for i in range(tenants)]
    small = names[big:] or names
    return [
        names[rng.randrange(big)] if big and rng.random() < 0.04 * big else small[j % len(small)]
        for j in range(users)
    ]


async def tenant_memory(client: RedisClient, prefix: str) -> tuple[int, int]:
    """Bytes held by the tenant keys of ``prefix`` (MEMORY USAGE) and how many."""
    keys = [
        key
        async for key in client.scan_iter(match=f"{prefix}:*", count=2000)
        if key.decode().rsplit("}:", 1)[-1].split(":", 1)[0] in TENANT_KEYS
    ]
    total = 0
    for i in range(0, len(keys), 2000):
        pipe = client.pipeline(transaction=False)
        for key in keys[i : i + 2000]:
            pipe.memory_usage(key)
        total += sum(n or 0 for n in await pipe.execute())
    return total, len(keys)


def tenant_spans(at: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (at - TOP_USER_WINDOW_S, at), (at - SPEND_WINDOW_S, at)


async def read_tenants(store: RedisStore, at: int) -> list[TenantCounts]:
    return await store.top_tenants(*tenant_spans(at), TENANT_K, TENANT_USERS)


async def tick_with_tenants(evaluator: Evaluator, store: RedisStore, at: int) -> list[TenantCounts]:
    """A tick as it runs with ``[tenants]`` on: the global reads and the tenants' together."""
    _, found = await asyncio.gather(evaluator.evaluate(at), read_tenants(store, at))
    return found


def hash_partition(uid: str, partitions: int) -> int:
    # any stable function of the id will do: Kafka's murmur2 is not the point here
    return int(uid.rsplit("-", 1)[1]) * 2654435761 % 2**32 % partitions


@dataclass
class Series:
    name: str
    ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        s = sorted(self.ms)
        p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
        return (
            f"{self.name:<28} p50 {statistics.median(s):7.1f} ms   p99 {p99:7.1f} ms"
            f"   max {s[-1]:7.1f} ms   ({len(s)} runs)"
        )


class Rounds:
    """The round trips of ``top_tenants``: each batch of script calls it sends
    (``TenantShards``' runner, wrapped while ``recording``), timed."""

    def __init__(self, store: RedisStore) -> None:
        self.recording = False
        self.calls: list[list[tuple[int, float]]] = []  # per top_tenants: (calls, ms)
        shards = store._tenants
        inner = shards._run

        async def timed_batch(calls: Sequence[Call]) -> list[Any]:
            began = time.perf_counter()
            replies = await inner(calls)
            if self.recording:
                self.calls[-1].append((len(calls), (time.perf_counter() - began) * 1000))
            return replies

        shards._run = timed_batch

    async def record(self, call: Callable[[], Awaitable[object]]) -> object:
        self.calls.append([])
        self.recording = True
        try:
            return await call()
        finally:
            self.recording = False

    def lines(self) -> list[str]:
        shapes = Counter(len(rounds) for rounds in self.calls)
        out = [f"top_tenants rounds: {dict(sorted(shapes.items()))} (rounds: calls)"]
        for i in range(max(shapes, default=0)):
            ms = sorted(r[i][1] for r in self.calls if len(r) > i)
            asks = statistics.median(r[i][0] for r in self.calls if len(r) > i)
            p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
            out.append(
                f"  round {i + 1}: {asks:.0f} script calls, p50 {statistics.median(ms):.1f} ms, "
                f"p99 {p99:.1f} ms ({len(ms)} calls)"
            )
        return out


async def timed(series: Series, call: Callable[[], Awaitable[object]]) -> object:
    began = time.perf_counter()
    result = await call()
    series.ms.append((time.perf_counter() - began) * 1000)
    return result


async def drop_keys(client: aioredis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=32, help="per topic")
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=0, help="tenants (0: none)")
    args = parser.parse_args()
    redis_url = env("REDIS_URL")

    prefix = f"bench-eval:{uuid.uuid4().hex[:8]}"
    cfg = load_config(
        None, {**STATIC, "SENTINEL_REDIS_URL": redis_url, "SENTINEL_REDIS_KEY_PREFIX": prefix}
    )
    # the service's key layout and TTLs (store.build), on a client of our own
    # so the benchmark can ask Redis for its memory use
    settings = storage_settings(cfg)
    store = RedisStore(
        connect(redis_url),
        prefix=settings.prefix,
        bucket_width=settings.bucket_width,
        counter_ttl_s=settings.counter_ttl_s,
        user_ttl_s=settings.user_ttl_s,
    )
    evaluator = Evaluator(
        store, build_rules(cfg), StaticBaselines(cfg.static_baselines()), read_ahead=store
    )
    k = cfg.alerting.top_k
    # the first tick is not a page boundary; later ones take every alignment
    first_at = int(time.time()) // 300 * 300 + 60
    first = first_at - SPEND_WINDOW_S
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    writer = Writer(store, args.users, args.partitions, tenants=args.tenants)
    try:
        began = time.perf_counter()
        for b in range(BUCKETS - 1):
            await writer.bucket(first + b * WIDTH)
        took = time.perf_counter() - began
        info = await store.client.info("memory")
        print(
            f"filled {args.partitions}+{args.partitions} partitions, {BUCKETS - 1} buckets, "
            f"{args.users:,} users per 5-minute window in {took:.0f}s "
            f"(Redis used_memory now {info['used_memory_human']})"
        )
        tick_s = Series("Evaluator.evaluate")
        short_s = Series("window 5 min")
        hour_s = Series("window 1 h")
        top_s = Series(f"top_users 5 min, k={k}")
        prepare_s = Series("prepare (after a tick)")
        with_tenants_s = Series(f"evaluate + top_tenants {TENANT_K}")
        tenants_s = Series(f"top_tenants k={TENANT_K}, {TENANT_USERS} users")
        write_s = Series("writing a bucket")
        rounds = Rounds(store)
        # as the service runs: the leader prepares the next tick's windows
        # right after a tick, then the minute's events arrive, then the tick
        began = time.perf_counter()
        await evaluator.prepare(first_at)
        print(
            f"first prepare (every partition's windows summed from the buckets): "
            f"{(time.perf_counter() - began) * 1000:.0f} ms"
        )
        for i in range(args.ticks):
            at = first_at + i * WIDTH
            await timed(write_s, lambda at=at: writer.bucket(at - WIDTH))  # type: ignore[misc]
            truth = writer.truth
            expect = (
                truth.window(at - SAFETY_WINDOW_S, at),
                truth.window(at - SPEND_WINDOW_S, at),
                truth.top_users(at - TOP_USER_WINDOW_S, at, k),
            )
            tick = await timed(tick_s, lambda at=at: evaluator.evaluate(at))  # type: ignore[misc]
            short = await timed(
                short_s,
                lambda at=at: store.window(at - SAFETY_WINDOW_S, at),  # type: ignore[misc]
            )
            hour = await timed(
                hour_s,
                lambda at=at: store.window(at - SPEND_WINDOW_S, at),  # type: ignore[misc]
            )
            top = await timed(
                top_s,
                lambda at=at: store.top_users(at - TOP_USER_WINDOW_S, at, k),  # type: ignore[misc]
            )
            if (short, hour, top) != expect:
                raise SystemExit(f"tick {at}: the store disagrees with what was written")
            assert tick is not None
            if args.tenants:
                expected = truth.top_tenants(*tenant_spans(at), TENANT_K, TENANT_USERS)
                found = await timed(
                    with_tenants_s, partial(tick_with_tenants, evaluator, store, at)
                )
                alone = await timed(
                    tenants_s, partial(rounds.record, partial(read_tenants, store, at))
                )
                if found != expected or alone != expected:
                    raise SystemExit(f"tick {at}: top_tenants disagrees with what was written")
            await timed(prepare_s, lambda at=at: evaluator.prepare(at + WIDTH))  # type: ignore[misc]
        shown = [tick_s, short_s, hour_s, top_s, prepare_s, write_s]
        if args.tenants:
            shown[1:1] = [with_tenants_s, tenants_s]
        for series in shown:
            print(series.line())
        if args.tenants:
            held, keys = await tenant_memory(store.client, prefix)
            print(
                f"tenant keys: {keys:,} keys, {held / 2**20:.1f} MiB (MEMORY USAGE), "
                f"{held / args.tenants:,.0f} bytes per tenant ({args.tenants:,} tenants)"
            )
            print("\n".join(rounds.lines()))
            if with_tenants_s.ms:
                tick_s = with_tenants_s
        p99 = sorted(tick_s.ms)[round(0.99 * (len(tick_s.ms) - 1))]
        print(f"target tick p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'} ({p99:.1f} ms)")
        print(
            f"top user at the last tick: {expect[2][0]}, cost 1 h: "
            f"{expect[1].cost_nanousd / NANO:.2f} USD"
        )
    finally:
        await drop_keys(store.client, prefix)
        await store.close()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
