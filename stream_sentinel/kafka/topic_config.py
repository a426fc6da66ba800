"""The ``[topics]`` section: how ``stream-sentinel topics create`` makes the topics."""

from __future__ import annotations

from pydantic import Field

from stream_sentinel.config_types import Section


class TopicsConfig(Section):
    """Used by `stream-sentinel topics create` only; the service never creates topics."""

    partitions: int = Field(6, ge=1, le=10_000)
    """Partitions of the request and response topics: the most replicas that can share the
    work (the dead-letter and alerts topics get one, which keeps alerts in order)."""
    replication_factor: int | None = Field(None, ge=1, le=32)
    """Copies of each partition; unset: the broker's default.replication.factor."""
    # The service rebuilds lost counters from the topics over the longest
    # window plus lateness (about 1.6 h), so shorter retention would lose data.
    retention_hours: int = Field(168, ge=2, le=87_600)
    """How long the brokers keep events (retention.ms); at least 2, since lost Redis counters
    are rebuilt from the last ~1.6 h of the topics."""
