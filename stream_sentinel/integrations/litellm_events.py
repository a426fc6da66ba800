"""LiteLLM standard logging records -> stream-sentinel request/response events.

Pure: no LiteLLM import, no I/O. The callback inside the proxy
(``integrations.litellm``) and the ``bridge litellm`` receiver of LiteLLM's
``generic_api`` posts both call ``events_of``, so the two paths cannot drift.

The mapping (DESIGN.md, "Producers that need no code"):

- one request event per call; ``blocked`` when a pre-call guardrail
  intervened (``block_reason`` = its name);
- one response event per call whose model answered: every success record, and
  a failure record whose post-call guardrail intervened (the answer existed and
  was stopped: unsafe). A failure before the model answered (pre-call block,
  provider error) has no response;
- ``safe`` false when a post-call guardrail flagged or intervened; otherwise
  ``safety_score`` from ``safety_score_key`` in a post-call guardrail's
  response dict when configured and present, else ``safe`` true;
- ``guardrail_failed_to_respond`` is neither blocked nor unsafe: a guard that
  stops answering hides attacks, so the event carries
  ``"guardrail_unanswered": true`` (an extra field, ignored by the decoder) and
  the callers count it;
- ``ts`` the call's start, ``user_id`` the end user (OpenAI ``user``) or the
  key's user id or the key's hash, ``tenant`` the key's team id, ``event_id``
  LiteLLM's call id (``<id>:response`` for the response).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ID_CHARS = 256
MAX_EVENT_ID_CHARS = 128
ANONYMOUS_USER = "anonymous"

_PRE_CALL_MODES = frozenset({"pre_call", "during_call"})
_BLOCKING = "guardrail_intervened"
_FLAGGED = "guardrail_flagged"
_UNANSWERED = "guardrail_failed_to_respond"


class LiteLLMConfig(BaseModel):
    """``[litellm]``: how the LiteLLM callback and bridge turn records into events."""

    # the same rules as config._Section (kept apart so this module needs no config import)
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    safety_score_key: str | None = Field(None, min_length=1, max_length=128)
    """key of a post-call guardrail's response dict carrying a judge's safety score (0..1)"""
    queue_size: int = Field(10_000, ge=1, le=1_000_000)
    """events the callback holds while Kafka is slow or down; beyond it, new ones are dropped"""
    flush_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """how long the callback may spend sending what it holds when the proxy shuts down"""


class MappingError(ValueError):
    """A record that cannot become events; ``reason`` is a bounded label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CallEvents:
    request: dict[str, Any]
    response: dict[str, Any] | None
    guardrail_unanswered: bool


def events_of(record: Mapping[str, Any], *, safety_score_key: str | None = None) -> CallEvents:
    """The events of one standard logging record; raises ``MappingError``."""
    call_id = _call_id(record)
    ts = _number(record.get("startTime"))
    if ts is None or ts < 0:
        raise MappingError("bad_record:startTime", "startTime must be epoch seconds")
    guardrails = _guardrails(record)
    pre_block = next(
        (g for g in guardrails if g["mode"] in _PRE_CALL_MODES and g["status"] == _BLOCKING), None
    )
    post = [g for g in guardrails if g["mode"] not in _PRE_CALL_MODES]
    failed = record.get("status") == "failure"
    overall = _status_fields(record).get("guardrail_status")
    if failed and pre_block is None and overall == _BLOCKING and not post:
        # intervened with no per-guardrail detail: before the call is the only place it can be
        pre_block = {"name": "guardrail", "mode": "pre_call", "status": _BLOCKING, "response": None}
    unanswered = overall == _UNANSWERED or any(g["status"] == _UNANSWERED for g in guardrails)

    common: dict[str, Any] = {"ts": ts, "user_id": _user_id(record)}
    model = record.get("model_group") or record.get("model")
    if isinstance(model, str) and model:
        common["model"] = _bounded(model)
    tenant = _metadata(record).get("user_api_key_team_id")
    if isinstance(tenant, str) and tenant:
        common["tenant"] = _bounded(tenant)
    prompt_tokens = _count(record.get("prompt_tokens"))

    request: dict[str, Any] = {"event_id": call_id, "type": "request", **common}
    request["blocked"] = pre_block is not None
    if pre_block is not None:
        request["block_reason"] = pre_block["name"]
    if prompt_tokens is not None:
        request["prompt_tokens"] = prompt_tokens
    if unanswered:
        request["guardrail_unanswered"] = True

    stopped_after = next((g for g in post if g["status"] == _BLOCKING), None)
    answered = not failed or (pre_block is None and stopped_after is not None)
    if not answered:
        return CallEvents(request, None, unanswered)
    response: dict[str, Any] = {
        "event_id": f"{call_id}:response"[:MAX_EVENT_ID_CHARS],
        "type": "response",
        "request_id": call_id,
        **common,
    }
    if stopped_after is not None or any(g["status"] == _FLAGGED for g in post):
        response["safe"] = False
    else:
        score = _judge_score(post, safety_score_key)
        if score is None:
            response["safe"] = True
        else:
            response["safety_score"] = score
    cost = _number(record.get("response_cost"))
    if cost is not None and cost >= 0:
        response["cost_usd"] = cost
    if prompt_tokens is not None:
        response["prompt_tokens"] = prompt_tokens
    completion_tokens = _count(record.get("completion_tokens"))
    if completion_tokens is not None:
        response["completion_tokens"] = completion_tokens
    if unanswered:
        response["guardrail_unanswered"] = True
    return CallEvents(request, response, unanswered)


def _call_id(record: Mapping[str, Any]) -> str:
    for key in ("litellm_call_id", "id"):
        value = record.get(key)
        if isinstance(value, str) and value:
            if len(value) > MAX_EVENT_ID_CHARS - len(":response"):
                raise MappingError("bad_record:call_id", "call id longer than 119 characters")
            return _bounded(value)
    raise MappingError("bad_record:call_id", "record has no litellm_call_id")


def _metadata(record: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = record.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _status_fields(record: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = record.get("status_fields")
    return fields if isinstance(fields, Mapping) else {}


def _user_id(record: Mapping[str, Any]) -> str:
    meta = _metadata(record)
    for value in (
        record.get("end_user"),
        meta.get("user_api_key_user_id"),
        meta.get("user_api_key_hash"),
    ):
        if isinstance(value, str) and value:
            return _bounded(value)
    return ANONYMOUS_USER


def _bounded(value: str) -> str:
    """An id within the contract's 256 characters, and valid UTF-8 (a JSON escape
    can carry a lone surrogate, which no encoder accepts). A longer id keeps its
    identity through a digest of the whole, so two long ids never merge into one."""
    raw = value.encode("utf-8", "surrogatepass")
    if not value.isascii():
        # a lone surrogate becomes one U+FFFD; paired ones join into their character
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if len(value) <= MAX_ID_CHARS:
        return value
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return f"{value[: MAX_ID_CHARS - 33]}~{digest}"


def _guardrails(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    info = record.get("guardrail_information")
    if not isinstance(info, list):
        return []
    out = []
    for entry in info:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("guardrail_name")
        out.append(
            {
                "name": _bounded(name) if isinstance(name, str) and name else "guardrail",
                "mode": _mode(entry.get("guardrail_mode")),
                "status": entry.get("guardrail_status"),
                "response": entry.get("guardrail_response"),
            }
        )
    return out


def _mode(mode: Any) -> str:
    # LiteLLM allows a list of modes for one guardrail; the first decides which side it ran on
    if isinstance(mode, list) and mode:
        mode = mode[0]
    return mode if isinstance(mode, str) else "pre_call"


def _judge_score(post: list[dict[str, Any]], key: str | None) -> float | None:
    if key is None:
        return None
    for g in post:
        response = g["response"]
        if isinstance(response, Mapping):
            score = _number(response.get(key))
            if score is not None and 0.0 <= score <= 1.0:
                return score
    return None


def _number(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> int | None:
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    return None
