"""Event shapes for the benches: as ``simulate`` writes them, or as real producers do.

Gateways and loggers write ``ts`` as RFC 3339 text in milliseconds and add
fields of their own (ids, a region, a latency, a client object). The contract
allows both; ``--shape producer`` measures the decoder on them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

SHAPES = ("contract", "producer")
_REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


def producer_shaped(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``event`` with an RFC 3339 ``ts`` ("2026-10-29T00:00:01.019Z") and five
    extra fields: three strings, a number and a small nested object."""
    when = datetime.fromtimestamp(event["ts"], UTC)
    return {
        **event,
        "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "env": "prod",
        "region": rng.choice(_REGIONS),
        "latency_ms": round(rng.uniform(20, 2000), 1),
        "client": {"name": "gateway", "version": "2.14.1", "retries": rng.randrange(3)},
        "trace_id": f"{rng.getrandbits(128):032x}",
    }


def shaped(events: Iterable[dict[str, Any]], shape: str, seed: int) -> Iterator[dict[str, Any]]:
    if shape == "contract":
        yield from events
        return
    rng = random.Random(seed)
    for event in events:
        yield producer_shaped(event, rng)
