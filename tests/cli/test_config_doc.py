"""docs/config.md is the model rendered, and every name it documents really works."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_sentinel.cli.config_doc import INDEX, Entry, entries, render
from stream_sentinel.config import Config, load_config
from stream_sentinel.config_env import apply_env

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/config.md"
# Placeholder -> (as in a variable name, as in the dotted key)
PLACEHOLDERS = {
    "<SIGNAL>": ("BLOCKED_PCT", "blocked_pct"),
    "<MODEL>": ("GPT", "gpt"),
    "<LABEL>": ("SERVICE", "service"),
}
SAMPLE_VALUES = {"<MODEL>": "{ prompt_per_1k = 0.1, completion_per_1k = 0.2 }"}


def test_the_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/config.md is out of date: python -m stream_sentinel.cli.config_doc > docs/config.md"
    )


def test_every_key_of_the_model_is_documented_with_a_description() -> None:
    found = entries()
    keys = {(e.section, e.key) for e in found}
    for section, field in Config.model_fields.items():
        assert any(s == section for s, _ in keys), f"section {section} is missing"
        assert field.annotation is not None
    assert ("kafka", "bootstrap_servers") in keys
    assert ("heartbeat", "tokens.composite") in keys
    assert ("ingest", "prices.<model>.prompt_per_1k") in keys
    for e in found:
        assert e.description, f"{e.section}.{e.key} has no description (a field docstring)"
        assert f"`{e.key}`" in DOC.read_text(encoding="utf-8")


def _variables(e: Entry) -> list[tuple[str, str, str]]:
    """(variable, sample value, dotted key it must set) for each name in the entry."""
    out = []
    for template in e.env.split("<br>") if e.env else []:
        name, value = template.replace(INDEX, "0"), "1"
        key = f"{e.section}[0].{e.key}" if e.section in ARRAYS else f"{e.section}.{e.key}"
        for placeholder, (in_name, in_key) in PLACEHOLDERS.items():
            if placeholder in name:
                name = name.replace(placeholder, in_name)
                key = f"{key}.{in_key}"
                value = SAMPLE_VALUES.get(placeholder, value)
        out.append((name, value, key))
    return out


def test_every_documented_variable_sets_the_documented_key() -> None:
    checked = 0
    for e in entries():
        for name, value, key in _variables(e):
            _, origins = apply_env({}, {name: value}, Config)
            assert origins == {key: name}, (e, origins)
            checked += 1
    assert checked >= 40


SECRETS = {
    ("redis", "url"): "redis://:s3cret@redis.internal:6379/0",
    ("http", "status_token"): "status-token-123",
    ("heartbeat", "tokens.composite"): "hb-token-composite",
    ("heartbeat", "tokens.spend_hour"): "hb-token-spend",
}
HEARTBEAT_ENV = {"SENTINEL_HEARTBEAT_0_URL": "https://hc.example.invalid"}
# [[section]] arrays, and the variable that makes entry 0 valid
ARRAYS = {
    "heartbeat": HEARTBEAT_ENV,
    "alertmanager": {"SENTINEL_ALERTMANAGER_0_URL": "https://am.example.invalid"},
}

# keys a secret is only valid with
PARTNERS = {
    ("alertmanager", "basic_auth_password"): {"SENTINEL_ALERTMANAGER_0_BASIC_AUTH_USERNAME": "u"},
}


def _secret_value(config: Config, section: str, key: str) -> str:
    node = getattr(config, section)[0] if section in ARRAYS else getattr(config, section)
    for part in key.split("."):
        node = getattr(node, part)
    return str(node.get_secret_value())


@pytest.mark.parametrize("entry", [e for e in entries() if e.secret], ids=lambda e: e.key)
def test_every_secret_is_read_from_its_documented_file_forms(entry: Entry, tmp_path: Path) -> None:
    secret = SECRETS.get((entry.section, entry.key), "a-token-for-" + entry.key.replace(".", "-"))
    (tmp_path / "secret").write_text(secret + "\n", encoding="utf-8")
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    partner = PARTNERS.get((entry.section, entry.key), {})
    extra = {**ARRAYS.get(entry.section, {}), **partner}
    # environment: <VARIABLE>_FILE
    assert entry.file_env is not None
    env = {entry.file_env.replace(INDEX, "0"): str(tmp_path / "secret"), **extra}
    assert _secret_value(load_config(empty, env), entry.section, entry.key) == secret
    # TOML: the documented <key>_file form, relative to the config file
    assert entry.toml_file_key is not None
    form = entry.toml_file_key.replace('"path"', '"secret"')
    if entry.section in ARRAYS:
        url = next(iter(ARRAYS[entry.section].values()))
        toml = f'[[{entry.section}]]\nurl = "{url}"\n{form}\n'
        toml += "".join(f'{k.rsplit("_0_", 1)[1].lower()} = "{v}"\n' for k, v in partner.items())
    else:
        toml = f"[{entry.section}]\n{form}\n"
    (tmp_path / "sentinel.toml").write_text(toml, encoding="utf-8")
    config = load_config(tmp_path / "sentinel.toml", {})
    assert _secret_value(config, entry.section, entry.key) == secret
    assert secret not in DOC.read_text(encoding="utf-8")


def test_the_filled_in_heartbeat_name_is_what_the_loader_does(tmp_path: Path) -> None:
    (tmp_path / "sentinel.toml").write_text("", encoding="utf-8")
    env = {**HEARTBEAT_ENV, "SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE": "t"}
    config = load_config(tmp_path / "sentinel.toml", env)
    assert config.heartbeat[0].name == "generic-0"
    (name,) = [e for e in entries() if (e.section, e.key) == ("heartbeat", "name")]
    assert name.default == "`<kind>-<N>`"


def test_the_filled_in_alertmanager_name_is_what_the_loader_does(tmp_path: Path) -> None:
    (tmp_path / "sentinel.toml").write_text("", encoding="utf-8")
    config = load_config(tmp_path / "sentinel.toml", ARRAYS["alertmanager"])
    assert config.alertmanager[0].name == "alertmanager-0"
    (name,) = [e for e in entries() if (e.section, e.key) == ("alertmanager", "name")]
    assert name.default == "`alertmanager-<N>`"


def test_the_generator_is_runnable_as_documented() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "stream_sentinel.cli.config_doc"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert result.stdout == render()
