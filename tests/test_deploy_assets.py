"""Alert rules and the Grafana dashboard: valid, tested by promtool, and querying real series.

The series names and labels are taken from a registry built by the project's
own ``Metrics`` (every labelled family given a sample), never from a list kept
here, so renaming a metric without updating the rules or the dashboard fails.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from promql_names import Selector, metric_names, selectors

from stream_sentinel.heartbeat import RESULTS
from stream_sentinel.httpserver import build_http_app, start_http
from stream_sentinel.metrics import STATES, STATUS_CODES, Metrics
from stream_sentinel.model import SIGNALS, SignalReading, TenantTick, Tick

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
DASHBOARD = ROOT / "deploy/grafana/stream-sentinel.json"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
DEPLOYMENT_DOC = ROOT / "docs/deployment.md"
# Where the docs are published: pyproject.toml's Documentation URL, one place to change.
DOCS_URL = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"][
    "Documentation"
]
# Added by Prometheus to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
# Labels whose values come from a closed set in the code: a typo in a matcher
# would match nothing and keep an alert silent for ever.
KNOWN_VALUES: dict[str, frozenset[str]] = {
    "signal": frozenset(SIGNALS),
    "status": frozenset(STATUS_CODES),
    "state": frozenset(STATES),
    "result": frozenset(RESULTS) | {"counted", "invalid"},
    "op": frozenset({"read", "write"}),
}


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _tick() -> Tick:
    readings = {
        name: SignalReading(name, 1.0, 0.5, 1.0, "red", p_value=1e-6, volume=100)
        for name in SIGNALS
    }
    return Tick(
        at=1_800_000_000,
        status="critical",
        red=tuple(SIGNALS),
        signals=readings,
        top_users=(("u1", 1.0),),
        # the per-tenant families are exported only while a tick has tenants
        tenants=(TenantTick("team-a", "critical", tuple(SIGNALS), readings, 100),),
    )


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    """Sample name -> label names, from a registry with every labelled family populated."""
    m = Metrics(latest_tick=_tick, is_leader=lambda: True)
    m.count_event("request", "not_json")
    m.count_dead_letter("not_json")
    m.set_consumer_lag("llm.requests", 0, 3)
    m.count_heartbeat("hc-0", "ok")
    m.count_alertmanager("am-0", "rejected")
    m.observe_tick(0.1)
    m.observe_batch(10)
    m.store_write_seconds.observe(0.01)
    m.store_errors.labels("read").inc()
    found: dict[str, set[str]] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in found.items()}


# -- the PromQL name extractor itself ----------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ("rate(a_total[5m])", {"a_total"}),
        (
            'sum by (le) (rate(h_bucket{x="}", y=~"b|c"}[$__rate_interval]))'
            " / on (job) group_left (instance) g offset 1h",
            {"h_bucket", "g"},
        ),
        ("histogram_quantile(0.95, sum(rate(h_bucket[5m])) by (le))", {"h_bucket"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("max without (foo, bar) (x) > bool 1e-3", {"x"}),
        ("time() - max(t)", {"t"}),
        ('{__name__="z", a="1"} and ignoring (a) w', {"z", "w"}),
        ("deriv(l[10m:1m]) > 0 unless on (job) absent(q) or vector(0)", {"l", "q"}),
        ('count_values("v", k) * 2.5e+3 - inf', {"k"}),
        ("sum by (job) (x @ 1609746000) / sum by(job)(y)", {"x", "y"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_label_matchers_are_extracted_with_their_values() -> None:
    found = selectors('rate(x_total{result!="ok", target=~"hc-.*"}[5m]) > 0 and y{a="}\\""}')
    assert found == [
        Selector("x_total", (("result", "!=", "ok"), ("target", "=~", "hc-.*"))),
        Selector("y", (("a", "=", '}"'),)),
    ]


def test_a_selector_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="without a metric name"):
        selectors('{job="x"}')


# -- what the assets query ---------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def _check_selectors(where: str, exprs: list[str], exported: dict[str, frozenset[str]]) -> set[str]:
    used: set[str] = set()
    assert exprs, f"{where}: no expressions found"
    for expr in exprs:
        found = selectors(expr)
        assert found, f"{where}: {expr!r} queries no series"
        for sel in found:
            assert sel.name in exported, f"{where}: {sel.name} is not exported ({expr!r})"
            unknown = sel.labels - exported[sel.name] - TARGET_LABELS
            assert not unknown, f"{where}: {sel.name} has no label {sorted(unknown)}"
            for label, op, value in sel.matchers:
                if label in KNOWN_VALUES and op in ("=", "!="):
                    assert value in KNOWN_VALUES[label], f"{where}: {label}={value!r} never exists"
            used.add(sel.name)
    return used


def test_alert_rules_query_only_exported_series(exported: dict[str, frozenset[str]]) -> None:
    used = _check_selectors("alerts.yml", [rule["expr"] for rule in _rules()], exported)
    assert {
        "stream_sentinel_status",
        "stream_sentinel_consumer_lag",
        "stream_sentinel_dead_letters_total",
        "stream_sentinel_heartbeats_total",
        "stream_sentinel_last_tick_timestamp_seconds",
    } <= used


def test_dashboard_queries_only_exported_series(exported: dict[str, frozenset[str]]) -> None:
    used = _check_selectors("dashboard", _dashboard_exprs(), exported)
    assert {
        "stream_sentinel_status_code",
        "stream_sentinel_signal_value",
        "stream_sentinel_signal_threshold",
        "stream_sentinel_signal_state",
        "stream_sentinel_consumer_lag",
        "stream_sentinel_dead_letters_total",
        "stream_sentinel_heartbeats_total",
    } <= used


def test_the_checker_rejects_a_name_the_service_does_not_export(
    exported: dict[str, frozenset[str]],
) -> None:
    with pytest.raises(AssertionError, match="not exported"):
        _check_selectors("t", ["rate(stream_sentinel_events[5m])"], exported)  # no _total
    with pytest.raises(AssertionError, match="no label"):
        _check_selectors("t", ['stream_sentinel_consumer_lag{user="u1"}'], exported)
    with pytest.raises(AssertionError, match="never exists"):
        _check_selectors("t", ['stream_sentinel_status{status="red"}'], exported)


# -- alert rules ---------------------------------------------------------------


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make test` installs Debian's prometheus"
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    # The unit tests must be able to fail: a changed `for:` has to break them.
    (tmp_path / "alerts.yml").write_text(
        RULES.read_text(encoding="utf-8").replace("for: 5m", "for: 1m"), encoding="utf-8"
    )
    (tmp_path / "alerts.test.yml").write_text(
        RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8"
    )
    result = _promtool("test", "rules", str(tmp_path / "alerts.test.yml"))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tested = {
        case["alertname"]
        for test in _yaml(RULE_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == tested


def _anchors(markdown: str) -> set[str]:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+\s+(.+)$", markdown, re.MULTILINE)
    }


def test_alerts_are_operable() -> None:
    anchors = _anchors(DEPLOYMENT_DOC.read_text(encoding="utf-8"))
    for rule in _rules():
        name = rule["alert"]
        assert name.startswith("StreamSentinel"), name
        assert re.fullmatch(r"\d+m", rule.get("for", "")), f"{name}: no for: duration"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        doc, _, anchor = notes["runbook_url"].partition("#")
        assert doc == DOCS_URL + "deployment.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no runbook section"


def test_only_pipeline_death_and_attacks_page() -> None:
    paging = {rule["alert"] for rule in _rules() if rule["labels"]["severity"] == "critical"}
    assert paging == {
        "StreamSentinelCompositeCritical",
        "StreamSentinelStale",
        "StreamSentinelNoTicks",
        "StreamSentinelDown",
    }


# -- dashboard and provisioning ---------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"] == "stream-sentinel"
    panels = list(_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
        assert panel.get("description"), f"{panel['title']} explains nothing"


def test_dashboard_shows_each_signal_with_its_threshold() -> None:
    exprs = _dashboard_exprs()
    for signal in SIGNALS:
        for metric in ("signal_value", "signal_threshold", "signal_baseline"):
            wanted = f'stream_sentinel_{metric}{{{DEPLOYMENT_FILTER}, signal="{signal}"}}'
            assert any(wanted in e for e in exprs), f"no {metric} panel for {signal}"


# Grafana variables of the dashboard: Grafana's own and those it defines.
DEPLOYMENT_FILTER = 'job=~"$job", instance=~"$instance"'


def _concrete(expr: str) -> str:
    """A dashboard query as Grafana sends it with every job and instance chosen."""
    return expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")


def test_dashboard_selects_one_deployment_by_job_and_instance() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    job, instance = variables["job"], variables["instance"]
    assert job["type"] == instance["type"] == "query"
    assert job["query"]["query"] == "label_values(stream_sentinel_build_info, job)"
    assert instance["query"]["query"] == (
        'label_values(stream_sentinel_build_info{job=~"$job"}, instance)'
    )
    assert instance["includeAll"] and instance["allValue"] == ".*"
    for expr in _dashboard_exprs():
        for sel in selectors(expr):
            assert ("job", "=~", "$job") in sel.matchers, f"{sel.name} in {expr!r}"
            assert ("instance", "=~", "$instance") in sel.matchers, f"{sel.name} in {expr!r}"


def test_grafana_provisioning_points_at_the_compose_services() -> None:
    compose = _yaml(ROOT / "docker-compose.yml")["services"]
    source = _yaml(PROVISIONING / "datasources/prometheus.yml")["datasources"]
    assert [d["type"] for d in source] == ["prometheus"]
    assert source[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose
    scrape = _yaml(ROOT / "deploy/prometheus/prometheus.yml")["global"]["scrape_interval"]
    assert source[0]["jsonData"]["timeInterval"] == scrape
    providers = _yaml(PROVISIONING / "dashboards/stream-sentinel.yml")["providers"]
    folder = providers[0]["options"]["path"]
    mounts = dict(
        str(v).split(":")[:2] for v in compose["grafana"]["volumes"] if str(v).startswith("./")
    )
    assert mounts["./deploy/grafana/stream-sentinel.json"] == f"{folder}/stream-sentinel.json"
    for target in ("datasources/prometheus.yml", "dashboards/stream-sentinel.yml"):
        assert mounts[f"./deploy/grafana/provisioning/{target}"] == (
            f"/etc/grafana/provisioning/{target}"
        )


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions, so each panel query becomes a recording
    # rule (Grafana's $__rate_interval replaced by a duration) and is checked.
    exprs = [_concrete(e) for e in _dashboard_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_real_prometheus_loads_the_rules_and_the_dashboard_finds_data(
    tmp_path: Path,
) -> None:
    # The project's own HTTP server exports a critical tick as the leader; a
    # real Prometheus scrapes it with alerts.yml loaded. Every dashboard query
    # must return data and the critical alert must go pending on real series.
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "prometheus is missing: `make test` installs it"
    m = Metrics(latest_tick=_tick, is_leader=lambda: True)
    m.count_event("request")
    m.count_dead_letter("not_json")
    m.set_consumer_lag("llm.requests", 0, 3)
    m.count_heartbeat("hc-0", "ok")
    m.count_alert("critical")
    m.observe_tick(0.1)
    m.partitions_assigned.set(1)
    m.store_write_seconds.observe(0.01)

    async def ready() -> dict[str, bool]:
        return {"ok": True}

    app = build_http_app(
        metrics=m, status_provider=lambda: None, ready_checks=ready, status_token=None
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    prom_port = _free_port()
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: stream-sentinel\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
        encoding="utf-8",
    )
    log = tmp_path / "prometheus.log"
    base = f"http://127.0.0.1:{prom_port}/api/v1"
    with log.open("wb") as out:
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str, **params: str) -> Any:
                try:
                    async with session.get(base + path, params=params) as response:
                        if response.status != 200:
                            return None
                        body = await response.json()
                except aiohttp.ClientConnectionError:
                    return None  # still starting
                assert body["status"] == "success", body
                return body["data"]

            async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
                deadline = asyncio.get_running_loop().time() + 60
                while asyncio.get_running_loop().time() < deadline:
                    assert prom.poll() is None, log.read_text(errors="replace")[-2000:]
                    found = await check()
                    if found:
                        return found
                    await asyncio.sleep(0.2)  # polling a condition, not waiting a guess
                raise AssertionError(f"timed out waiting for {what}")

            groups = await until(lambda: get("/rules"), "rules loaded")
            loaded = {r["name"] for g in groups["groups"] for r in g["rules"]}
            assert loaded == {rule["alert"] for rule in _rules()}
            for expr in _dashboard_exprs():
                query = _concrete(expr)

                async def has_data(q: str = query) -> Any:
                    data = await get("/query", query=q)
                    return data and data["result"]

                await until(has_data, query)

            async def pending() -> Any:
                data = await get("/alerts")
                return [a for a in data["alerts"] if a["state"] == "pending"] if data else None

            alerts = await until(pending, "a pending alert")
    finally:
        prom.terminate()
        await asyncio.to_thread(prom.wait, 30)
        await runner.cleanup()
    by_name = {a["labels"]["alertname"]: a for a in alerts}
    assert by_name["StreamSentinelCompositeCritical"]["labels"] == {
        "alertname": "StreamSentinelCompositeCritical",
        "job": "stream-sentinel",
        "severity": "critical",
    }
