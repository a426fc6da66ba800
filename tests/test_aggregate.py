"""Pure aggregation and bucketing."""

from __future__ import annotations

from collections import Counter

import pytest
from batch_reference import aggregate
from hypothesis import given
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator, BucketDelta, Delta
from stream_sentinel.bucketing import bucket_of, bucket_seconds_for, buckets_in, tick_floor
from stream_sentinel.contract import MAX_COST_USD, ModelPrice, Pricing, nanousd, nanousd_sum
from stream_sentinel.decode import Decoder
from stream_sentinel.events import Rejection, RequestEvent, ResponseEvent
from stream_sentinel.model import NANO, WindowCounts

PRICES = {"m": ModelPrice(prompt_per_1k=0.5, completion_per_1k=1.5)}


def test_batch_counts_per_bucket_and_user() -> None:
    agg = BatchAggregator(60, PRICES)
    delta = aggregate(
        agg,
        [
            RequestEvent("1", 120.0, "a", blocked=True),
            RequestEvent("2", 179.999, "a", blocked=False),
            RequestEvent("3", 180.0, "b", blocked=False),
            ResponseEvent("4", 121.0, "a", safe=False, cost_usd=0.25),
            ResponseEvent("5", 122.0, "a", safe=True, model="m", prompt_tokens=1000),
            ResponseEvent("6", 123.0, "a", safe=True),
        ],
    )
    assert sorted(delta) == [120, 180]
    assert delta[120].counts() == WindowCounts(
        requests=2,
        blocked=1,
        responses=3,
        safe=2,
        cost_nanousd=NANO // 4 + NANO // 2,
        cost_unknown=1,
    )
    assert dict(delta[120].users) == {"a": 2}
    assert dict(delta[180].users) == {"b": 1}


def test_cost_from_price_table_and_unknowns() -> None:
    pricing = Pricing(PRICES)
    assert pricing.nanousd(None, "m", 2000, 1000) == round(2.5 * NANO)
    assert pricing.nanousd(None, "unknown-model", 2000, 1000) is None
    assert pricing.nanousd(None, "m", None, None) is None
    assert pricing.nanousd(0.0, None, None, None) == 0
    # absurd token counts become unknown rather than overflowing 64-bit counters
    assert pricing.nanousd(None, "m", 2**53 - 1, 0) is None


@given(
    st.lists(
        st.floats(0, MAX_COST_USD)
        | st.sampled_from([0.0, -0.0, 5e-10, 1.5e-9, 2.5e-9, 0.0125, MAX_COST_USD])
        | st.integers(0, 10**6)
    )
)
def test_the_batch_sum_of_nanousd_is_nanousd_summed(usds: list[float]) -> None:
    assert nanousd_sum(usds) == sum(nanousd(usd) for usd in usds)
    assert nanousd_sum(filter(None, usds)) == sum(nanousd(usd) for usd in usds)


def test_decoder_caps_cost_so_sums_fit_64_bits() -> None:
    d = Decoder()
    raw = b'{"event_id":"x","type":"response","ts":1,"user_id":"u","safe":true,"cost_usd":1e7}'
    result = d.decode(raw)
    assert isinstance(result, Rejection) and result.reason == "bad_number:cost_usd"


@given(st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from([1, 2, 5, 10, 15, 30, 60]))
def test_bucket_contains_ts(ts: float, width: int) -> None:
    b = bucket_of(ts, width)
    assert b % width == 0 and b <= ts < b + width


@given(st.integers(1, 3600))
def test_bucket_width_divides_tick_and_windows(tick: int) -> None:
    w = bucket_seconds_for(tick)
    assert tick % w == 0 and 300 % w == 0 and 3600 % w == 0 and w <= 60


def test_window_alignment_and_tick_floor() -> None:
    assert list(buckets_in(0, 180, 60)) == [0, 60, 120]
    assert tick_floor(119.9, 60) == 60
    try:
        buckets_in(1, 60, 60)
    except ValueError as exc:
        assert "aligned" in str(exc)
    else:
        raise AssertionError("misaligned window accepted")


def test_buckets_in_checks_both_ends_at_any_aligned_start() -> None:
    # starts past the first width: a check of `start / width` instead of
    # `start % width` would refuse these aligned windows
    assert list(buckets_in(120, 300, 60)) == [120, 180, 240]
    assert list(buckets_in(3600, 3620, 10)) == [3600, 3610]
    assert list(buckets_in(300, 300, 60)) == []
    with pytest.raises(ValueError) as misaligned_end:
        buckets_in(120, 301, 60)
    assert str(misaligned_end.value) == "window [120, 301) is not aligned to 60 s buckets"
    with pytest.raises(ValueError, match=r"^window \[61, 120\) is not aligned to 60 s buckets$"):
        buckets_in(61, 120, 60)


def test_bucket_width_of_usual_ticks() -> None:
    assert [bucket_seconds_for(t) for t in (1, 15, 45, 60, 90, 120, 300)] == [
        1,
        15,
        15,
        60,
        30,
        60,
        60,
    ]


@pytest.mark.parametrize("tick", [0, -60])
def test_tick_width_must_be_positive(tick: int) -> None:
    with pytest.raises(ValueError) as refused:
        bucket_seconds_for(tick)
    assert str(refused.value) == "tick_seconds must be positive"


def test_tick_floor_of_negative_and_exact_times() -> None:
    assert tick_floor(120.0, 60) == 120
    assert tick_floor(-0.5, 60) == -60
    assert tick_floor(59.999, 30) == 30
    assert bucket_of(-0.5, 60) == -60
    assert bucket_of(-1e-300, 10) == -10


def _requests(*spec: tuple[float, str, bool]) -> list[RequestEvent]:
    return [RequestEvent(f"r{i}", ts, user, blocked=b) for i, (ts, user, b) in enumerate(spec)]


def test_a_batch_adds_to_a_bucket_that_already_holds_counts() -> None:
    agg = BatchAggregator(60, PRICES)
    delta = aggregate(
        agg,
        [
            RequestEvent("0", 65.0, "a", blocked=True),
            ResponseEvent("1", 66.0, "a", safe=True, cost_usd=1.0),
            ResponseEvent("2", 67.0, "a", safe=True, model="nope"),
        ],
    )
    agg.count_requests(delta, _requests((61.0, "a", True), (62.0, "b", False), (63.0, "b", True)))
    agg.count_responses(
        delta,
        [
            ResponseEvent("3", 70.0, "b", safe=True, cost_usd=0.5),
            ResponseEvent("4", 71.0, "b", safe=False, model="m", completion_tokens=1000),
            ResponseEvent("5", 72.0, "b", safe=True),
        ],
    )
    assert list(delta) == [60]
    assert delta[60].counts() == WindowCounts(
        requests=4,
        blocked=3,
        responses=5,
        safe=4,
        cost_nanousd=NANO + NANO // 2 + round(1.5 * NANO),
        cost_unknown=2,
    )
    assert dict(delta[60].users) == {"a": 2, "b": 2}


def test_unordered_rows_over_many_buckets_are_split_exactly() -> None:
    agg = BatchAggregator(10, {})
    rows = _requests(
        (35.0, "c", False),
        (9.999, "a", True),
        (10.0, "b", False),
        (-0.5, "z", True),
        (39.999, "c", True),
        (19.0, "b", False),
    )
    delta: Delta = {}
    agg.count_requests(delta, rows)
    assert sorted(delta) == [-10, 0, 10, 30]
    assert {s: (d.requests, d.blocked) for s, d in delta.items()} == {
        -10: (1, 1),
        0: (1, 1),
        10: (2, 0),
        30: (2, 1),
    }
    assert dict(delta[30].users) == {"c": 2}
    assert delta == aggregate(agg, rows)
    # ordered input over several buckets takes the path without a sort
    ordered = sorted(rows, key=lambda r: r.ts)
    again: Delta = {}
    agg.count_requests(again, ordered)
    assert again == delta


def test_an_empty_batch_changes_nothing() -> None:
    agg = BatchAggregator(60, PRICES)
    delta: Delta = {0: BucketDelta(requests=1)}
    agg.count_requests(delta, [])
    agg.count_responses(delta, [])
    assert delta == {0: BucketDelta(requests=1)}


def test_bucket_deltas_merge_every_field() -> None:
    a = BucketDelta(1, 2, 3, 4, 5, 6, Counter({"u": 1}))
    a.merge(BucketDelta(10, 20, 30, 40, 50, 60, Counter({"u": 2, "v": 1})))
    assert a.counts() == WindowCounts(11, 22, 33, 44, 55, 66)
    assert a.users == Counter({"u": 3, "v": 1})
