"""The aiohttp internals httpserver relies on, checked loudly.

aiohttp has no public hook for two things the server needs: the error pages of
requests it cannot parse (``RequestHandler.handle_error``, reached by swapping
the class of the protocol ``web.Server`` makes) and the version of the status
line (``BaseRequest._version``, cached by ``version``). pyproject pins aiohttp
below the next minor release; when the pin is raised, these tests say whether
the internals still fit before anything subtler breaks.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stream_sentinel.httpserver import _GuardedHandler, build_http_app, start_http
from stream_sentinel.metrics import Metrics

TESTED_UP_TO = (3, 14)


async def ready() -> Mapping[str, bool | str]:
    return {}


def test_aiohttp_is_a_version_these_internals_were_tested_with() -> None:
    major, minor = (int(part) for part in aiohttp.__version__.split(".")[:2])
    assert (3, 9) <= (major, minor) <= TESTED_UP_TO, (
        f"aiohttp {aiohttp.__version__}: re-check httpserver's use of RequestHandler "
        "internals (this file), then raise TESTED_UP_TO and the pin in pyproject.toml"
    )


def test_the_guarded_handler_still_fits_aiohttps_protocol_class() -> None:
    assert _GuardedHandler.__slots__ == ()  # no state of its own: the swap needs equal layouts
    assert web.RequestHandler in _GuardedHandler.__mro__
    params = list(inspect.signature(web.RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]


async def test_the_class_swap_works_on_a_real_server_protocol() -> None:
    app = build_http_app(
        metrics=Metrics(), status_provider=lambda: None, ready_checks=ready, status_token=None
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert runner.server is not None
        handler = runner.server()
        handler.__class__ = _GuardedHandler  # raises TypeError if the layouts differ
        assert isinstance(handler, web.RequestHandler)
    finally:
        await runner.cleanup()


def test_the_request_version_is_still_a_cached_slot() -> None:
    request = make_mocked_request("GET", "/", version=aiohttp.HttpVersion(2, 0))
    assert request.version == (2, 0)
    assert hasattr(request, "_version") and isinstance(request._cache, dict)
    request._version = aiohttp.HttpVersion11
    request._cache.pop("version", None)
    assert request.version == (1, 1)


async def test_http2_and_http09_request_lines_get_an_http11_status_line() -> None:
    app = build_http_app(
        metrics=Metrics(), status_provider=lambda: None, ready_checks=ready, status_token=None
    )
    server, port = await start_http(app, "127.0.0.1", 0)
    try:
        for version in (b"HTTP/2.0", b"HTTP/0.9"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz " + version + b"\r\nHost: localhost\r\n\r\n")
            async with asyncio.timeout(10):
                line = await reader.readline()
            writer.close()
            assert line.startswith(b"HTTP/1.1 505 "), line
    finally:
        await server.cleanup()
