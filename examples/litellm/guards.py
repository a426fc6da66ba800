"""Example guardrails for the LiteLLM proxy; tests/integration/test_litellm_proxy.py runs them.

Triggered by words in the prompt, so one proxy serves every kind of call:
``ignore previous instructions`` -> the pre-call injection blocker raises 400;
``judge-flag`` -> the post-call judge flags (score 0.1) and lets the answer out;
``judge-block`` -> the post-call judge stops the answer (400);
``guard-down`` -> a fail-open guard records that it did not answer.
"""

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail, log_guardrail_information


def _prompt(data):
    messages = data.get("messages") or []
    return " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict)).lower()


class InjectionBlocker(CustomGuardrail):
    @log_guardrail_information
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if "ignore previous instructions" in _prompt(data):
            raise HTTPException(status_code=400, detail={"error": "prompt injection"})
        return data


class Judge(CustomGuardrail):
    @log_guardrail_information
    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        text = _prompt(data)
        if "judge-block" in text:
            raise HTTPException(status_code=400, detail={"error": "unsafe answer"})
        score = 0.1 if "judge-flag" in text else 0.9
        self.add_standard_logging_guardrail_information_to_request_data(
            guardrail_json_response={"score": score},
            request_data=data,
            guardrail_status="guardrail_flagged" if score < 0.5 else "success",
        )
        return response


class FailOpen(CustomGuardrail):
    @log_guardrail_information
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if "guard-down" in _prompt(data):
            self.add_standard_logging_guardrail_information_to_request_data(
                guardrail_json_response="timeout",
                request_data=data,
                guardrail_status="guardrail_failed_to_respond",
            )
        return data
