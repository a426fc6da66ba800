"""Recorded logs as a source: block reads give exactly the lines iteration gives.

``read_lines`` reads big blocks and splits them; the reference is Python's
own line iteration of the same file, keeping each line's ``\\n`` and dropping
blank ones. Small blocks make lines span block boundaries.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sentinel import source_file
from stream_sentinel.cli.main import main
from stream_sentinel.source_file import LogReadError, read_lines, total_bytes


def reference(data: bytes) -> list[bytes]:
    return [line for line in io.BytesIO(data) if line.strip()]


def read_all(paths: list[str], gunzip_process: bool = True) -> tuple[list[list[bytes]], int]:
    seen: list[int] = []
    chunks = list(read_lines(paths, seen.append, gunzip_process=gunzip_process))
    return chunks, sum(seen)


PIECES = st.sampled_from([b"{}", b'{"a":1}', b"x" * 40, b" ", b"\t", b"\r", b"\n", b"\n\n"])
DATA = st.lists(PIECES, max_size=40).map(b"".join)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DATA, st.integers(1, 64), st.booleans(), st.booleans())
def test_lines_are_what_iterating_the_file_gives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    block: int,
    gz: bool,
    gunzip_process: bool,
) -> None:
    monkeypatch.setattr(source_file, "BLOCK_BYTES", block)
    path = tmp_path / ("log.jsonl.gz" if gz else "log.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    chunks, progress = read_all([str(path)], gunzip_process)
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


class Spawned:
    """Records the child processes ``read_lines`` starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        real = subprocess.Popen

        def spawn(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
            child = real(*args, **kwargs)
            self.children.append(child)
            return child

        monkeypatch.setattr(subprocess, "Popen", spawn)


LINE = b'{"event_id":"e","type":"request","ts":1,"user_id":"u","blocked":false}\n'


def test_big_gzip_files_are_decompressed_by_a_child_unless_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = Spawned(monkeypatch)
    small = tmp_path / "small.jsonl.gz"
    small.write_bytes(gzip.compress(LINE * 1000))
    assert small.stat().st_size < source_file.CHILD_MIN_BYTES
    big = tmp_path / "big.jsonl.gz"
    big.write_bytes(random_lines(300_000, compresslevel=1))
    assert big.stat().st_size >= source_file.CHILD_MIN_BYTES
    assert read_all([str(small)]) == ([[LINE] * 1000], small.stat().st_size)
    assert spawned.children == []
    inline, inline_progress = read_all([str(big)], gunzip_process=False)
    assert spawned.children == []
    child, child_progress = read_all([str(big)])
    assert [spawned.children[0].returncode] == [0]
    flat = [line for chunk in child for line in chunk]
    assert flat == [line for chunk in inline for line in chunk]
    assert len(flat) == 300_000
    assert child_progress == inline_progress == big.stat().st_size


def test_a_child_that_cannot_start_falls_back_to_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(source_file, "CHILD_MIN_BYTES", 0)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(LINE * 3))
    assert read_all([str(path)]) == ([[LINE] * 3], path.stat().st_size)
    assert "decompressing inline" in caplog.text


def test_a_reader_that_stops_early_leaves_no_child_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_file, "CHILD_MIN_BYTES", 0)
    spawned = Spawned(monkeypatch)
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(LINE * 200_000))  # far more than a pipe holds
    lines = read_lines([str(path)])
    assert next(lines)[0] == LINE
    lines.close()
    (child,) = spawned.children
    assert child.returncode is not None  # killed and reaped, not left running
    assert child.stdout is not None and child.stdout.closed


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]


def random_lines(n: int, compresslevel: int) -> bytes:
    """n distinct lines that compress poorly, so a small count makes a big file."""
    lines = (f'{{"n":{i},"r":"{os.urandom(12).hex()}"}}\n'.encode() for i in range(n))
    return gzip.compress(b"".join(lines), compresslevel=compresslevel)


# what Python's gzip module says, inline or in the child
DAMAGE_MESSAGES = {
    "truncated": "Compressed file ended before the end-of-stream marker was reached",
    "bad crc": "CRC check failed 0x",
    "trailing garbage": "Not a gzipped file (b'ga')",
    "not deflate": "Unknown compression method",
}

BROKEN: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "bad crc": _bad_crc,
    "trailing garbage": lambda data: data + b"garbage!",
    "not deflate": lambda data: data[:2] + b"\x07" + data[3:],
}


@pytest.mark.parametrize("gunzip_process", [True, False], ids=["child", "inline"])
@pytest.mark.parametrize("damage", list(BROKEN))
def test_a_damaged_gzip_log_raises_the_same_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, gunzip_process: bool
) -> None:
    monkeypatch.setattr(source_file, "CHILD_MIN_BYTES", 0)
    path = tmp_path / "damaged.jsonl.gz"
    path.write_bytes(BROKEN[damage](gzip.compress(LINE * 50_000)))
    with pytest.raises(LogReadError) as raised:
        read_all([str(path)], gunzip_process)
    assert str(raised.value).startswith(f"{path}: {DAMAGE_MESSAGES[damage]}")


@pytest.mark.parametrize("gunzip_process", [True, False], ids=["child", "inline"])
def test_an_empty_gz_file_has_no_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gunzip_process: bool
) -> None:
    monkeypatch.setattr(source_file, "CHILD_MIN_BYTES", 0)
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(b"")
    assert read_all([str(path)], gunzip_process) == ([], 0)


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
