"""`replay` of a log with tenants, one of them attacked (hostile name): the
console lists its transitions by label, the report has it in the red-tenant
table, the timeline keeps the raw name; without [tenants] neither appears."""

from __future__ import annotations

import subprocess
import sys
from html import escape
from pathlib import Path
from typing import Any

import orjson

from stream_sentinel import untrusted

T0 = 1_800_000_000
HOSTILE = 'small\n"t"<b>{=}</b>' + "é" * 100
CONFIG = """
[baselines]
blocked_pct = 0.1
safety_pct = 99.5
top_user_rps = 5.0
spend_hour = 41.67
"""
TENANTS = "\n[tenants]\nenabled = true\ntop_k = 5\n"


def _log(path: Path) -> Path:
    lines: list[bytes] = []
    for minute in range(30):
        for i in range(100):
            n = minute * 1000 + i
            ts = T0 + minute * 60 + i * 0.5
            tenant = "big" if i < 80 else HOSTILE
            who = {"ts": ts, "user_id": f"u{i}", "tenant": tenant}
            lines.append(orjson.dumps({"event_id": f"q{n}", "type": "request", "blocked": False,
                                       **who}))  # fmt: skip
            lines.append(orjson.dumps({"event_id": f"s{n}", "type": "response", "safe": True,
                                       "cost_usd": 0.001, **who}))  # fmt: skip
        if 10 <= minute < 12:  # the attack: blocked requests in the small tenant
            for i in range(30):
                lines.append(orjson.dumps({"event_id": f"b{minute}-{i}", "type": "request",
                    "ts": T0 + minute * 60 + i, "user_id": "mallory", "blocked": True,
                    "tenant": HOSTILE}))  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _replay(tmp: Path, config: str) -> tuple[list[dict[str, Any]], str, str]:
    cfg = tmp / "c.toml"
    cfg.write_text(config)
    timeline, report = tmp / "timeline.jsonl", tmp / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "replay", str(_log(tmp / "log.jsonl")),
         "--config", str(cfg), "--timeline", str(timeline), "--report", str(report)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ticks = [orjson.loads(line) for line in timeline.read_bytes().splitlines()]
    return ticks, proc.stdout, report.read_text(encoding="utf-8")


def test_an_attacked_tenant_in_the_console_the_report_and_the_timeline(tmp_path: Path) -> None:
    ticks, stdout, page = _replay(tmp_path, CONFIG + TENANTS)
    label = untrusted.label(HOSTILE)
    red_ticks = [t for t in ticks if (t.get("tenants") or {}).get(HOSTILE, {}).get("red")]
    assert red_ticks, "the attacked tenant never went red"
    assert "blocked_pct" in red_ticks[0]["tenants"][HOSTILE]["red"]
    lines = [line for line in stdout.splitlines() if line.strip().startswith("20")]
    tenant_lines = [line for line in lines if f"tenant {label}" in line]
    assert tenant_lines, stdout
    assert f"tenant {label}  ok -> " in tenant_lines[0]  # calm at first: no line for that
    assert tenant_lines[0].split("-> ")[1].startswith(("warning", "critical"))
    assert f"tenant {label}  " in tenant_lines[-1] and "-> ok" in tenant_lines[-1]  # it ends
    assert "tenant transitions: " in stdout
    assert '"t"<b>' not in stdout and "é" not in stdout
    table = page[page.index("Tenants that went red") :]
    assert f"<code>{escape(label)}</code>" in table
    assert red_ticks[0]["at"] in table
    assert "<b>{=}" not in page


def test_without_tenants_nothing_of_them_anywhere(tmp_path: Path) -> None:
    ticks, stdout, page = _replay(tmp_path, CONFIG)
    assert all("tenants" not in t for t in ticks)
    assert "tenant transitions" not in stdout and " tenant " not in stdout
    assert "Tenants that went red" not in page
