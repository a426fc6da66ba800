"""HTTP hardening against a real server on 127.0.0.1: raw sockets for what a normal
client would never send, aiohttp's client for the rest.

Every response, including the ones aiohttp writes itself for requests it cannot
parse, carries the security headers and a Server header without versions, and
never echoes what the client sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import orjson
import pytest

from stream_sentinel.config import Config
from stream_sentinel.httpserver import (
    MAX_BODY_BYTES,
    SECURITY_HEADERS,
    SERVER_NAME,
    build_http_app,
    start_http,
)
from stream_sentinel.metrics import Metrics

TOKEN = "hardening-status-token-51e2"
ROOT = Path(__file__).resolve().parents[1]


async def all_ready() -> Mapping[str, bool | str]:
    return {"kafka": True}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = build_http_app(
        metrics=Metrics(),
        status_provider=lambda: {"status": "ok"},
        ready_checks=all_ready,
        status_token=TOKEN,
    )
    # the configured default host, so the loopback test below tests the default
    runner, bound = await start_http(app, Config().http.host, 0)
    yield bound
    await runner.cleanup()


async def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; read the one response (the server closes after errors)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    assert name.lower() not in headers, f"duplicate header {name}"
                    headers[name.lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, body


def assert_hardened(headers: Mapping[str, str], raw_response: bytes = b"") -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert lower.get(name.lower()) == value, name
    assert lower["server"] == SERVER_NAME
    text = (
        " ".join(f"{k}: {v}" for k, v in lower.items()).lower()
        + raw_response.decode("latin-1").lower()
    )
    assert "aiohttp" not in text and "python" not in text


MALFORMED = {
    "tls on the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    "unknown http version": b"GET /status HTTP/9.9\r\nHost: x\r\n\r\n",
    "header line over the limit": b"GET /healthz HTTP/1.1\r\nX-Long: " + b"A" * 5000 + b"\r\n\r\n",
    "too many headers": b"GET /healthz HTTP/1.1\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(40))
    + b"\r\n",
    "request line over the limit": b"GET /" + b"B" * 5000 + b" HTTP/1.1\r\n\r\n",
    "bad chunk size": b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    "space in header name": b"GET /healthz HTTP/1.1\r\nBad Header: <script>\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_requests_get_a_hardened_400(
    port: int, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = await raw(port, request_bytes)
    assert status == 400
    assert_hardened(headers, body)
    assert headers["content-type"].startswith("application/json")
    assert orjson.loads(body) == {"error": "Bad Request"}
    # the client's bytes are neither echoed nor logged (they may be a log-injection attempt)
    for record in caplog.records:
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        assert "AAAA" not in text and "BBBB" not in text and "<script>" not in text
        assert "Traceback" not in text


async def test_oversized_bodies_get_413_with_headers(port: int) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    async with aiohttp.ClientSession() as http:
        for method, path in (("GET", "/healthz"), ("POST", "/status"), ("PUT", "/nope")):
            async with http.request(method, f"http://127.0.0.1:{port}{path}", data=big) as resp:
                assert resp.status == 413, (method, path)
                assert_hardened(resp.headers)
                assert orjson.loads(await resp.read()) == {"error": "Request Entity Too Large"}
        # a small body is ignored, not refused: the limit is about size only
        async with http.get(f"http://127.0.0.1:{port}/healthz", data=b"x" * 100) as resp:
            assert resp.status == 200


async def test_oversized_declared_length_is_refused_before_the_body_arrives(port: int) -> None:
    # 1 GB announced, a few bytes sent: the answer must come without waiting for the rest
    request = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nabc"
    status, headers, _ = await raw(port, request)
    assert status == 413
    assert_hardened(headers)


async def test_oversized_chunked_body_is_refused(port: int) -> None:
    chunk = b"c" * 2048
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(chunk)
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    status, headers, _ = await raw(port, request)
    assert status == 413
    assert_hardened(headers)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"Bearer " + TOKEN[:-1].encode() + b"X",  # differs in the last byte only
        b"Bearer " + TOKEN.encode() + b"X",
        b"Bearer " + TOKEN[:10].encode(),
        b"Basic " + TOKEN.encode(),
        TOKEN.encode(),
        b"Bearer " + TOKEN.encode()[:-2] + "é".encode(),  # not ASCII
        b"Bearer \xff\xfe" + TOKEN.encode(),  # not UTF-8 at all
    ],
)
async def test_status_refuses_missing_or_wrong_tokens_with_401(
    port: int, authorization: bytes | None
) -> None:
    auth = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
    status, headers, body = await raw(
        port, b"GET /status HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n"
    )
    assert status == 401
    assert_hardened(headers, body)
    assert headers["www-authenticate"].startswith('Bearer realm="stream-sentinel"')
    assert TOKEN.encode() not in body


async def test_status_accepts_the_exact_token(port: int) -> None:
    request = (
        b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = await raw(port, request)
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    assert_hardened(headers)


def test_http_binds_loopback_unless_a_container_says_otherwise() -> None:
    assert Config().http.host == "127.0.0.1"
    # the image and the compose file bind all interfaces explicitly
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV SENTINEL_HTTP_HOST=0.0.0.0" in dockerfile
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "SENTINEL_HTTP_HOST: 0.0.0.0" in compose


async def test_a_loopback_server_is_not_reachable_on_other_addresses(port: int) -> None:
    # 127.0.0.2 is loopback too but not the address bound: a server bound to
    # 0.0.0.0 would answer there, one bound to 127.0.0.1 refuses
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.2", port)
        writer.close()
