#!/usr/bin/env python3
"""Mutation check of the pure core: mutmut, one module at a time, one worker.

    scripts/mutation.py                  every module, from a clean ./mutants
    scripts/mutation.py rules stats      only these modules
    scripts/mutation.py --survivors      re-test only the mutants that survived last time
    scripts/mutation.py --report         print the table from the last run, run nothing

mutmut reads ``[tool.mutmut]`` in pyproject.toml (the package, no servers).
Each module is one ``mutmut run "stream_sentinel.MODULE.*"`` in a process of
its own, with mutmut's config narrowed to that module and to the unit tests in
``UNIT_TESTS`` (those that import it): a mutant then costs seconds, not the
minutes of the scenario tests that also pass through the code. The table
counts a mutant as killed when a test failed or timed out on it; survivors
listed in the "Equivalent mutants" table of docs/testing.md are left out of
the score, each with its reason there. Exits 1 when a module scores below the
threshold. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# module -> the unit tests it is mutated against
UNIT_TESTS: dict[str, tuple[str, ...]] = {
    "rules": ("tests/test_rules.py",),
    "signal_math": ("tests/test_signal_math.py", "tests/test_rules.py"),
    "stats": ("tests/test_stats.py", "tests/test_signal_math.py"),
    "bucketing": ("tests/test_aggregate.py",),
    "timestamps": ("tests/test_timestamps.py", "tests/test_decode.py"),
    "baseline_math": ("tests/test_baseline_math.py", "tests/test_baselines.py"),
    "aggregate": ("tests/test_aggregate.py", "tests/test_ingest_batch.py"),
    "decode": ("tests/test_decode.py", "tests/test_decode_fast.py", "tests/test_decode_corpus.py"),
}
MODULES = tuple(UNIT_TESTS)
THRESHOLD = 95.0
DOCS = ROOT / "docs" / "testing.md"
MUTANTS = ROOT / "mutants"
MUTMUT = Path(sys.executable).parent / "mutmut"
KILLED_CODES = {1, 3}  # a test failed; pytest internal error
TIMEOUT_CODES = {24, -24, 36, 152, 255}  # the mutant hung: a test would not pass either
# | `stream_sentinel.rules.x_f__mutmut_3` | reason |
EQUIVALENT_ROW = re.compile(r"^\|\s*`(stream_sentinel\.[^`\s]+__mutmut_\d+)`\s*\|")


@dataclass
class ModuleResult:
    module: str
    killed: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def mutants(self) -> int:
        return self.killed + self.equivalent + len(self.survivors) + self.unchecked

    @property
    def score(self) -> float:
        counted = self.mutants - self.equivalent
        return 100.0 if counted == 0 else 100.0 * self.killed / counted


def equivalent_mutants() -> set[str]:
    if not DOCS.exists():
        return set()
    names = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = EQUIVALENT_ROW.match(line)
        if match:
            names.add(match.group(1))
    return names


def read_results(module: str, equivalents: set[str]) -> ModuleResult | None:
    meta = MUTANTS / "stream_sentinel" / f"{module}.py.meta"
    if not meta.exists():
        return None
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    result = ModuleResult(module)
    for name, code in sorted(codes.items(), key=lambda item: _natural(item[0])):
        if code is None:
            result.unchecked += 1
        elif code in KILLED_CODES or code in TIMEOUT_CODES:
            result.killed += 1
        elif name in equivalents:
            result.equivalent += 1
        else:
            result.survivors.append(name)
    return result


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def run_module(module: str, only_survivors: bool, equivalents: set[str]) -> int:
    names: list[str] = []  # all of the module's mutants that have no result
    if only_survivors:
        previous = read_results(module, equivalents)
        if previous is None or not previous.survivors:
            return 0
        names = previous.survivors
    log = MUTANTS / f"{module}.log"
    MUTANTS.mkdir(exist_ok=True)
    # mutmut reuses a mutated copy whose mtime is newer than the source, but a
    # run for another module overwrote it with the plain source; and its
    # test-to-function map must come from this module's (maybe edited) tests
    (MUTANTS / "stream_sentinel" / f"{module}.py").unlink(missing_ok=True)
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    print(f"== {module}: mutmut run (log: {log.relative_to(ROOT)})", flush=True)
    with log.open("w") as out:
        done = subprocess.run(  # noqa: S603 (our own interpreter and script)
            [sys.executable, __file__, "--mutmut-run", module, *names],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        print(f"mutmut failed on {module} (exit {done.returncode}); see {log}", file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-20:]), file=sys.stderr)
    return done.returncode


def mutmut_run(module: str, names: list[str]) -> int:
    """In this process: mutmut's run with its config narrowed to ``module``."""
    from mutmut.configuration import config  # the dev extra; imported only here

    narrowed = config()
    narrowed.only_mutate = [f"stream_sentinel/{module}.py"]
    narrowed.pytest_add_cli_args_test_selection = list(UNIT_TESTS[module])
    from mutmut.__main__ import cli
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cli.main(["run", "--max-children", "1", *names], standalone_mode=False)
    # the mutated copy is overwritten by the next module's run: keep the diffs
    # of what survived now, for the report
    result = read_results(module, equivalent_mutants())
    path = f"stream_sentinel/{module}.py"
    survivors = result.survivors if result is not None else []
    diffs = {name: get_diff_for_mutant(name, path=path) for name in survivors}
    (MUTANTS / f"{module}.diffs.json").write_text(json.dumps(diffs, indent=1))
    return 0


def _saved_diffs(module: str) -> dict[str, str]:
    saved = MUTANTS / f"{module}.diffs.json"
    diffs: dict[str, str] = json.loads(saved.read_text()) if saved.exists() else {}
    return diffs


def print_report(modules: list[str], equivalents: set[str]) -> bool:
    results = [r for m in modules if (r := read_results(m, equivalents)) is not None]
    print()
    print("| module | mutants | killed | equivalent | survived | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.module} | {r.mutants} | {r.killed} | {r.equivalent} | "
            f"{len(r.survivors) + r.unchecked} | {r.score:.1f} % |"
        )
    for r in results:
        if r.survivors:
            print(f"\nsurvivors in {r.module}:")
            diffs = _saved_diffs(r.module)
            for name in r.survivors:
                print(f"  {name}")
                for line in diffs.get(name, "").splitlines():
                    if line[:1] in "-+" and line[:3] not in ("---", "+++"):
                        print(f"      {line.strip()}")
        if r.unchecked:
            print(f"\n{r.module}: {r.unchecked} mutants not checked (interrupted run?)")
    absent = [m for m in modules if m not in {r.module for r in results}]
    if absent:
        print(f"\nno results for: {', '.join(absent)}")
    return bool(results) and not absent and all(r.score >= THRESHOLD for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--survivors", action="store_true", help="re-test last run's survivors")
    parser.add_argument("--report", action="store_true", help="print the last results only")
    parser.add_argument("--mutmut-run", metavar="MODULE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mutmut_run:
        return mutmut_run(args.mutmut_run, args.modules)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        print(f"unknown module(s): {', '.join(unknown)}; choose from {', '.join(MODULES)}")
        return 2
    modules = list(args.modules) or list(MODULES)
    equivalents = equivalent_mutants()
    if not args.report:
        if not MUTMUT.exists():
            print(f"{MUTMUT} not found: run `make venv` (mutmut is in the dev extra)")
            return 2
        if not args.survivors:
            for module in modules:  # a full run forgets the module's last results
                (MUTANTS / "stream_sentinel" / f"{module}.py.meta").unlink(missing_ok=True)
        for module in modules:
            if run_module(module, args.survivors, equivalents) != 0:
                return 2
    ok = print_report(modules, equivalents)
    print(f"\n{'PASS' if ok else 'FAIL'}: threshold {THRESHOLD:.0f} % killed per module")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
