"""docker-compose.yml, Dockerfile and deploy/prometheus.yml describe a stack that fits together.

There is no Docker engine here, so these tests read the files: every service
the README promises exists, is health-checked, starts in dependency order,
and the sentinel's environment is wired to the other services' real
listeners, in variables the config loader actually understands.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream_sentinel.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "stream-sentinel"
METRICS_PORT = 9464


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
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    scrape = _load(ROOT / "deploy/prometheus.yml")["scrape_configs"]
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
        [promtool, "check", "config", str(ROOT / "deploy/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
