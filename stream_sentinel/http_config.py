"""``[http]``: where the HTTP server listens and how it defends itself.

Every limit has a default safe for a pod network: a client that holds a
connection without finishing a request, or floods the port with idle ones,
must not starve the liveness probe (docs/deployment.md, docs/reliability.md).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, model_validator

from stream_sentinel.config_types import BindHost, Section, Token

# A guessable token is no protection: 16 random characters are ~95 bits.
MIN_STATUS_TOKEN_CHARS = 16
# A DNS name as it appears in a Host header (no port); "*" allows any.
HostName = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))$")]
# A path to a PEM file; bounded and single-line like every other string.
PemPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]+$")]


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_STATUS_TOKEN_CHARS:
        # the message names the rule, never the value
        raise ValueError(
            f"must be at least {MIN_STATUS_TOKEN_CHARS} characters "
            "(e.g. the output of `openssl rand -hex 24`)"
        )
    return value


StatusToken = Annotated[Token, AfterValidator(_long_enough)]


class HttpConfig(Section):
    # loopback unless asked: /metrics and /readyz are open to whoever can connect
    host: BindHost = "127.0.0.1"
    """Address of /metrics, /healthz, /readyz and /status; 0.0.0.0 in a container."""
    port: int = Field(9464, ge=0, le=65535)
    """Port of the HTTP server."""
    status_token: StatusToken | None = None  # bearer token required by /status when set
    """When set, /status requires `Authorization: Bearer <token>` (at least 16 characters); a
    client that keeps sending wrong tokens is made to wait (429) for up to a minute."""
    allowed_hosts: tuple[HostName, ...] = Field((), max_length=64, strict=False)
    """DNS names accepted in the Host header besides `localhost` and `host`; others get 421 (a
    page using DNS rebinding to reach the port). IP literals are always accepted; `"*"` accepts
    any name."""
    tls_certfile: PemPath | None = None
    """PEM certificate chain; with `tls_keyfile`, the port speaks HTTPS only (and sends HSTS).
    Re-read on SIGHUP and when the file changes."""
    tls_keyfile: PemPath | None = None
    """PEM private key of `tls_certfile`."""
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A connection must deliver a complete request head within this long of opening or of
    starting it; slower ones are closed (slowloris)."""
    body_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A request body must arrive within this long; slower ones get 408."""
    keepalive_timeout_seconds: float = Field(15.0, gt=0, le=3600)
    """An idle kept-alive connection is closed after this long."""
    max_connections: int = Field(256, ge=8, le=100_000)
    """Open connections at most (lowered to the open-file limit minus 192); past it the ones
    waiting longest for a request (idle, or a head begun long ago) are closed first."""

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: give both or neither")
        return self

    def host_names(self) -> frozenset[str]:
        """Names accepted in a Host header: ``localhost``, the bind name, ``allowed_hosts``."""
        names = {"localhost", *(h.lower().rstrip(".") for h in self.allowed_hosts)}
        try:
            ipaddress.ip_address(self.host.split("%")[0])
        except ValueError:
            names.add(self.host.lower().rstrip("."))
        return frozenset(names)
