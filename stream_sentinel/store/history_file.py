"""The embedded store's tick history in a file (``[learning] history_file``).

A single-process deployment keeps its counters in memory; without this file a
restart would start learning again. The file is small and rewritten whole:
a header line, then one encoded record per line. Every write goes to a
temporary file in the same directory, is fsynced, then renamed over the old
one (and the directory fsynced), so a crash or SIGKILL at any moment leaves
either the old file or the new one, never a torn one. Its size is bounded by
the history's time limit (``history_days`` / ``tick_seconds`` records of a
few hundred bytes: about 4 MB for 14 days of 60 s ticks).

A file that cannot be read or parsed is never fatal: one log line, and the
history starts empty (the next write replaces the file).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

MAGIC = "stream-sentinel-history"


@dataclass(frozen=True, slots=True)
class SavedHistory:
    first_start: int | None = None
    visible_since: int | None = None
    lines: tuple[bytes, ...] = ()


def _optional_int(header: dict[str, object], key: str) -> int | None:
    value = header.get(key)
    if value is not None and type(value) is not int:
        raise ValueError(f"{key} must be an integer or null")
    return value if isinstance(value, int) else None


class HistoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._failing: str | None = None  # the last write error logged, to log each kind once

    def load(self) -> SavedHistory:
        """The saved history; empty (with one log line) when missing or unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            log.info("history file %s not found: learning starts afresh", self.path)
            return SavedHistory()
        except OSError as exc:
            log.warning(
                "history file %s unreadable (%s): learning starts afresh",
                self.path,
                type(exc).__name__,
            )
            return SavedHistory()
        head, _, body = raw.partition(b"\n")
        try:
            header = orjson.loads(head)
            if not isinstance(header, dict) or header.get("format") != MAGIC:
                raise ValueError("not a stream-sentinel history file")
            first = _optional_int(header, "first_start")
            since = _optional_int(header, "visible_since")
        except ValueError as exc:
            log.warning(
                "history file %s has no valid header (%s): learning starts afresh", self.path, exc
            )
            return SavedHistory()
        lines = tuple(line for line in body.split(b"\n") if line.strip())
        log.info("history file %s: %d records, first start %s", self.path, len(lines), first)
        return SavedHistory(first, since, lines)

    async def save(
        self,
        first_start: int | None,
        visible_since: int | None,
        lines: Callable[[], Iterable[bytes]],
    ) -> None:
        """Replace the file atomically; ``lines`` is called in a worker thread.

        A failed write is logged (once per kind of error) and not raised: the
        history in memory is still right, and the next write tries again.
        """
        header = {"format": MAGIC, "first_start": first_start, "visible_since": visible_since}
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, orjson.dumps(header), lines)
            except OSError as exc:
                kind = type(exc).__name__
                if kind != self._failing:
                    log.warning("history file %s not written (%s)", self.path, kind)
                self._failing = kind
                return
            if self._failing is not None:
                log.info("history file %s written again", self.path)
                self._failing = None

    def _write(self, header: bytes, lines: Callable[[], Iterable[bytes]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("wb") as out:
            out.write(header + b"\n")
            for line in lines():
                out.write(line + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        # the rename itself is durable only once the directory is synced
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
