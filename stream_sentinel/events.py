"""Typed events of contract v1 and the decoder's rejection.

These are the only shapes that cross from ``decode`` into the rest of the
pipeline; everything downstream trusts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventType = Literal["request", "response"]

# Events are values: treat them as immutable. They are not ``frozen=True``
# because one is built per decoded message, and a frozen dataclass's
# ``__init__`` (``object.__setattr__`` per field) costs about four times a
# plain one on that hot path. ``unsafe_hash`` keeps them hashable, as frozen
# ones were; nothing may assign to an event's fields.


@dataclass(slots=True, unsafe_hash=True)
class RequestEvent:
    event_id: str
    ts: float  # Unix seconds, event time
    user_id: str
    blocked: bool
    model: str | None = None
    block_reason: str | None = None
    prompt_tokens: int | None = None
    tenant: str | None = None  # last: positional constructions predate it


@dataclass(slots=True, unsafe_hash=True)
class ResponseEvent:
    event_id: str
    ts: float
    user_id: str
    safe: bool  # already resolved from ``safety_score`` when ``safe`` was absent
    model: str | None = None
    request_id: str | None = None
    cost_usd: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tenant: str | None = None


Event = RequestEvent | ResponseEvent


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw message was refused.

    ``reason`` is machine readable and has bounded cardinality (it becomes a
    metric label): ``not_json``, ``too_large``, ``missing:<field>``,
    ``type:<field>``, ``ts_out_of_range``, ``bad_number:<field>``, ...
    ``detail`` is for humans and never becomes a label.
    """

    reason: str
    detail: str = ""
