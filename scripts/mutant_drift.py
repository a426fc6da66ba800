#!/usr/bin/env python3
"""How far a stats mutant moves the p-values: evidence for docs/testing.md.

    .venv/bin/python scripts/mutant_drift.py stream_sentinel.stats.x__bd0__mutmut_5 ...

Builds mutmut's mutated copy of stream_sentinel/stats.py in memory, switches
each named mutant on and prints the largest relative change of ``binom_sf``
and ``poisson_sf`` over a grid (n up to 1e7, p from 1e-9 to 0.999, k across
the tail; lam up to 1e7) and the time the grid took.
"""

from __future__ import annotations

import math
import os
import sys
import time
import types
from pathlib import Path

from mutmut.mutation.file_mutation import mutate_file_contents

SOURCE = Path(__file__).resolve().parent.parent / "stream_sentinel" / "stats.py"
Case = tuple[str, int, float, float]


def grid() -> list[Case]:
    cases: list[Case] = []
    for n in (1, 2, 7, 15, 16, 30, 36, 50, 81, 100, 250, 501, 1000, 10_000, 10**6, 10**7):
        for p in (1e-9, 1e-4, 1e-3, 0.01, 0.2, 0.5, 0.9, 0.999):
            mean, sd = n * p, math.sqrt(n * p * (1 - p)) + 1
            spots = (1, 2, n - 1, n, mean, mean + 1, mean + sd, mean + 3 * sd, mean - 2 * sd)
            ks = {int(k) for k in (*spots, mean + 10 * sd)}
            cases += [("binom", k, n, p) for k in ks if 0 < k <= n]
    for lam in (1e-6, 0.3, 1.0, 15.0, 35.5, 80.0, 150.0, 1e4, 1e7):
        sd = math.sqrt(lam) + 1
        ks = {1, 2, int(lam), int(lam) + 1, int(lam + sd), int(lam + 3 * sd), int(lam + 10 * sd)}
        cases += [("poisson", k, lam, 0.0) for k in ks | {max(1, int(lam - 2 * sd))}]
    return cases


def main() -> int:
    module = types.ModuleType("stream_sentinel.stats")
    code = mutate_file_contents(str(SOURCE), SOURCE.read_text(), None, None).code
    exec(compile(code, str(SOURCE), "exec"), module.__dict__)  # noqa: S102 (our own source)
    cases = grid()

    def values() -> list[float]:
        return [
            module.binom_sf(k, int(a), p) if kind == "binom" else module.poisson_sf(k, a)
            for kind, k, a, p in cases
        ]

    os.environ["MUTANT_UNDER_TEST"] = ""
    base = values()
    for name in sys.argv[1:]:
        os.environ["MUTANT_UNDER_TEST"] = name
        started = time.perf_counter()
        got = values()
        worst = max(abs(x - y) / max(abs(x), 1e-300) for x, y in zip(base, got, strict=True))
        print(f"{name}: max relative change {worst:.1e} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
