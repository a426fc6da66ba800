"""The operator docs say what the code does: examples run, snippets load, links resolve."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from stream_sentinel.cli.args import build_parser
from stream_sentinel.cli.main import main
from stream_sentinel.config import load_config
from stream_sentinel.decode import Decoder, Rejection
from stream_sentinel.heartbeat_kinds import HeartbeatTarget, build_request
from stream_sentinel.model import SignalReading, Tick

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the make_topic fixture of conftest.py
TopicFactory = Callable[..., Awaitable[str]]
NEW_DOCS = (
    "config.md",
    "deployment.md",
    "producers.md",
    "tuning.md",
    "heartbeats.md",
    "reliability.md",
    "architecture.md",
    "alerting.md",
    "tenants.md",
)


def _blocks(doc: str, lang: str) -> list[str]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def _schema(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _producer_example(monkeypatch: pytest.MonkeyPatch, **env: str) -> types.ModuleType:
    """The producer guide's code block as a module (its settings come from the environment)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (code,) = _blocks("producers.md", "python")
    module = types.ModuleType("producer_example")
    exec(compile(code, "docs/producers.md", "exec"), module.__dict__)
    return module


def _check_event(raw: bytes, schema: str, topic_type: str) -> dict[str, Any]:
    doc = orjson.loads(raw)
    assert isinstance(doc, dict)
    _schema(schema).validate(doc)
    decoded = Decoder().decode(raw, topic_type=topic_type, now=time.time())  # type: ignore[arg-type]
    assert not isinstance(decoded, Rejection), decoded
    assert decoded.tenant == doc.get("tenant")
    return doc


def test_producer_example_builds_events_the_schemas_and_decoder_accept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex = _producer_example(monkeypatch)
    assert ex.REQUEST_TOPIC == "llm.requests"
    assert ex.RESPONSE_TOPIC == "llm.responses"
    request = ex.request_event("u1", "gpt-4o-mini", blocked=False, prompt_tokens=10)
    blocked = ex.request_event("u2", "m", blocked=True, block_reason="prompt_injection")
    response = ex.response_event(request, safe=False, completion_tokens=5, cost_usd=0.01)
    team = ex.request_event("u3", "m", blocked=False, tenant="team-search")
    team_response = ex.response_event(team, safe=True, completion_tokens=1)
    assert "tenant" not in request and "tenant" not in response
    assert team["tenant"] == team_response["tenant"] == "team-search"
    for event, schema, kind in (
        (request, "llm_request.v1.json", "request"),
        (blocked, "llm_request.v1.json", "request"),
        (response, "llm_response.v1.json", "response"),
        (team, "llm_request.v1.json", "request"),
        (team_response, "llm_response.v1.json", "response"),
    ):
        _check_event(json.dumps(event).encode(), schema, kind)
    assert response["request_id"] == request["event_id"]
    assert response["prompt_tokens"] == 10
    assert len({request["event_id"], blocked["event_id"], response["event_id"]}) == 3


async def test_producer_example_runs_against_the_broker(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    requests, responses = await make_topic(3, "docreq"), await make_topic(3, "docresp")
    ex = _producer_example(
        monkeypatch,
        SENTINEL_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        SENTINEL_KAFKA_REQUEST_TOPIC=requests,
        SENTINEL_KAFKA_RESPONSE_TOPIC=responses,
    )
    await ex.main()
    consumer = AIOKafkaConsumer(
        requests, responses, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 3:
                batch = await consumer.getmany(timeout_ms=1000)
                got += [record for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    assert len(got) == 3
    partition_of: dict[tuple[str, str], int] = {}
    for record in got:
        is_request = record.topic == requests
        doc = _check_event(
            record.value,
            "llm_request.v1.json" if is_request else "llm_response.v1.json",
            "request" if is_request else "response",
        )
        assert record.key == doc["user_id"].encode()
        assert doc.get("tenant") == ("team-search" if doc["user_id"] == "user-42" else None)
        partition_of[(doc["type"], doc["user_id"])] = record.partition
    assert set(partition_of) == {
        ("request", "user-42"),
        ("response", "user-42"),
        ("request", "user-7"),
    }
    # keyed by user: a user's request and response share the partition number
    assert partition_of[("request", "user-42")] == partition_of[("response", "user-42")]


def _tick(status: str, red: bool) -> Tick:
    reading = SignalReading("blocked_pct", 1.0, 0.1, 0.2, "red" if red else "ok", volume=100)
    return Tick(
        at=1_800_000_000,
        status=status,  # type: ignore[arg-type]
        red=("blocked_pct",) if red else (),
        signals={"blocked_pct": reading},
        top_users=(),
    )


def test_heartbeat_toml_examples_load_with_token_files(tmp_path: Path) -> None:
    blocks = _blocks("heartbeats.md", "toml")
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        # the documented /run/secrets paths, redirected to files of this test
        secrets = sorted(set(re.findall(r'"/run/secrets/([a-z_]+)"', block)))
        assert secrets
        for name in secrets:
            (tmp_path / name).write_text(f"tok-{name}\n", encoding="utf-8")
        config_file = tmp_path / f"hb{i}.toml"
        config_file.write_text(block.replace("/run/secrets/", ""), encoding="utf-8")
        (target,) = load_config(config_file, {}).heartbeat
        tokens = target.tokens.secret_values()
        assert sorted(tokens.values()) == sorted(f"tok-{n}" for n in secrets)


def test_heartbeat_compose_example_loads_from_the_environment(tmp_path: Path) -> None:
    (block,) = _blocks("heartbeats.md", "yaml")
    service = yaml.safe_load(block)["services"]["stream-sentinel"]
    env = {k: str(v) for k, v in service["environment"].items()}
    secret = tmp_path / "hc_composite"
    secret.write_text("0f1e2d3c-uuid\n", encoding="utf-8")
    env["SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE_FILE"] = str(secret)
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    (target,) = load_config(empty, env).heartbeat
    assert target.kind == "healthchecks"
    assert target.tokens.secret_values() == {"composite": "0f1e2d3c-uuid"}


@pytest.mark.parametrize(
    ("kind", "url", "failure", "method", "expected_url"),
    [
        ("healthchecks", "https://hc-ping.com", False, "POST", "https://hc-ping.com/T"),
        ("healthchecks", "https://hc-ping.com", True, "POST", "https://hc-ping.com/T/fail"),
        (
            "healthchecks",
            "https://hc.example.org/ping",
            True,
            "POST",
            "https://hc.example.org/ping/T/fail",
        ),
        (
            "uptime-kuma",
            "https://kuma.example",
            True,
            "GET",
            "https://kuma.example/api/push/T?status=down&msg=m&ping=",
        ),
        (
            "generic",
            "https://hb.example/api/heartbeat",
            True,
            "GET",
            "https://hb.example/api/heartbeat?token=T&status=critical&msg=m",
        ),
    ],
)
def test_heartbeat_requests_are_as_documented(
    kind: str, url: str, failure: bool, method: str, expected_url: str
) -> None:
    target = HeartbeatTarget("t", kind, url, {"composite": "T"})  # type: ignore[arg-type]
    tick = _tick("critical" if failure else "ok", failure)
    request = build_request(target, "composite", tick, failure, "m")
    assert (request.method, str(request.url)) == (method, expected_url)
    doc = (DOCS / "heartbeats.md").read_text(encoding="utf-8")
    assert f"`{method} " in doc


def test_webhook_body_has_the_documented_fields() -> None:
    target = HeartbeatTarget("w", "webhook", "https://hooks.example/sentinel", {"composite": "T"})
    request = build_request(target, "composite", _tick("critical", True), True, "m")
    assert request.method == "POST" and request.body is not None
    body = orjson.loads(request.body)
    (block,) = _blocks("heartbeats.md", "json")
    documented = [*re.findall(r'"(\w+)":', block.split('"tick"')[0]), "tick"]
    assert sorted(body) == sorted(documented)
    assert body["status"] == "critical" and body["state"] == "critical"


def test_tenants_toml_example_is_a_valid_config(tmp_path: Path) -> None:
    (block,) = _blocks("tenants.md", "toml")
    path = tmp_path / "tenants.toml"
    path.write_text(block, encoding="utf-8")
    cfg = load_config(path, {})
    assert cfg.tenants.enabled and cfg.tenants.top_k == 20


def test_readme_links_every_new_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in NEW_DOCS:
        assert f"(docs/{doc})" in readme, doc
        assert (DOCS / doc).is_file()


def test_relative_links_in_the_docs_resolve() -> None:
    for doc in NEW_DOCS:
        text = (DOCS / doc).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (DOCS / target).resolve().exists(), f"{doc}: broken link {target}"


def _cli_commands(doc: str) -> list[list[str]]:
    """Every ``stream-sentinel ...`` command in the doc's shell blocks, as argv."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```(?:console|sh)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.removeprefix("$ ").strip()
            if not line.startswith(("stream-sentinel ", "SENTINEL_")):
                continue
            argv = shlex.split(line, comments=True)
            while "=" in argv[0] and argv[0].startswith("SENTINEL_"):
                argv.pop(0)  # an environment assignment for this one run
            assert argv[0] == "stream-sentinel", line
            found.append(argv[1:])
    return found


@pytest.mark.parametrize("doc", ["tuning.md", "deployment.md", "detection.md", "baselines.md"])
def test_documented_commands_parse_with_the_real_cli(doc: str) -> None:
    commands = _cli_commands(doc)
    assert commands
    for argv in commands:
        args = build_parser("test").parse_args(argv)
        assert args.verb in {"run", "replay", "score", "baseline", "simulate", "produce", "topics"}


def test_tuning_example_output_is_what_replay_and_score_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = (DOCS / "tuning.md").read_text(encoding="utf-8")
    timeline = tmp_path / "base.jsonl"
    demo = ["examples/demo.jsonl.gz", "--config", "examples/sentinel.toml"]
    replay = ["replay", *demo, "--timeline", str(timeline), "--no-progress"]
    assert main([str(ROOT / a) if a.startswith("examples/") else a for a in replay]) == 0
    printed = capsys.readouterr().out
    transitions = [line for line in printed.splitlines() if "->" in line or "events read" in line]
    assert len(transitions) == 6
    for line in transitions:
        assert line in doc, line
    truth = str(ROOT / "examples/demo.truth.json")
    assert main(["score", "--truth", truth, "--timeline", str(timeline)]) == 0
    for line in capsys.readouterr().out.strip().splitlines():
        assert line in doc, line


def test_architecture_names_only_modules_that_exist() -> None:
    """The rooms page is read before the code: every module it names is there."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"([a-z_/]+\.py)\b", text))
    assert {"kafka/source.py", "ingest.py", "store/build.py"} <= named
    roots = (ROOT / "stream_sentinel", ROOT / "tests", ROOT)
    missing = [n for n in named if not any((root / n).is_file() for root in roots)]
    assert missing == []
