"""The live service with ``[log] format = "json"``: every line one JSON object, tick
lines carrying the tick's fields, scrapes and probes absent at INFO."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest

from .harness import ServiceProcess, free_port, service_env

pytestmark = pytest.mark.integration


async def test_json_log_lines_of_the_live_service(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Callable[..., Awaitable[str]],
    unique_id: str,
) -> None:
    port = free_port()
    env = service_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=f"ops-json-{unique_id}",
        requests=await make_topic(1, "req"),
        responses=await make_topic(1, "resp"),
        dlq=await make_topic(1, "dlq"),
        extra={
            "SENTINEL_HTTP_PORT": str(port),
            "SENTINEL_ALERTING_TICK_SECONDS": "1",
            "SENTINEL_KAFKA_ALERTS_TOPIC": await make_topic(1, "alerts"),
            "SENTINEL_LOG_FORMAT": "json",
            "SENTINEL_LOG_LEVEL": "info",
        },
    )
    svc = ServiceProcess(env, "json")
    try:
        await svc.wait_log('"message":"tick ')
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz", "/readyz", "/status"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    await response.read()
        deadline = time.monotonic() + 30
        while '"GET /status' not in svc.log.read_text():  # the access line follows the answer
            assert time.monotonic() < deadline, svc.log_tail()
            await asyncio.sleep(0.1)
        assert svc.terminate() == 0
    finally:
        svc.close()
    lines = [orjson.loads(raw) for raw in svc.log.read_bytes().splitlines() if raw.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    ticks = [line for line in lines if line["message"].startswith("tick ")]
    assert ticks, svc.log_tail()
    for tick in ticks:
        assert tick["status"] in {"ok", "warning", "critical", "learning", "stale"}
        assert tick["message"].startswith(f"tick {tick['at']} status={tick['status']}")
        assert set(tick["signals"]) == {"blocked_pct", "safety_pct", "top_user_rps", "spend_hour"}
        assert "top_users" not in tick  # user ids never reach a log line
    access = [line["message"] for line in lines if line["logger"] == "stream_sentinel.http.access"]
    assert len(access) == 1 and '"GET /status"' in access[0], access
