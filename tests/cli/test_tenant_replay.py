"""simulate -> replay -> score with tenants, through the real pipeline: an attack aimed
at one tenant is found in that tenant's timeline entries and nowhere else."""

from __future__ import annotations

from pathlib import Path

from stream_sentinel.cli.main import main
from stream_sentinel.sim.score import read_timeline, score
from stream_sentinel.sim.simulate import Scenario, simulate, write_log
from stream_sentinel.sim.truth import read_truth, write_truth

DAY0 = 1_793_404_800.0  # a midnight (UTC)
CONFIG = """[alerting]
tick_seconds = 60
lateness_seconds = 30

[learning]
days = 1
seasonality = "none"

[tenants]
enabled = true
top_k = 8
"""


def test_an_aimed_attack_is_found_in_its_tenant_only(tmp_path: Path) -> None:
    attack_at = DAY0 + 86400 + 3600 + 7  # day 2, 01:00:07, after a day of learning
    # small volume keeps the test quick; the intensity makes the attack plain at it
    scenario = Scenario("cost", attack_at, 600, tenant="team-05", intensity=20.0)
    events, windows = simulate(
        start=DAY0,
        duration_s=86400 + 3 * 3600,
        seed=21,
        base_rps=3,
        tenants=8,
        scenarios=[scenario],
    )
    log, truth, timeline = (tmp_path / n for n in ("t.jsonl.gz", "t.truth.json", "tl.jsonl"))
    write_log(events, log)
    write_truth(windows, truth)
    config = tmp_path / "sentinel.toml"
    config.write_text(CONFIG)
    argv = ["replay", str(log), "--config", str(config), "--timeline", str(timeline)]
    assert main([*argv, "--no-progress"]) == 0
    lines = list(read_timeline(timeline))
    day2 = [line for line in lines if line["at"] >= "2026-11-01T00:00:00Z"]
    assert all(len(line.get("tenants", {})) <= 8 for line in lines)
    assert any("team-05" in line.get("tenants", {}) for line in day2)
    report = score(read_truth(truth), day2)
    assert report.tenants is not None
    (found,) = report.tenants.attacks
    assert found.window.tenant == "team-05"
    assert found.delay_s is not None and found.delay_s <= 173, found
    assert report.tenants.false_critical == 0, report.tenants.false_alarms
    # the red is the tenant's: no other tenant is ever red on spend
    others = {
        name
        for line in day2
        for name, entry in line.get("tenants", {}).items()
        if name != "team-05" and "spend_hour" in entry["red"]
    }
    assert not others
