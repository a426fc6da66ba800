"""``[[alertmanager]]``: where the leader pushes its alerts, and how it labels them.

Kept out of ``config.py`` (which only gains the field) so the target's rules
live next to the code that applies them (``alertmanager.py``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

# Set by the sentinel on every alert: a static label of the same name would
# either be overwritten or overwrite the alert's identity.
RESERVED_LABELS = frozenset({"alertname", "signal", "severity", "tenant"})
# Alertmanager's (and Prometheus') label name rule.
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
LabelValue = Annotated[str, Field(min_length=1, max_length=1024)]
Severity = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class _Section(BaseModel):
    # the same rules as every section of config.py: strict, frozen, documented
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )


class AlertSeverities(_Section):
    signal_red: Severity = "warning"
    """Label severity of LLMSecuritySignalRed and LLMSecurityTenantSignalRed (one red
    signal: by design not a page)."""
    critical: Severity = "page"
    """Label severity of LLMSecurityCritical and LLMSecurityTenantCritical (the
    composite, or a top tenant's, is critical)."""
    stale: Severity = "page"
    """Label severity of StreamSentinelStale (the pipeline cannot trust its numbers)."""


def _check_url(url: str) -> str:
    # Messages never echo the URL.
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise ValueError("must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials: use bearer_token or basic_auth_password")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a #fragment")
    return url


HttpUrl = Annotated[str, AfterValidator(_check_url)]


class AlertmanagerConfig(_Section):
    """One Alertmanager (or an HA pair's load balancer). Each tick the leader POSTs
    `/api/v2/alerts` there: LLMSecuritySignalRed per red signal, LLMSecurityCritical
    while critical, StreamSentinelStale while stale (see docs/alerting.md)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a metric label value
    """Name in metrics and logs; unset: `alertmanager-<N>` (position in the list)."""
    url: HttpUrl
    """Base URL of the Alertmanager, e.g. http://alertmanager:9093 (a path prefix is kept)."""
    labels: Mapping[LabelName, LabelValue] = Field(default_factory=dict)
    """Static labels on every alert (service, env, team...); never alertname, signal, severity
    or tenant."""
    severity: AlertSeverities = Field(default_factory=AlertSeverities)
    """Value of the severity label per alert kind."""
    bearer_token: SecretStr | None = None
    """Sent as `Authorization: Bearer <token>`."""
    basic_auth_username: str | None = Field(None, pattern=r"^[^:\s]{1,255}$")
    """HTTP basic auth user (with basic_auth_password)."""
    basic_auth_password: SecretStr | None = None
    """HTTP basic auth password."""
    ssl_cafile: str | None = Field(None, min_length=1)
    """CA bundle (PEM; absolute, or relative to the working directory) that signs an https
    Alertmanager's certificate; unset: the system's."""
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    """Per-request timeout; a push also never outlasts the tick it belongs to."""
    status_url: HttpUrl | None = None
    """generatorURL of every alert, where an operator opens this sentinel's /status; unset:
    http://<hostname>:<http.port>/status."""

    @field_validator("labels")
    @classmethod
    def _not_reserved(cls, labels: Mapping[str, str]) -> Mapping[str, str]:
        taken = sorted(RESERVED_LABELS & set(labels))
        if taken:
            raise ValueError(f"label {taken[0]!r} is set by the sentinel itself")
        return labels

    @field_validator("ssl_cafile")
    @classmethod
    def _loadable(cls, path: str | None) -> str | None:
        # refused now, with the key named, rather than at the first push
        if path is not None:
            try:
                ssl.create_default_context(cafile=path)
            except ssl.SSLError:  # an OSError too: first
                raise ValueError("the CA file holds no PEM certificate") from None
            except OSError as exc:
                raise ValueError(f"cannot read the CA file: {exc.strerror or exc}") from None
        return path

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        basic = (self.basic_auth_username is not None, self.basic_auth_password is not None)
        if any(basic) and not all(basic):
            raise ValueError("basic auth needs both basic_auth_username and basic_auth_password")
        if self.bearer_token is not None and any(basic):
            raise ValueError("give bearer_token or basic auth, not both")
        return self

    def secret_values(self) -> tuple[str, ...]:
        found = (self.bearer_token, self.basic_auth_password)
        return tuple(s.get_secret_value() for s in found if s is not None)


def _default_names(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value
    return [
        {"name": f"alertmanager-{i}", **entry}
        if isinstance(entry, dict) and "name" not in entry
        else entry
        for i, entry in enumerate(value)
    ]


def _unique_names(value: tuple[AlertmanagerConfig, ...]) -> tuple[AlertmanagerConfig, ...]:
    names = [target.name for target in value]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"alertmanager[{i}].name {name!r} is used twice")
    return value


# The Config field's type: TOML gives a list of tables.
AlertmanagerTargets = Annotated[
    tuple[AlertmanagerConfig, ...],
    BeforeValidator(_default_names),
    AfterValidator(_unique_names),
]
