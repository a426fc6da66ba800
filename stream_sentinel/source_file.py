"""Recorded event logs as a source: ``.jsonl``, ``.jsonl.gz`` and ``-`` (stdin).

A gzipped file is decompressed in this thread by ``isal.igzip`` (Intel's ISA-L
inflate): 3-4x faster than Python's gzip module, and faster on one core and
on two than the child process running Python's gzip module that did it before
(docs/benchmarks.md, 2026-12-04). It accepts and refuses the same files as
Python's gzip module. A log that cannot be read to its end (missing,
truncated, corrupt) raises ``LogReadError`` naming the file, after the lines
read before the fault.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from isal import isal_zlib
from isal.igzip import IGzipFile

# isal's stubs declare its error as an instance; it is the class a bad
# deflate stream raises
_BAD_DEFLATE = cast(type[Exception], isal_zlib.error)

# bytes of (decompressed) input per chunk: ~7,000 lines of a typical log
BLOCK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class LogReadError(Exception):
    """A log that cannot be read to its end; the message names the file and why."""


def total_bytes(paths: Sequence[str]) -> int | None:
    """Bytes on disk to read (compressed size for .gz), None when stdin is among them."""
    if any(p == "-" for p in paths):
        return None
    total = 0
    for path in paths:
        try:
            total += os.path.getsize(path)
        except OSError as exc:
            raise LogReadError(f"{path}: {exc.strerror or exc}") from exc
    return total


class _Log(Protocol):
    def read_block(self) -> bytes:
        """The next block of (decompressed) bytes; b"" at the end."""

    def position(self) -> int | None:
        """Bytes of the file read so far (compressed bytes for .gz), None if unknown."""

    def finish(self) -> None:
        """Raise LogReadError if the end of the data was not the end of the log."""

    def close(self) -> None: ...


class _Stream:
    """A plain file, stdin, or a gzip file decompressed in this thread."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO) -> None:
        self._stream = stream
        self._raw = raw
        # read1 returns what a pipe (stdin) has instead of waiting for a full block
        self._read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)

    def read_block(self) -> bytes:
        return self._read(BLOCK_BYTES)

    def position(self) -> int | None:
        if self._raw is sys.stdin.buffer:
            return None
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None

    def finish(self) -> None:
        return None

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._stream.close()
            self._raw.close()


def _open(path: str) -> _Log:
    if path == "-":
        return _Stream(sys.stdin.buffer, sys.stdin.buffer)
    try:
        raw = Path(path).open("rb")  # noqa: SIM115 - closed by the _Log
        magic = raw.peek(2)[:2]
    except OSError as exc:
        raise LogReadError(f"{path}: {exc.strerror or exc}") from exc
    if not (path.endswith(".gz") or magic == GZIP_MAGIC):
        return _Stream(raw, raw)
    return _Stream(IGzipFile(fileobj=raw, mode="rb"), raw)  # type: ignore[arg-type,no-untyped-call]


def read_lines(
    paths: Sequence[str],
    on_bytes: Callable[[int], None] | None = None,
) -> Generator[list[bytes], None, None]:
    """Chunks of non-empty lines, in file order; ``on_bytes`` gets progress deltas.

    A line keeps its ``\\n`` (the last one of a file may have none), as
    iterating the file would give it: a dead letter carries the exact bytes.
    """
    for path in paths:
        source = _open(path)
        try:
            last = 0
            try:
                for chunk in _chunks(source.read_block):
                    yield chunk
                    last = _progress(source, last, on_bytes)
                source.finish()
            except (OSError, EOFError, _BAD_DEFLATE) as exc:
                # a truncated or corrupt .gz: EOFError, BadGzipFile, a bad deflate stream
                raise LogReadError(f"{path}: {exc}") from exc
            _progress(source, last, on_bytes)
        finally:
            source.close()


def _chunks(read_block: Callable[[], bytes]) -> Iterator[list[bytes]]:
    """Non-empty lines, one list per block read.

    Reading big blocks and splitting them in C costs a fraction of reading
    line by line (for gzip, ``readline`` is a Python method per line).
    """
    head: list[bytes] = []  # pieces of a line that spans blocks
    while block := read_block():
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


def _progress(source: _Log, last: int, on_bytes: Callable[[int], None] | None) -> int:
    if on_bytes is None:
        return last
    pos = source.position()
    if pos is not None and pos > last:
        on_bytes(pos - last)
        return pos
    return last
