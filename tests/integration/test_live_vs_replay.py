"""The same log through Kafka + Redis (`produce`, then `run`) and through replay.

Replay evaluates in event time on the embedded store; the live service in
wall-clock time on Redis. Fed the same events (shifted to now for the live
side), both must see the same values and decide the same status.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from .harness import ServiceProcess, free_port, service_env

pytestmark = pytest.mark.integration

T_BASE = 1_700_000_000
BASELINES = """
[alerting]
tick_seconds = 2
[baselines]
blocked_pct = 0.1
safety_pct = 99.5
top_user_rps = 5.0
spend_hour = 41.67
"""


def attack_log(path: Path) -> int:
    """Four minutes of traffic with an injection + jailbreak wave: 2 signals red."""
    rng = random.Random(5)
    lines = []
    for i in range(900):
        ts = T_BASE + i * 240 / 900
        user = f"u{rng.randrange(60)}"
        lines.append(
            {
                "event_id": f"q{i}",
                "type": "request",
                "ts": round(ts, 3),
                "user_id": user,
                "blocked": rng.random() < 0.05,
            }
        )
        lines.append(
            {
                "event_id": f"s{i}",
                "type": "response",
                "ts": round(ts + 0.2, 3),
                "user_id": user,
                "safe": rng.random() > 0.05,
                "cost_usd": round(rng.uniform(0.001, 0.01), 6),
            }
        )
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return 900


async def _status(port: int) -> dict[str, Any] | None:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/status") as r,
        ):
            return await r.json() if r.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_live_and_replay_agree_on_values_and_status(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    make_topic,
    redis_ns,  # type: ignore[no-untyped-def]
) -> None:
    log = tmp_path / "attack.jsonl"
    requests = attack_log(log)
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(BASELINES)
    timeline = tmp_path / "timeline.jsonl"
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_sentinel",
            "replay",
            str(log),
            "--config",
            str(cfg),
            "--timeline",
            str(timeline),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stderr
    last = orjson.loads(timeline.read_bytes().splitlines()[-1])
    assert last["signals"]["blocked_pct"]["volume"] == requests
    assert last["status"] == "critical"

    topics = {"request": await make_topic(2, "req"), "response": await make_topic(2, "resp")}
    dlq = await make_topic(1, "dlq")
    env = service_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_ns.prefix,
        requests=topics["request"],
        responses=topics["response"],
        dlq=dlq,
    )
    env["SENTINEL_ALERTING_TICK_SECONDS"] = "2"
    port = free_port()
    env["SENTINEL_HTTP_PORT"] = str(port)
    produced = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "produce", str(log), "--shift-to-now"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stderr
    assert "produced 1800 messages" in produced.stdout
    svc = ServiceProcess(env)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            status = await _status(port)
            vol = ((status or {}).get("signals") or {}).get("blocked_pct", {}).get("volume")
            if vol == requests:
                break
            assert svc.proc.poll() is None, svc.log_tail()
            assert loop.time() < deadline, f"never saw all events: {status}\n{svc.log_tail()}"
            await asyncio.sleep(0.25)
        assert status["status"] == last["status"]
        assert status["red"] == last["red"]
        for name, expected in last["signals"].items():
            got = status["signals"][name]
            assert got["volume"] == expected["volume"], name
            assert got["state"] == expected["state"], name
            assert got["value"] == pytest.approx(expected["value"], rel=1e-9), name
        assert status["top_users"] == last["top_users"]
        assert svc.terminate() == 0
    finally:
        svc.close()
