"""docker-compose.yml, Dockerfile and deploy/ describe a stack that fits together.

There is no Docker engine here, so these tests read the files: every service
the README promises exists, is health-checked, starts in dependency order,
and the sentinel's environment is wired to the other services' real
listeners, in variables the config loader actually understands.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream_sentinel.bucketing import LONGEST_WINDOW_S
from stream_sentinel.cli.args import build_parser
from stream_sentinel.cli.main import main
from stream_sentinel.cli.simulate import parse_attack
from stream_sentinel.config import load_config
from stream_sentinel.sim.score import parse_at
from stream_sentinel.sim.simulate import EXPECTED_SIGNALS

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "stream-sentinel"
METRICS_PORT = 9464
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = _load(ROOT / "docker-compose.yml")
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the "KEY=value" list form is legal compose too
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _published_ports(service: dict[str, Any]) -> set[int]:
    # "127.0.0.1:9464:9464" -> 9464, the container side
    return {int(str(spec).rsplit(":", 1)[-1]) for spec in service.get("ports", [])}


def _advertised(kafka: dict[str, Any]) -> dict[str, str]:
    """Listener name -> host:port that clients are told to use."""
    listeners = _env(kafka)["KAFKA_ADVERTISED_LISTENERS"].split(",")
    return dict(entry.split("://", 1) for entry in listeners)


def test_the_four_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "redis", SENTINEL, "prometheus"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("kafka", "redis", SENTINEL, "prometheus"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert "kafka-broker-api-versions" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    sentinel_check = " ".join(services[SENTINEL]["healthcheck"]["test"])
    assert f":{METRICS_PORT}/healthz" in sentinel_check


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert 9092 in _published_ports(services["kafka"])


def test_compose_runs_the_same_kafka_version_as_the_test_broker(
    services: dict[str, dict[str, Any]],
) -> None:
    pom = (ROOT / "services/kafka/pom.xml").read_text(encoding="utf-8")
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert match is not None
    for name in ("kafka", "kafka-init"):
        assert services[name]["image"] == f"apache/kafka:{match.group(1)}"


def test_topics_are_created_before_the_sentinel_starts(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["kafka-init"]
    script = " ".join(init["command"])
    for topic in ("llm.requests", "llm.responses", "llm.sentinel.dlq"):
        assert topic in script
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services[SENTINEL]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_sentinel_waits_for_healthy_kafka_and_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    depends = services[SENTINEL]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"][SENTINEL]["condition"] == "service_healthy"


def test_sentinel_env_points_at_the_other_services(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _env(services[SENTINEL])
    assert env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"] in _advertised(services["kafka"]).values()
    assert env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
    redis = urlsplit(env["SENTINEL_REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    # 127.0.0.1 inside a container is unreachable for Prometheus and port mappings.
    assert env["SENTINEL_HTTP_HOST"] == "0.0.0.0"
    assert int(env["SENTINEL_HTTP_PORT"]) == METRICS_PORT
    assert METRICS_PORT in _published_ports(services[SENTINEL])
    assert services[SENTINEL]["build"]["context"] == "."


def test_sentinel_env_is_understood_by_the_config_loader(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    empty = tmp_path / "sentinel.toml"
    empty.write_text("", encoding="utf-8")
    config = load_config(empty, _env(services[SENTINEL]))
    assert config.kafka.bootstrap_servers == "kafka:19092"
    assert config.redis.url is not None
    assert config.redis.url.get_secret_value() == "redis://redis:6379/0"
    assert config.http.host == "0.0.0.0"
    assert config.http.port == METRICS_PORT


def test_prometheus_scrapes_the_sentinel(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(v) for v in services["prometheus"]["volumes"]]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    scrape = _load(PROMETHEUS_CONFIG)["scrape_configs"]
    targets = {
        target
        for job in scrape
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert f"{SENTINEL}:{METRICS_PORT}" in targets


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make test` installs Debian's prometheus"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the rule file is found relative to the config, so it was checked too
    assert "alerts.yml" in result.stdout
    assert "SUCCESS" in result.stdout


def test_prometheus_loads_the_alert_rules_where_it_mounts_them(
    services: dict[str, dict[str, Any]],
) -> None:
    rule_files = _load(PROMETHEUS_CONFIG)["rule_files"]
    assert rule_files == ["alerts.yml"]
    container_dir = "/etc/prometheus"
    mounts = [str(v) for v in services["prometheus"]["volumes"]]
    assert f"./deploy/prometheus/alerts.yml:{container_dir}/{rule_files[0]}:ro" in mounts


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount (named volumes left out)."""
    out = []
    for spec in service.get("volumes", []):
        host, container = str(spec).split(":")[:2]
        if host.startswith("./"):
            out.append((host, container))
    return out


def test_every_bind_mount_is_a_file_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    mounts = [m for service in services.values() for m in _bind_mounts(service)]
    assert len(mounts) >= 6
    for host, _ in mounts:
        assert (ROOT / host).is_file(), f"{host} is mounted but not in the repo"


def test_grafana_is_provisioned_and_safe_for_a_demo(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    env = _env(grafana)
    # the admin password comes from the environment; the default is only for a demo
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:-")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    containers = {container for _, container in _bind_mounts(grafana)}
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in containers
    assert any(c.startswith("/etc/grafana/provisioning/datasources/") for c in containers)
    assert any(c.startswith("/etc/grafana/provisioning/dashboards/") for c in containers)
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]


def test_only_the_simulator_is_behind_the_demo_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    profiled = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert profiled == {"simulate": ["demo"]}
    simulate = services["simulate"]
    assert simulate["image"] == services[SENTINEL]["image"]
    assert simulate["build"] == services[SENTINEL]["build"]
    assert simulate["depends_on"][SENTINEL]["condition"] == "service_healthy"
    assert simulate["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    env = _env(simulate)
    assert (
        env["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"]
        == _env(services[SENTINEL])["SENTINEL_KAFKA_BOOTSTRAP_SERVERS"]
    )


def _simulate_argv(services: dict[str, dict[str, Any]], now: int) -> list[str]:
    """The simulate container's command as the shell would run it at ``now``."""
    service = services["simulate"]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = service["command"]
    script = script.replace("$$", "$")  # compose's escape for a literal $
    arithmetic = re.compile(r'"\$\(\( \$\(date \+%s\) - (\d+) \)\)"')
    script = arithmetic.sub(lambda m: str(now - int(m.group(1))), script)
    argv = shlex.split(script)
    assert argv[:2] == ["exec", SENTINEL]
    return argv[2:]


def test_the_demo_simulation_parses_with_the_real_cli(
    services: dict[str, dict[str, Any]],
) -> None:
    now = 1_800_000_000
    args = build_parser("test").parse_args(_simulate_argv(services, now))
    assert args.verb == "simulate"
    assert args.out == "kafka:"
    duration = args.hours * 3600
    # ends now: nothing in the future, nothing older than the live decoder keeps
    assert args.start + duration == now
    assert duration < LONGEST_WINDOW_S
    (attack,) = [parse_attack(spec, args.start) for spec in args.attack]
    assert len(EXPECTED_SIGNALS[attack.kind]) >= 2, "one red signal is only a warning"
    # the attack fills the last minutes, inside the next live ticks' 5-minute windows
    assert attack.start + attack.duration_s == now


def test_the_demo_attack_is_caught_by_the_demo_config(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # The same traffic and config the demo stack uses, written to a file and
    # replayed through the same pipeline in event time.
    now = 1_800_000_000
    argv = _simulate_argv(services, now)
    out = argv.index("--out") + 1
    argv[out] = str(tmp_path / "demo.jsonl.gz")
    assert main([*argv, "--truth", str(tmp_path / "truth.json")]) == 0
    config = "./examples/sentinel.toml"
    mounted = dict(_bind_mounts(services[SENTINEL]))
    assert mounted[config] == "/etc/stream-sentinel/sentinel.toml"  # the image's working dir
    timeline = tmp_path / "timeline.jsonl"
    replay = ["replay", argv[out], "--config", str(ROOT / config)]
    assert main([*replay, "--timeline", str(timeline), "--no-progress"]) == 0
    ticks = [json.loads(line) for line in timeline.read_text(encoding="utf-8").splitlines()]
    statuses = [t["status"] for t in ticks]
    assert "learning" not in statuses  # static baselines: alerts from the first tick
    critical = [t for t in ticks if t["status"] == "critical"]
    assert critical, statuses
    assert set(critical[0]["red"]) >= {"blocked_pct", "safety_pct"}
    first_attack_tick = now - 15 * 60
    assert all(parse_at(t["at"]) > first_attack_tick for t in critical)


def test_dockerfile_builds_a_non_root_image_of_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    uncommented = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    by_name: dict[str, list[str]] = {}
    for line in uncommented.replace("\\\n", " ").splitlines():
        if line.strip():
            name, _, args = line.strip().partition(" ")
            by_name.setdefault(name, []).append(args.strip())
    assert by_name["FROM"] == ["python:3.11-slim"]
    user = by_name["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert by_name["EXPOSE"] == [str(METRICS_PORT)]
    assert by_name["ENTRYPOINT"] == ['["stream-sentinel"]']
    assert any("pip install" in run for run in by_name["RUN"])


# -- Alertmanager ------------------------------------------------------------------

ALERTMANAGER_CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"


def test_alertmanager_runs_the_example_config(services: dict[str, dict[str, Any]]) -> None:
    am = services["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:")
    mounts = dict(_bind_mounts(am))
    container_config = mounts["./deploy/alertmanager/alertmanager.yml"]
    assert f"--config.file={container_config}" in am["command"]
    assert 9093 in _published_ports(am)
    assert am["ports"] == ["127.0.0.1:9093:9093"]
    assert ":9093/-/ready" in " ".join(am["healthcheck"]["test"])
    # the secret files the example reads are under a path the operator mounts, not in git
    config = _load(ALERTMANAGER_CONFIG)
    files = [
        value
        for receiver in config["receivers"]
        for kind in receiver.values()
        if isinstance(kind, list)
        for entry in kind
        for key, value in entry.items()
        if key.endswith("_file")
    ]
    assert files and all(f.startswith("/etc/alertmanager/secrets/") for f in files)


def test_the_sentinel_pushes_to_alertmanager(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    empty = tmp_path / "sentinel.toml"
    empty.write_text("", encoding="utf-8")
    config = load_config(empty, _env(services[SENTINEL]))
    (target,) = config.alertmanager
    url = urlsplit(target.url)
    assert (url.hostname, url.port) == ("alertmanager", 9093)
    assert 9093 in {int(str(p).rsplit(":", 1)[-1]) for p in services["alertmanager"]["ports"]}
    assert target.labels["service"]
    # the inhibition rules pair alerts by service (and a tenant's by tenant,
    # which each tenant alert carries): the sentinel must set the service
    rules = _load(ALERTMANAGER_CONFIG)["inhibit_rules"]
    assert rules
    for rule in rules:
        assert set(rule["equal"]) - {"tenant"} <= set(target.labels)
    assert target.status_url is not None
    status = urlsplit(target.status_url)
    assert (status.hostname, status.port, status.path) == ("localhost", METRICS_PORT, "/status")


def test_prometheus_sends_its_alerts_to_the_same_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    (am,) = _load(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"]
    (static,) = am["static_configs"]
    assert static["targets"] == ["alertmanager:9093"]
    assert am.get("api_version", "v2") == "v2"
    assert services["prometheus"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"
