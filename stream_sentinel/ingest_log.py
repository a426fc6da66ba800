"""A recorded log fed through the batch processor in event time, stopping where a tick is due.

A log is its own clock: each line's ts range check runs against the largest
ts counted before it (``out.max_ts``, which the caller carries from batch to
batch), and feeding stops right after the event that moves the watermark
(largest ts - lateness) to ``until`` or past. Runs of decoded rows are done
at once: running maxima, range checks and the stop are found with C loops and
a bisection, then the run is counted by the processor. Lines the rows leave
to the decoder go line by line.

``tests/test_ingest_log.py`` checks it against feeding one line at a time.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate, islice
from operator import attrgetter, le

from .decode_rows import RequestRow, ResponseRow
from .ingest import BatchProcessor, Counted, Processed
from .store.base import PartitionId

_TS = attrgetter("ts")


class LogChunk:
    """One block of log lines, decoded once, consumed across several ticks."""

    __slots__ = ("first_offset", "lines", "pos", "rows")

    def __init__(self, proc: BatchProcessor, lines: list[bytes], first_offset: int) -> None:
        self.lines = lines
        self.first_offset = first_offset  # the offset of lines[0]
        self.rows = proc.rows.rows(lines, None)
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
    """Feed the rest of ``chunk`` into ``out``: True when it stopped for a tick
    (right after the event that made it due; the chunk resumes after it),
    False when the chunk ran out."""
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
        if taken < 0:  # a case the run cannot settle alone: line by line
            if _per_line(proc, out, part, chunk, j, lateness, until):
                return True
            continue
        chunk.pos = i + taken
        if taken:
            out.next_offset = chunk.first_offset + chunk.pos
        if stopped:
            return True
        # taken < len(run): the line at chunk.pos is out of range, the decoder's
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
    """Lines [pos, end) one at a time, through the decoder where the row is None;
    moves ``chunk.pos`` to where it stopped."""
    max_ts = out.max_ts
    counted: list[Counted] = []
    stopped = False
    offset = chunk.first_offset + chunk.pos
    window = proc.rows.decoder.window
    for at in range(chunk.pos, end):
        offset = chunk.first_offset + at
        row = chunk.rows[at]
        event: Counted | None
        if row is not None and (max_ts is None or window.admits(row.ts, max_ts)):
            event = row
        else:
            event = proc.decide(out, part, None, offset, chunk.lines[at], max_ts)
        if event is None:
            continue
        counted.append(event)
        ts = event.ts
        if max_ts is None or ts > max_ts:
            max_ts = ts
            if ts - lateness >= until:
                stopped = True
                break
    proc.count(out, counted)
    out.next_offset = offset + 1
    out.max_ts = max_ts
    chunk.pos = offset + 1 - chunk.first_offset
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
    window = proc.rows.decoder.window
    if (
        (prev is None or prev <= tss[0])
        and window.max_future_s == math.inf
        and all(map(le, tss, islice(tss, 1, None)))
    ):
        # in order, as a log mostly is: each ts is its own running max and
        # none can be too old (retention >= 0) or, in replay, too new
        if prev is not None and prev - lateness >= until:
            return -1, False
        stop = bisect_left(tss, True, key=lambda ts: ts - lateness >= until)
        taken = min(stop + 1, len(run))
        proc.count(out, run[:taken])
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
    ok = window.admits_each(checked, before)
    try:
        bad = ok.index(False) + first_checked
    except ValueError:
        bad = len(run)
    # the first row whose running max reaches the tick: a new largest ts by
    # construction, since the clock before the run had not reached it
    stop = bisect_left(after, True, 0, bad, key=lambda ts: ts - lateness >= until)
    taken = stop + 1 if stop < bad else bad
    if taken:
        proc.count(out, run[:taken])
        out.max_ts = after[taken - 1]
    return taken, stop < bad
