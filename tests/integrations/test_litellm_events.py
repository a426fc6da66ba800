"""The LiteLLM mapping on records a real proxy (litellm 1.108.7) wrote.

``litellm_records.json`` holds one standard logging record of each kind, as
the proxy handed them to a callback (messages and response text replaced by
"<removed>"): a plain success, a pre-call guardrail block (HTTP 400), a
post-call judge that flagged, one that blocked after the call, a fail-open
guardrail that did not answer, a call without ``user``, a streaming call and
a hostile ``user``. tests/integration/test_litellm_proxy.py produces the same
kinds through a live proxy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_sentinel.decode import Decoder
from stream_sentinel.events import RequestEvent, ResponseEvent
from stream_sentinel.integrations.litellm_events import (
    ANONYMOUS_USER,
    MAX_ID_CHARS,
    MappingError,
    events_of,
)

RECORDS: dict[str, Any] = json.loads((Path(__file__).with_name("litellm_records.json")).read_text())


def record(kind: str) -> dict[str, Any]:
    rec: dict[str, Any] = copy.deepcopy(RECORDS[kind]["record"])
    return rec


def decoded(event: dict[str, Any]) -> RequestEvent | ResponseEvent:
    out = Decoder().decode(orjson.dumps(event))
    assert isinstance(out, RequestEvent | ResponseEvent), out
    return out


def test_a_success_is_one_allowed_request_and_one_safe_priced_response() -> None:
    rec = record("success")
    call = events_of(rec)
    req, resp = decoded(call.request), decoded(call.response or {})
    assert isinstance(req, RequestEvent) and isinstance(resp, ResponseEvent)
    assert req.event_id == rec["litellm_call_id"] and req.blocked is False
    assert req.ts == rec["startTime"] == resp.ts
    assert req.user_id == "alice" == resp.user_id
    assert resp.safe is True
    assert resp.cost_usd == rec["response_cost"] > 0
    assert (resp.prompt_tokens, resp.completion_tokens) == (rec["prompt_tokens"], 20)
    assert resp.request_id == req.event_id != resp.event_id
    assert req.model == rec["model_group"] == "gpt-4o-mini"
    assert call.guardrail_unanswered is False


def test_a_pre_call_block_is_a_blocked_request_without_response() -> None:
    call = events_of(record("pre_call_blocked"))
    req = decoded(call.request)
    assert isinstance(req, RequestEvent)
    assert req.blocked is True and req.block_reason == "injection"
    assert req.user_id == "bob"
    assert call.response is None


def test_a_post_call_flag_is_an_allowed_request_and_an_unsafe_response() -> None:
    call = events_of(record("post_call_flagged"))
    assert call.request["blocked"] is False
    resp = decoded(call.response or {})
    assert isinstance(resp, ResponseEvent) and resp.safe is False
    assert resp.cost_usd is not None and resp.cost_usd > 0


def test_a_block_after_the_call_is_an_allowed_request_and_an_unsafe_response() -> None:
    rec = record("post_call_blocked")
    assert rec["status"] == "failure"
    call = events_of(rec)
    assert call.request["blocked"] is False
    resp = decoded(call.response or {})
    assert isinstance(resp, ResponseEvent) and resp.safe is False
    # LiteLLM reports no cost on the failure record; the mapping adds none
    assert resp.cost_usd == rec["response_cost"] == 0


def test_a_guardrail_that_failed_to_respond_is_neither_blocked_nor_unsafe_but_counted() -> None:
    call = events_of(record("guard_failed_to_respond"))
    assert call.guardrail_unanswered is True
    assert call.request["blocked"] is False and call.request["guardrail_unanswered"] is True
    assert call.response is not None and call.response["safe"] is True


def test_a_provider_failure_is_a_request_without_response() -> None:
    rec = record("success")
    rec["status"] = "failure"
    rec["status_fields"] = {"llm_api_status": "failure", "guardrail_status": "success"}
    call = events_of(rec)
    assert call.request["blocked"] is False and call.response is None


@pytest.mark.parametrize("kind", ["no_user", "streaming", "hostile_user"])
def test_every_recorded_kind_maps_to_events_the_decoder_accepts(kind: str) -> None:
    call = events_of(record(kind))
    decoded(call.request)
    assert call.response is not None
    decoded(call.response)


def test_user_falls_back_to_the_keys_user_then_its_hash_then_anonymous() -> None:
    rec = record("no_user")
    assert rec["end_user"] is None
    assert events_of(rec).request["user_id"] == rec["metadata"]["user_api_key_user_id"]
    rec["metadata"]["user_api_key_user_id"] = None
    assert events_of(rec).request["user_id"] == rec["metadata"]["user_api_key_hash"]
    rec["metadata"]["user_api_key_hash"] = ""
    assert events_of(rec).request["user_id"] == ANONYMOUS_USER


def test_a_hostile_user_is_kept_verbatim_as_data() -> None:
    rec = record("hostile_user")
    assert events_of(rec).request["user_id"] == rec["end_user"] == 'a"b\\nc {x} ../../etc'


def test_long_ids_stay_within_the_contract_and_stay_distinct() -> None:
    rec = record("success")
    rec["end_user"] = "u" * 300 + "1"
    first = events_of(rec).request["user_id"]
    rec["end_user"] = "u" * 300 + "2"
    second = events_of(rec).request["user_id"]
    assert len(first) == len(second) == MAX_ID_CHARS and first != second
    decoded(events_of(rec).request)


def test_a_lone_surrogate_in_a_user_id_still_encodes() -> None:
    rec = json.loads(json.dumps(record("success")).replace('"alice"', '"al\\ud800ice"'))
    event = events_of(rec).request
    assert event["user_id"] == "al\ufffdice"
    orjson.dumps(event)


def test_the_team_becomes_the_tenant() -> None:
    rec = record("success")
    assert "tenant" not in events_of(rec).request
    rec["metadata"]["user_api_key_team_id"] = "team-search"
    call = events_of(rec)
    assert call.request["tenant"] == "team-search"
    assert call.response is not None and call.response["tenant"] == "team-search"
    assert decoded(call.request).tenant == "team-search" == decoded(call.response).tenant


def test_a_long_or_broken_team_id_is_still_a_tenant_the_decoder_takes() -> None:
    rec = record("success")
    for team in ("t" * 1000, "\u20ac" * 300, "team\ud800"):
        rec["metadata"]["user_api_key_team_id"] = team
        call = events_of(rec)
        tenant = decoded(call.request).tenant
        assert tenant is not None and 1 <= len(tenant) <= MAX_ID_CHARS
        assert decoded(call.response or {}).tenant == tenant


def test_a_judges_score_becomes_the_safety_score_when_configured() -> None:
    rec = record("success")
    judge = next(g for g in rec["guardrail_information"] if g["guardrail_mode"] == "post_call")
    judge["guardrail_response"] = {"score": 0.25}
    assert events_of(rec).response == events_of(rec, safety_score_key=None).response
    assert (events_of(rec).response or {})["safe"] is True
    resp = events_of(rec, safety_score_key="score").response or {}
    assert resp["safety_score"] == 0.25 and "safe" not in resp
    unsafe = decoded(resp)
    assert isinstance(unsafe, ResponseEvent) and unsafe.safe is False
    judge["guardrail_response"] = {"score": 7}  # not a probability: ignored
    assert (events_of(rec, safety_score_key="score").response or {})["safe"] is True


def test_a_flag_outweighs_a_good_score() -> None:
    rec = record("post_call_flagged")
    judge = next(g for g in rec["guardrail_information"] if g["guardrail_mode"] == "post_call")
    judge["guardrail_response"] = {"score": 0.99}
    assert (events_of(rec, safety_score_key="score").response or {})["safe"] is False


def test_an_intervention_without_detail_counts_as_a_pre_call_block() -> None:
    rec = record("pre_call_blocked")
    rec["guardrail_information"] = None
    call = events_of(rec)
    assert call.request["blocked"] is True and call.request["block_reason"] == "guardrail"
    assert call.response is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"litellm_call_id": None, "id": None}, "bad_record:call_id"),
        ({"litellm_call_id": "x" * 200}, "bad_record:call_id"),
        ({"startTime": None}, "bad_record:startTime"),
        ({"startTime": "yesterday"}, "bad_record:startTime"),
        ({"startTime": -1.0}, "bad_record:startTime"),
    ],
)
def test_records_that_cannot_be_events_raise_with_a_bounded_reason(
    change: dict[str, Any], reason: str
) -> None:
    rec = record("success")
    rec.update(change)
    with pytest.raises(MappingError, match=r"call.id|startTime") as err:
        events_of(rec)
    assert err.value.reason == reason


def test_prompt_text_never_reaches_an_event() -> None:
    rec = record("success")
    rec["messages"] = [{"role": "user", "content": "secret prompt"}]
    rec["response"] = {"text": "secret answer"}
    call = events_of(rec)
    text = orjson.dumps([call.request, call.response])
    assert b"secret" not in text
