"""The LiteLLM proxy callback: every call becomes request/response events in Kafka.

Add one line to the proxy's config::

    litellm_settings:
      callbacks: ["stream_sentinel.integrations.litellm.sentinel_callback"]

and give it the service's settings through the same variables
(``SENTINEL_KAFKA_BOOTSTRAP_SERVERS``, ``SENTINEL_KAFKA_REQUEST_TOPIC``, ...,
``SENTINEL_CONFIG`` naming a TOML file for the rest). LiteLLM imports this module
inside the proxy's running event loop; one producer starts with the first call.
The callback never slows or fails a call: it maps the record and hands the events
to a bounded queue (``integrations.kafka_sink``). Needs ``stream-sentinel[litellm]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ..config import Config, ConfigError, load_config
from ..kafka.clients import producer_factory
from .kafka_sink import EventSink, RateLimitedLog
from .litellm_events import MappingError, events_of

log = logging.getLogger(__name__)


class SentinelCallback(CustomLogger):  # type: ignore[misc]  # LiteLLM ships no type stubs
    """Implements only LiteLLM's async hooks: the proxy awaits them off the request path."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.unmapped = 0
        self.guardrail_unanswered = 0
        self._warn = RateLimitedLog(log)
        self._sink: EventSink | None = None
        self._safety_score_key: str | None = None
        try:
            cfg = load_config(None, os.environ if environ is None else environ)
        except ConfigError as exc:
            # the proxy keeps serving; every event is counted as dropped and this says why
            log.error("stream-sentinel callback disabled: %s", exc)
            return
        self._configure(cfg)

    def _configure(self, cfg: Config) -> None:
        self._safety_score_key = cfg.litellm.safety_score_key
        self._sink = EventSink(
            topics={"request": cfg.kafka.request_topic, "response": cfg.kafka.response_topic},
            make_producer=producer_factory(cfg, enable_idempotence=True, linger_ms=50),
            queue_size=cfg.litellm.queue_size,
            flush_timeout_s=cfg.litellm.flush_timeout_seconds,
        )

    @property
    def sink(self) -> EventSink | None:
        return self._sink

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._accept(kwargs)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._accept(kwargs)

    def _accept(self, kwargs: Mapping[str, Any]) -> None:
        record = kwargs.get("standard_logging_object")
        if not isinstance(record, Mapping):
            self.unmapped += 1
            self._warn.warning("no_record", "a LiteLLM call came without a standard logging object")
            return
        try:
            call = events_of(record, safety_score_key=self._safety_score_key)
        except MappingError as exc:
            self.unmapped += 1
            self._warn.warning("unmapped", f"a LiteLLM record was not mapped ({exc.reason})")
            return
        if call.guardrail_unanswered:
            self.guardrail_unanswered += 1
            self._warn.warning(
                "unanswered", "a guardrail failed to respond: the call was not screened"
            )
        events = [call.request] if call.response is None else [call.request, call.response]
        if self._sink is None:
            self._warn.warning("disabled", "stream-sentinel callback disabled; events dropped")
            return
        self._sink.offer(events)


sentinel_callback = SentinelCallback()
