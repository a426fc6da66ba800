"""deploy/alertmanager/alertmanager.yml: valid for amtool, routes what pages to
PagerDuty and the rest to Slack, and a real Alertmanager started with it
inhibits the per-signal alerts of a service while that service is critical."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alertmanager_server import AMTOOL, AlertmanagerProcess, WebhookSink, by_name, wait_for

from stream_sentinel.alertmanager import ALERTNAMES, SEVERITY_OF, advance, firing, postable_alerts
from stream_sentinel.alertmanager_config import AlertSeverities
from stream_sentinel.model import SIGNALS, SignalReading, Tick

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
RULES = ROOT / "deploy/prometheus/alerts.yml"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    amtool = shutil.which("amtool") or AMTOOL
    assert Path(amtool).exists(), "amtool is missing: `make test` installs prometheus-alertmanager"
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_example_passes_amtool_check_config() -> None:
    result = _amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "2 inhibit rules" in result.stdout and "2 receivers" in result.stdout


def test_amtool_check_config_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(CONFIG.read_text().replace("receiver: pagerduty", "receiver: nobody"))
    result = _amtool("check-config", str(broken))
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def _receiver(labels: dict[str, str]) -> str:
    result = _amtool(
        "config", "routes", "test", f"--config.file={CONFIG}",
        *(f"{k}={v}" for k, v in labels.items()),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _expected(severity: str) -> str:
    return "pagerduty" if severity in ("page", "critical") else "slack"


def test_what_pages_goes_to_pagerduty_and_the_rest_to_slack() -> None:
    # the sentinel's alerts, with the severities it sends by default
    defaults = AlertSeverities()
    for kind, alertname in ALERTNAMES.items():
        severity = getattr(defaults, SEVERITY_OF[kind])
        labels = {"alertname": alertname, "severity": severity, "service": "llm-gateway"}
        assert _receiver(labels) == _expected(severity), labels
    assert _receiver({"alertname": ALERTNAMES["critical"], "severity": "page"}) == "pagerduty"
    assert _receiver({"alertname": ALERTNAMES["signal_red"], "severity": "warning"}) == "slack"
    # and the Prometheus rules' alerts
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        severity = rule["labels"]["severity"]
        labels = {"alertname": rule["alert"], "severity": severity, "job": "stream-sentinel"}
        assert _receiver(labels) == _expected(severity), labels


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _local_config(sink: WebhookSink) -> str:
    """The example with its receivers pointed at ``sink`` and notifications sped up:
    routes, matchers and the inhibition rule are the file's own."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            del pd["routing_key_file"]
            pd.update(routing_key="test-routing-key", url=f"http://127.0.0.1:{sink.port}/pagerduty")
        for slack in receiver.get("slack_configs", []):
            del slack["api_url_file"]
            slack["api_url"] = f"http://127.0.0.1:{sink.port}/slack"
    return yaml.safe_dump(config)


def _alerts(service: str, red: tuple[str, ...], status: str) -> list[dict[str, Any]]:
    """What the sentinel would push for one tick: the project's own builder."""
    readings = {
        n: SignalReading(n, 40.0 if n in red else 0.0, 0.1, 0.2, "red" if n in red else "ok",
                         p_value=1e-9, volume=400)
        for n in SIGNALS
    }  # fmt: skip
    tick = Tick(int(time.time()), status, red, readings, (("mallory", 0.4),), None)  # type: ignore[arg-type]
    now_firing = firing(tick)
    episodes = advance({}, now_firing, at=tick.at, now=time.time(), tick_seconds=60)
    return postable_alerts(
        episodes,
        static_labels={"service": service},
        severities={"signal_red": "warning", "critical": "page", "stale": "page"},
        generator_url="http://sentinel:9464/status",
        now_firing=now_firing,
    )


async def test_a_real_alertmanager_inhibits_and_routes_with_the_example(
    sink: WebhookSink,
) -> None:
    am = AlertmanagerProcess(_local_config(sink), "alertmanager-example")
    await asyncio.to_thread(am.start)
    try:
        attacked, quiet = f"gw-{uuid.uuid4().hex[:6]}", f"gw-{uuid.uuid4().hex[:6]}"
        critical = _alerts(attacked, ("blocked_pct", "safety_pct"), "critical")
        warning = _alerts(quiet, ("spend_hour",), "warning")
        await asyncio.to_thread(am.post_alerts, critical + warning)

        def states(service: str) -> dict[tuple[str, str], dict[str, Any]] | None:
            alerts = by_name(am.alerts(service))
            return alerts if alerts else None

        at_attack = await wait_for(lambda: states(attacked), "the attacked service's alerts", 30)
        assert set(at_attack) == {
            ("LLMSecurityCritical", ""),
            ("LLMSecuritySignalRed", "blocked_pct"),
            ("LLMSecuritySignalRed", "safety_pct"),
        }
        critical_fp = at_attack[("LLMSecurityCritical", "")]["fingerprint"]
        for signal in ("blocked_pct", "safety_pct"):
            status = at_attack[("LLMSecuritySignalRed", signal)]["status"]
            assert status["state"] == "suppressed"
            assert status["inhibitedBy"] == [critical_fp]
        at_quiet = await wait_for(lambda: states(quiet), "the quiet service's alert", 30)
        assert at_quiet[("LLMSecuritySignalRed", "spend_hour")]["status"]["state"] == "active"

        def delivered() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            pages, chats = sink.posts("/pagerduty"), sink.posts("/slack")
            return (pages, chats) if pages and chats else None

        await wait_for(delivered, "a page and a Slack message", 30)
        # a later alert, delivered after its own group_wait: by then an inhibited
        # alert that leaked (flushed together with the first ones) would have shown
        control = f"gw-{uuid.uuid4().hex[:6]}"
        await asyncio.to_thread(am.post_alerts, _alerts(control, ("top_user_rps",), "warning"))

        def control_delivered() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            chats = sink.posts("/slack")
            seen = any(control in a["title"] for c in chats for a in c["attachments"])
            return (sink.posts("/pagerduty"), chats) if seen else None

        pages, chats = await wait_for(control_delivered, "the control's Slack message", 30)
    finally:
        await asyncio.to_thread(am.stop)
    assert all(p["routing_key"] == "test-routing-key" for p in pages)
    assert {p["payload"]["summary"].split(" ")[0] for p in pages} == {"LLMSecurityCritical"}
    assert attacked in pages[0]["payload"]["summary"]
    titles = [a["title"] for chat in chats for a in chat["attachments"]]
    assert any(quiet in t and "spend_hour" in t for t in titles), titles
    assert not any(attacked in t for t in titles), titles  # the inhibited signals never did
