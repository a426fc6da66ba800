"""Recorded event logs as a source: ``.jsonl``, ``.jsonl.gz`` and ``-`` (stdin)."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

CHUNK_LINES = 4096


def total_bytes(paths: Sequence[str]) -> int | None:
    """Bytes on disk to read (compressed size for .gz), None when stdin is among them."""
    if any(p == "-" for p in paths):
        return None
    return sum(os.path.getsize(p) for p in paths)


def _open(path: str) -> tuple[BinaryIO, BinaryIO]:
    """The stream to read lines from and the raw file whose position is progress."""
    if path == "-":
        return sys.stdin.buffer, sys.stdin.buffer
    raw = Path(path).open("rb")  # noqa: SIM115 - closed by read_lines
    magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if path.endswith(".gz") or magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    return raw, raw


def read_lines(
    paths: Sequence[str], on_bytes: Callable[[int], None] | None = None
) -> Iterator[list[bytes]]:
    """Chunks of non-empty lines, in file order; ``on_bytes`` gets progress deltas."""
    for path in paths:
        stream, raw = _open(path)
        last = 0
        try:
            chunk: list[bytes] = []
            for line in stream:
                if line.strip():
                    chunk.append(line)
                if len(chunk) >= CHUNK_LINES:
                    yield chunk
                    chunk = []
                    last = _progress(raw, last, on_bytes)
            if chunk:
                yield chunk
            _progress(raw, last, on_bytes)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
                raw.close()


def _progress(raw: BinaryIO, last: int, on_bytes: Callable[[int], None] | None) -> int:
    if on_bytes is None or raw is sys.stdin.buffer:
        return last
    try:
        pos = raw.tell()
    except (OSError, ValueError):
        return last
    if pos > last:
        on_bytes(pos - last)
    return pos
