"""Recorded event logs as a source: ``.jsonl``, ``.jsonl.gz`` and ``-`` (stdin).

A gzipped file of a megabyte or more is decompressed in a child process (this
Python running its gzip module): decompressing then runs on another core
beside the decoding here, which makes a replay faster wherever a second core
is free (docs/benchmarks.md). With ``gunzip_process=False``, for a small file,
or if the child cannot start, it is decompressed in this thread. Both accept
and refuse the same files with the same messages: a log that cannot be read
to its end (missing, truncated, corrupt) raises ``LogReadError`` naming the
file, after the lines read before the fault.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
import sys
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)

# bytes of (decompressed) input per chunk: ~7,000 lines of a typical log
BLOCK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# from a child: the kernel's default pipe size
CHILD_BLOCK_BYTES = 1 << 16
# smaller files are decompressed inline: starting a child takes ~30 ms
CHILD_MIN_BYTES = 1 << 20
# the child runs Python's own gzip module, so it accepts and refuses exactly
# what decompressing inline does, with the same messages
_GUNZIP = """\
import gzip, shutil, sys, zlib
try:
    shutil.copyfileobj(gzip.GzipFile(fileobj=sys.stdin.buffer), sys.stdout.buffer, 1 << 16)
except (OSError, EOFError, zlib.error) as exc:
    sys.stderr.write(str(exc))
    sys.exit(1)
"""


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


class _ChildGunzip:
    """A child process decompressing the file; its output read here through a pipe."""

    def __init__(self, path: str, raw: BinaryIO) -> None:
        self._path = path
        self._raw = raw
        # undo the peek at the magic bytes for the child, which reads the file
        # from its descriptor (raw.seek may only move within raw's buffer)
        fd = raw.fileno()
        peeked_to = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            # the child shares the file's offset: how far it has read is progress
            self._proc = subprocess.Popen(  # noqa: S603 - our interpreter and our code
                [sys.executable, "-I", "-S", "-c", _GUNZIP],
                stdin=fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError:
            os.lseek(fd, peeked_to, os.SEEK_SET)  # where raw's buffer expects it
            raise
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._out = self._proc.stdout
        self._err = self._proc.stderr

    def read_block(self) -> bytes:
        # pipe-sized blocks: measured faster here than 1 MiB ones, with which
        # the two processes take turns more than they overlap
        return self._out.read(CHILD_BLOCK_BYTES)

    def position(self) -> int | None:
        try:
            return os.lseek(self._raw.fileno(), 0, os.SEEK_CUR)
        except (OSError, ValueError):
            return None

    def finish(self) -> None:
        err = self._err.read().decode("utf-8", "replace").strip()
        code = self._proc.wait()
        if code != 0:
            raise LogReadError(f"{self._path}: {err or f'decompressing exited with {code}'}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # the reader stopped early: nobody wants the rest
        self._proc.wait()
        self._out.close()
        self._err.close()
        self._raw.close()


def _open(path: str, gunzip_process: bool) -> _Log:
    if path == "-":
        return _Stream(sys.stdin.buffer, sys.stdin.buffer)
    try:
        raw = Path(path).open("rb")  # noqa: SIM115 - closed by the _Log
        magic = raw.peek(2)[:2]
        size = os.fstat(raw.fileno()).st_size
    except OSError as exc:
        raise LogReadError(f"{path}: {exc.strerror or exc}") from exc
    if not (path.endswith(".gz") or magic == GZIP_MAGIC):
        return _Stream(raw, raw)
    if gunzip_process and size >= CHILD_MIN_BYTES and raw.seekable():
        try:
            return _ChildGunzip(path, raw)
        except OSError as exc:
            log.warning("could not start a child to decompress (%s); decompressing inline", exc)
    return _Stream(gzip.GzipFile(fileobj=raw, mode="rb"), raw)  # type: ignore[arg-type]


def read_lines(
    paths: Sequence[str],
    on_bytes: Callable[[int], None] | None = None,
    *,
    gunzip_process: bool = True,
) -> Generator[list[bytes], None, None]:
    """Chunks of non-empty lines, in file order; ``on_bytes`` gets progress deltas.

    A line keeps its ``\\n`` (the last one of a file may have none), as
    iterating the file would give it: a dead letter carries the exact bytes.
    """
    for path in paths:
        source = _open(path, gunzip_process)
        try:
            last = 0
            try:
                for chunk in _chunks(source.read_block):
                    yield chunk
                    last = _progress(source, last, on_bytes)
                source.finish()
            except (OSError, EOFError, zlib.error) as exc:
                # a truncated or corrupt .gz read inline: EOFError, BadGzipFile, zlib.error
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
