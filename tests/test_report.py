"""report: self-contained page, one chart per signal, escaping, redaction, real rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from stream_sentinel.model import SIGNALS, format_at
from stream_sentinel.report import redact, render_report, transitions_from
from stream_sentinel.report_charts import runs

T0 = 1_793_095_200
EVIL = "<script>alert(1)</script>"
TOKEN = "hb-token-0123456789abcdef"
CONFIG: dict[str, Any] = {
    "alerting": {"multiplier": 2.0, "red_needed": 2},
    "redis": {"url": "redis://:redispass@localhost:6379/0", "key_prefix": "ss"},
    "heartbeat": [
        {
            "kind": "generic",
            "url": "https://hb.example/api/heartbeat",
            "tokens": {"composite": TOKEN},
        }
    ],
    "http": {"bearer_token": TOKEN, "note": "</pre><b>x</b>"},
}

THRESHOLDS = {"blocked_pct": 0.2, "safety_pct": 99.0, "top_user_rps": 10.0, "spend_hour": 83.34}
NORMAL = {"blocked_pct": 0.05, "safety_pct": 99.8, "top_user_rps": 0.9, "spend_hour": 15.0}
ATTACK = {"blocked_pct": 6.5, "safety_pct": 96.0, "top_user_rps": 40.0, "spend_hour": 900.0}


def make_ticks(n: int = 180) -> list[dict[str, Any]]:
    """Learning for 20 ticks, a blocked_pct warning, a 2-signal critical, a data gap."""
    ticks = []
    for i in range(n):
        red = []
        if 60 <= i < 75:
            red = ["blocked_pct"]
        if 120 <= i < 130:
            red = ["blocked_pct", "safety_pct"]
        status = (
            "learning" if i < 20 else "critical" if len(red) > 1 else "warning" if red else "ok"
        )
        signals = {}
        for s in SIGNALS:
            value: float | None = ATTACK[s] if s in red else NORMAL[s] * (1 + 0.1 * (i % 7) / 7)
            if s == "blocked_pct" and 90 <= i < 95:
                value = None  # a window without events
            signals[s] = {
                "value": value,
                "baseline": THRESHOLDS[s] / 2 if s != "safety_pct" else 99.5,
                "threshold": THRESHOLDS[s],
                "state": "red" if s in red else "ok",
            }
        top = [[EVIL, 3.5], ["u00001", 0.9]] if red else [["u00001", 0.9]]
        ticks.append(
            {
                "at": format_at(T0 + 60 * i),
                "status": status,
                "red": red,
                "signals": signals,
                "top_users": top,
            }
        )
    return ticks


@pytest.fixture(scope="module")
def page() -> str:
    """One rendering shared by the read-only checks (matplotlib is the slow part)."""
    return render_report(make_ticks(), config=CONFIG, title="<i>title</i>")


def _without_config(html: str) -> str:
    return re.sub(r"<pre>.*?</pre>", "", html, flags=re.DOTALL)


def test_one_chart_per_signal_and_a_status_band(page: str) -> None:
    html = page
    charts = re.findall(r'<figure class="chart" id="chart-(\w+)" data-signal="\w+"><svg', html)
    assert charts == list(SIGNALS)
    assert html.count('<figure class="status-band"><svg') == 1
    assert html.count("<svg") == 5
    # each chart's SVG ids are salted apart so they do not clash in one page
    ids = re.findall(r'<clipPath id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) >= 5


def test_user_ids_and_all_data_are_escaped(page: str) -> None:
    html = page
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<i>title</i>" not in html and "&lt;i&gt;title&lt;/i&gt;" in html
    assert "</pre><b>" not in html  # config strings cannot break out of the <pre>


def test_page_is_self_contained(page: str) -> None:
    html = page
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "@import" not in html
    # outside the configuration text (which quotes a heartbeat URL) no URL at all
    rest = _without_config(html)
    assert "http://" not in rest and "https://" not in rest


def test_config_is_shown_with_secrets_redacted(page: str) -> None:
    html = page
    assert TOKEN not in html and "redispass" not in html
    assert "https://hb.example/api/heartbeat" in html
    assert "&quot;key_prefix&quot;: &quot;ss&quot;" in html
    assert redact({"a": {"token_file": "/x", "n": [1, "s://u:p@h"]}}) == {
        "a": {"token_file": "<redacted>", "n": [1, "s://<redacted>@h"]}
    }


def test_transition_table(page: str) -> None:
    ticks = make_ticks()
    transitions = transitions_from(ticks)
    assert [(t["from"], t["to"]) for t in transitions] == [
        (None, "learning"),
        ("learning", "ok"),
        ("ok", "warning"),
        ("warning", "ok"),
        ("ok", "critical"),
        ("critical", "ok"),
    ]
    assert transitions[4]["at"] == format_at(T0 + 120 * 60)
    assert transitions[4]["red"] == ["blocked_pct", "safety_pct"]
    rows = re.findall(r"<tr><td>([^<]+)</td>", page)
    assert rows == [t["at"] for t in transitions]
    custom = render_report(ticks[:3], config={}, title="t", transitions=[{"at": "X", "to": EVIL}])
    assert re.findall(r"<tr><td>([^<]+)</td>", custom) == ["X"]
    assert "<script" not in custom


def test_empty_timeline_still_renders() -> None:
    html = render_report([], config={}, title="nothing")
    assert "No ticks." in html and "<svg" not in html and "No status transitions." in html


def test_runs_of_flags() -> None:
    assert list(runs([])) == []
    assert list(runs([True, True, False, True, False, False, True])) == [(0, 1), (3, 3), (6, 6)]


def test_chromium_renders_a_non_blank_page(tmp_path: Path, page: str) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), (
        "Debian's chromium package is required (apt-get install chromium)"
    )
    html_file = tmp_path / "report.html"
    html_file.write_text(page, "utf-8")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            html_file.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    rgb = (pixels[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    assert len(np.unique(packed)) > 200  # text, lines, shading and badges, not a blank page
    assert (rgb.min(axis=1) < 200).mean() > 0.03  # a real share of non-white pixels
    # the status band's colours made it to the screen, so the SVG was drawn
    for hex_colour in ("2e9d4a", "d62728", "8c9bb0"):
        target = np.array([int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)])
        assert (np.abs(rgb.astype(int) - target).max(axis=1) <= 3).sum() > 500, hex_colour


def test_each_chart_says_where_its_baseline_came_from(page: str) -> None:
    captions = dict(
        re.findall(
            r'data-signal="(\w+)">.*?<figcaption class="baseline">(.*?)</figcaption>',
            page,
            re.DOTALL,
        )
    )
    assert set(captions) == set(SIGNALS)
    assert captions["blocked_pct"] == "static baseline 0.1, threshold 0.2"
    assert captions["safety_pct"] == "static baseline 99.5, threshold 99"


def test_learned_baselines_list_each_value_used() -> None:
    ticks = make_ticks(30)
    for i, t in enumerate(ticks):
        t["signals"]["spend_hour"]["baseline_source"] = "learning" if i < 20 else "learned"
        t["signals"]["spend_hour"]["baseline"] = 1.0 if i < 20 else 12.5
        t["signals"]["spend_hour"]["threshold"] = 2.0 if i < 20 else 25.0
    html = render_report(ticks, config={}, title="t")
    assert "learning baseline 1, threshold 2; learned baseline 12.5, threshold 25" in html
