"""Fetched: records reduced to offsets and values; use_lean_records' checks."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from stream_sentinel.kafka.records import Fetched, use_lean_records


@dataclass(frozen=True)
class Record:
    offset: int
    value: bytes | None


def records(offsets: list[int]) -> list[Record]:
    return [Record(o, None if o % 7 == 3 else str(o).encode()) for o in offsets]


def fetched(*steps: list[int]) -> Fetched:
    out = Fetched()
    for step in steps:
        out.add(records(step))
    return out


def test_contiguous_steps_stay_one_range() -> None:
    out = fetched([5, 6, 7], [8, 9], [10])
    assert out.offsets == range(5, 11)
    assert out.values == [r.value for r in records(list(range(5, 11)))]
    assert len(out) == 6


def test_a_gap_between_steps_lists_the_offsets() -> None:
    # a transaction marker takes offset 8: records 5-7, then 9-10
    out = fetched([5, 6, 7], [9, 10])
    assert type(out.offsets) is list
    assert out.offsets == [5, 6, 7, 9, 10]


def test_a_gap_inside_a_step_lists_the_offsets() -> None:
    out = fetched([5, 6, 8], [9, 10])
    assert out.offsets == [5, 6, 8, 9, 10]
    assert out.values == [r.value for r in records([5, 6, 8, 9, 10])]


def test_an_empty_step_changes_nothing() -> None:
    out = fetched([], [3, 4], [])
    assert out.offsets == range(3, 5)
    assert len(fetched([])) == 0


def test_since_drops_records_below_the_position() -> None:
    out = fetched([5, 6, 7], [9, 10])
    kept = out.since(7)
    assert list(kept.offsets) == [7, 9, 10]
    assert kept.values == [r.value for r in records([7, 9, 10])]
    assert out.since(5) is out
    assert len(out.since(11)) == 0
    assert fetched([1, 2, 3]).since(3).offsets == range(3, 4)


@given(
    st.lists(st.integers(1, 3), max_size=60),  # gaps between offsets (1: none)
    st.lists(st.integers(0, 8), max_size=12),  # step sizes
    st.integers(0, 200),
)
def test_any_offsets_in_any_steps(gaps: list[int], sizes: list[int], position: int) -> None:
    offsets, at = [], 0
    for gap in gaps:
        at += gap
        offsets.append(at)
    steps, i = [], 0
    for size in sizes:
        steps.append(offsets[i : i + size])
        i += size
    steps.append(offsets[i:])
    out = fetched(*steps)
    assert list(out.offsets) == offsets
    assert out.values == [r.value for r in records(offsets)]
    if all(b - a == 1 for a, b in itertools.pairwise(offsets)):
        assert type(out.offsets) is range
    kept = out.since(position)
    assert list(kept.offsets) == [o for o in offsets if o >= position]
    assert kept.values == [r.value for r in records(offsets) if r.offset >= position]


def test_lean_records_refuse_an_unexpected_consumer() -> None:
    """Internals that are not the expected ones leave the consumer alone."""
    assert not use_lean_records(SimpleNamespace())  # type: ignore[arg-type]
    plain = SimpleNamespace(_fetcher=SimpleNamespace(_records={}))
    assert not use_lean_records(plain)  # type: ignore[arg-type]
    assert plain._fetcher._records == {}
    busy = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict(a=1)))
    assert not use_lean_records(busy)  # type: ignore[arg-type]
    assert busy._fetcher._records == OrderedDict(a=1)


def test_lean_records_take_the_expected_shape() -> None:
    idle = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict()))
    assert use_lean_records(idle)  # type: ignore[arg-type]
    assert type(idle._fetcher._records) is not OrderedDict
    assert isinstance(idle._fetcher._records, OrderedDict)


def _batch(base_offset: int, values: list[bytes | None]) -> bytes:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_000, key=b"k", value=value, headers=[])
    built = bytes(builder.build())
    return base_offset.to_bytes(8, "big") + built[8:]


def test_a_fetched_result_hands_out_parsed_records_with_the_same_fields() -> None:
    from aiokafka import ConsumerRecord, TopicPartition
    from aiokafka.consumer.fetcher import READ_UNCOMMITTED, FetchResult, PartitionRecords
    from aiokafka.record.memory_records import MemoryRecords

    values: list[bytes | None] = [b"a", None, b"c", b"d"]
    data = _batch(40, values[:2]) + _batch(42, values[2:])
    tp = TopicPartition("t", 0)

    def result() -> tuple[FetchResult, PartitionRecords]:
        parts = PartitionRecords(
            tp, MemoryRecords(data), [], 40, None, None, True, READ_UNCOMMITTED
        )
        return FetchResult(tp, assignment=None, partition_records=parts, backoff=0), parts

    _, stock_parts = result()
    stock = list(stock_parts)
    assert all(type(r) is ConsumerRecord for r in stock)

    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict()))
    assert use_lean_records(consumer)  # type: ignore[arg-type]
    lean_result, lean_parts = result()
    consumer._fetcher._records[tp] = lean_result
    consumer._fetcher._records["error"] = "a FetchError is left alone"
    lean = list(lean_parts)
    assert not any(type(r) is ConsumerRecord for r in lean)
    assert [(r.offset, r.value) for r in lean] == [(r.offset, r.value) for r in stock]
    assert [r.offset for r in lean] == [40, 41, 42, 43]
    assert lean_parts.next_fetch_offset == stock_parts.next_fetch_offset == 44
    assert consumer._fetcher._records["error"] == "a FetchError is left alone"


def test_the_installed_aiokafka_has_the_internals_lean_records_patch() -> None:
    """Fails loudly, rather than letting the service fall back to stock
    records, when an aiokafka upgrade moves the four private names: raise
    pyproject's upper bound only together with a pass of this test and of
    tests/integration/test_lean_records.py on the new version."""
    import inspect

    import aiokafka
    from aiokafka.consumer.fetcher import Fetcher, FetchResult, PartitionRecords

    assert list(inspect.signature(PartitionRecords._consumer_record).parameters) == [
        "self",
        "tp",
        "record",
    ]
    assert "partition_records" in inspect.signature(FetchResult.__init__).parameters
    fetcher_init = inspect.getsource(Fetcher.__init__)
    assert "self._records = collections.OrderedDict()" in fetcher_init or (
        "self._records = OrderedDict()" in fetcher_init
    )
    assert "_fetcher" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    records_loop = inspect.getsource(PartitionRecords)
    assert "self._consumer_record(" in records_loop


def test_pyproject_pins_the_aiokafka_these_internals_were_tested_on() -> None:
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (aiokafka,) = [d for d in deps if d.startswith("aiokafka")]
    assert "<0.15" in aiokafka  # the newest minor release the patch is tested on: 0.14
    major, minor = (int(part) for part in version("aiokafka").split(".")[:2])
    assert (major, minor) < (0, 15), "aiokafka newer than the tested bound is installed"
