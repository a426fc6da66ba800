"""aiokafka's records without a ``ConsumerRecord`` per message, for one consumer.

aiokafka parses a fetched batch in C, then wraps every record in a Python
``ConsumerRecord`` (eleven fields, a tuple of headers, two length checks) in
``PartitionRecords._consumer_record``. Ingestion reads two of those fields,
``offset`` and ``value``, which the parsed record already has; without the
wrapping, ingestion ran at 158k-175k instead of 132k-141k events/s (see
docs/benchmarks.md, "parsed records, taken in short steps").

``use_lean_records`` makes one started consumer hand out the parsed records
themselves. Everything else stays aiokafka's: fetching, positions, control
batches, aborted transactions, CRC checks. It touches four private names of
aiokafka (checked on 0.14: ``AIOKafkaConsumer._fetcher``, ``Fetcher._records``,
``FetchResult._partition_records``, ``PartitionRecords._consumer_record``)
and checks each before using it: if any is missing or shaped differently,
the consumer keeps the stock records and the caller is told so (the service
logs it once). Other consumers in the process are not touched. pyproject pins
aiokafka below the first release not tested (0.15), and
``tests/kafka/test_kafka_records.py`` fails loudly when the installed
aiokafka's names are not the expected ones.

``Fetched`` holds one partition's records reduced to offsets and values, so
the client's record objects can be dropped as soon as they are read.
"""

from __future__ import annotations

import bisect
import inspect
import operator
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer


class KafkaRecord(Protocol):
    """What ingestion reads of a record: a ``ConsumerRecord`` or a parsed one."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


def _parsed(tp: Any, record: Any) -> Any:
    """Stands in for ``PartitionRecords._consumer_record``: the record as parsed."""
    return record


class _LeanResults(OrderedDict[Any, Any]):
    """The fetcher's table of fetched partitions; every result put in it
    hands out parsed records. Only assignment is intercepted: the fetcher
    stores each new result with ``self._records[tp] = FetchResult(...)``."""

    def __init__(self, result_type: Any) -> None:
        super().__init__()
        self._result_type: Any = result_type

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(value) is self._result_type:
            # an instance attribute shadows the method the record loop calls
            value._partition_records._consumer_record = _parsed
        super().__setitem__(key, value)


def use_lean_records(consumer: AIOKafkaConsumer) -> bool:
    """Make a started ``consumer`` hand out parsed records; False if this
    aiokafka's internals are not the ones expected (stock records then)."""
    table = getattr(getattr(consumer, "_fetcher", None), "_records", None)
    if type(table) is not OrderedDict or table:
        return False
    try:
        from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
    except ImportError:
        return False
    if _params(getattr(PartitionRecords, "_consumer_record", None)) != ["self", "tp", "record"]:
        return False
    if "partition_records" not in _params(FetchResult.__init__):
        return False
    consumer._fetcher._records = _LeanResults(FetchResult)
    return True


def _params(function: Any) -> list[str]:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []


_OFFSET = operator.attrgetter("offset")
_VALUE = operator.attrgetter("value")


class Fetched:
    """One partition's fetched records, reduced to their offsets and values.

    Records are dropped as soon as they are read: aiokafka's are tracked by
    the cyclic GC, and thousands of them held across collections get
    promoted and traversed again and again; bytes and ints are not tracked.
    Offsets are a ``range`` while they run without gaps (the common case:
    gaps come from compaction and transaction markers), a list otherwise.
    """

    __slots__ = ("offsets", "values")

    def __init__(self) -> None:
        self.offsets: range | list[int] = range(0)
        self.values: list[bytes | None] = []

    def add(self, records: Sequence[KafkaRecord]) -> None:
        if not records:
            return
        first, last = records[0].offset, records[-1].offset
        contiguous = last - first + 1 == len(records)
        offsets = self.offsets
        if type(offsets) is range and contiguous and (not offsets or offsets.stop == first):
            self.offsets = range(offsets.start if offsets else first, last + 1)
        else:
            listed = list(offsets) if type(offsets) is range else offsets
            listed.extend(range(first, last + 1) if contiguous else map(_OFFSET, records))
            self.offsets = listed
        self.values.extend(map(_VALUE, records))

    def __len__(self) -> int:
        return len(self.values)

    def since(self, position: int) -> Fetched:
        """The records at ``position`` or after."""
        offsets = self.offsets
        if not offsets or offsets[0] >= position:
            return self
        skip = bisect.bisect_left(offsets, position)
        out = Fetched()
        out.offsets = offsets[skip:]
        out.values = self.values[skip:]
        return out
