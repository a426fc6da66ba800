"""Replay: hand-computed values at chosen ticks, lateness, dead letters, store parity."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

T0 = 1_800_000_000  # a multiple of 300
BASELINES = """
[baselines]
blocked_pct = 0.1
safety_pct = 99.5
top_user_rps = 5.0
spend_hour = 41.67
"""


def req(i: int, ts: float, user: str, blocked: bool = False) -> dict[str, Any]:
    return {"event_id": f"r{i}", "type": "request", "ts": ts, "user_id": user, "blocked": blocked}


def resp(i: int, ts: float, user: str, safe: bool = True, cost: float = 0.01) -> dict[str, Any]:
    return {
        "event_id": f"s{i}",
        "type": "response",
        "ts": ts,
        "user_id": user,
        "safe": safe,
        "cost_usd": cost,
    }


def hand_built() -> list[bytes]:
    lines: list[dict[str, Any]] = []
    # 100 requests in [T0, T0+100): 3 blocked, 40 of them from one heavy user
    for i in range(100):
        user = "heavy" if i < 40 else f"u{i}"
        lines.append(req(i, T0 + i, user, blocked=i in (5, 50, 95)))
    # 60 responses: 2 unsafe, 0.01 USD each
    lines += [resp(i, T0 + i + 0.5, f"u{i}", safe=i not in (7, 8)) for i in range(60)]
    # out of order but within the 30 s lateness: ts T0+110 arrives after T0+135
    lines.append(req(1000, T0 + 135, "late-ok"))
    lines.append(req(1001, T0 + 110, "late-ok"))
    # the watermark passes T0+120 here (T0+200 - 30), so tick T0+120 is evaluated;
    # T0+50 then arrives too late for it but counts in later windows
    lines.append(req(1002, T0 + 200, "x"))
    lines.append(req(1003, T0 + 50, "too-late-for-120"))
    # bad lines: dead-lettered, never counted, never stop the replay
    out = [orjson.dumps(d) for d in lines]
    out.insert(10, b"{not json")
    out.insert(20, b'{"event_id":"b","type":"request","ts":1800000001,"user_id":"u"}')
    out.insert(30, b'{"event_id":"c","type":"response","ts":1800000001,"user_id":"u","safe":1}')
    # a later event moves the watermark far enough to evaluate T0+480
    out.append(orjson.dumps(req(2000, T0 + 520, "y")))
    return out


def run_replay(tmp: Path, log: Path, *extra: str) -> tuple[list[dict[str, Any]], str]:
    cfg = tmp / "c.toml"
    cfg.write_text(BASELINES)
    timeline = tmp / f"timeline-{len(list(tmp.iterdir()))}.jsonl"
    proc = subprocess.run(
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
            "--dead-letters",
            str(tmp / "dead.jsonl"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [orjson.loads(line) for line in timeline.read_bytes().splitlines()], proc.stdout


def by_at(ticks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["at"]: t for t in ticks}


def test_hand_built_log_gives_hand_computed_values(tmp_path: Path) -> None:
    log = tmp_path / "hand.jsonl.gz"
    log.write_bytes(gzip.compress(b"\n".join(hand_built()) + b"\n"))
    ticks, summary = run_replay(tmp_path, log)
    t = by_at(ticks)
    # ticks start at the first whole minute after the first event
    assert ticks[0]["at"] == "2027-01-15T08:01:00Z"
    at120 = t["2027-01-15T08:02:00Z"]  # T0 + 120
    s = at120["signals"]
    # 100 + late-ok (110 s; 135 s is outside [at-300, at)) = 101 requests, 3 blocked
    assert s["blocked_pct"]["value"] == pytest.approx(100 * 3 / 101, abs=1e-12)
    assert s["blocked_pct"]["volume"] == 101
    assert s["blocked_pct"]["state"] == "red" and s["blocked_pct"]["p_value"] < 0.001
    assert s["safety_pct"]["value"] == pytest.approx(100 * 58 / 60, abs=1e-12)
    assert s["top_user_rps"]["value"] == pytest.approx(40 / 300, abs=1e-4)
    assert at120["top_users"][0] == ["heavy", pytest.approx(40 / 300, abs=1e-4)]
    assert s["spend_hour"]["value"] == pytest.approx(0.6, abs=1e-9)
    assert at120["status"] == "warning" and at120["red"] == ["blocked_pct"]
    # T0+180: the late T0+50 request (arrived after tick 120) now counts; so does T0+135
    s180 = t["2027-01-15T08:03:00Z"]["signals"]
    assert s180["blocked_pct"]["volume"] == 103  # 100 + 110 s + 135 s + the late 50 s
    # T0+480: window [T0+180, T0+480) has only the request at T0+200
    s480 = t["2027-01-15T08:08:00Z"]["signals"]
    assert s480["blocked_pct"]["value"] == 0.0 and s480["blocked_pct"]["volume"] == 1
    assert s480["blocked_pct"]["state"] == "insufficient_data"
    assert s480["safety_pct"]["value"] is None  # no responses in the window at all
    assert s480["spend_hour"]["value"] == pytest.approx(0.6, abs=1e-9)  # still inside the hour
    # held red for clear_ticks (3) non-red ticks, then ok
    statuses = [t[f"2027-01-15T08:0{m}:00Z"]["status"] for m in range(2, 9)]
    assert statuses[:4] == ["warning"] * 4 and statuses[-1] == "ok", statuses
    assert "dead-lettered: 3" in summary
    dead = [orjson.loads(x) for x in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    assert sorted(d["reason"] for d in dead) == ["missing:blocked", "not_json", "type:safe"]


def test_stdin_and_plain_jsonl_give_the_same_timeline(tmp_path: Path) -> None:
    plain = tmp_path / "hand.jsonl"
    plain.write_bytes(b"\n".join(hand_built()) + b"\n")
    from_file, _ = run_replay(tmp_path, plain)
    cfg = tmp_path / "c.toml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_sentinel",
            "replay",
            "-",
            "--config",
            str(cfg),
            "--timeline",
            str(tmp_path / "stdin.jsonl"),
        ],
        input=plain.read_bytes(),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    from_stdin = [orjson.loads(x) for x in (tmp_path / "stdin.jsonl").read_bytes().splitlines()]
    assert from_stdin == from_file


def test_memory_and_redis_stores_give_identical_timelines(
    tmp_path: Path, any_redis_url: str
) -> None:
    from stream_sentinel.sim.simulate import Scenario, simulate, write_log

    start = float(T0)
    events, _ = simulate(
        start=start,
        duration_s=2 * 3600,
        seed=11,
        base_rps=3.0,
        scenarios=[
            Scenario("injection_jailbreak", start + 3600, 900),
            Scenario("dos", start + 5400, 600),
        ],
        jitter_s=5.0,
    )
    log = tmp_path / "sim.jsonl.gz"
    write_log(events, log)
    memory, _ = run_replay(tmp_path, log)
    redis, _ = run_replay(tmp_path, log, "--redis", any_redis_url)
    assert len(memory) == 121  # 08:01 .. 10:01, the tick after the last event included
    assert memory == redis
    assert {t["status"] for t in memory} >= {"ok", "warning", "critical"}


async def test_dead_letters_leave_with_their_block_not_at_the_next_tick() -> None:
    """Counted events wait for the tick that reads them; dead letters (which
    hold their raw lines) are handed out after each block, so a long run of
    bad lines between two ticks never piles up in memory."""
    from stream_sentinel.baselines import build_baselines
    from stream_sentinel.config import load_config
    from stream_sentinel.evaluate import Evaluator
    from stream_sentinel.replay import _Run
    from stream_sentinel.store.history import MemoryHistory
    from stream_sentinel.store.memory import MemoryStore
    from stream_sentinel.wiring import build_rules, retention_s

    cfg = load_config(None, {"SENTINEL_BASELINES_BLOCKED_PCT": "0.1"})
    store = MemoryStore(retention_s=retention_s(cfg))
    evaluator = Evaluator(store, build_rules(cfg), build_baselines(cfg, MemoryHistory(3600)))
    dead: list[object] = []
    run = _Run(cfg, store, evaluator, lambda tick: None, dead.append)
    first = [orjson.dumps(req(0, T0 + 1, "u1")) + b"\n"]
    await run.feed(first)
    bad = [b"not json %d\n" % i for i in range(50)]
    await run.feed(bad)
    assert len(dead) == 50  # handed out with their block, no tick due yet
    assert run.summary.dead_lettered == 50
    assert run.summary.ticks == 0
    await run.feed([orjson.dumps(req(1, T0 + 2, "u2")) + b"\n"])
    await run.finish()
    assert run.summary.counted == 2
    assert len(dead) == 50


def test_a_redis_backtest_leaves_no_keys_behind(
    tmp_path: Path, any_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counters, offsets and (with a learned signal) tick history are scratch."""
    import asyncio
    import uuid

    from stream_sentinel.store.redis_client import connect

    prefix = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SENTINEL_REDIS_KEY_PREFIX", prefix)
    log = tmp_path / "log.jsonl"
    log.write_bytes(
        b"".join(orjson.dumps(req(i, T0 + 7 * i, f"u{i % 3}")) + b"\n" for i in range(200))
    )

    async def keys() -> list[bytes]:
        client = connect(any_redis_url)
        try:
            return [k async for k in client.scan_iter(match=f"{prefix}:*")]
        finally:
            await client.aclose()

    # spend_hour without a static baseline: learned, so the history is written too
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASELINES.replace("spend_hour = 41.67\n", ""))
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "stream_sentinel", "replay", str(log)),
            *("--config", str(cfg), "--redis", any_redis_url),
            *("--timeline", str(tmp_path / "t.jsonl")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ticks = [orjson.loads(x) for x in (tmp_path / "t.jsonl").read_bytes().splitlines()]
    assert ticks and ticks[-1]["signals"]["spend_hour"]["baseline_source"] == "learning"
    assert asyncio.run(keys()) == []
