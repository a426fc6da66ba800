"""Reference validator for event contract v1, built from the published schemas.

It deliberately shares no code with ``stream_sentinel.decode``: size limit,
strict UTF-8, a strict JSON parse, ``jsonschema`` with a strict RFC 3339
``date-time`` checker, then the ts range check. Where orjson is stricter than
the standard library's parser (NaN/Infinity literals, numbers that overflow a
double, lone surrogate escapes, nesting over 1024 levels, integers beyond
64 bits read as floats) the parse here is made equally strict, so the two only
disagree when the decoder or the schemas are wrong.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
ORJSON_MAX_DEPTH = 1024  # orjson's documented nesting limit

# RFC 3339 section 5.6, with the note that "T" and "Z" may be lower case.
_DATE_TIME = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?P<off>[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_EPOCH = date(1970, 1, 1).toordinal()
_GREGORIAN_CYCLE_DAYS = 146097  # 400 years


def rfc3339_seconds(text: str) -> float | None:
    """Unix seconds of a strict RFC 3339 date-time, or None if it is not one.

    ``date`` starts at year 1; year 0000 is moved one 400-year Gregorian
    cycle ahead (same calendar) and the cycle's days taken off again.
    """
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        return None
    year = int(m["y"])
    shift = 400 if year == 0 else 0
    try:
        day = date(year + shift, int(m["mo"]), int(m["d"]))
    except ValueError:
        return None
    days = day.toordinal() - _EPOCH - (_GREGORIAN_CYCLE_DAYS if shift else 0)
    h, mi, s = int(m["h"]), int(m["mi"]), int(m["s"])
    if not (h <= 23 and mi <= 59 and s <= 60):  # 60: a leap second
        return None
    off = m["off"]
    offset = 0
    if off not in ("Z", "z"):
        oh, om = int(off[1:3]), int(off[4:6])
        if not (oh <= 23 and om <= 59):
            return None
        offset = (oh * 60 + om) * 60 * (1 if off[0] == "+" else -1)
    whole = days * 86400 + h * 3600 + mi * 60 + s - offset
    frac = m["frac"] or "0"
    with localcontext() as ctx:
        ctx.prec = len(frac) + 40  # exact sum, then float() rounds once
        return float(Decimal(whole) + Decimal("0." + frac))


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(instance: object) -> bool:
        return not isinstance(instance, str) or rfc3339_seconds(instance) is not None

    return checker


def load_validators() -> dict[str, Draft202012Validator]:
    checker = _format_checker()
    out = {}
    for kind in ("request", "response"):
        schema = json.loads((SCHEMA_DIR / f"llm_{kind}.v1.json").read_text("utf-8"))
        Draft202012Validator.check_schema(schema)
        out[kind] = Draft202012Validator(schema, format_checker=checker)
    return out


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    why: str  # which stage refused it; for failure messages only
    doc: dict[str, Any] | None = None
    kind: str | None = None
    ts: float | None = None


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("number overflows a double")
    return value


def _orjson_int(text: str) -> int | float:
    # orjson keeps integers that fit in i64/u64 and reads larger ones as doubles.
    digits = text.lstrip("-")
    if len(digits) <= 20:
        value = int(text)
        if -(2**63) <= value <= 2**64 - 1:
            return value
    return _finite_float(text)


def _max_depth(text: str) -> int:
    if text.count("[") + text.count("{") <= ORJSON_MAX_DEPTH:
        return 0  # cannot be deeper; skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    # The stdlib parser recurses once per level; 1024 levels need more than the default 1000.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _has_lone_surrogate(doc: object) -> bool:
    # Iterative: documents nest up to 1024 levels.
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if any("\ud800" <= ch <= "\udfff" for ch in value):
                return True
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value)  # the keys
            stack.extend(value.values())
    return False


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # every member, also one a later duplicate key replaces: orjson refuses a
    # lone surrogate while it parses, before the last duplicate wins
    if _has_lone_surrogate([*(key for key, _ in pairs), *(value for _, value in pairs)]):
        raise _Refused("lone surrogate escape")
    return dict(pairs)


def strict_parse(raw: bytes) -> object:
    """Parse like orjson does, raising ValueError for everything orjson refuses."""
    text = raw.decode("utf-8")  # strict: invalid bytes and encoded surrogates raise
    if _max_depth(text) > ORJSON_MAX_DEPTH:
        raise _Refused("nesting too deep")
    with _recursion_limit(ORJSON_MAX_DEPTH * 3):
        doc = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_orjson_int,
            object_pairs_hook=_object,
        )
    if _has_lone_surrogate(doc):
        raise _Refused("lone surrogate escape")
    return doc


def reference_decode(
    raw: bytes,
    validators: dict[str, Draft202012Validator],
    *,
    topic_type: str | None,
    now: float | None,
    max_bytes: int,
    retention_s: float,
    max_future_s: float,
) -> Verdict:
    if len(raw) > max_bytes:
        return Verdict(False, "size")
    try:
        doc = strict_parse(raw)
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        return Verdict(False, f"parse: {exc}"[:200])
    if not isinstance(doc, dict):
        return Verdict(False, "not an object")
    kind = topic_type
    if kind is None:
        kind = doc.get("type")
        if kind not in ("request", "response"):
            return Verdict(False, "type absent or unknown without a topic")
    errors = sorted(validators[kind].iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        return Verdict(False, f"schema: {errors[0].message}"[:200])
    raw_ts = doc["ts"]
    ts = rfc3339_seconds(raw_ts) if isinstance(raw_ts, str) else float(raw_ts)
    assert ts is not None  # the schema's format check passed
    if now is not None and (ts < now - retention_s or ts > now + max_future_s):
        return Verdict(False, "ts range")
    return Verdict(True, "", doc, kind, ts)
