"""Per-tenant gauges, computed at scrape time from the latest tick's tenants.

Only the tick's ``top_k`` tenants have series, so a tenant that leaves the top
has none at the next scrape: nothing is kept between scrapes that could linger
at its last value, and the series count is bounded by ``top_k`` (times the
signals and states), never by the number of tenants seen. The ``tenant`` label
is the escaped, bounded form of ``untrusted.label`` (distinct tenants, distinct
labels), never the raw name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import untrusted
from .model import State, Status, Tick

PREFIX = "stream_sentinel_tenant_"


class TenantCollector(Collector):
    def __init__(
        self,
        latest_tick: Callable[[], Tick | None],
        status_codes: dict[Status, int],
        states: tuple[State, ...],
    ) -> None:
        self._latest_tick = latest_tick
        self._status_codes = status_codes
        self._states = states

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        value, threshold, state, status, code, requests = families
        tick = self._latest_tick()
        for tenant in () if tick is None else tick.tenants:
            name = untrusted.label(tenant.tenant)
            for signal, reading in tenant.signals.items():
                if reading.value is not None:
                    value.add_metric([name, signal], reading.value)
                threshold.add_metric([name, signal], reading.threshold)
                for st in self._states:
                    state.add_metric([name, signal, st], 1.0 if reading.state == st else 0.0)
            for sc in self._status_codes:
                status.add_metric([name, sc], 1.0 if tenant.status == sc else 0.0)
            code.add_metric([name], float(self._status_codes[tenant.status]))
            requests.add_metric([name], float(tenant.requests))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        p = PREFIX
        return [
            GaugeMetricFamily(
                p + "signal_value",
                "Latest value of each signal of each top tenant.",
                labels=["tenant", "signal"],
            ),
            GaugeMetricFamily(
                p + "signal_threshold",
                "Value beyond which a top tenant's signal is red (before the significance test).",
                labels=["tenant", "signal"],
            ),
            GaugeMetricFamily(
                p + "signal_state",
                "1 for a top tenant's signal's current state, 0 for the others.",
                labels=["tenant", "signal", "state"],
            ),
            GaugeMetricFamily(
                p + "status",
                "1 for a top tenant's current composite status, 0 for the others.",
                labels=["tenant", "status"],
            ),
            GaugeMetricFamily(
                p + "status_code",
                "A top tenant's composite status: 0 ok, 1 warning, 2 critical, 3 learning.",
                labels=["tenant"],
            ),
            GaugeMetricFamily(
                p + "requests",
                "Requests of a top tenant in the 5-minute window (what ranks it).",
                labels=["tenant"],
            ),
        ]
