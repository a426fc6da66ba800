"""Recorded logs as a source: block reads give exactly the lines iteration gives.

``read_lines`` reads big blocks and splits them; the reference is Python's
own line iteration of the same file, keeping each line's ``\\n`` and dropping
blank ones. Small blocks make lines span block boundaries.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel import source_file
from stream_sentinel.source_file import read_lines, total_bytes


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
