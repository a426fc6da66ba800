"""simulate --tenants and --attack KIND:TENANT@..., and score --json with tenants, end to end
through the command line: the files they write, and one-line errors with exit code 2."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from stream_sentinel.cli import exits
from stream_sentinel.cli.simulate import AttackSpecError, parse_attack
from stream_sentinel.model import format_at
from stream_sentinel.sim.simulate import simulation_tenants
from stream_sentinel.sim.truth import read_truth

ROOT = Path(__file__).resolve().parents[2]
START = 1_793_404_800.0


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_sentinel", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_a_tenant_run_writes_tenants_and_an_aimed_truth(tmp_path: Path) -> None:
    log, truth = tmp_path / "t.jsonl.gz", tmp_path / "t.truth.json"
    result = cli(
        "simulate", "--hours", "0.25", "--rps", "5", "--tenants", "12", "--seed", "3",
        "--attack", "cost:team-06@5+5", "--attack", "injection@2+3",
        "--out", str(log), "--truth", str(truth),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cost:team-06" in result.stdout and "of team-06" in result.stdout
    events = [orjson.loads(line) for line in gzip.decompress(log.read_bytes()).splitlines()]
    tenants = Counter(e["tenant"] for e in events)
    assert set(tenants) <= {f"team-{i:02d}" for i in range(1, 13)}
    assert tenants.most_common(1)[0][0] == "team-01"
    attack = [e for e in events if e.get("model") == "o1"]
    assert attack and {e["tenant"] for e in attack} == {"team-06"}
    plan = simulation_tenants(seed=3, base_rps=5, tenants=12)
    assert {e["user_id"] for e in attack} <= set(plan.members["team-06"])
    windows = read_truth(truth)
    assert [(w.kind, w.tenant) for w in windows] == [("cost", "team-06"), ("injection", None)]
    assert orjson.loads(truth.read_bytes())["tenants"] == 12


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--tenants", "20", "--attack", "injection:team-21@1+5"), "unknown tenant 'team-21'"),
        (("--attack", "injection:team-01@1+5"), "no tenants are simulated"),
        (("--tenants", "20", "--attack", "dos:team-01@1+5"), "dos cannot be aimed"),
        (("--attack", "jailbreak@1"), "no +MINUTES"),
        (("--attack", "jailbreak@1+0"), "positive"),
        (("--attack", "worm@1+2"), "unknown attack kind 'worm'"),
        (("--tenants", "-1"), "--tenants must be within 0..1000"),
        (("--tenants", "1001"), "--tenants must be within 0..1000"),
    ],
)
def test_bad_tenant_options_are_one_line_and_exit_2(
    tmp_path: Path, argv: tuple[str, ...], says: str
) -> None:
    out = tmp_path / "never.jsonl"
    result = cli("simulate", "--hours", "0.1", "--out", str(out), *argv)
    assert result.returncode == exits.EXIT_CONFIG
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not out.exists()


def test_parse_attack_forms() -> None:
    plan = simulation_tenants(seed=1, tenants=8)
    plain = parse_attack("injection_jailbreak@120+20", START)
    assert (plain.kind, plain.tenant, plain.start, plain.duration_s) == (
        "injection_jailbreak", None, START + 7200, 1200,
    )  # fmt: skip
    aimed = parse_attack("cost:team-08@1530+10", START, plan)
    assert (aimed.kind, aimed.tenant, aimed.label) == ("cost", "team-08", "cost:team-08")
    with pytest.raises(AttackSpecError, match="unknown tenant 'team-09'"):
        parse_attack("cost:team-09@1530+10", START, plan)


def test_score_json_grades_tenants(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_bytes(
        orjson.dumps(
            {
                "version": 1,
                "attacks": [
                    {
                        "name": "inj", "start": START + 7, "end": START + 607,
                        "expected_signals": ["blocked_pct"], "expected_status": "warning",
                        "tenant": "team-05",
                    }
                ],
            }
        )
    )  # fmt: skip
    timeline = tmp_path / "timeline.jsonl"
    lines = []
    for minute in range(0, 40):
        t5 = {"status": "warning" if 3 <= minute <= 12 else "ok", "red": ["blocked_pct"]}
        t1 = {"status": "critical" if minute == 30 else "ok", "red": []}
        lines.append(
            {
                "at": format_at(int(START) + 60 * minute),
                "status": "ok",
                "red": [],
                "tenants": {"team-05": t5, "team-01": t1},
            }
        )
    timeline.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    result = cli("score", "--truth", str(truth), "--timeline", str(timeline), "--json")
    assert result.returncode == 0, result.stderr
    doc = orjson.loads(result.stdout)
    assert doc["attacks"] == [] and doc["false_critical"] == 0
    tenants = doc["tenants"]
    assert tenants["attacks"][0]["delay_s"] == 173
    assert tenants["false_critical"] == 1
    assert tenants["false_alarms"] == [{"at": format_at(int(START) + 1800), "tenant": "team-01"}]
    table = cli("score", "--truth", str(truth), "--timeline", str(timeline))
    assert "| inj | team-05 |" in table.stdout and "False critical tenant ticks: 1" in table.stdout
