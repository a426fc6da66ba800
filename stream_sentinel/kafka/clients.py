"""The one place Kafka connection settings become aiokafka client arguments.

Every client the project makes (the service's consumer and producer, `produce`,
`simulate`, `record`, `bridge`, the LiteLLM callback, benches) is built from
``client_options``, so TLS and SASL settings cannot be forgotten by one of them.

``check_access`` connects once to the bootstrap servers before the clients
start. A refused login, an untrusted certificate or a plaintext client on a TLS
port will not fix themselves: the caller exits with one line naming the
problem. aiokafka itself would report each as "unable to bootstrap" and retry.
An unreachable broker is not such a problem (it may be starting) and is left
to the clients' own retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer, errors
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context

from ..connections import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaConfig

PROBE_TIMEOUT_S = 10.0
# a broker that refuses a client certificate says so within milliseconds
ALERT_WAIT_S = 3.0


class KafkaAccessError(Exception):
    """The brokers refuse this client for a reason retrying cannot fix; one line."""


def client_options(kafka: KafkaConfig) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments every aiokafka client takes."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.security_protocol in SASL_PROTOCOLS:
        assert kafka.sasl_password is not None  # the config refuses SASL without one
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def _ssl_context(kafka: KafkaConfig) -> ssl.SSLContext:
    # the files were loaded once when the config was (connections.check_tls_files)
    context: ssl.SSLContext = create_ssl_context(
        cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


async def check_access(options: dict[str, Any]) -> None:
    """Raise ``KafkaAccessError`` if a bootstrap server refuses these settings.

    The first server that answers decides; servers that cannot be reached are
    skipped, and if none can, nothing is decided here."""
    for host, port in _servers(options["bootstrap_servers"]):
        failure = await _connect(host, port, options)
        if failure is None:
            return
        problem = await _diagnose(failure, host, port, options)
        if problem is not None:
            raise KafkaAccessError(f"kafka {host}:{port}: {problem}")


async def _connect(host: str, port: int, options: dict[str, Any]) -> BaseException | None:
    """Connect as a client would (TLS, API versions, SASL); the failure, if any."""
    conn_args = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **conn_args),
            PROBE_TIMEOUT_S + 1,
        )
    except (OSError, TimeoutError, errors.KafkaError) as exc:
        return exc
    conn.close()
    return None


async def _diagnose(
    failure: BaseException, host: str, port: int, options: dict[str, Any]
) -> str | None:
    """What a failed connection says about the settings; None when it says
    nothing (the broker is unreachable, perhaps still starting)."""
    protocol = options["security_protocol"]
    if isinstance(failure, errors.SaslAuthenticationFailed):
        return (
            f"SASL authentication failed for user {options['sasl_plain_username']!r} "
            f"({options['sasl_mechanism']}): check kafka.sasl_username and kafka.sasl_password"
        )
    if isinstance(failure, errors.UnsupportedSaslMechanismError):
        return f"the broker does not enable SASL mechanism {options['sasl_mechanism']}"
    if isinstance(failure, ssl.SSLCertVerificationError):
        # "Hostname mismatch" or "IP address mismatch": trusted, but not for this name
        if "mismatch" in (failure.verify_message or ""):
            return (
                f"TLS: {failure.verify_message}: connect by a name the certificate holds "
                "(or set kafka.ssl_check_hostname = false)"
            )
        return (
            f"TLS: the broker's certificate is not trusted ({failure.verify_message}): "
            "set kafka.ssl_cafile to the CA that signed it"
        )
    if isinstance(failure, ssl.SSLError):
        reason = failure.reason or str(failure)
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason:
            return f"the listener does not speak TLS, but security_protocol is {protocol}"
        return f"TLS handshake failed: {reason}"
    if isinstance(failure, ConnectionRefusedError | TimeoutError):
        return None
    if protocol not in TLS_PROTOCOLS:
        if await _speaks_tls(host, port):
            return (
                f"the listener speaks TLS, but security_protocol is {protocol}: "
                "use SSL or SASL_SSL (and kafka.ssl_cafile)"
            )
        return None
    if isinstance(failure, ConnectionResetError) and not await _speaks_tls(host, port):
        return f"the listener does not speak TLS, but security_protocol is {protocol}"
    # TLS 1.3 finishes the client's handshake before the broker has judged the
    # client's certificate: its verdict arrives as an alert on the first read
    alert = await _tls_alert(host, port, options["ssl_context"])
    if alert is not None and "CERTIFICATE" in alert:
        return (
            f"TLS: the broker refused the client certificate ({alert}: none given, or not "
            "signed by a CA it trusts): check kafka.ssl_certfile and kafka.ssl_keyfile"
        )
    return None


async def _tls_alert(host: str, port: int, context: ssl.SSLContext) -> str | None:
    """The TLS alert the server sends right after the handshake, if any.

    Nothing is written: data sent to a server that has already refused the
    certificate makes it answer with a reset, which would overtake its alert."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return None
    try:
        await asyncio.wait_for(reader.read(1), ALERT_WAIT_S)
    except ssl.SSLError as exc:
        return str(exc.reason)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        # awaited, so the stream's record of the alert is consumed here and not
        # reported later as "Future exception was never retrieved"
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), ALERT_WAIT_S)
    return None


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds at ``host:port``, trusting any certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def start_producer(kafka: KafkaConfig, **settings: Any) -> AIOKafkaProducer:
    """A started producer for the CLI verbs, after ``check_access``."""
    options = client_options(kafka)
    await check_access(options)
    producer = AIOKafkaProducer(**options, **settings)
    await producer.start()
    return producer


def producer_factory(kafka: KafkaConfig, **options: Any) -> Callable[[], AIOKafkaProducer]:
    """A maker of producers with the connection settings plus ``options``."""
    kwargs = {**client_options(kafka), "acks": "all", **options}
    return lambda: AIOKafkaProducer(**kwargs)
