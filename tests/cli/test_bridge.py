"""``bridge litellm``: LiteLLM's generic_api posts in every format, bad records
dead-lettered with their reason, auth and size limits; real Kafka behind it."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from integration.harness import read_topic

from stream_sentinel.cli.bridge import SOURCE, Bridge, BridgeSetupError, build_app, read_token
from stream_sentinel.config import load_config
from stream_sentinel.httpserver import BearerAuth
from stream_sentinel.integrations.litellm_events import events_of

RECORDS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "integrations" / "litellm_records.json").read_text()
)
TOKEN = secrets.token_urlsafe(24)
MAX_BODY = 64 * 1024


def _records(*kinds: str) -> list[dict[str, Any]]:
    return [RECORDS[k]["record"] for k in kinds]


@pytest.fixture
async def bridge(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]]
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    topics = {
        "request": await make_topic(1, "breq"),
        "response": await make_topic(1, "bresp"),
        "dlq": await make_topic(1, "bdlq"),
    }
    cfg = load_config(
        None,
        {
            "SENTINEL_CONFIG": "/dev/null",
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SENTINEL_KAFKA_REQUEST_TOPIC": topics["request"],
            "SENTINEL_KAFKA_RESPONSE_TOPIC": topics["response"],
            "SENTINEL_KAFKA_DLQ_TOPIC": topics["dlq"],
        },
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    client = TestClient(TestServer(build_app(Bridge(cfg, BearerAuth(TOKEN), producer), MAX_BODY)))
    await client.start_server()
    try:
        yield client, topics
    finally:
        await client.close()
        await producer.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _events(records: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    requests, responses = [], []
    for record in records:
        call = events_of(record)
        requests.append(call.request)
        if call.response is not None:
            responses.append(call.response)
    return requests, responses


@pytest.mark.parametrize("layout", ["json_array", "ndjson", "single"])
async def test_every_generic_api_format_becomes_the_mapped_events(
    bridge: tuple[TestClient[Any, Any], dict[str, str]], kafka_bootstrap: str, layout: str
) -> None:
    client, topics = bridge
    records = _records("success", "pre_call_blocked", "post_call_flagged")
    if layout == "json_array":
        bodies = [orjson.dumps(records)]
    elif layout == "ndjson":
        bodies = [b"\n".join(orjson.dumps(r) for r in records) + b"\n"]
    else:
        bodies = [orjson.dumps(r) for r in records]
    for body in bodies:
        r = await client.post("/litellm", data=body, headers=AUTH)
        assert r.status == 200, await r.text()
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    requests, responses = _events(records)
    assert await read_topic(kafka_bootstrap, topics["request"], 3) == requests
    assert await read_topic(kafka_bootstrap, topics["response"], 2) == responses


async def test_bad_records_are_dead_lettered_with_the_reason_and_the_rest_kept(
    bridge: tuple[TestClient[Any, Any], dict[str, str]], kafka_bootstrap: str
) -> None:
    client, topics = bridge
    no_id = dict(RECORDS["success"]["record"], litellm_call_id=None, id=None)
    body = b"\n".join(
        [orjson.dumps(RECORDS["success"]["record"]), b"{not json", b"[1]", orjson.dumps(no_id)]
    )
    r = await client.post("/litellm", data=body, headers=AUTH)
    assert r.status == 200
    assert await r.json() == {"events": 2, "dead_lettered": 3}
    letters = await read_topic(kafka_bootstrap, topics["dlq"], 3)
    assert [d["reason"] for d in letters] == ["not_object", "not_object", "bad_record:call_id"]
    assert base64.b64decode(letters[0]["value_b64"]) == b"{not json"
    assert {d["source"]["topic"] for d in letters} == {SOURCE}
    assert len(await read_topic(kafka_bootstrap, topics["request"], 1)) == 1


async def test_a_wrong_token_is_refused_and_nothing_is_produced(
    bridge: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, _ = bridge
    body = orjson.dumps(_records("success"))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        r = await client.post("/litellm", data=body, headers=headers)
        assert r.status == 401
        assert TOKEN not in await r.text()


async def test_a_body_over_the_limit_gets_413(
    bridge: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, _ = bridge
    r = await client.post("/litellm", data=b"[" + b" " * MAX_BODY + b"]", headers=AUTH)
    assert r.status == 413


def test_the_token_file_must_exist_and_hold_a_long_token(tmp_path: Path) -> None:
    with pytest.raises(BridgeSetupError, match="cannot read"):
        read_token(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(BridgeSetupError, match="at least 16 characters"):
        read_token(str(short))
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert read_token(str(good)) == TOKEN
