"""``RedisStore.apply`` A/B: another revision's APPLY script against this one's.

    git show main:stream_sentinel/store/redis_scripts.py > /tmp/old_scripts.py
    .venv/bin/python bench/apply_ab.py /tmp/old_scripts.py [--batches 300]

Needs REDIS_URL. Two stores on fresh prefixes, one running the old script,
write the same batches (500 users of one bucket, no tenant) alternately, with
running windows in place as in the service, and the p50/p90 of each is
printed; both must hold the same window afterwards. For changes to APPLY that
must not cost a batch without tenants anything.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
import uuid

from stream_sentinel.aggregate import BucketDelta
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect


def old_apply(path: str) -> str:
    spec = importlib.util.spec_from_file_location("old_scripts", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script: str = module.APPLY
    return script


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_scripts", help="a copy of another revision's redis_scripts.py")
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        raise SystemExit('REDIS_URL is not set: eval "$(scripts/services start)" first')
    script = old_apply(args.old_scripts)
    stores: dict[str, RedisStore] = {}
    for name in ("old", "this"):
        store = RedisStore(
            connect(url),
            prefix=f"bench-ab:{uuid.uuid4().hex[:8]}",
            bucket_width=60,
            counter_ttl_s=4000,
            user_ttl_s=900,
        )
        if name == "old":
            store.use_apply_script(script)
        stores[name] = store
    t0 = int(time.time()) // 300 * 300
    part = PartitionId("r", 0)
    times: dict[str, list[float]] = {name: [] for name in stores}
    offsets: dict[str, int | None] = dict.fromkeys(stores)
    try:
        for store in stores.values():
            await store.prepare([(t0 - 240, t0 + 60, True), (t0 - 3540, t0 + 60, False)])
        for i in range(args.batches):
            inc = BucketDelta(requests=500, blocked=3, responses=500, safe=499, cost_nanousd=10**9)
            for u in range(500):
                inc.users[f"user-{(i * 7 + u) % 5000}"] += 1
            for name in ("old", "this") if i % 2 else ("this", "old"):
                began = time.perf_counter()
                prev = offsets[name]
                await stores[name].apply(part, prev, (prev or 0) + 1, {t0: inc})
                times[name].append((time.perf_counter() - began) * 1000)
                offsets[name] = (prev or 0) + 1
        for name, ms in times.items():
            ms.sort()
            print(
                f"{name:5} apply p50 {statistics.median(ms):.2f} ms   "
                f"p90 {ms[int(0.9 * len(ms))]:.2f} ms   ({len(ms)} batches of 500 users)"
            )
        old, this = [await s.window(t0 - 240, t0 + 60) for s in stores.values()]
        if old != this:
            raise SystemExit(f"the two scripts disagree: {old} != {this}")
    finally:
        for store in stores.values():
            await store.drop_all()
            await store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
