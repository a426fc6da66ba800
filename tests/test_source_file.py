"""Recorded logs as a source: block reads give exactly the lines iteration gives.

``read_lines`` reads big blocks and splits them; the reference is Python's
own line iteration of the same file, keeping each line's ``\\n`` and dropping
blank ones. Small blocks make lines span block boundaries.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel import source_file
from stream_sentinel.cli.main import main
from stream_sentinel.source_file import LogReadError, read_lines, total_bytes


def reference(data: bytes) -> list[bytes]:
    return [line for line in io.BytesIO(data) if line.strip()]


def read_all(paths: list[str]) -> tuple[list[list[bytes]], int]:
    seen: list[int] = []
    chunks = list(read_lines(paths, seen.append))
    return chunks, sum(seen)


PIECES = st.sampled_from([b"{}", b'{"a":1}', b"x" * 40, b" ", b"\t", b"\r", b"\n", b"\n\n"])
DATA = st.lists(PIECES, max_size=40).map(b"".join)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DATA, st.integers(1, 64), st.booleans())
def test_lines_are_what_iterating_the_file_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, block: int, gz: bool
) -> None:
    monkeypatch.setattr(source_file, "BLOCK_BYTES", block)
    path = tmp_path / ("log.jsonl.gz" if gz else "log.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    chunks, progress = read_all([str(path)])
    assert [line for chunk in chunks for line in chunk] == reference(data)
    assert all(chunks)  # no empty chunks
    assert progress == path.stat().st_size == total_bytes([str(path)])


def test_several_files_in_order_and_a_last_line_without_newline(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    a.write_bytes(b'{"n":1}\n\n{"n":2}')
    b.write_bytes(gzip.compress(b'{"n":3}\r\n  \n{"n":4}\n'))
    chunks, progress = read_all([str(a), str(b)])
    lines = [line for chunk in chunks for line in chunk]
    assert lines == [b'{"n":1}\n', b'{"n":2}', b'{"n":3}\r\n', b'{"n":4}\n']
    assert progress == a.stat().st_size + b.stat().st_size


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"  # compressed, but not named .gz
    path.write_bytes(gzip.compress(b'{"n":1}\n'))
    assert read_all([str(path)])[0] == [[b'{"n":1}\n']]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'{"n":1}\n\n{"n":2}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert [line for chunk in read_lines(["-"]) for line in chunk] == reference(data)
    assert total_bytes(["-"]) is None


def test_memory_is_bounded_by_the_block_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # replay holds one chunk at a time: a chunk is one block's lines (plus
    # the line that spans into the next block), never the whole file
    monkeypatch.setattr(source_file, "BLOCK_BYTES", 4096)
    line = b'{"event_id":"e","type":"request","ts":1,"user_id":"u","blocked":false}\n'
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(line * 20_000))
    sizes = [sum(map(len, chunk)) for chunk in read_lines([str(path)])]
    assert sum(sizes) == len(line) * 20_000
    assert max(sizes) <= 4096 + len(line)
    assert len(sizes) >= len(line) * 20_000 // 4096


LINE = b'{"event_id":"e","type":"request","ts":1,"user_id":"u","blocked":false}\n'


def test_a_big_multi_member_gzip_log_reads_as_gzip_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(random_lines(150_000, compresslevel=1) + random_lines(1000, 9))
    chunks, progress = read_all([str(path)])
    flat = [line for chunk in chunks for line in chunk]
    with gzip.open(path, "rb") as stdlib:
        assert flat == reference(stdlib.read())
    assert len(flat) == 151_000
    assert progress == path.stat().st_size


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]


def random_lines(n: int, compresslevel: int) -> bytes:
    """n distinct lines that compress poorly, so a small count makes a big file."""
    lines = (f'{{"n":{i},"r":"{os.urandom(12).hex()}"}}\n'.encode() for i in range(n))
    return gzip.compress(b"".join(lines), compresslevel=compresslevel)


# what isal says; Python's gzip module refuses each of these too (checked below)
DAMAGE_MESSAGES = {
    "truncated": "Compressed file ended before the end-of-stream marker was reached",
    "bad crc": "CRC check failed",
    # isal reads the garbage as a member that ends early (gzip: "Not a gzipped file")
    "trailing garbage": "Compressed file ended before the end-of-stream marker was reached",
    "not deflate": "Unknown compression method",
    "bad deflate block": "Error -1 Invalid deflate block found",
}

BROKEN: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "bad crc": _bad_crc,
    "trailing garbage": lambda data: data + b"garbage!",
    "not deflate": lambda data: data[:2] + b"\x07" + data[3:],
    "bad deflate block": lambda data: data[:20] + b"\xff" * 50 + data[70:],
}


@pytest.mark.parametrize("damage", list(BROKEN))
def test_a_damaged_gzip_log_raises_an_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "damaged.jsonl.gz"
    path.write_bytes(BROKEN[damage](gzip.compress(LINE * 50_000)))
    with pytest.raises(LogReadError) as raised:
        read_all([str(path)])
    assert str(raised.value).startswith(f"{path}: {DAMAGE_MESSAGES[damage]}")
    # the same file is refused by Python's gzip module: isal takes nothing it would not
    with pytest.raises((OSError, EOFError, zlib.error)), gzip.open(path, "rb") as stdlib:
        stdlib.read()


def test_an_empty_gz_file_has_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(b"")
    assert read_all([str(path)]) == ([], 0)


def test_a_missing_log_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    for read in (lambda: total_bytes([missing]), lambda: read_all([missing])):
        with pytest.raises(LogReadError) as raised:
            read()
        assert str(raised.value) == f"{missing}: No such file or directory"


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_replay_of_an_unreadable_log_exits_1_naming_it(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.jsonl.gz"
    if damage == "truncated":
        path.write_bytes(_truncated(gzip.compress(LINE * 50_000)))
    assert main(["replay", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read {path}: ")
    assert "Traceback" not in err


def test_produce_of_a_missing_log_exits_1_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a closed port: reaching Kafka would fail differently, and slowly
    monkeypatch.setenv("SENTINEL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    missing = tmp_path / "nope.jsonl"
    assert main(["produce", str(missing)]) == 1
    assert capsys.readouterr().err == f"error: cannot read {missing}: No such file or directory\n"
