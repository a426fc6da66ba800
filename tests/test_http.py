"""HTTP endpoints against a real aiohttp server on 127.0.0.1 with real client requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from stream_sentinel.httpserver import (
    SECURITY_HEADERS,
    SERVER_NAME,
    BearerAuth,
    HttpServer,
    build_http_app,
    start_http,
)
from stream_sentinel.metrics import CONTENT_TYPE, Metrics
from stream_sentinel.model import SignalReading, Tick

TOKEN = "s3cr3t-status-token-7f1c"

Start = Callable[..., Awaitable[str]]


def make_tick() -> Tick:
    return Tick(
        at=1_800_000_000,
        status="critical",
        red=("blocked_pct", "spend_hour"),
        signals={
            "blocked_pct": SignalReading("blocked_pct", 0.9, 0.1, 0.2, "red", 1e-9, 2000),
            "spend_hour": SignalReading("spend_hour", 120.0, 41.67, 83.34, "red", None, 900),
        },
        top_users=(("u1", 3.2),),
    )


def status_body() -> dict[str, Any]:
    return {**make_tick().to_json(), "leader": True, "last_tick_age_s": 4.5}


async def all_ready() -> Mapping[str, bool | str]:
    return {"kafka": True, "redis": True, "partitions_assigned": True}


def app_kwargs(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "metrics": Metrics(),
        "status_provider": status_body,
        "ready_checks": all_ready,
        "status_token": None,
    }
    kw.update(over)
    return kw


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[HttpServer] = []

    async def _start(**over: Any) -> str:
        server, port = await start_http(build_http_app(**app_kwargs(**over)), "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield _start
    for server in servers:
        await server.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(
    client: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with client.request(method, url, **kw) as resp:
        return resp.status, resp.headers, await resp.read()


def assert_safe_headers(headers: CIMultiDictProxy[str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers.getall("Server") == [SERVER_NAME]
    for name, value in headers.items():
        for leak in ("aiohttp", "python"):
            assert leak not in f"{name}: {value}".lower(), (name, value)


async def test_start_http_binds_an_ephemeral_port_and_cleanup_closes_it(
    client: aiohttp.ClientSession,
) -> None:
    server, port = await start_http(build_http_app(**app_kwargs()), "127.0.0.1", 0)
    assert port > 0
    status, _, _ = await fetch(client, "GET", f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    await server.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(client, "GET", f"http://127.0.0.1:{port}/healthz")


async def test_healthz(start: Start, client: aiohttp.ClientSession) -> None:
    base = await start()
    status, headers, body = await fetch(client, "GET", base + "/healthz")
    assert (status, orjson.loads(body)) == (200, {"ok": True})
    assert headers["Content-Type"].startswith("application/json")


async def test_metrics_serves_parseable_text_with_tick_gauges(
    start: Start, client: aiohttp.ClientSession
) -> None:
    metrics = Metrics(latest_tick=make_tick, is_leader=lambda: True)
    metrics.count_event("request", n=7)
    base = await start(metrics=metrics)
    status, headers, body = await fetch(client, "GET", base + "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert found[("stream_sentinel_status", (("status", "critical"),))] == 1
    assert found[("stream_sentinel_status_code", ())] == 2
    assert found[("stream_sentinel_leader", ())] == 1
    assert found[("stream_sentinel_signal_value", (("signal", "spend_hour"),))] == 120.0
    key = (("reason", ""), ("result", "counted"), ("topic_type", "request"))
    assert found[("stream_sentinel_events_total", key)] == 7


async def test_readyz_all_true(start: Start, client: aiohttp.ClientSession) -> None:
    base = await start()
    status, _, body = await fetch(client, "GET", base + "/readyz")
    assert status == 200
    assert orjson.loads(body) == {
        "ready": True,
        "failed": [],
        "checks": {"kafka": True, "redis": True, "partitions_assigned": True},
    }


async def test_readyz_names_the_failing_checks(start: Start, client: aiohttp.ClientSession) -> None:
    async def checks() -> Mapping[str, bool | str]:
        return {"kafka": True, "redis": "connection refused", "partitions_assigned": False}

    base = await start(ready_checks=checks)
    status, headers, body = await fetch(client, "GET", base + "/readyz")
    assert status == 503
    assert_safe_headers(headers)
    doc = orjson.loads(body)
    assert doc["ready"] is False
    assert doc["failed"] == ["partitions_assigned", "redis"]
    assert doc["checks"]["redis"] == "connection refused"


async def test_readyz_hides_exception_messages(start: Start, client: aiohttp.ClientSession) -> None:
    async def checks() -> Mapping[str, bool | str]:
        raise ConnectionRefusedError("redis://:hunter2@redis:6379 refused")

    base = await start(ready_checks=checks)
    status, _, body = await fetch(client, "GET", base + "/readyz")
    assert status == 503
    assert b"hunter2" not in body
    assert orjson.loads(body)["error"] == "ConnectionRefusedError"


async def test_readyz_times_out_instead_of_hanging(
    start: Start, client: aiohttp.ClientSession
) -> None:
    never = asyncio.Event()

    async def checks() -> Mapping[str, bool | str]:
        await never.wait()
        return {}

    base = await start(ready_checks=checks, ready_timeout_s=0.05)
    status, _, body = await fetch(client, "GET", base + "/readyz")
    assert status == 503
    assert orjson.loads(body)["error"] == "timeout"


async def test_status_returns_the_provider_json(
    start: Start, client: aiohttp.ClientSession
) -> None:
    base = await start(status_provider=lambda: MappingProxyType(status_body()))
    status, headers, body = await fetch(client, "GET", base + "/status")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    doc = orjson.loads(body)
    assert doc == orjson.loads(orjson.dumps(status_body()))
    assert doc["signals"]["blocked_pct"]["p_value"] == 1e-9
    assert doc["leader"] is True


async def test_status_is_503_starting_before_the_first_tick(
    start: Start, client: aiohttp.ClientSession
) -> None:
    base = await start(status_provider=lambda: None)
    status, headers, body = await fetch(client, "GET", base + "/status")
    assert (status, orjson.loads(body)) == (503, {"status": "starting"})
    assert_safe_headers(headers)


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="stream-sentinel"'),
        ("Bearer wrong", 'Bearer realm="stream-sentinel", error="invalid_token"'),
        (f"Basic {TOKEN}", 'Bearer realm="stream-sentinel", error="invalid_token"'),
        (f"Bearer {TOKEN}x", 'Bearer realm="stream-sentinel", error="invalid_token"'),
        ("Bearer", 'Bearer realm="stream-sentinel", error="invalid_token"'),
        ("Bearer \u00e9t\u00e9", 'Bearer realm="stream-sentinel", error="invalid_token"'),
    ],
)
async def test_status_rejects_missing_or_wrong_tokens(
    start: Start, client: aiohttp.ClientSession, authorization: str | None, challenge: str
) -> None:
    base = await start(status_token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    status, resp_headers, body = await fetch(client, "GET", base + "/status", headers=headers)
    assert status == 401
    assert resp_headers["WWW-Authenticate"] == challenge
    assert_safe_headers(resp_headers)
    assert TOKEN.encode() not in body
    assert b"signals" not in body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_status_accepts_the_token(
    start: Start, client: aiohttp.ClientSession, scheme: str
) -> None:
    base = await start(status_token=TOKEN)
    auth = {"Authorization": f"{scheme} {TOKEN}"}
    status, _, body = await fetch(client, "GET", base + "/status", headers=auth)
    assert status == 200
    assert orjson.loads(body)["status"] == "critical"
    assert TOKEN.encode() not in body


async def test_token_only_guards_status(start: Start, client: aiohttp.ClientSession) -> None:
    base = await start(status_token=TOKEN)
    for path in ("/metrics", "/healthz", "/readyz"):
        status, _, body = await fetch(client, "GET", base + path)
        assert status == 200, path
        assert TOKEN.encode() not in body


async def test_every_response_carries_the_security_headers(
    start: Start, client: aiohttp.ClientSession
) -> None:
    def broken() -> Mapping[str, Any] | None:
        raise RuntimeError("internal detail 42")

    base = await start(status_token=TOKEN)
    broken_base = await start(status_provider=broken)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    cases = [
        ("GET", base + "/metrics", {}, 200),
        ("GET", base + "/healthz", {}, 200),
        ("HEAD", base + "/healthz", {}, 200),
        ("GET", base + "/readyz", {}, 200),
        ("GET", base + "/status", auth, 200),
        ("GET", base + "/status", {}, 401),
        ("GET", base + "/nope", {}, 404),
        ("GET", base + "/", {}, 404),
        ("POST", base + "/healthz", {}, 405),
        ("GET", broken_base + "/status", {}, 500),
    ]
    for method, url, headers, expected in cases:
        status, resp_headers, body = await fetch(client, method, url, headers=headers)
        assert status == expected, (method, url)
        assert_safe_headers(resp_headers)
        assert TOKEN.encode() not in body
    status, _, body = await fetch(client, "GET", broken_base + "/status")
    assert orjson.loads(body) == {"error": "internal error"}
    assert b"internal detail" not in body and b"Traceback" not in body


async def test_not_found_and_wrong_method_are_json(
    start: Start, client: aiohttp.ClientSession
) -> None:
    base = await start()
    status, headers, body = await fetch(client, "GET", base + "/nope")
    assert (status, orjson.loads(body)) == (404, {"error": "Not Found"})
    assert headers["Content-Type"].startswith("application/json")
    status, headers, body = await fetch(client, "DELETE", base + "/status")
    assert (status, orjson.loads(body)) == (405, {"error": "Method Not Allowed"})
    assert "GET" in headers["Allow"]


async def test_access_log_never_contains_the_token(
    start: Start, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = await start(status_token=TOKEN)
    for token in (TOKEN, "wrong-guess"):
        auth = {"Authorization": f"Bearer {token}", "Referer": "http://x/"}
        await fetch(client, "GET", base + "/status", headers=auth)
    access = [r for r in caplog.records if r.name == "stream_sentinel.http.access"]
    assert len(access) == 2  # the access log is on, so the check below means something
    assert "/status" in access[0].getMessage()
    assert all(
        TOKEN not in r.getMessage() and "wrong-guess" not in r.getMessage() for r in caplog.records
    )


def test_bearer_auth_hides_the_token_and_refuses_empty() -> None:
    auth = BearerAuth(TOKEN)
    assert TOKEN not in repr(auth)
    assert auth.allows(f"Bearer {TOKEN}")
    assert not auth.allows(None)
    with pytest.raises(ValueError) as err:
        BearerAuth("")
    assert TOKEN not in str(err.value)
    with pytest.raises(ValueError):
        build_http_app(**app_kwargs(status_token=""))
