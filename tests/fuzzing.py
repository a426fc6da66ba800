"""Hostile message generator and batch invariants, shared by the hypothesis fuzz tests
(tests/test_fuzz_decode.py) and the million-message run (tests/test_fuzz_million.py).

A generator draws from a ``random.Random`` so hypothesis can drive it
(``st.randoms()``, shrinkable) and the long run can seed it (reproducible).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from batch_reference import feed_one

from stream_sentinel.events import EventType
from stream_sentinel.ingest import BatchProcessor, Processed
from stream_sentinel.store.base import PartitionId

# Every reason a dead letter can carry: the decoder's bounded set (decode.py's
# docstring, <field> spelled out) plus the tombstone's "empty".
REASON = re.compile(
    r"empty|too_large|not_json|not_object|bad_ts|type_mismatch|ts_out_of_range|bad_value:type"
    r"|missing:(type|event_id|ts|user_id|blocked|safe)"
    r"|type:(type|event_id|ts|user_id|model|blocked|block_reason|request_id|safe"
    r"|safety_score|prompt_tokens|completion_tokens|cost_usd|tenant)"
    r"|length:(event_id|user_id|tenant)"
    r"|bad_number:(ts|safety_score|prompt_tokens|completion_tokens|cost_usd)"
)
NEIGHBOUR = "nbr-"  # user ids of the pristine events between the hostile ones
MAX_BYTES = 4096  # the decoder's limit in these runs, so too_large is reachable cheaply

_FIELDS = (
    "event_id", "type", "ts", "user_id", "blocked", "safe", "model", "block_reason",
    "request_id", "safety_score", "prompt_tokens", "completion_tokens", "cost_usd", "tenant",
)  # fmt: skip
_HUGE = (
    b"1e400", b"-1e400", b"1" * 400, b"-" + b"9" * 30, b"18446744073709551616",
    b"9007199254740993", b"1e-400", b"-0", b"0.0000000000000000000001", b"1E+308",
    b"NaN", b"Infinity", b"-Infinity", b"0x10", b"01", b"+1", b".5", b"1.",
)  # fmt: skip
_ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, "", "x", [], {}, [1, [2]], {"a": {"b": 1}},
    "\u202eevil", "\x1b[31mred", "line\nbreak", "{tag}", "a:b:c", "\u0000", "\ufeff",
    2**63, -(2**63), 2**64, 1e308, -1e308, 5e-324,
)  # fmt: skip


# valid tenants (1..256 characters, any of them): the mutations bend them
_TENANTS = ("team-a", "t" * 256, "\u20ac" * 256, '{x}:"\\', "\x1b[0m\n\u202e")


def _dumps(value: Any) -> bytes:
    # json, not orjson: it writes integers beyond 64 bits, which orjson refuses to
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def valid_event(rng: random.Random, now: float, user: str) -> dict[str, Any]:
    ts = round(now - rng.uniform(0, 3000), 3)
    doc: dict[str, Any]
    if rng.random() < 0.5:
        doc = {"event_id": f"e{rng.getrandbits(32)}", "type": "request", "ts": ts,
               "user_id": user, "blocked": rng.random() < 0.1}  # fmt: skip
    else:
        doc = {"event_id": f"e{rng.getrandbits(32)}", "type": "response",
               "ts": ts, "user_id": user, "safe": rng.random() < 0.9}  # fmt: skip
        if rng.random() < 0.5:
            doc.update(model="m", prompt_tokens=rng.randrange(5000), cost_usd=rng.random())
    if rng.random() < 0.5:
        doc["tenant"] = rng.choice(_TENANTS)
    return doc


def _flip(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _splice_bytes(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = rng.choice((b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00", b"\\", b'"', b"}"))
    return data[:i] + junk + data[i:]


def _type_swap(rng: random.Random, doc: dict[str, Any]) -> bytes:
    doc = dict(doc)
    doc[rng.choice(_FIELDS)] = rng.choice(_ODD_VALUES)
    return _dumps(doc)


def _huge_number(rng: random.Random, doc: dict[str, Any]) -> bytes:
    # written by hand: these literals are exactly what a JSON encoder would not emit
    name = rng.choice(("ts", "prompt_tokens", "completion_tokens", "cost_usd", "safety_score"))
    rest = orjson.dumps({k: v for k, v in doc.items() if k != name})
    return rest[:-1] + b',"' + name.encode() + b'":' + rng.choice(_HUGE) + b"}"


def _deep(rng: random.Random, doc: dict[str, Any]) -> bytes:
    depth = rng.choice((2, 100, 1023, 1024, 1025, 1900))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    nested = opener * depth + b"1" + closer * depth
    if rng.random() < 0.5:
        return nested  # the whole message
    rest = orjson.dumps(doc)
    return rest[:-1] + b',"extra":' + nested + b"}"


def _duplicate_key(rng: random.Random, doc: dict[str, Any]) -> bytes:
    name = rng.choice(_FIELDS)
    value = _dumps(rng.choice(_ODD_VALUES))
    raw = orjson.dumps(doc)
    if rng.random() < 0.5:
        return raw[:-1] + b',"' + name.encode() + b'":' + value + b"}"
    return b'{"' + name.encode() + b'":' + value + b"," + raw[1:]


def _oversized(rng: random.Random, doc: dict[str, Any]) -> bytes:
    pad = MAX_BYTES + rng.choice((-40, 0, 1, 100, 60_000))
    return orjson.dumps({**doc, "padding": "p" * max(pad, 0)})


def _random_bytes(rng: random.Random, doc: dict[str, Any]) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 2, 16, 300, MAX_BYTES + 1)))


def _not_an_object(rng: random.Random, doc: dict[str, Any]) -> bytes:
    return rng.choice((b"[]", b"null", b"1", b'"s"', b"true", b"[" + orjson.dumps(doc) + b"]"))


def _text_noise(rng: random.Random, doc: dict[str, Any]) -> bytes:
    raw = orjson.dumps(doc)
    return rng.choice((b"\xef\xbb\xbf" + raw, b" \n\t" + raw + b" \r\n", raw + raw, raw + b"x"))


_BYTE_MUTATORS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _flip,
    _truncate,
    _splice_bytes,
)
_DOC_MUTATORS: tuple[Callable[[random.Random, dict[str, Any]], bytes], ...] = (
    _type_swap,
    _huge_number,
    _deep,
    _duplicate_key,
    _oversized,
    _random_bytes,
    _not_an_object,
    _text_noise,
)


def hostile(rng: random.Random, now: float) -> tuple[str, bytes]:
    """One hostile message and the name of the mutation that made it."""
    doc = valid_event(rng, now, user=f"u{rng.randrange(50)}")
    pick = rng.randrange(len(_BYTE_MUTATORS) + len(_DOC_MUTATORS))
    if pick < len(_BYTE_MUTATORS):
        mutate = _BYTE_MUTATORS[pick]
        return mutate.__name__.lstrip("_"), mutate(rng, orjson.dumps(doc))
    mutator = _DOC_MUTATORS[pick - len(_BYTE_MUTATORS)]
    return mutator.__name__.lstrip("_"), mutator(rng, doc)


@dataclass
class Tally:
    messages: int = 0
    counted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    row_path: int = 0  # hostile messages the C row path took, each checked against Decoder


def run_batch(
    processor: BatchProcessor,
    rng: random.Random,
    *,
    now: float,
    size: int,
    first_offset: int,
    tally: Tally,
    topic_type: EventType | None = None,
) -> Processed:
    """Push ``size`` records, every third one a pristine neighbour, through one batch
    and check the invariants; raises AssertionError on any violation."""
    records: list[tuple[int, bytes | None]] = []
    neighbours: list[str] = []  # user ids of the pristine requests
    for i in range(size):
        offset = first_offset + i
        if i % 3 == 0:
            user = f"{NEIGHBOUR}{offset}"
            doc = valid_event(rng, now, user)
            if topic_type is not None:
                doc["type"] = topic_type
                doc.update({"blocked": False} if topic_type == "request" else {"safe": True})
            if doc["type"] == "request":
                neighbours.append(user)
            records.append((offset, orjson.dumps(doc)))
        elif rng.random() < 0.01:
            records.append((offset, None))
            tally.mutations["tombstone"] += 1
        else:
            name, raw = hostile(rng, now)
            tally.mutations[name] += 1
            records.append((offset, raw))
    part = PartitionId("fuzz", 0)
    out = processor.process(
        part=part,
        topic_type=topic_type,
        offsets=[offset for offset, _ in records],
        values=[raw for _, raw in records],
        now=now,
    )
    assert out.next_offset == first_offset + size
    assert out.counted + len(out.dead) == size, (out.counted, len(out.dead), size)
    raw_of = dict(records)
    for dead in out.dead:
        assert REASON.fullmatch(dead.reason), dead.reason
        assert (dead.topic, dead.partition) == ("fuzz", 0)
        assert dead.raw == (raw_of[dead.offset] or b"")
        orjson.loads(dead.to_json())  # a dead letter is always publishable JSON
        tally.reasons[dead.reason] += 1
    # every pristine neighbour counted exactly once, whatever surrounded it
    seen: Counter[str] = Counter()
    for inc in out.delta.values():
        for user, n in inc.users.items():
            if user.startswith(NEIGHBOUR):
                seen[user] += n
    # (users are tallied for requests: top_user_rps counts requests)
    assert seen == Counter(neighbours)
    if topic_type is not None:
        _check_row_path(processor, part, topic_type, records, now, out, tally)
    tally.messages += size
    tally.counted += out.counted
    return out


def _check_row_path(
    processor: BatchProcessor,
    part: PartitionId,
    topic_type: EventType,
    records: list[tuple[int, bytes | None]],
    now: float,
    out: Processed,
    tally: Tally,
) -> None:
    """``process`` takes what msgspec rows can and leaves the rest to the
    decoder: the batch must count exactly what feeding the records one by one
    through the decoder alone counts, and each message a row takes must be
    one the decoder counts."""
    want = Processed({}, records[0][0])
    for offset, raw in records:
        feed_one(processor, want, part, topic_type, offset, raw, now)
    _same_counts(out, want)
    assert out.dead == want.dead
    rows = processor.rows.rows([raw for _, raw in records], topic_type)
    first = records[0][0]
    for (offset, raw), row in zip(records, rows, strict=True):
        if (offset - first) % 3 == 0 or row is None:
            continue  # a pristine neighbour: test_process_rows.py covers valid events
        tally.row_path += 1
        one = Processed({}, offset)
        assert feed_one(processor, one, part, topic_type, offset, raw, None) is not None, raw


def _same_counts(got: Processed, want: Processed) -> None:
    assert got.delta == want.delta
    assert got.outcomes == want.outcomes
    assert got.max_ts == want.max_ts
