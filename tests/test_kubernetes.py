"""deploy/kubernetes/: valid against the Kubernetes schemas (kubernetes-validate,
offline), consistent with itself, with the service's config and with alerts.yml.

kubernetes-validate ships the schemas of Kubernetes' own kinds only. The two
Prometheus Operator kinds (ServiceMonitor, PrometheusRule) get a structural
check here instead: the fields the operator reads, the ServiceMonitor's
selector and port against the Service, and the PrometheusRule's groups equal to
alerts.yml's and accepted by `promtool check rules`.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream_sentinel.cli.args import build_parser
from stream_sentinel.config import load_config

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
OPERATOR = KUBE / "prometheus-operator"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
# The oldest Kubernetes still widely run, and the newest the package knows.
VERSIONS = ("1.29.0", f"{kubernetes_validate.latest_version()}.0")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _manifests() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def _kind(kind: str) -> dict[str, Any]:
    (found,) = [d for p in _manifests() for d in _docs(p) if d["kind"] == kind]
    return found


def _container() -> dict[str, Any]:
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _core(path: Path) -> bool:
    return path.parent == KUBE


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", [p for p in _manifests() if _core(p)], ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    for doc in _docs(path):
        # strict: a misspelt or misplaced field is an error, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_catches_a_mistake() -> None:
    deployment = _kind("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("folder", [KUBE, OPERATOR], ids=["core", "prometheus-operator"])
def test_kustomization_lists_every_manifest(folder: Path) -> None:
    listed = _docs(folder / "kustomization.yaml")[0]["resources"]
    present = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_deployment_runs_two_replicas_in_one_group() -> None:
    deployment = _kind("Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in _container()["env"]}
    assert not any("GROUP" in name for name in env)  # one group_id, from the ConfigMap


def test_probes_resources_and_a_locked_down_container() -> None:
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    locked = container["securityContext"]
    assert locked["readOnlyRootFilesystem"] is True
    assert locked["allowPrivilegeEscalation"] is False
    assert locked["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    (secrets,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
    # readable by the non-root process through its group, by nobody else
    assert secrets["defaultMode"] & 0o040 and not secrets["defaultMode"] & 0o007
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_service_pdb_and_monitor_select_the_pods() -> None:
    pod_labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _kind("Service")
    for selector in (
        service["spec"]["selector"],
        _kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert _kind("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    container_ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in container_ports
    # A Service named "sentinel" would inject SENTINEL_SERVICE_HOST & co. into every pod.
    assert service["metadata"]["name"] != "sentinel"


def test_service_monitor_structure() -> None:
    monitor = _kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    service = _kind("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert int(endpoint["scrapeTimeout"].rstrip("s")) < int(endpoint["interval"].rstrip("s"))


def test_prometheus_rule_is_generated_from_alerts_yml() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prometheusrule.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == (OPERATOR / "prometheusrule.yaml").read_text(encoding="utf-8"), (
        "regenerate: python scripts/prometheusrule.py > "
        "deploy/kubernetes/prometheus-operator/prometheusrule.yaml"
    )
    rule = _kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == _docs(RULES)[0]["groups"]


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    groups = tmp_path / "groups.yml"
    groups.write_text(yaml.safe_dump({"groups": _kind("PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(groups)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _secret_files(tmp_path: Path) -> dict[str, str]:
    """The Deployment's environment with the Secret's files written under tmp_path."""
    secret = _kind("Secret")
    (mount,) = [m for m in _container()["volumeMounts"] if m["name"] == "secrets"]
    (volume,) = [
        v
        for v in _kind("Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "secrets"
    ]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value + "\n", encoding="utf-8")
    env = {}
    for item in _container()["env"]:
        value = item["value"]
        if item["name"].endswith("_FILE"):
            assert value.startswith(mount["mountPath"] + "/"), item["name"]
            key = value.removeprefix(mount["mountPath"] + "/")
            assert key in secret["stringData"], f"{item['name']}: no key {key} in the Secret"
            value = str(tmp_path / key)
        env[item["name"]] = value
    return env


def test_configmap_and_secret_make_a_valid_config(tmp_path: Path) -> None:
    env = _secret_files(tmp_path)
    (mount,) = [m for m in _container()["volumeMounts"] if m["name"] == "config"]
    config_path = Path(env.pop("SENTINEL_CONFIG"))
    assert config_path.parent == Path(mount["mountPath"])
    toml = tmp_path / config_path.name
    toml.write_text(_kind("ConfigMap")["data"][config_path.name], encoding="utf-8")
    secrets = _kind("Secret")["stringData"]
    cfg = load_config(toml, env)
    assert cfg.http.host == "0.0.0.0"
    assert cfg.http.port == _container()["ports"][0]["containerPort"]
    assert cfg.log.format == "json"
    assert cfg.redis.url is not None
    assert cfg.redis.url.get_secret_value() == secrets["redis-url"]
    assert cfg.heartbeat[0].tokens.secret_values() == {"composite": secrets["hc-composite"]}
    assert cfg.http.status_token is not None
    assert cfg.topics.partitions >= _kind("Deployment")["spec"]["replicas"]
    # no secret is an environment value or a ConfigMap line
    for value in secrets.values():
        assert value not in str(_kind("ConfigMap")) + str(_container()["env"])


def test_topics_job_runs_a_real_verb() -> None:
    (job,) = _kind("Job")["spec"]["template"]["spec"]["containers"]
    args = build_parser("test").parse_args(job["args"])
    assert (args.verb, args.topics_verb) == ("topics", "create")
    assert job["image"] == _container()["image"]


# -- the image (docker cannot run here: the Dockerfile is checked as text) ----------

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    joined = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_installs_from_the_checked_in_constraints() -> None:
    steps = _instructions()
    copied = [args for op, args in steps if op == "COPY" and "constraints.txt" in args.split()]
    assert copied, "constraints.txt is not copied into the image"
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    assert len(installs) == 1
    assert "--constraint /tmp/src/constraints.txt" in installs[0]
    assert "[" not in installs[0], "the image installs no extras"
    pinned = [
        line
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    names = {line.split("==")[0].lower().replace("_", "-") for line in pinned}
    assert all("==" in line for line in pinned)
    for dependency in ("aiokafka", "redis", "aiohttp", "orjson", "prometheus-client", "pydantic"):
        assert dependency in names
    assert not names & {"pytest", "mypy", "ruff", "hypothesis", "kubernetes-validate"}


def test_image_runs_as_the_non_root_user_the_pods_expect() -> None:
    users = [args for op, args in _instructions() if op == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    pod = _kind("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    last_from = max(i for i, (op, _) in enumerate(_instructions()) if op == "FROM")
    assert all(i > last_from for i, (op, _) in enumerate(_instructions()) if op == "USER")


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} unpinned: run scripts/constraints"
        assert requirement.specifier.contains(pinned), (
            f"{requirement.name}=={pinned} is outside {requirement.specifier}: "
            "run scripts/constraints"
        )
