"""Every CLI error is one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_sentinel.cli import exits
from stream_sentinel.cli.args import build_parser
from stream_sentinel.cli.main import main
from stream_sentinel.version import package_version

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_sentinel", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        cwd=ROOT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("log") / "small.jsonl"
    assert (
        main(["simulate", "--out", str(out), "--hours", "0.5", "--rps", "5", "--no-attacks"]) == 0
    )
    return out


def test_version_names_the_package_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"stream-sentinel {package_version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", package_version())


def test_bad_log_level_is_one_line() -> None:
    result = cli("--log-level", "LOUD", "score", "--truth", "x", "--timeline", "y")
    assert result.returncode == exits.EXIT_CONFIG
    assert "--log-level 'LOUD'" in one_line_error(result)


def test_log_level_from_environment_is_validated_as_config(small_log: Path) -> None:
    result = cli("replay", str(small_log), "--no-progress", env={"SENTINEL_LOG_LEVEL": "chatty"})
    assert result.returncode == exits.EXIT_CONFIG
    assert one_line_error(result).startswith("config error: log.level: ")


def test_log_level_and_json_format_from_environment(small_log: Path) -> None:
    env = {"SENTINEL_LOG_LEVEL": "debug", "SENTINEL_LOG_FORMAT": "json"}
    result = cli("replay", str(small_log), "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, "DEBUG logs something during a replay (asyncio selects its loop)"
    assert any(r["level"] == "DEBUG" for r in records)
    for r in records:
        assert set(r) >= {"time", "level", "logger", "message"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["time"])


def test_log_level_option_wins_over_config(small_log: Path) -> None:
    env = {"SENTINEL_LOG_LEVEL": "DEBUG"}
    result = cli("--log-level", "error", "replay", str(small_log), "--no-progress", env=env)
    assert result.returncode == 0
    assert result.stderr == ""


def test_old_log_level_variable_is_not_read(small_log: Path) -> None:
    env = {"STREAM_SENTINEL_LOG_LEVEL": "DEBUG"}
    result = cli("replay", str(small_log), "--no-progress", env=env)
    assert result.returncode == 0
    assert "DEBUG" not in result.stderr


@pytest.mark.parametrize("which", ["truth", "timeline"])
def test_score_with_a_missing_file(tmp_path: Path, which: str) -> None:
    truth = ROOT / "examples" / "demo.truth.json"
    timeline = tmp_path / "timeline.jsonl"
    timeline.write_text('{"at": "2026-11-02T10:05:00Z", "status": "ok", "red": []}\n')
    paths = {"truth": str(truth), "timeline": str(timeline)}
    paths[which] = str(tmp_path / "absent.json")
    result = cli("score", "--truth", paths["truth"], "--timeline", paths["timeline"])
    assert result.returncode == exits.EXIT_INPUT
    line = one_line_error(result)
    assert line.startswith(f"error: --{which} ") and "No such file or directory" in line


@pytest.mark.parametrize(
    ("which", "content", "says"),
    [
        ("truth", "{not json", "not JSON"),
        ("truth", '{"version": 1, "attacks": [{"name": "x"}]}', "missing key"),
        ("truth", "[]", "truth file"),
        ("timeline", "{not json\n", "line 1 is not JSON"),
        ("timeline", '{"status": "ok"}\n', "line 1 is not a timeline line"),
        ("timeline", '{"at": "yesterday"}\n', "is not a time"),
    ],
)
def test_score_with_a_malformed_file(tmp_path: Path, which: str, content: str, says: str) -> None:
    good_timeline = tmp_path / "good.jsonl"
    good_timeline.write_text('{"at": "2026-11-02T10:05:00Z", "status": "ok", "red": []}\n')
    bad = tmp_path / "bad"
    bad.write_text(content)
    truth = str(bad) if which == "truth" else str(ROOT / "examples" / "demo.truth.json")
    timeline = str(bad) if which == "timeline" else str(good_timeline)
    result = cli("score", "--truth", truth, "--timeline", timeline)
    assert result.returncode == exits.EXIT_INPUT
    line = one_line_error(result)
    assert line.startswith(f"error: --{which} {bad}: ") and says in line


@pytest.mark.parametrize("option", ["--timeline", "--dead-letters", "--report"])
def test_unwritable_output_is_one_line(tmp_path: Path, small_log: Path, option: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.jsonl"  # a directory that is a file: unwritable even for root
    result = cli("replay", str(small_log), "--no-progress", option, str(target))
    assert result.returncode == exits.EXIT_INPUT
    line = one_line_error(result)
    assert line.startswith(f"error: {option}: cannot write {target}: ")
    assert line.endswith(("File exists", "Not a directory"))


def test_replay_into_a_closed_pipe(small_log: Path) -> None:
    # `true` exits at once, long before replay prints: every write meets a closed pipe.
    command = (
        f"{sys.executable} -m stream_sentinel replay {small_log} --no-progress | true; "
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stderr.strip() == f"status={exits.EXIT_BROKEN_PIPE}"


def test_replay_into_head(small_log: Path) -> None:
    command = f"{sys.executable} -m stream_sentinel replay {small_log} --no-progress | head -1"
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stdout.startswith("events read: ")
    assert result.stderr == ""


def test_kubernetes_service_variables_do_not_stop_a_verb(small_log: Path) -> None:
    env = {
        "SENTINEL_SERVICE_HOST": "10.96.0.12",
        "SENTINEL_SERVICE_PORT": "9464",
        "SENTINEL_PORT": "tcp://10.96.0.12:9464",
        "SENTINEL_PORT_9464_TCP_ADDR": "10.96.0.12",
    }
    assert cli("replay", str(small_log), "--no-progress", env=env).returncode == 0
    typo = cli("replay", str(small_log), env={**env, "SENTINEL_HTTP_PORTS": "1"})
    assert typo.returncode == exits.EXIT_CONFIG
    assert one_line_error(typo).startswith("config error: SENTINEL_HTTP_PORTS: unknown setting")


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_option_has_help_text() -> None:
    parsers = _parsers(build_parser("test"))
    assert {"stream-sentinel topics create", "stream-sentinel replay"} <= {p for p, _ in parsers}
    for prog, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{prog} {'/'.join(action.option_strings) or action.dest}"


def test_readme_lists_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    codes = {v for k, v in vars(exits).items() if k.startswith("EXIT_")}
    listed = {int(c) for c in re.findall(r"^\| `?(\d+)`? \|", section, re.M)}
    assert listed == codes


@pytest.mark.parametrize(
    "argv",
    [
        ("topics", "create"),
        ("simulate", "--out", "kafka:", "--hours", "0.01"),
        ("produce", "examples/demo.jsonl.gz"),
    ],
)
def test_an_unreachable_broker_is_one_line(argv: tuple[str, ...]) -> None:
    # port 1: nothing listens there, so the connection is refused at once
    result = cli(*argv, env={"SENTINEL_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == exits.EXIT_UNAVAILABLE
    assert (
        one_line_error(result) == "error: Kafka at 127.0.0.1:1 unreachable (KafkaConnectionError)"
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--partitions", "0"), ("--replication-factor", "0"), ("--retention-hours", "1")],
)
def test_topics_create_flags_are_checked_before_connecting(flag: str, value: str) -> None:
    result = cli(
        "topics", "create", flag, value, env={"SENTINEL_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert result.returncode == exits.EXIT_CONFIG
    assert one_line_error(result).startswith(f"error: {flag}: ")
