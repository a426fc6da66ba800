"""A million hostile messages through the batch path: the long run of tests/fuzzing.py.

Not in the default run (marker ``fuzz``, deselected by addopts); run it with

    PYTHONPATH=. .venv/bin/pytest -m fuzz -s tests/test_fuzz_million.py

``FUZZ_MESSAGES`` (1000000) and ``FUZZ_SEED`` (1) change the size and the
stream; the summary (messages, counted, dead letters by reason, mutations,
time) is printed, and written as JSON to ``FUZZ_REPORT`` when that is set.
Figures of a recorded run are in docs/fuzzing.md.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from fuzzing import MAX_BYTES, Tally, run_batch

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.contract import ModelPrice
from stream_sentinel.decode import Decoder
from stream_sentinel.events import EventType
from stream_sentinel.ingest import BatchProcessor

pytestmark = pytest.mark.fuzz

NOW = 1_790_000_000.0
BATCH = 5000


def test_a_million_hostile_messages() -> None:
    total = int(os.environ.get("FUZZ_MESSAGES", "1000000"))
    seed = int(os.environ.get("FUZZ_SEED", "1"))
    rng = random.Random(seed)
    processor = BatchProcessor(
        Decoder(max_bytes=MAX_BYTES), BatchAggregator(60, {"m": ModelPrice(0.5, 1.5)})
    )
    topics: tuple[EventType | None, ...] = (None, "request", "response")
    tally = Tally()
    started = time.perf_counter()
    offset = 0
    while offset < total:
        size = min(BATCH, total - offset)
        run_batch(processor, rng, now=NOW, size=size, first_offset=offset, tally=tally,
                  topic_type=topics[(offset // BATCH) % 3])  # fmt: skip
        offset += size
    seconds = time.perf_counter() - started
    summary = {
        "messages": tally.messages,
        "counted": tally.counted,
        "dead_letters": sum(tally.reasons.values()),
        "reasons": dict(tally.reasons.most_common()),
        "mutations": dict(tally.mutations.most_common()),
        "row_path_checked": tally.row_path,
        "seconds": round(seconds, 1),
        "seed": seed,
    }
    print(json.dumps(summary, indent=2))
    if report := os.environ.get("FUZZ_REPORT"):
        Path(report).write_text(json.dumps(summary, indent=2) + "\n")
    assert tally.messages == total
    assert tally.counted + sum(tally.reasons.values()) == total
