"""matplotlib is the optional ``[report]`` extra: the service and a plain replay
never need it, and ``replay --report`` without it says how to install it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_LOG = ROOT / "examples" / "demo.jsonl.gz"
DEMO_CONFIG = ROOT / "examples" / "sentinel.toml"

# Runs the CLI in a fresh interpreter in which matplotlib cannot be imported,
# as in an install without the extra (the test venv has it).
WITHOUT_MATPLOTLIB = """
import sys

class NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoMatplotlib())
from stream_sentinel.cli.main import main
code = main(sys.argv[1:])
assert not any(m.startswith("matplotlib") for m in sys.modules), "matplotlib was imported"
sys.exit(code)
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_report_without_the_extra_exits_2_with_the_install_command(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    proc = _cli("replay", str(DEMO_LOG), "--config", str(DEMO_CONFIG), "--report", str(report))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --report needs the report extra (matplotlib): pip install 'stream-sentinel[report]'"
    ]
    assert proc.stdout == ""  # refused before replaying, not after a long backtest
    assert not report.exists()


def test_replay_without_a_report_needs_no_matplotlib(tmp_path: Path) -> None:
    timeline = tmp_path / "t.jsonl"
    proc = _cli("replay", str(DEMO_LOG), "--config", str(DEMO_CONFIG), "--timeline", str(timeline))
    assert proc.returncode == 0, proc.stderr
    assert "status transitions:" in proc.stdout
    assert timeline.read_bytes().count(b"\n") > 0


def test_the_service_installs_without_matplotlib() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(d.startswith("matplotlib") for d in project["dependencies"])
    assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["report"])
    # the image installs the package without extras, so without matplotlib
    installs = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line
    ]
    assert installs and all("[" not in line for line in installs), installs
    # and the venv of `make demo` / `make test` has it
    assert ".[dev,report]" in (ROOT / "Makefile").read_text()
