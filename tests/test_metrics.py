"""Metrics: registry per instance, scrape-time tick gauges, bounded labels, valid exposition."""

from __future__ import annotations

import math
import platform
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.metrics import CONTENT_TYPE, OTHER, STATUS_CODES, BoundedLabel, Metrics
from stream_sentinel.model import SignalReading, Status, Tick
from stream_sentinel.version import package_version

PROMTOOL = Path("/usr/bin/promtool")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(m: Metrics) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def names(m: Metrics) -> set[str]:
    return {name for name, _ in samples(m)}


def make_tick(status: Status = "warning") -> Tick:
    return Tick(
        at=1_800_000_000,
        status=status,
        red=("blocked_pct",),
        signals={
            "blocked_pct": SignalReading(
                "blocked_pct", 0.5, 0.1, 0.2, "red", p_value=1e-5, volume=1000
            ),
            "safety_pct": SignalReading(
                "safety_pct",
                None,
                99.5,
                99.0,
                "insufficient_data",
                volume=0,
                baseline_source="learned",
            ),
        },
        top_users=(("alice@example.com", 3.2),),
    )


def test_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.count_event("request")
    a.count_event("request")
    assert (
        samples(a)[
            key("stream_sentinel_events_total", topic_type="request", result="counted", reason="")
        ]
        == 2
    )
    assert (
        samples(b)[
            key("stream_sentinel_events_total", topic_type="request", result="counted", reason="")
        ]
        == 0
    )
    assert a.registry is not b.registry


# What prometheus_client's process, GC and platform collectors export: the
# names every Python exporter has, which stock dashboards and alerts query.
STANDARD_PREFIXES = ("process_", "python_gc_", "python_info")


def test_every_metric_name_has_the_project_prefix_or_a_standard_one() -> None:
    m = Metrics(latest_tick=make_tick, is_leader=lambda: True)
    found = names(m)
    own = {n for n in found if n.startswith("stream_sentinel_")}
    standard = found - own
    assert all(n.startswith(STANDARD_PREFIXES) for n in standard), sorted(standard)
    assert not any(n.startswith("stream_sentinel_process") for n in own)


def test_process_and_gc_metrics_under_their_standard_names() -> None:
    s = samples(Metrics())
    assert s[key("process_resident_memory_bytes")] > 1_000_000
    assert s[key("process_cpu_seconds_total")] > 0
    assert s[key("process_open_fds")] >= 3
    for generation in ("0", "1", "2"):
        assert s[key("python_gc_collections_total", generation=generation)] >= 0
        assert key("python_gc_objects_collected_total", generation=generation) in s
    info = [k for k in s if k[0] == "python_info"]
    assert len(info) == 1 and s[info[0]] == 1


def test_build_info_names_version_and_python() -> None:
    s = samples(Metrics(process_metrics=False))
    expected = key(
        "stream_sentinel_build_info",
        version=package_version(),
        python=platform.python_version(),
    )
    assert s[expected] == 1
    assert [k for k in s if k[0] == "stream_sentinel_build_info"] == [expected]
    assert package_version() != "0+unknown"  # the test venv has the package installed


def test_counters_start_at_zero_for_known_label_sets() -> None:
    s = samples(Metrics())
    for topic_type in ("request", "response"):
        assert (
            s[
                key(
                    "stream_sentinel_events_total",
                    topic_type=topic_type,
                    result="counted",
                    reason="",
                )
            ]
            == 0
        )
    for status in STATUS_CODES:
        assert s[key("stream_sentinel_alerts_total", status=status)] == 0
    for op in ("read", "write"):
        assert s[key("stream_sentinel_store_errors_total", op=op)] == 0


def test_tick_gauges_are_read_at_scrape_time() -> None:
    current: list[Tick | None] = [None]
    m = Metrics(latest_tick=lambda: current[0], is_leader=lambda: current[0] is not None)
    before = samples(m)
    assert before[key("stream_sentinel_leader")] == 0
    assert not any(
        n.startswith("stream_sentinel_signal_") or n.startswith("stream_sentinel_status")
        for n, _ in before
    )

    current[0] = make_tick()
    s = samples(m)
    assert s[key("stream_sentinel_leader")] == 1
    assert s[key("stream_sentinel_signal_value", signal="blocked_pct")] == 0.5
    assert s[key("stream_sentinel_signal_baseline", signal="blocked_pct", source="static")] == 0.1
    assert s[key("stream_sentinel_signal_baseline", signal="safety_pct", source="learned")] == 99.5
    assert s[key("stream_sentinel_signal_threshold", signal="safety_pct")] == 99.0
    assert s[key("stream_sentinel_signal_p_value", signal="blocked_pct")] == 1e-5
    assert s[key("stream_sentinel_signal_volume", signal="blocked_pct")] == 1000
    assert s[key("stream_sentinel_signal_state", signal="blocked_pct", state="red")] == 1
    assert s[key("stream_sentinel_signal_state", signal="blocked_pct", state="ok")] == 0
    assert (
        s[key("stream_sentinel_signal_state", signal="safety_pct", state="insufficient_data")] == 1
    )
    assert s[key("stream_sentinel_status", status="warning")] == 1
    assert sum(v for (n, _), v in s.items() if n == "stream_sentinel_status") == 1
    assert s[key("stream_sentinel_status_code")] == 1


def test_none_values_are_omitted_not_nan() -> None:
    s = samples(Metrics(latest_tick=make_tick))
    assert key("stream_sentinel_signal_value", signal="safety_pct") not in s
    assert key("stream_sentinel_signal_p_value", signal="safety_pct") not in s
    assert not any(math.isnan(v) for v in s.values())


@pytest.mark.parametrize(("status", "code"), list(STATUS_CODES.items()))
def test_status_code_matches_documented_numbers(status: Status, code: int) -> None:
    assert {"ok": 0, "warning": 1, "critical": 2, "learning": 3, "stale": 4}[status] == code
    s = samples(Metrics(latest_tick=lambda: make_tick(status)))
    assert s[key("stream_sentinel_status_code")] == code
    assert s[key("stream_sentinel_status", status=status)] == 1


def test_bind_state_replaces_the_sources() -> None:
    m = Metrics()
    m.bind_state(make_tick, lambda: True)
    s = samples(m)
    assert s[key("stream_sentinel_leader")] == 1
    assert s[key("stream_sentinel_status_code")] == 1


def test_user_ids_never_reach_the_exposition() -> None:
    m = Metrics(latest_tick=make_tick)
    assert b"alice" not in m.render()


def test_invalid_events_and_dead_letters_by_reason() -> None:
    m = Metrics()
    m.count_event("response", "not_json", n=3)
    m.count_event("response")
    m.count_dead_letter("not_json")
    s = samples(m)
    assert (
        s[
            key(
                "stream_sentinel_events_total",
                topic_type="response",
                result="invalid",
                reason="not_json",
            )
        ]
        == 3
    )
    assert (
        s[key("stream_sentinel_events_total", topic_type="response", result="counted", reason="")]
        == 1
    )
    assert s[key("stream_sentinel_dead_letters_total", reason="not_json")] == 1


def test_reason_labels_are_bounded() -> None:
    m = Metrics()
    for i in range(200):
        m.count_dead_letter(f"missing:field{i}")
    reasons = {
        dict(labels)["reason"]
        for n, labels in samples(m)
        if n == "stream_sentinel_dead_letters_total"
    }
    assert len(reasons) == 65
    assert OTHER in reasons


def test_bounded_label_truncates_and_remembers() -> None:
    label = BoundedLabel(limit=2, max_len=4)
    assert label("abcdefgh") == "abcd"
    assert label("x") == "x"
    assert label("y") == OTHER
    assert label("abcdzzz") == "abcd"  # same truncated value: already admitted
    assert label("x") == "x"


def test_a_batch_times_its_store_write_and_a_failed_call_counts_by_op() -> None:
    from stream_sentinel.app import MetricsObserver
    from stream_sentinel.ingest import Processed
    from stream_sentinel.store.base import PartitionId

    m = Metrics()
    observer = MetricsObserver(m)
    done = Processed({}, 3)
    done.outcomes[("request", "")] = 3
    observer.batch_done(PartitionId("llm.requests", 0), done, 0.004)
    observer.store_error("apply")
    observer.store_error("load_offsets")
    observer.store_error("load_offsets")
    s = samples(m)
    assert s[key("stream_sentinel_store_write_seconds_count")] == 1
    assert s[key("stream_sentinel_store_write_seconds_sum")] == pytest.approx(0.004)
    assert s[key("stream_sentinel_store_errors_total", op="write")] == 1
    assert s[key("stream_sentinel_store_errors_total", op="read")] == 2
    assert (
        s[key("stream_sentinel_events_total", topic_type="request", result="counted", reason="")]
        == 3
    )


def test_a_revoked_partition_takes_its_lag_series_along() -> None:
    """After a rebalance the new owner reports the partition's lag; a stale
    series left here would make sum(lag) count it twice."""
    from stream_sentinel.app import MetricsObserver
    from stream_sentinel.store.base import PartitionId

    m = Metrics()
    observer = MetricsObserver(m)
    p0, p1 = PartitionId("llm.requests", 0), PartitionId("llm.requests", 1)
    observer.assignment_changed([p0, p1], [])
    observer.lag(p0, 12)
    observer.lag(p1, 3)
    observer.assignment_changed([p0], [p1])
    s = samples(m)
    assert s[key("stream_sentinel_consumer_lag", topic="llm.requests", partition="0")] == 12
    assert key("stream_sentinel_consumer_lag", topic="llm.requests", partition="1") not in s
    assert s[key("stream_sentinel_partitions_assigned")] == 1


def test_consumer_lag_and_revoked_partitions() -> None:
    m = Metrics()
    m.set_consumer_lag("llm.requests", 0, 12)
    m.set_consumer_lag("llm.requests", 1, 3)
    m.partitions_assigned.set(2)
    m.forget_partition("llm.requests", 1)
    m.forget_partition("llm.requests", 7)  # never assigned: no error
    s = samples(m)
    assert s[key("stream_sentinel_consumer_lag", topic="llm.requests", partition="0")] == 12
    assert key("stream_sentinel_consumer_lag", topic="llm.requests", partition="1") not in s
    assert s[key("stream_sentinel_partitions_assigned")] == 2


def test_ticks_batches_heartbeats_alerts() -> None:
    m = Metrics()
    m.observe_tick(0.2, finished_at=1_800_000_001.5)
    m.observe_batch(40)
    m.count_heartbeat("healthchecks#0", "ok")
    m.count_heartbeat("healthchecks#0", "ok")
    m.count_alert("critical")
    s = samples(m)
    assert s[key("stream_sentinel_ticks_total")] == 1
    assert s[key("stream_sentinel_tick_duration_seconds_sum")] == pytest.approx(0.2)
    assert s[key("stream_sentinel_last_tick_timestamp_seconds")] == 1_800_000_001.5
    assert s[key("stream_sentinel_batch_size_bucket", le="50.0")] == 1
    assert s[key("stream_sentinel_batch_size_bucket", le="25.0")] == 0
    assert s[key("stream_sentinel_heartbeats_total", target="healthchecks#0", result="ok")] == 2
    assert s[key("stream_sentinel_alerts_total", status="critical")] == 1


def test_content_type_is_the_classic_text_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_promtool_accepts_the_exposition() -> None:
    # Installed by the Makefile (Debian package prometheus); a missing tool is a failure.
    assert PROMTOOL.exists(), "promtool missing: apt-get install -y prometheus"
    m = Metrics(latest_tick=make_tick, is_leader=lambda: True)
    m.count_event("request", "not_json")
    m.count_dead_letter("not_json")
    m.set_consumer_lag("llm.requests", 0, 5)
    m.count_heartbeat("generic#0", "ok")
    m.observe_tick(0.1)
    result = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=m.render(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result
