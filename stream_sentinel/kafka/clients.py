"""Kafka clients built from the config: the one place their connection settings are read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from ..config import Config


def client_kwargs(cfg: Config) -> dict[str, Any]:
    """Connection keyword arguments shared by every aiokafka client the project makes."""
    return {"bootstrap_servers": cfg.kafka.bootstrap_servers}


def producer_factory(cfg: Config, **options: Any) -> Callable[[], AIOKafkaProducer]:
    """A maker of producers with the config's connection settings plus ``options``."""
    kwargs = {**client_kwargs(cfg), "acks": "all", **options}
    return lambda: AIOKafkaProducer(**kwargs)
