"""The ``[kafka]`` and ``[redis]`` sections: where the servers are and how to log in.

Security keys are named after the clients' own (aiokafka's ``security_protocol``,
``sasl_mechanism``...), so a managed service's connection guide maps onto them
one to one. Combinations that cannot work (a SASL protocol without a mechanism,
TLS files on a plaintext connection) are refused at load time, naming the key.
File paths are read relative to the working directory.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from .config_types import MAX_URL_CHARS, Plain, Section, Topic
from .store.build import check_url

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_REDIS_SCHEMES = ("rediss", "rediss+cluster")


def _readable_file(value: str) -> str:
    # Paths are not secrets: naming the one that is missing is the useful message.
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"no such file: {value!r}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file not readable: {value!r}")
    return value


ReadableFile = Annotated[str, AfterValidator(_readable_file)]


def check_tls_files(cafile: str | None, certfile: str | None, keyfile: str | None) -> None:
    """Load the files as the clients will, so a wrong one is a config error
    naming its key instead of a failure at the first connection."""
    if keyfile and not certfile:
        raise ValueError("ssl_keyfile needs ssl_certfile (the certificate of that key)")
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError):
        raise ValueError("ssl_cafile: no PEM CA certificate in it") from None
    if certfile:
        try:
            # an empty password: without one, OpenSSL would prompt on the terminal
            # for an encrypted key's passphrase
            context.load_cert_chain(certfile, keyfile, password="")
        except (ssl.SSLError, OSError):
            # never the exception's text: it could quote a key's bytes
            raise ValueError(
                "ssl_certfile / ssl_keyfile: not a PEM certificate with its unencrypted key"
            ) from None


class KafkaConfig(Section):
    bootstrap_servers: Plain = "localhost:9092"
    """Kafka brokers, comma-separated host:port."""
    group_id: Plain = "stream-sentinel"
    """Consumer group; replicas in one group share the partitions."""
    request_topic: Topic = "llm.requests"
    """Topic of request events."""
    response_topic: Topic = "llm.responses"
    """Topic of response events."""
    dlq_topic: Topic = "llm.sentinel.dlq"
    """Dead-letter topic: rejected events with the reason and the original bytes."""
    alerts_topic: Topic = "llm.sentinel.alerts"
    """Topic the leader publishes composite status transitions to."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """PLAINTEXT, SSL (TLS; with ssl_certfile: mutual TLS), SASL_PLAINTEXT or SASL_SSL (a
    username and password over TLS: MSK, Confluent Cloud, Aiven)."""
    sasl_mechanism: SaslMechanism | None = None
    """With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""
    sasl_username: Plain | None = None
    """With SASL_*: the user (Confluent Cloud: the API key)."""
    sasl_password: SecretStr | None = None
    """With SASL_*: the password (Confluent Cloud: the API secret)."""
    ssl_cafile: ReadableFile | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's CAs."""
    ssl_certfile: ReadableFile | None = None
    """PEM client certificate for mutual TLS (may hold the key too)."""
    ssl_keyfile: ReadableFile | None = None
    """PEM private key of ssl_certfile, when not in that file."""
    ssl_check_hostname: bool = True
    """Check that the broker's certificate names the host connected to."""

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaConfig:
        protocol = self.security_protocol
        sasl = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password": self.sasl_password,
        }
        tls = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        if protocol in SASL_PROTOCOLS:
            missing = [key for key, value in sasl.items() if value is None]
            if missing:
                raise ValueError(f"security_protocol {protocol} needs {', '.join(missing)}")
        elif given := [key for key, value in sasl.items() if value is not None]:
            raise ValueError(
                f"{', '.join(given)} given but security_protocol is {protocol} "
                "(SASL_SSL or SASL_PLAINTEXT use them)"
            )
        if protocol not in TLS_PROTOCOLS and (given := [k for k, v in tls.items() if v]):
            raise ValueError(
                f"{', '.join(given)} given but security_protocol is {protocol} "
                "(SSL or SASL_SSL use them)"
            )
        if protocol in TLS_PROTOCOLS:
            check_tls_files(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        return self


class RedisConfig(Section):
    url: SecretStr | None = None
    """Redis URL (redis://, rediss:// or unix://; redis+cluster:// or rediss+cluster:// with
    any node of a Redis Cluster); unset: the embedded in-memory store (one process, state lost
    on exit)."""
    # Braces would make the prefix a Redis Cluster hash tag and pin every key to one slot.
    key_prefix: str = Field("ss", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Prefix of every Redis key; no braces, so keys spread over Redis Cluster slots."""
    username: Plain | None = None
    """ACL user (or in the URL: rediss://user:password@host)."""
    password: SecretStr | None = None
    """ACL password, or the legacy requirepass one (or in the URL)."""
    ssl_cafile: ReadableFile | None = None
    """rediss:// only: PEM file of the CA that signed the server's certificate; unset: the
    system's CAs."""
    ssl_certfile: ReadableFile | None = None
    """rediss:// only: PEM client certificate, for servers that require one."""
    ssl_keyfile: ReadableFile | None = None
    """rediss:// only: PEM private key of ssl_certfile, when not in that file."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) > MAX_URL_CHARS:
            raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
        problem = None if value is None else check_url(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent_access(self) -> RedisConfig:
        url = urlsplit(self.url.get_secret_value()) if self.url is not None else None
        tls = [k for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, k)]
        login = [k for k in ("username", "password") if getattr(self, k) is not None]
        if url is None and (tls or login):
            raise ValueError(f"{', '.join(tls + login)} given without a url")
        if url is None:
            return self
        if tls and url.scheme not in TLS_REDIS_SCHEMES:
            raise ValueError(f"{', '.join(tls)} need a rediss:// (or rediss+cluster://) url")
        if login and (url.username or url.password):
            raise ValueError(f"{', '.join(login)} given and the url holds credentials too")
        if url.scheme in TLS_REDIS_SCHEMES:
            check_tls_files(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for redis-py's clients beside the URL (credentials, TLS files)."""
        options: dict[str, Any] = {}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        for key, option in (
            ("ssl_cafile", "ssl_ca_certs"),
            ("ssl_certfile", "ssl_certfile"),
            ("ssl_keyfile", "ssl_keyfile"),
        ):
            if getattr(self, key):
                options[option] = getattr(self, key)
        return options
