"""Pure aggregation and bucketing."""

from __future__ import annotations

from batch_reference import aggregate
from hypothesis import given
from hypothesis import strategies as st

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.bucketing import bucket_of, bucket_seconds_for, buckets_in, tick_floor
from stream_sentinel.contract import ModelPrice, Pricing
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
