"""Fuzzing the decoder and the batch path with hostile messages (tests/fuzzing.py):
random bytes, byte flips, truncation, type swaps, huge numbers, deep nesting,
duplicate keys, oversized and non-object messages.

Invariants: nothing raises; every record is either counted or a dead letter whose
reason is in the bounded set; the pristine events between the hostile ones are
all counted. The million-message run of the same generator is
tests/test_fuzz_million.py (marker ``fuzz``, not in the default run).
"""

from __future__ import annotations

import math
import random

import orjson
import pytest
from fuzzing import MAX_BYTES, REASON, Tally, hostile, run_batch, valid_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.contract import ModelPrice
from stream_sentinel.decode import Decoder
from stream_sentinel.events import EventType, Rejection, RequestEvent, ResponseEvent
from stream_sentinel.ingest import BatchProcessor

NOW = 1_790_000_000.0


def processor() -> BatchProcessor:
    decoder = Decoder(max_bytes=MAX_BYTES)
    return BatchProcessor(decoder, BatchAggregator(60, {"m": ModelPrice(0.5, 1.5)}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    size=st.integers(1, 80),
    topic=st.sampled_from([None, "request", "response"]),
)
def test_hostile_batches_dead_letter_the_bad_and_count_the_good(
    rng: random.Random, size: int, topic: EventType | None
) -> None:
    run_batch(processor(), rng, now=NOW, size=size, first_offset=rng.randrange(10**9),
              tally=Tally(), topic_type=topic)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(rng=st.randoms(use_true_random=False), topic=st.sampled_from([None, "request"]))
def test_decoder_alone_never_raises_and_names_a_bounded_reason(
    rng: random.Random, topic: EventType | None
) -> None:
    decoder = Decoder(max_bytes=MAX_BYTES)
    for _ in range(10):
        _, raw = hostile(rng, NOW)
        got = decoder.decode(raw, topic_type=topic, now=NOW)
        if isinstance(got, Rejection):
            assert REASON.fullmatch(got.reason), got.reason
            assert "\x1b" not in got.detail and "\n" not in got.detail
        else:
            assert isinstance(got, RequestEvent | ResponseEvent)
            assert math.isfinite(got.ts)


def test_a_long_seeded_run_meets_every_mutation_and_many_reasons() -> None:
    # the generator must actually reach the cases it claims to: a fuzzer that
    # only ever produced not_json would pass the tests above and prove little
    tally = Tally()
    rng = random.Random(7)
    p = processor()
    topics: tuple[EventType | None, ...] = (None, "request", "response")
    for batch in range(40):
        run_batch(p, rng, now=NOW, size=500, first_offset=batch * 500, tally=tally,
                  topic_type=topics[batch % 3])  # fmt: skip
    assert set(tally.mutations) >= {
        "flip", "truncate", "splice_bytes", "type_swap", "huge_number", "deep",
        "duplicate_key", "oversized", "random_bytes", "not_an_object", "text_noise", "tombstone",
    }  # fmt: skip
    assert {"too_large", "not_json", "not_object", "empty", "bad_number:ts"} <= set(tally.reasons)
    assert {"type:tenant", "length:tenant"} <= set(tally.reasons)  # type swaps reach it
    assert len(tally.reasons) >= 15, tally.reasons
    assert tally.counted > tally.messages // 3  # the neighbours, and mutants still valid
    assert tally.row_path > 100  # mutants the msgspec row path took, compared with Decoder


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1025 + b"]" * 1025, "not_json"),  # deeper than orjson's 1024 levels
        (b'{"a":' * 1100 + b"1" + b"}" * 1100, "not_json"),
        (b"[" * 1000 + b"]" * 1000, "not_object"),
        (b'{"ts":1e400}', "not_json"),  # overflows a double
        (b"\xef\xbb\xbf{}", "not_json"),  # a BOM is not JSON
    ],
)
def test_edge_cases_have_fixed_reasons(raw: bytes, reason: str) -> None:
    got = Decoder().decode(raw, now=NOW)
    assert isinstance(got, Rejection) and got.reason == reason


def test_duplicate_keys_last_one_wins_even_when_it_is_hostile() -> None:
    doc = valid_event(random.Random(1), NOW, "u")
    raw = orjson.dumps(doc)[:-1] + b',"user_id":{"nested":1}}'
    got = Decoder().decode(raw, now=NOW)
    assert isinstance(got, Rejection) and got.reason == "type:user_id"
    raw = orjson.dumps(doc)[:-1] + b',"user_id":"second"}'
    event = Decoder().decode(raw, now=NOW)
    assert not isinstance(event, Rejection) and event.user_id == "second"
