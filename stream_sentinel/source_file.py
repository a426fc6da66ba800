"""Recorded event logs as a source: ``.jsonl``, ``.jsonl.gz`` and ``-`` (stdin)."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

# bytes of (decompressed) input per chunk: ~7,000 lines of a typical log
BLOCK_BYTES = 1 << 20


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
    """Chunks of non-empty lines, in file order; ``on_bytes`` gets progress deltas.

    A line keeps its ``\\n`` (the last one of a file may have none), as
    iterating the file would give it: a dead letter carries the exact bytes.
    """
    for path in paths:
        stream, raw = _open(path)
        last = 0
        try:
            for chunk in _chunks(stream):
                yield chunk
                last = _progress(raw, last, on_bytes)
            _progress(raw, last, on_bytes)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
                raw.close()


def _chunks(stream: BinaryIO) -> Iterator[list[bytes]]:
    """Non-empty lines, one list per block read.

    Reading big blocks and splitting them in C costs a fraction of reading
    line by line (for gzip, ``readline`` is a Python method per line).
    ``read1`` returns what a pipe has instead of waiting for a full block.
    """
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    head: list[bytes] = []  # pieces of a line that spans blocks
    while block := read(BLOCK_BYTES):
        lines = io.BytesIO(block).readlines()
        if head:
            head.append(lines[0])
            if not lines[0].endswith(b"\n"):
                continue  # the whole block is inside one line
            lines[0] = b"".join(head)
            head = []
        if not lines[-1].endswith(b"\n"):
            head.append(lines.pop())
        # a blank or whitespace-only line is not a record
        chunk = list(filter(bytes.strip, lines))
        if chunk:
            yield chunk
    if head:
        tail = b"".join(head)
        if tail.strip():
            yield [tail]


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
