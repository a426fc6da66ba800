"""The one configuration object the app is built from.

Precedence, lowest first: defaults, the TOML file (``--config``, else
``$SENTINEL_CONFIG``, else ``./sentinel.toml`` if present), then ``SENTINEL_*``
environment variables (rules in ``config_env``). Secrets (heartbeat tokens,
``http.status_token``, ``kafka.sasl_password``, ``redis.password`` and ``redis.url``,
which may hold a password) are ``SecretStr``
and can come from files: ``<key>_file = "path"`` in TOML, relative to the config
file (``tokens_file = { composite = "path", ... }`` in a ``[[heartbeat]]`` entry),
or ``SENTINEL_<...>_FILE=path`` in the environment.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stream_sentinel.alertmanager_config import AlertmanagerTargets
from stream_sentinel.config_env import (
    CONFIG_PATH_ENV,
    ConfigError,
    apply_env,
    format_key,
    resolve_files,
)
from stream_sentinel.config_types import MAX_URL_CHARS, Token
from stream_sentinel.config_types import Section as _Section
from stream_sentinel.connections import KafkaConfig, RedisConfig
from stream_sentinel.http_config import HttpConfig
from stream_sentinel.integrations.litellm_events import LiteLLMConfig
from stream_sentinel.kafka.topic_config import TopicsConfig
from stream_sentinel.logsetup import LogConfig
from stream_sentinel.model import SIGNALS, SignalName
from stream_sentinel.tenants import TenantsConfig

__all__ = [
    "Config",
    "ConfigError",
    "HeartbeatConfig",
    "HeartbeatTokens",
    "HttpConfig",
    "load_config",
]

DEFAULT_PATH = Path("sentinel.toml")
REDACTED = "***"
HeartbeatKind = Literal["generic", "healthchecks", "uptime-kuma", "webhook"]
HEARTBEAT_KINDS: tuple[HeartbeatKind, ...] = get_args(HeartbeatKind)
COMPOSITE = "composite"

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
# Bounds on what a config may hold: a huge file or table is a mistake (or an attack
# through a templated value) long before it is a real deployment.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_PRICES = 10_000
MAX_HEARTBEATS = 100
ModelName = Annotated[str, Field(min_length=1, max_length=256)]


class AlertingConfig(_Section):
    tick_seconds: int = Field(60, ge=1, le=3600)
    """Evaluation interval; ticks fall on whole multiples of it."""
    multiplier: float = Field(2.0, gt=0)
    """A signal is red when worse than multiplier x its baseline."""
    red_needed: int = Field(2, ge=1, le=len(SIGNALS))
    """Red signals that make the composite critical (fewer: warning)."""
    min_events: int = Field(50, ge=1)
    """Below this many events in its window a ratio signal is insufficient_data, never red."""
    significance: float = Field(0.001, ge=0, lt=1)
    """A ratio signal is red only when the excess has a one-sided p-value below this; 0 turns the
    test off."""
    clear_ticks: int = Field(3, ge=1)
    """Consecutive ticks a red signal must not be red before it turns back to ok."""
    lateness_seconds: int = Field(30, ge=0, le=3600)
    """How late (out of order) an event may arrive and still count in its tick."""
    absolute_limits: Mapping[SignalName, NonNegative] = Field(default_factory=dict)
    """Per signal: a value beyond this is red whatever the baseline (a minimum for safety_pct, a
    maximum otherwise)."""
    floors: Mapping[SignalName, Positive] = Field(default_factory=dict)
    """Per signal: smallest baseline used (for safety_pct, smallest failure rate in %), so a zero
    baseline cannot turn one event red; unset uses built-in floors."""
    top_k: int = Field(10, ge=1, le=1000)
    """Busiest users reported per tick in /status and the timeline."""


class BaselinesConfig(_Section):
    """Static baselines; a signal left unset is learned."""

    blocked_pct: float | None = Field(None, ge=0, le=100)
    """Static baseline, % of requests blocked; unset: learned."""
    safety_pct: float | None = Field(None, ge=0, le=100)
    """Static baseline, % of responses judged safe; unset: learned."""
    top_user_rps: float | None = Field(None, ge=0)
    """Static baseline, the busiest user's requests per second; unset: learned."""
    spend_hour: float | None = Field(None, ge=0)
    """Static baseline, USD spent per hour; unset: learned."""


class LearningConfig(_Section):
    days: int = Field(7, ge=1, le=365)
    """Learning period of a fresh deployment (alerts suppressed, heartbeats still sent)."""
    seasonality: Literal["none", "hour_of_day"] = "none"
    """hour_of_day: learn from the same hour of past days instead of all ticks."""
    history_days: int = Field(14, ge=1, le=366)
    """How long each tick's signal values are kept for learning."""
    history_file: str = ""
    """Embedded store only: file keeping the learning history across restarts."""

    @model_validator(mode="after")
    def _history_covers_learning(self) -> LearningConfig:
        if self.history_days < self.days:
            raise ValueError("history_days must be at least days")
        return self


class PriceConfig(_Section):
    prompt_per_1k: NonNegative
    """USD per 1,000 prompt tokens."""
    completion_per_1k: NonNegative
    """USD per 1,000 completion tokens."""


class IngestConfig(_Section):
    max_event_bytes: int = Field(65536, ge=64, le=16 * 1024 * 1024)
    """Larger events are dead-lettered."""
    safety_threshold: float = Field(0.5, ge=0, le=1)
    """A response with only a safety_score is safe when the score is at least this."""
    max_future_seconds: int = Field(300, ge=0)
    """Live only: events further ahead of the wall clock are dead-lettered."""
    batch_max_records: int = Field(20_000, ge=1, le=1_000_000)
    """Most records fetched from Kafka and written to the store in one batch."""
    fetch_step_records: int = Field(1_000, ge=1, le=1_000_000)
    """Records taken from the Kafka client at a time; a batch is made of such steps."""
    lean_records: bool = True
    """Read aiokafka's parsed records without a ConsumerRecord each (docs/benchmarks.md)."""
    prices: Mapping[ModelName, PriceConfig] = Field(default_factory=dict, max_length=MAX_PRICES)
    """Per model, USD per 1,000 tokens, for responses without cost_usd."""


class HeartbeatTokens(_Section):
    composite: Token | None = None
    """Token of the composite status check."""
    blocked_pct: Token | None = None
    """Token of the blocked_pct check."""
    safety_pct: Token | None = None
    """Token of the safety_pct check."""
    top_user_rps: Token | None = None
    """Token of the top_user_rps check."""
    spend_hour: Token | None = None
    """Token of the spend_hour check."""

    @model_validator(mode="after")
    def _at_least_one(self) -> HeartbeatTokens:
        if not self.secret_values():
            raise ValueError(f"give at least one of {', '.join((COMPOSITE, *SIGNALS))}")
        return self

    def secret_values(self) -> dict[str, str]:
        """Token key (``composite`` or a signal) -> the token, for the sender only."""
        tokens = {key: getattr(self, key) for key in (COMPOSITE, *SIGNALS)}
        return {k: v.get_secret_value() for k, v in tokens.items() if v is not None}


class HeartbeatConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a metric label value
    """Name in metrics and logs; unset: `<kind>-<N>` (kind and position in the list)."""
    kind: HeartbeatKind = "generic"
    """Wire format of the monitor (see docs/heartbeats.md)."""
    url: str = Field(max_length=MAX_URL_CHARS)
    """healthchecks: the ping URL up to the UUID (https://hc-ping.com, or
    https://hc.example.org/ping self-hosted); uptime-kuma: its base URL; generic, webhook: the
    endpoint. Never credentials in it."""
    tokens: HeartbeatTokens
    """One token per check: composite and/or any signal; at least one."""
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    """Per-request timeout."""
    retries: int = Field(2, ge=0, le=10)
    """Retries of a failed push (backoff with jitter), within the tick."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str, info: ValidationInfo) -> str:
        # Messages never echo the URL: a generic target may carry a secret in it.
        if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
            # URL parsers drop CR/LF/tab silently and disagree on "\\": the URL
            # used would not be the one that was checked
            raise ValueError("must not contain spaces, control characters or backslashes")
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises on a port that is not a number in range
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username is not None or parts.fragment:
            raise ValueError("must not contain credentials or a #fragment")
        kind = info.data.get("kind")  # declared before url, so already validated
        if kind in ("healthchecks", "uptime-kuma") and parts.query:
            raise ValueError(f"a {kind} url is a base URL without a query")
        return url


class Config(_Section):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    heartbeat: tuple[HeartbeatConfig, ...] = Field(
        default=(), strict=False, max_length=MAX_HEARTBEATS
    )  # TOML gives a list
    alertmanager: AlertmanagerTargets = Field(default=(), strict=False)
    http: HttpConfig = Field(default_factory=HttpConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    litellm: LiteLLMConfig = Field(default_factory=LiteLLMConfig)
    tenants: TenantsConfig = Field(default_factory=TenantsConfig)

    @field_validator("heartbeat", mode="before")
    @classmethod
    def _default_names(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        return [
            {"name": f"{_kind(entry)}-{i}", **entry}
            if isinstance(entry, dict) and "name" not in entry
            else entry
            for i, entry in enumerate(value)
        ]

    @field_validator("heartbeat")
    @classmethod
    def _unique_names(cls, value: tuple[HeartbeatConfig, ...]) -> tuple[HeartbeatConfig, ...]:
        names = [target.name for target in value]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"heartbeat[{i}].name {name!r} is used twice")
        return value

    def static_baselines(self) -> dict[SignalName, float]:
        """The signals with a configured baseline, and that baseline."""
        values = {name: getattr(self.baselines, name) for name in SIGNALS}
        return {name: float(v) for name, v in values.items() if v is not None}

    def learned_signals(self) -> tuple[SignalName, ...]:
        """The signals without a static baseline, in ``SIGNALS`` order."""
        static = self.static_baselines()
        return tuple(name for name in SIGNALS if name not in static)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text before it is logged."""
        found = [t for hb in self.heartbeat for t in hb.tokens.secret_values().values()]
        found += [s for am in self.alertmanager for s in am.secret_values()]
        if self.http.status_token is not None:
            found.append(self.http.status_token.get_secret_value())
        for password in (self.kafka.sasl_password, self.redis.password):
            if password is not None:
                found.append(password.get_secret_value())
        if self.redis.url is not None:
            parts = urlsplit(self.redis.url.get_secret_value())
            found += [p for p in (parts.username, parts.password) if p]
            found += parse_qs(parts.query).get("password", [])
        return tuple(found)

    def redacted_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data with every secret shown as ``***``."""
        data: dict[str, Any] = _redact(self.model_dump(mode="python"))
        if self.redis.url is not None:
            data["redis"]["url"] = _redact_url(self.redis.url.get_secret_value())
        return data


def _kind(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind", "generic")
    return kind if kind in HEARTBEAT_KINDS else "heartbeat"


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, Mapping):
        return {key: _redact(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _redact_url(url: str) -> str:
    """Keep scheme, host and path (useful in a report); hide credentials and options."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    host = f"{REDACTED}@{netloc[2]}" if netloc[1] else netloc[2]
    query = f"?{REDACTED}" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def load_config(path: str | Path | None, environ: Mapping[str, str]) -> Config:
    """Build the config; every problem is a ``ConfigError`` naming the key."""
    chosen = path if path is not None else environ.get(CONFIG_PATH_ENV) or None
    if chosen is None and DEFAULT_PATH.is_file():
        chosen = DEFAULT_PATH
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if chosen is not None:
        raw, base = _read_toml(Path(chosen)), Path(chosen).parent
    raw = resolve_files(raw, Config, base)
    raw, origins = apply_env(raw, environ, Config)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        error = _from_validation(exc, origins)
    # Raised outside the handler so no traceback chains to pydantic's error,
    # whose text includes the input values, secrets among them.
    raise error


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), f"larger than {MAX_CONFIG_BYTES // 1024} KiB")
        return tomllib.loads(data.decode("utf-8"))
    except OSError as exc:
        problem = f"cannot read the config file: {exc.strerror}"
    except tomllib.TOMLDecodeError as exc:
        problem = f"invalid TOML: {exc}"  # the message carries line and column
    except UnicodeDecodeError:
        problem = "invalid TOML: the file is not UTF-8"
    raise ConfigError(str(path), problem)


def _from_validation(exc: ValidationError, origins: Mapping[str, str]) -> ConfigError:
    found: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        key = format_key(err["loc"])
        problem = err["msg"].removeprefix("Value error, ")
        source = next((v for k, v in origins.items() if re.match(rf"{re.escape(k)}\b", key)), None)
        found.append((key, f"{problem} (from {source})" if source else problem))
    return ConfigError(found[0][0], found[0][1], found[1:])
