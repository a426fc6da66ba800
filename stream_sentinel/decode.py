"""Event contract v1 decoder: raw message bytes -> typed event or a Rejection.

It checks fields by hand instead of running a JSON Schema validator;
``tests/test_decode_corpus.py`` proves it agrees with ``schemas/llm_*.v1.json``.
Batches of common shapes are decoded by ``decode_rows`` instead, which leaves
every message it cannot take to this decoder: rejection reasons come from here
alone. The value rules (ts range, ``safe`` from the score) are ``contract``'s.
Policies the table in DESIGN.md leaves open, shared with the schemas:

- duplicate keys: the last one wins (orjson's behaviour);
- ``null`` in an optional field means absent, also in ``tenant``, the one
  optional field with bounds (1..256 characters, as ``user_id``): an empty
  ``tenant`` is ``length:tenant``, as an empty ``user_id`` is;
- an integral float (``12.0``) is an integer, as JSON Schema says; token counts
  stop at 2**53 - 1, the largest integer a double holds exactly;
- a numeric ``ts`` must be >= 0; a string ``ts`` must be RFC 3339 with ``Z`` or
  a numeric offset (a string without one is ``bad_ts``: local time is ambiguous);
- nesting deeper than 1024 levels, NaN/Infinity literals and numbers that
  overflow a double are not JSON (orjson refuses them).

Rejection reasons (bounded: they become metric labels; never user data):
``too_large``, ``not_json``, ``not_object``, ``missing:<field>``,
``type:<field>``, ``length:<field>``, ``bad_number:<field>``,
``bad_value:type``, ``bad_ts``, ``type_mismatch``, ``ts_out_of_range``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from .contract import MAX_COST_USD, TsWindow, safe_from_score
from .events import Event, EventType, Rejection, RequestEvent, ResponseEvent
from .timestamps import parse_rfc3339

MAX_EVENT_ID = 128
MAX_USER_ID = 256
MAX_TENANT = 256
MAX_TOKENS = 2**53 - 1

_EVENT_TYPES: frozenset[str] = frozenset(("request", "response"))


class Decoder:
    """Turns one message value into a ``RequestEvent``/``ResponseEvent`` or a ``Rejection``.

    ``decode`` never raises for any bytes input: bad input is data, not an error.
    """

    __slots__ = ("_max_bytes", "_safety_threshold", "_window")

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 1024,
        safety_threshold: float = 0.5,
        retention_s: float = 3600 + 30 + 60,
        max_future_s: float = 300,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not 0.0 <= safety_threshold <= 1.0:
            raise ValueError("safety_threshold must be within 0..1")
        if not (retention_s > 0 and max_future_s >= 0):
            raise ValueError("retention_s must be positive and max_future_s non-negative")
        self._max_bytes = max_bytes
        self._safety_threshold = safety_threshold
        self._window = TsWindow(retention_s, max_future_s)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def safety_threshold(self) -> float:
        return self._safety_threshold

    @property
    def window(self) -> TsWindow:
        """The ts range a clock admits (checked when ``decode`` is given ``now``)."""
        return self._window

    def decode(
        self, raw: bytes, *, topic_type: EventType | None = None, now: float | None = None
    ) -> Event | Rejection:
        """Decode ``raw``; ``topic_type`` is the type the topic implies, ``now``
        (Unix seconds) enables the ts range check."""
        # Before parsing: an oversized message must not cost a parse.
        if len(raw) > self._max_bytes:
            return Rejection("too_large", f"{len(raw)} bytes, limit {self._max_bytes}")
        try:
            doc = orjson.loads(raw)
        except ValueError as exc:  # orjson.JSONDecodeError; its text has positions only
            return Rejection("not_json", str(exc))
        if type(doc) is not dict:
            return Rejection("not_object", f"top level is {_json_type(doc)}, not an object")
        event = self._event(doc, topic_type)
        if (
            now is not None
            and not isinstance(event, Rejection)
            and not self._window.admits(event.ts, now)
        ):
            return Rejection("ts_out_of_range", self._window.describe(event.ts, now))
        return event

    def _event(self, doc: dict[str, Any], topic_type: EventType | None) -> Event | Rejection:
        kind = doc.get("type")
        if kind is None and "type" not in doc:
            if topic_type is None:
                return _missing("type")
            kind = topic_type
        elif type(kind) is not str:
            return _wrong_type("type", "a string", kind)
        elif kind not in _EVENT_TYPES:
            return Rejection("bad_value:type", 'type must be "request" or "response"')
        elif topic_type is not None and kind != topic_type:
            return Rejection("type_mismatch", f"type {kind} on the {topic_type}s topic")

        event_id = _required_str(doc, "event_id", MAX_EVENT_ID)
        if isinstance(event_id, Rejection):
            return event_id
        ts = _ts(doc)
        if isinstance(ts, Rejection):
            return ts
        user_id = _required_str(doc, "user_id", MAX_USER_ID)
        if isinstance(user_id, Rejection):
            return user_id
        tenant = _optional_bounded_str(doc, "tenant", MAX_TENANT)
        if isinstance(tenant, Rejection):
            return tenant
        model = _optional_str(doc, "model")
        if isinstance(model, Rejection):
            return model
        prompt_tokens = _optional_count(doc, "prompt_tokens")
        if isinstance(prompt_tokens, Rejection):
            return prompt_tokens

        if kind == "request":
            blocked = doc.get("blocked")
            if type(blocked) is not bool:
                return _wrong_type("blocked", "a boolean", blocked, doc)
            block_reason = _optional_str(doc, "block_reason")
            if isinstance(block_reason, Rejection):
                return block_reason
            return RequestEvent(
                event_id, ts, user_id, blocked, model, block_reason, prompt_tokens, tenant
            )
        return self._response(doc, event_id, ts, user_id, model, prompt_tokens, tenant)

    def _response(
        self,
        doc: dict[str, Any],
        event_id: str,
        ts: float,
        user_id: str,
        model: str | None,
        prompt_tokens: int | None,
        tenant: str | None,
    ) -> ResponseEvent | Rejection:
        request_id = _optional_str(doc, "request_id")
        if isinstance(request_id, Rejection):
            return request_id
        score = _optional_number(doc, "safety_score", 1.0)
        if isinstance(score, Rejection):
            return score
        safe = doc.get("safe")
        if safe is None:
            if score is None:
                return Rejection("missing:safe", "response needs safe or safety_score")
            safe = safe_from_score(score, self._safety_threshold)
        elif type(safe) is not bool:
            return _wrong_type("safe", "a boolean", safe)
        completion_tokens = _optional_count(doc, "completion_tokens")
        if isinstance(completion_tokens, Rejection):
            return completion_tokens
        cost_usd = _optional_number(doc, "cost_usd", MAX_COST_USD)
        if isinstance(cost_usd, Rejection):
            return cost_usd
        return ResponseEvent(
            event_id,
            ts,
            user_id,
            safe,
            model,
            request_id,
            cost_usd,
            prompt_tokens,
            completion_tokens,
            tenant,
        )


def _required_str(doc: dict[str, Any], field: str, max_len: int) -> str | Rejection:
    value = doc.get(field)
    if type(value) is str:
        if 0 < len(value) <= max_len:
            return value
        return Rejection(
            f"length:{field}", f"{field} has {len(value)} characters, allowed 1..{max_len}"
        )
    return _wrong_type(field, "a string", value, doc)


def _optional_bounded_str(doc: dict[str, Any], field: str, max_len: int) -> str | Rejection | None:
    """An optional field with ``_required_str``'s rules when present (not null)."""
    if doc.get(field) is None:
        return None
    return _required_str(doc, field, max_len)


def _optional_str(doc: dict[str, Any], field: str) -> str | Rejection | None:
    value = doc.get(field)
    if value is None or type(value) is str:
        return value
    return _wrong_type(field, "a string", value)


def _optional_count(doc: dict[str, Any], field: str) -> int | Rejection | None:
    value = doc.get(field)
    if value is None:
        return None
    kind = type(value)
    # type() is exact, so a bool is not an int here; 12.0 is, as in JSON Schema.
    if kind is not int and not (kind is float and value.is_integer()):
        return _wrong_type(field, "an integer", value)
    if 0 <= value <= MAX_TOKENS:
        return value if kind is int else int(value)
    return Rejection(f"bad_number:{field}", f"{field} must be within 0..{MAX_TOKENS}")


def _optional_number(doc: dict[str, Any], field: str, upper: float) -> float | Rejection | None:
    value = doc.get(field)
    if value is None:
        return None
    kind = type(value)
    if kind is not float and kind is not int:
        return _wrong_type(field, "a number", value)
    # orjson never yields NaN or infinities; isfinite guards callers that might.
    if 0 <= value <= upper and math.isfinite(value):
        return float(value)
    return Rejection(f"bad_number:{field}", f"{field} must be a finite number within 0..{upper}")


def _ts(doc: dict[str, Any]) -> float | Rejection:
    value: Any = doc.get("ts")
    kind = type(value)
    if kind is float or kind is int:
        if value >= 0 and math.isfinite(value):
            return float(value)
        return Rejection("bad_number:ts", "numeric ts must be finite Unix seconds >= 0")
    if kind is str:
        parsed = parse_rfc3339(value)
        if parsed is None:
            return Rejection("bad_ts", "ts string is not an RFC 3339 date-time with an offset")
        return parsed
    return _wrong_type("ts", "a number or an RFC 3339 string", value, doc)


def _missing(field: str) -> Rejection:
    return Rejection(f"missing:{field}", f"{field} is required")


def _wrong_type(
    field: str, expected: str, value: object, doc: dict[str, Any] | None = None
) -> Rejection:
    """``missing:`` when a required field (``doc`` given) is absent, else ``type:``."""
    if doc is not None and field not in doc:
        return _missing(field)
    return Rejection(f"type:{field}", f"{field} must be {expected}, got {_json_type(value)}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) is int or type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    return "object"
