"""The access log: people's requests at INFO, scrapes and probes at DEBUG; JSON log lines."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
import orjson
import pytest

from stream_sentinel.http_guard import access_log
from stream_sentinel.httpserver import build_http_app, start_http
from stream_sentinel.logsetup import JsonFormatter, configure_logging
from stream_sentinel.metrics import Metrics

ACCESS_LOGGER = access_log.name


async def _ready() -> Mapping[str, bool | str]:
    return {"kafka": True}


async def _requests(paths: list[str]) -> None:
    app = build_http_app(
        metrics=Metrics(process_metrics=False),
        status_provider=lambda: {"status": "ok"},
        ready_checks=_ready,
        status_token=None,
    )
    server, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for path in paths:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    await response.read()
    finally:
        await server.cleanup()


def _access(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """Path -> level of its access line."""
    found = {}
    for record in caplog.records:
        if record.name == ACCESS_LOGGER:
            path = record.getMessage().split('"')[1].split()[1]
            found[path] = record.levelno
    return found


async def test_scrapes_and_probes_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    await _requests(["/metrics", "/healthz", "/readyz", "/status", "/nowhere"])
    assert _access(caplog) == {
        "/metrics": logging.DEBUG,
        "/healthz": logging.DEBUG,
        "/readyz": logging.DEBUG,
        "/status": logging.INFO,
        "/nowhere": logging.INFO,
    }


async def test_at_info_only_peoples_requests_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    await _requests(["/metrics", "/readyz", "/status"])
    assert _access(caplog) == {"/status": logging.INFO}


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("stream_sentinel.app", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_the_four_keys_and_the_fields() -> None:
    fields = {"at": "2026-11-02T10:05:00Z", "status": "critical", "red": ["blocked_pct"]}
    line = JsonFormatter().format(_record("tick %s\nnext", "x", fields=fields))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc.pop("time").endswith("+00:00")
    assert doc == {
        "level": "INFO",
        "logger": "stream_sentinel.app",
        "message": "tick x\nnext",
        **fields,
    }


def test_fields_never_replace_the_fixed_keys() -> None:
    doc = orjson.loads(JsonFormatter().format(_record("m", fields={"level": "X", "n": 1})))
    assert (doc["level"], doc["n"]) == ("INFO", 1)


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in orjson.loads(line)["exception"]


def test_configure_logging_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    level = root.level
    foreign = logging.NullHandler()  # stands for a host's own handler (pytest has some too)
    root.addHandler(foreign)
    before = list(root.handlers)
    try:
        configure_logging("DEBUG", "text")
        (first,) = [h for h in root.handlers if h not in before]
        configure_logging("WARNING", "json")
        (second,) = [h for h in root.handlers if h not in before]
        assert first not in root.handlers
        assert isinstance(second.formatter, JsonFormatter)
        assert root.level == logging.WARNING
        assert foreign in root.handlers
    finally:
        for handler in [h for h in root.handlers if h not in before or h is foreign]:
            root.removeHandler(handler)
        root.setLevel(level)
