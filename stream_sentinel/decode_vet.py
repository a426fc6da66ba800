"""What msgspec does not check in the fields it skips, found by byte searches.

Rows that skip unknown fields (``decode_rows``) check their syntax but not
three things orjson refuses: invalid UTF-8, numbers that overflow a double,
nesting deeper than orjson's limit. ``vet_skipped`` finds, with a few C-level
searches over a whole block of messages, the few that could hide one, and
lets orjson (the decoder's parser) decide those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

_NUMBER_SHAPES = bytes.maketrans(b"123456789E", b"000000000e")
# a double overflows past 1.8e308: with an exponent of at most 2 digits that
# needs 210 digits before the point; without one, 309
_LONG_DIGITS = b"0" * 200
_EXPONENT = b"0e000"  # a digit, e, three digits: signs dropped
# what may stand before a value (b"" at the start of the block)
_BEFORE_A_VALUE = (b"", b":", b",", b"[", b" ", b"\t", b"\r", b"\n", b"\0")
# orjson refuses nesting deeper than this; msgspec's limit when it skips a
# field depends on the caller's stack. Deeper needs this many openers, and
# twice as many bytes with the closers.
_MAX_DEPTH = 1024
_NESTABLE_BYTES = 2 * _MAX_DEPTH


def vet_skipped(rows: list[Any], values: Sequence[bytes | None]) -> None:
    """None for each row whose message orjson refuses (``not_json``) although
    msgspec took it: invalid UTF-8, an overflowing number or nesting deeper
    than orjson's limit in a skipped field."""
    places = [at for at, row in enumerate(rows) if row is not None]
    if not places:
        return
    taken: list[bytes] = [values[at] for at in places]  # type: ignore[misc]
    not_utf8, not_json = _suspects(taken)
    for i in not_utf8:
        try:
            taken[i].decode()
        except UnicodeDecodeError:
            rows[places[i]] = None
    for i in not_json:
        try:
            orjson.loads(taken[i])
        except orjson.JSONDecodeError:
            rows[places[i]] = None


def _suspects(lines: list[bytes]) -> tuple[list[int], set[int]]:
    """Indexes of the lines that could hide invalid UTF-8, and of those that
    could hide an overflowing number or deep nesting.

    Byte searches over the whole block: digits read as 0 and signs dropped, a
    number that overflows shows as an exponent of 3+ digits (``0e000``) or a
    run of 200+ digits. An exponent inside a string (a hex id) is not
    preceded (past its digits and dot) by what can precede a value, and is
    passed over.
    """
    # NUL cannot stand in a line msgspec took (JSON has no raw control
    # characters in strings, nor outside them): it marks where lines end
    block = b"\0".join(lines)
    not_utf8 = [] if block.isascii() else [i for i, ln in enumerate(lines) if not ln.isascii()]
    not_json: set[int] = set()
    if max(map(len, lines)) >= _NESTABLE_BYTES:
        not_json.update(i for i, line in enumerate(lines) if _may_nest_too_deep(line))
    shapes = block.translate(_NUMBER_SHAPES, b"+-")
    pieces = shapes.split(_EXPONENT)
    line = 0
    for piece in pieces[:-1]:  # each ends where an exponent starts
        line += piece.count(b"\0")
        if piece.rstrip(b"0.")[-1:] in _BEFORE_A_VALUE:
            not_json.add(line)
    if _LONG_DIGITS in shapes:
        not_json.update(
            i for i, ln in enumerate(lines) if _LONG_DIGITS in ln.translate(_NUMBER_SHAPES)
        )
    return not_utf8, not_json


def _may_nest_too_deep(line: bytes) -> bool:
    return len(line) >= _NESTABLE_BYTES and line.count(b"[") + line.count(b"{") >= _MAX_DEPTH
