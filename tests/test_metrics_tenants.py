"""Per-tenant gauges: only the latest tick's top tenants, labels escaped and
bounded, the exposition parses whatever the names, nothing lingers."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tenant_ticks import HOSTILE_TENANTS, critical, tenant, tick_with

from stream_sentinel import untrusted
from stream_sentinel.metrics import Metrics
from stream_sentinel.model import SIGNALS, Tick

PROMTOOL = Path("/usr/bin/promtool")
PREFIX = "stream_sentinel_tenant_"


def _metrics(latest: list[Tick | None]) -> Metrics:
    return Metrics(latest_tick=lambda: latest[0], process_metrics=False)


def _tenant_samples(m: Metrics) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            if s.name.startswith(PREFIX) and "tenant" in s.labels:
                out.setdefault(s.name, []).append({**s.labels, "__value__": str(s.value)})
    return out


def _tenants_in(m: Metrics) -> set[str]:
    return {s["tenant"] for samples in _tenant_samples(m).values() for s in samples}


def test_gauges_of_one_tenant() -> None:
    latest: list[Tick | None] = [tick_with([critical("acme", requests=321)])]
    samples = _tenant_samples(_metrics(latest))
    values = {s["signal"]: float(s["__value__"]) for s in samples[PREFIX + "signal_value"]}
    assert values == {name: 40.0 if name in ("blocked_pct", "safety_pct") else 0.05
                      for name in SIGNALS}  # fmt: skip
    red = {
        s["signal"] for s in samples[PREFIX + "signal_state"]
        if s["state"] == "red" and s["__value__"] == "1.0"
    }  # fmt: skip
    assert red == {"blocked_pct", "safety_pct"}
    (code,) = samples[PREFIX + "status_code"]
    assert (code["tenant"], code["__value__"]) == ("acme", "2.0")
    on = [s["status"] for s in samples[PREFIX + "status"] if s["__value__"] == "1.0"]
    assert on == ["critical"]
    assert samples[PREFIX + "requests"] == [{"tenant": "acme", "__value__": "321.0"}]


def test_no_tenants_no_tenant_series() -> None:
    latest: list[Tick | None] = [None]
    m = _metrics(latest)
    assert _tenant_samples(m) == {}
    latest[0] = tick_with([], status="critical")
    assert _tenant_samples(m) == {}
    assert "stream_sentinel_status_code 0.0" not in m.render().decode()  # global still there
    assert "stream_sentinel_status_code 2.0" in m.render().decode()


def test_cardinality_stays_at_top_k_as_the_top_changes() -> None:
    top_k = 5
    rng = random.Random(7)
    pool = [f"tenant-{i}" for i in range(200)] + list(HOSTILE_TENANTS)
    latest: list[Tick | None] = [None]
    m = _metrics(latest)
    per_tenant = len(SIGNALS) * (1 + 1 + 3) + 5 + 1 + 1  # value, threshold, states; status...
    for _ in range(60):
        top = rng.sample(pool, top_k)
        latest[0] = tick_with([critical(n) if rng.random() < 0.3 else tenant(n) for n in top])
        assert _tenants_in(m) == {untrusted.label(n) for n in top}  # the left are gone
        total = sum(len(v) for v in _tenant_samples(m).values())
        assert total == top_k * per_tenant


def test_hostile_names_parse_and_stay_distinct() -> None:
    latest: list[Tick | None] = [tick_with([critical(n) for n in HOSTILE_TENANTS])]
    m = _metrics(latest)
    labels = _tenants_in(m)
    assert labels == {untrusted.label(n) for n in HOSTILE_TENANTS}
    assert len(labels) == len(HOSTILE_TENANTS)
    for label in labels:
        assert all(" " <= c <= "~" for c in label) and len(label) <= untrusted.LABEL_CHARS


def test_promtool_accepts_the_exposition_with_hostile_tenants() -> None:
    assert PROMTOOL.exists(), "promtool missing: apt-get install -y prometheus"
    latest: list[Tick | None] = [tick_with([critical(n) for n in HOSTILE_TENANTS])]
    proc = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=_metrics(latest).render(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b"", proc


def test_tenant_alert_events_are_counted_by_bounded_status() -> None:
    m = Metrics(process_metrics=False)
    before = {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(m.render().decode())
        for s in family.samples
        if s.name == "stream_sentinel_tenant_alerts_total"
    }
    assert before == dict.fromkeys(("ok", "warning", "critical", "learning", "untracked"), 0.0)
    for status in ("critical", "critical", "untracked", "bogus\n{x}"):
        m.count_tenant_alert(status)
    after = {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(m.render().decode())
        for s in family.samples
        if s.name == "stream_sentinel_tenant_alerts_total"
    }
    assert after == {**before, "critical": 2.0, "untracked": 1.0, "other": 1.0}
