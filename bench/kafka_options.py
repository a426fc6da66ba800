"""aiokafka arguments for the benches' own clients (topic admin, fill, bare loops).

The brokers a bench is pointed at, plus the TLS/SASL settings of the
``SENTINEL_KAFKA_*`` environment, through the service's own builder
(``stream_sentinel.kafka.clients.client_options``): a bench runs against a
SASL_SSL cluster exactly as the service would.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from stream_sentinel.config import load_config
from stream_sentinel.kafka.clients import client_options

SECURITY_PREFIXES = ("SENTINEL_KAFKA_SECURITY_", "SENTINEL_KAFKA_SASL_", "SENTINEL_KAFKA_SSL_")


def security_env() -> dict[str, str]:
    """The ``SENTINEL_KAFKA_*`` security variables set here, to pass to a service."""
    return {k: v for k, v in os.environ.items() if k.startswith(SECURITY_PREFIXES)}


@functools.cache
def kafka_options(bootstrap: str) -> dict[str, Any]:
    env = {**security_env(), "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return client_options(load_config(None, env).kafka)
