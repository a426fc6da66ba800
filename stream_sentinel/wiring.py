"""Build the pipeline's parts from one Config: the only place config is read.

Live (`run`) and replay both call these builders, so they run the same
decode, aggregate, store and rules code.
"""

from __future__ import annotations

import math
import socket

from aiohttp import BasicAuth

from .aggregate import BatchAggregator
from .alertmanager_push import AlertmanagerTarget
from .baseline_math import DAY_S
from .bucketing import LONGEST_WINDOW_S, TOP_USER_WINDOW_S, bucket_seconds_for
from .config import Config
from .contract import ModelPrice
from .decode import Decoder
from .ingest import BatchProcessor
from .kafka.clients import client_options
from .kafka.source import KafkaSettings
from .model import SIGNALS, SignalName
from .rules import RulesConfig, SignalRule
from .store.build import StorageSettings

# margin on top of window + lateness before a bucket may expire: covers a
# tick evaluated a little late and clock skew between replicas
EXPIRY_MARGIN_S = 300


def retention_s(cfg: Config) -> int:
    """How long counted buckets must live: the longest window plus lateness and margin."""
    return LONGEST_WINDOW_S + cfg.alerting.lateness_seconds + EXPIRY_MARGIN_S


def bucket_width(cfg: Config) -> int:
    return bucket_seconds_for(cfg.alerting.tick_seconds)


def build_decoder(cfg: Config, *, event_time: bool = False) -> Decoder:
    """``event_time``: the clock is the stream itself (replay), where a quiet
    gap in the log is not "the future"; only events older than retention
    behind the newest one are out of range."""
    return Decoder(
        max_bytes=cfg.ingest.max_event_bytes,
        safety_threshold=cfg.ingest.safety_threshold,
        retention_s=LONGEST_WINDOW_S + cfg.alerting.lateness_seconds,
        max_future_s=math.inf if event_time else cfg.ingest.max_future_seconds,
    )


def build_processor(cfg: Config, *, event_time: bool = False) -> BatchProcessor:
    prices = {
        model: ModelPrice(p.prompt_per_1k, p.completion_per_1k)
        for model, p in cfg.ingest.prices.items()
    }
    return BatchProcessor(
        build_decoder(cfg, event_time=event_time),
        BatchAggregator(bucket_width(cfg), prices, tenants=cfg.tenants.enabled),
    )


def tenants_top_k(cfg: Config) -> int:
    """How many tenants a tick evaluates; 0 when per-tenant signals are off."""
    return cfg.tenants.top_k if cfg.tenants.enabled else 0


def build_rules(cfg: Config) -> RulesConfig:
    a = cfg.alerting
    signals: dict[SignalName, SignalRule] = {
        name: SignalRule(
            multiplier=a.multiplier,
            absolute_limit=a.absolute_limits.get(name),
            floor=a.floors.get(name),
        )
        for name in SIGNALS
    }
    return RulesConfig(
        min_events=a.min_events,
        significance=a.significance,
        clear_ticks=a.clear_ticks,
        red_needed=a.red_needed,
        top_k=a.top_k,
        signals=signals,
    )


def storage_settings(
    cfg: Config,
    *,
    redis_url: str | None = None,
    prefix: str | None = None,
    history_file: bool = False,
) -> StorageSettings:
    """Redis when a URL is configured, else the embedded store.

    ``redis_url`` overrides the config: a URL (``replay --redis``), or "" for
    the embedded store whatever the config says (a private backtest).
    ``prefix`` replaces the configured key prefix (a backtest's own).
    ``history_file``: use ``[learning] history_file`` (the service only: a
    backtest must not write into the deployment's history).
    """
    url = redis_url
    if url is None and cfg.redis.url is not None:
        url = cfg.redis.url.get_secret_value()
    return StorageSettings(
        url=url or None,
        prefix=cfg.redis.key_prefix if prefix is None else prefix,
        bucket_width=bucket_width(cfg),
        counter_ttl_s=retention_s(cfg),
        user_ttl_s=TOP_USER_WINDOW_S + cfg.alerting.lateness_seconds + EXPIRY_MARGIN_S,
        history_keep_s=cfg.learning.history_days * DAY_S,
        history_file=(cfg.learning.history_file or None) if history_file else None,
        client_options=cfg.redis.client_options(),
    )


def build_kafka_settings(cfg: Config) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=cfg.kafka.bootstrap_servers,
        security=client_options(cfg.kafka),
        group_id=cfg.kafka.group_id,
        request_topic=cfg.kafka.request_topic,
        response_topic=cfg.kafka.response_topic,
        dlq_topic=cfg.kafka.dlq_topic,
        max_records=cfg.ingest.batch_max_records,
        fetch_records=cfg.ingest.fetch_step_records,
        lean_records=cfg.ingest.lean_records,
        rebuild_lookback_s=retention_s(cfg),
    )


def build_alertmanager_targets(cfg: Config, http_port: int) -> list[AlertmanagerTarget]:
    """``http_port`` is the bound port of /status, for targets without a ``status_url``."""
    scheme = "https" if cfg.http.tls_certfile else "http"
    here = f"{scheme}://{socket.gethostname()}:{http_port}/status"
    targets = []
    for am in cfg.alertmanager:
        authorization = None
        if am.bearer_token is not None:
            authorization = f"Bearer {am.bearer_token.get_secret_value()}"
        elif am.basic_auth_username is not None and am.basic_auth_password is not None:
            password = am.basic_auth_password.get_secret_value()
            authorization = BasicAuth(am.basic_auth_username, password).encode()
        targets.append(
            AlertmanagerTarget(
                name=am.name,
                url=am.url,
                labels=dict(am.labels),
                severities={
                    "signal_red": am.severity.signal_red,
                    "critical": am.severity.critical,
                    "stale": am.severity.stale,
                },
                authorization=authorization,
                ssl_cafile=am.ssl_cafile,
                timeout_s=am.timeout_seconds,
                generator_url=am.status_url or here,
            )
        )
    return targets
