"""docs/deployment.md "Connecting to a managed Kafka / Redis": its examples
load as documented, and its Redis ACL is the one the integration tests run under."""

from __future__ import annotations

import re
from pathlib import Path

from stream_sentinel.config import load_config
from stream_sentinel.kafka.clients import client_options

ROOT = Path(__file__).resolve().parent.parent
TITLE = "## Connecting to a managed Kafka / Redis"


def section() -> str:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end >= 0 else len(text)]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", section(), re.MULTILINE | re.DOTALL)


def test_every_toml_example_loads_and_builds_its_clients(pki: Path, tmp_path: Path) -> None:
    examples = blocks("toml")
    assert len(examples) >= 4
    # the documented file paths, redirected to real files of this test
    files = {
        "/etc/stream-sentinel/kafka/ca.pem": pki / "ca.pem",
        "/etc/stream-sentinel/kafka/service.cert": pki / "client.pem",
        "/etc/stream-sentinel/kafka/service.key": pki / "client.key",
    }
    protocols = set()
    for i, example in enumerate(examples):
        text = example
        for documented, real in files.items():
            text = text.replace(f'"{documented}"', f'"{real}"')
        for name in set(re.findall(r'"/run/secrets/([a-z_]+)"', text)):
            (tmp_path / name).write_text(f"pw-{name}\n", encoding="utf-8")
            text = text.replace(f'"/run/secrets/{name}"', f'"{tmp_path / name}"')
        config_file = tmp_path / f"example{i}.toml"
        config_file.write_text(text, encoding="utf-8")
        cfg = load_config(config_file, {})
        options = client_options(cfg.kafka)
        protocols.add(options["security_protocol"])
        if "sasl_password_file" in example:
            assert options["sasl_plain_password"] == "pw-kafka_password"
        if "[redis]" in example:
            assert cfg.redis.client_options()["password"] == "pw-redis_password"
    assert {"SASL_SSL", "SSL"} <= protocols


def test_the_documented_acl_is_the_one_the_tests_run_the_service_under() -> None:
    (documented,) = re.findall(r"^ACL SETUSER (\S+) on >PASSWORD (.*)$", section(), re.M)
    services = (ROOT / "scripts" / "services").read_text(encoding="utf-8")
    (tested,) = re.findall(r"^user \$REDIS_ACL_USER on >\$ACL_PASSWORD_OUT (.*)$", services, re.M)
    assert documented[1].replace("~ss:*", "~$REDIS_ACL_PREFIX:*") == tested
