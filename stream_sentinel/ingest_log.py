"""A recorded log fed through the row decoder, stopping where a tick is due.

The same contract as ``BatchProcessor.feed_log`` (which it falls back on,
line by line, wherever a row cannot decide): each line's ts range check runs
against the largest ts counted before it, and feeding stops right after the
event that moves the watermark (largest ts - lateness) to ``until`` or past.
Here that is done for runs of decoded rows at once: running maxima, range
checks and the stop are found with C loops and a bisection, then the run is
folded with ``agg_requests`` / ``agg_responses``.

``tests/test_ingest_log.py`` checks it against ``feed_log`` on generated logs.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate, islice, repeat
from operator import add, attrgetter, ge, le, sub

from .decode_rows import RequestRow, ResponseRow
from .ingest import BatchProcessor, Processed
from .store.base import PartitionId

_TS = attrgetter("ts")


class LogChunk:
    """One block of log lines, decoded once, consumed across several ticks."""

    __slots__ = ("first_offset", "lines", "pos", "rows")

    def __init__(self, proc: BatchProcessor, lines: list[bytes], first_offset: int) -> None:
        self.lines = lines
        self.first_offset = first_offset  # the offset of lines[0]
        self.rows = proc.rows.log_rows(lines)
        self.pos = 0  # the next line to feed


def feed_chunk(
    proc: BatchProcessor,
    out: Processed,
    part: PartitionId,
    chunk: LogChunk,
    *,
    lateness: float,
    until: float,
) -> bool:
    """``feed_log`` for the rest of ``chunk``: True when it stopped for a tick."""
    rows, n = chunk.rows, len(chunk.rows)
    while chunk.pos < n:
        i = chunk.pos
        if rows[i] is None:
            if _per_line(proc, out, part, chunk, i + 1, lateness, until):
                return True
            continue
        try:
            j = rows.index(None, i)
        except ValueError:
            j = n
        run: list[RequestRow | ResponseRow] = rows[i:j]  # type: ignore[assignment]
        taken, stopped = _fold_run(proc, out, run, lateness, until)
        if taken < 0:  # a case the run cannot settle alone: let feed_log decide
            if _per_line(proc, out, part, chunk, j, lateness, until):
                return True
            continue
        chunk.pos = i + taken
        if taken:
            out.next_offset = chunk.first_offset + chunk.pos
        if stopped:
            return True
        # taken < len(run): the line at chunk.pos is out of range, a dead letter
        if taken < len(run) and _per_line(proc, out, part, chunk, chunk.pos + 1, lateness, until):
            return True
    return False


def _per_line(
    proc: BatchProcessor,
    out: Processed,
    part: PartitionId,
    chunk: LogChunk,
    end: int,
    lateness: float,
    until: float,
) -> bool:
    """``feed_log`` over lines [pos, end); moves ``chunk.pos`` to where it stopped."""
    start = chunk.pos
    offsets = range(chunk.first_offset + start, chunk.first_offset + end)
    pairs = zip(offsets, chunk.lines[start:end], strict=True)
    stopped = proc.feed_log(out, part, pairs, lateness=lateness, until=until)
    chunk.pos = out.next_offset - chunk.first_offset if stopped else end
    return stopped


def _fold_run(
    proc: BatchProcessor,
    out: Processed,
    run: list[RequestRow | ResponseRow],
    lateness: float,
    until: float,
) -> tuple[int, bool]:
    """Fold the head of ``run`` into ``out``: (rows taken, stopped for a tick).

    Takes rows up to the first out of range (not taken) or the stop (taken).
    (-1, False): the clock is already past ``until``, where only a new
    largest ts may stop, and the line-by-line path says which.
    """
    tss: list[float] = list(map(_TS, run))
    prev = out.max_ts
    decoder = proc.rows.decoder
    if (
        (prev is None or prev <= tss[0])
        and decoder.max_future_s == math.inf
        and all(map(le, tss, islice(tss, 1, None)))
    ):
        # in order, as a log mostly is: each ts is its own running max and
        # none can be too old (retention >= 0) or, in replay, too new
        if prev is not None and prev - lateness >= until:
            return -1, False
        stop = bisect_left(tss, True, key=lambda ts: ts - lateness >= until)
        taken = min(stop + 1, len(run))
        _fold(proc, out, run[:taken])
        out.max_ts = tss[taken - 1]
        return taken, stop < len(run)
    # before[k]: the largest ts counted before row k (none before the first
    # event of a log: it has no clock to be checked against)
    if prev is None:
        after = list(accumulate(tss, max))
        first_checked = 1  # the first event of a log has no clock to check against
        before: list[float] = after[:-1]
    else:
        if prev - lateness >= until:
            return -1, False
        after = list(accumulate(tss, max, initial=prev))[1:]
        first_checked = 0
        before = [prev, *after[:-1]]
    checked = tss[first_checked:]
    # the decoder's own comparisons: ts < now - retention or ts > now + max_future
    ok = list(map(ge, checked, map(sub, before, repeat(decoder.retention_s))))
    if decoder.max_future_s != math.inf:
        highs = map(add, before, repeat(decoder.max_future_s))
        ok = list(map(bool.__and__, ok, map(le, checked, highs)))
    try:
        bad = ok.index(False) + first_checked
    except ValueError:
        bad = len(run)
    # the first row whose running max reaches the tick: a new largest ts by
    # construction, since the clock before the run had not reached it
    stop = bisect_left(after, True, 0, bad, key=lambda ts: ts - lateness >= until)
    taken = stop + 1 if stop < bad else bad
    if taken:
        _fold(proc, out, run[:taken])
        out.max_ts = after[taken - 1]
    return taken, stop < bad


def _fold(proc: BatchProcessor, out: Processed, rows: list[RequestRow | ResponseRow]) -> None:
    requests = [r for r in rows if type(r) is RequestRow]
    responses = [r for r in rows if type(r) is ResponseRow]
    proc.fold_rows(out, requests, responses)
