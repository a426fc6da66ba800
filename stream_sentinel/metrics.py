"""Prometheus metrics of one sentinel, on a registry owned by that instance.

Counters and histograms are updated by the pipeline as things happen; the
signal and status gauges are computed at scrape time from the latest tick (see
``TickCollector``, and ``TenantCollector`` for the top tenants), so a scrape
never sees a half-updated set of signals.

``stream_sentinel_status_code`` encodes the composite status as a number for
alert rules and graphs: 0 ok, 1 warning, 2 critical, 3 learning, 4 stale.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from stream_sentinel.metrics_tenants import TenantCollector
from stream_sentinel.model import State, Status, Tick
from stream_sentinel.version import package_version

# generate_latest writes the classic text format; announce that version rather
# than prometheus_client's newest default so older Prometheus servers agree.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

STATUS_CODES: Final[dict[Status, int]] = {
    "ok": 0,
    "warning": 1,
    "critical": 2,
    "learning": 3,
    "stale": 4,
}
STATES: Final[tuple[State, ...]] = get_args(State)
# a tenant is never stale (a stale tick evaluates none); "untracked": it left the top
TENANT_ALERT_STATUSES: Final = ("ok", "warning", "critical", "learning", "untracked")
TopicType = Literal["request", "response"]
StoreOp = Literal["read", "write"]
OTHER: Final = "other"

_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BoundedLabel:
    """Caps the distinct values one label can take.

    Reasons and target names come from bounded sets today, but a label fed by a
    bug (or by input that leaks into a reason) must not grow Prometheus' series
    count without limit; past ``limit`` distinct values new ones become "other".
    """

    __slots__ = ("_limit", "_max_len", "_seen")

    def __init__(self, limit: int = 64, max_len: int = 64) -> None:
        self._limit = limit
        self._max_len = max_len
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value[: self._max_len]
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class TickCollector(Collector):
    """Signal, status and leader gauges, read from the latest tick at scrape time.

    A value of None (e.g. a signal whose window is empty) omits the sample
    instead of exporting NaN, so ``absent()`` and comparisons behave.
    """

    def __init__(
        self,
        latest_tick: Callable[[], Tick | None],
        is_leader: Callable[[], bool],
    ) -> None:
        self._latest_tick = latest_tick
        self._is_leader = is_leader

    def describe(self) -> Iterable[Metric]:
        # Lets the registry reject a clashing metric name at registration time.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        tick = self._latest_tick()
        families = self._families()
        value, baseline, threshold, p_value, volume, state, status, code, leader = families
        leader.add_metric([], 1.0 if self._is_leader() else 0.0)
        if tick is None:
            return families
        for name, reading in tick.signals.items():
            if reading.value is not None:
                value.add_metric([name], reading.value)
            baseline.add_metric([name, reading.baseline_source], reading.baseline)
            threshold.add_metric([name], reading.threshold)
            if reading.p_value is not None:
                p_value.add_metric([name], reading.p_value)
            volume.add_metric([name], float(reading.volume))
            for st in STATES:
                state.add_metric([name, st], 1.0 if reading.state == st else 0.0)
        for sc in STATUS_CODES:
            status.add_metric([sc], 1.0 if tick.status == sc else 0.0)
        code.add_metric([], float(STATUS_CODES[tick.status]))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        p = "stream_sentinel_"
        return [
            GaugeMetricFamily(
                p + "signal_value", "Latest value of each signal.", labels=["signal"]
            ),
            GaugeMetricFamily(
                p + "signal_baseline",
                "Baseline each signal is compared with; source is static, learned or learning.",
                labels=["signal", "source"],
            ),
            GaugeMetricFamily(
                p + "signal_threshold",
                "Value beyond which the signal is red (before the significance test).",
                labels=["signal"],
            ),
            GaugeMetricFamily(
                p + "signal_p_value",
                "One-sided p-value of the signal's excess over its baseline.",
                labels=["signal"],
            ),
            GaugeMetricFamily(
                p + "signal_volume",
                "Events in the window the signal was computed from.",
                labels=["signal"],
            ),
            GaugeMetricFamily(
                p + "signal_state",
                "1 for the signal's current state (ok, red, insufficient_data), 0 for the others.",
                labels=["signal", "state"],
            ),
            GaugeMetricFamily(
                p + "status",
                "1 for the current composite status, 0 for the others.",
                labels=["status"],
            ),
            GaugeMetricFamily(
                p + "status_code",
                "Composite status: 0 ok, 1 warning, 2 critical, 3 learning, 4 stale.",
            ),
            GaugeMetricFamily(
                p + "leader",
                "1 when this replica runs the evaluator (or, as the last leader, reports "
                "stale while the store is unreachable), 0 otherwise.",
            ),
        ]


class Metrics:
    """All metrics of one sentinel instance, on its own ``CollectorRegistry``.

    ``latest_tick`` and ``is_leader`` are read at every scrape; they may be
    bound later with :meth:`bind_state` because the evaluator that owns them is
    usually built after (and with) the metrics.
    """

    def __init__(
        self,
        *,
        latest_tick: Callable[[], Tick | None] | None = None,
        is_leader: Callable[[], bool] | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._latest_tick: Callable[[], Tick | None] = latest_tick or (lambda: None)
        self._is_leader: Callable[[], bool] = is_leader or (lambda: False)
        r = self.registry
        p = "stream_sentinel_"
        self.events = Counter(
            p + "events",
            "Events read from the sources: counted, or invalid with the decoder's reason.",
            ["topic_type", "result", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            p + "dead_letters", "Events sent to the dead-letter sink.", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            p + "batch_size",
            "Events per batch written to the store.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_write_seconds = Histogram(
            p + "store_write_seconds",
            "Latency of a batch's store write (counters and offset, one atomic call).",
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            p + "store_errors", "Failed store operations.", ["op"], registry=r
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag",
            "Messages behind the partition's end.",
            ["topic", "partition"],
            registry=r,
        )
        self.partitions_assigned = Gauge(
            p + "partitions_assigned", "Partitions assigned to this replica.", registry=r
        )
        self.tick_duration_seconds = Histogram(
            p + "tick_duration_seconds",
            "Time to evaluate one tick.",
            buckets=_TICK_BUCKETS,
            registry=r,
        )
        self.ticks = Counter(p + "ticks", "Ticks evaluated by this replica.", registry=r)
        self.last_tick_timestamp_seconds = Gauge(
            p + "last_tick_timestamp_seconds",
            "Unix time at which this replica last finished a tick.",
            registry=r,
        )
        self.heartbeats = Counter(
            p + "heartbeats",
            "Heartbeat pushes by target and result.",
            ["target", "result"],
            registry=r,
        )
        self.alerts = Counter(
            p + "alerts",
            "Composite status transitions, by the new status.",
            ["status"],
            registry=r,
        )
        self.tenant_alerts = Counter(
            p + "tenant_alerts",
            "Tenant status transitions published on the alerts topic, by the new status "
            "(untracked: a tenant that needed attention left the top_k).",
            ["status"],
            registry=r,
        )
        self.alertmanager_pushes = Counter(
            p + "alertmanager_pushes",
            "Pushes of the tick's alerts to each [[alertmanager]] target, by result "
            "(ok, error, rejected, timeout).",
            ["target", "result"],
            registry=r,
        )
        # Zero-valued series from the start: rate() and increase() need a first
        # sample before the first event, not at it.
        for topic_type in get_args(TopicType):
            self.events.labels(topic_type, "counted", "")
        for status in STATUS_CODES:
            self.alerts.labels(status)
        for tenant_status in TENANT_ALERT_STATUSES:
            self.tenant_alerts.labels(tenant_status)
        for op in get_args(StoreOp):
            self.store_errors.labels(op)
        self._reason = BoundedLabel()
        self._target = BoundedLabel()
        self._result = BoundedLabel(limit=16)
        r.register(TickCollector(lambda: self._latest_tick(), lambda: self._is_leader()))
        r.register(TenantCollector(lambda: self._latest_tick(), STATUS_CODES, STATES))
        self.build_info = Gauge(
            p + "build_info",
            "Always 1; the labels say which version runs on which Python.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(package_version(), platform.python_version()).set(1)
        if process_metrics:
            # The standard names every Python exporter publishes (process_*,
            # python_gc_*, python_info), unprefixed, so stock dashboards and
            # alerts work on this service as they are.
            ProcessCollector(registry=r)
            GCCollector(registry=r)
            PlatformCollector(registry=r)

    def bind_state(
        self, latest_tick: Callable[[], Tick | None], is_leader: Callable[[], bool]
    ) -> None:
        self._latest_tick = latest_tick
        self._is_leader = is_leader

    def render(self) -> bytes:
        """The registry in Prometheus text format (serve with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    # Helpers for the pipeline; they keep label values bounded.

    def count_event(self, topic_type: TopicType, reason: str | None = None, n: int = 1) -> None:
        """Count ``n`` events: counted when ``reason`` is None, else invalid."""
        if reason is None:
            self.events.labels(topic_type, "counted", "").inc(n)
        else:
            self.events.labels(topic_type, "invalid", self._reason(reason)).inc(n)

    def count_dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(self._reason(reason)).inc()

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's lag series so it does not linger at its last value."""
        with suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def observe_tick(self, duration_s: float, finished_at: float | None = None) -> None:
        self.ticks.inc()
        self.tick_duration_seconds.observe(duration_s)
        self.last_tick_timestamp_seconds.set(time.time() if finished_at is None else finished_at)

    def count_heartbeat(self, target: str, result: str) -> None:
        """``target`` is the configured target's name (never its URL: URLs can hold tokens)."""
        self.heartbeats.labels(self._target(target), self._result(result)).inc()

    def count_alertmanager(self, target: str, result: str) -> None:
        """``target`` is the configured name, never the URL."""
        self.alertmanager_pushes.labels(self._target(target), self._result(result)).inc()

    def count_alert(self, status: Status) -> None:
        self.alerts.labels(status).inc()

    def count_tenant_alert(self, status: str) -> None:
        """``status``: a tenant's new Status or "untracked"; anything else is "other"."""
        self.tenant_alerts.labels(status if status in TENANT_ALERT_STATUSES else OTHER).inc()


__all__ = [
    "CONTENT_TYPE",
    "STATUS_CODES",
    "BoundedLabel",
    "Metrics",
    "TickCollector",
]
