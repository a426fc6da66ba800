"""Learning over weeks of event time, restarts, seasonality, and the baseline verb.

The long scenarios run the real Evaluator, rules and LearnedBaselines over a
synthetic store that answers window reads from per-minute counts: three weeks
of ticks through the full pipeline would take minutes, and the history and
baseline logic under test sees exactly what it would see live. The verb and
``replay --learn-from`` are tested end to end on simulated logs.
"""

from __future__ import annotations

import math
import random
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from pathlib import Path

import orjson
import pytest
from redis import asyncio as aioredis

from stream_sentinel.aggregate import Delta
from stream_sentinel.baseline_math import DAY_S, HOUR_S, BaselineTable, Learned
from stream_sentinel.baselines import LearnedBaselines, build_baselines
from stream_sentinel.cli.baseline import learn_from_logs, render_toml
from stream_sentinel.cli.main import main
from stream_sentinel.config import Config, load_config
from stream_sentinel.evaluate import Evaluator
from stream_sentinel.model import NANO, Tick, WindowCounts
from stream_sentinel.sim.simulate import Scenario, simulate, write_log
from stream_sentinel.sim.traffic import diurnal_factor
from stream_sentinel.store.base import ApplyResult, PartitionId
from stream_sentinel.store.build import open_storage
from stream_sentinel.store.history import History, MemoryHistory, RedisHistory
from stream_sentinel.wiring import build_rules, storage_settings

T0 = 1_790_035_200  # midnight UTC
COST_PER_RESPONSE = 0.00015  # USD: ~16 USD/h at the simulator's peak


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:  # normal approximation; exact enough for counts this size
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


@dataclass(frozen=True)
class Attack:
    kind: str  # injection | jailbreak | dos | cost
    start: int
    minutes: int

    @property
    def end(self) -> int:
        return self.start + 60 * self.minutes

    def active(self, ts: int) -> bool:
        return self.start <= ts < self.end


@dataclass
class Traffic:
    """Per-minute counts from ``start`` on; window reads in O(1) via prefix sums."""

    start: int
    minutes: int
    seed: int
    rps: float = 20.0
    shape: Callable[[float], float] = diurnal_factor
    attacks: Sequence[Attack] = ()
    cols: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        rows: dict[str, list[int]] = {
            k: [] for k in ("req", "blk", "rsp", "safe", "cost", "top", "dos")
        }
        for m in range(self.minutes):
            ts = self.start + 60 * m
            lam = self.rps * self.shape(ts) * 60
            req = poisson(rng, lam)
            blk = poisson(rng, req * 0.0005)
            top, dos, unsafe_extra, cost_extra = poisson(rng, req * 0.01), 0, 0, 0.0
            for a in self.attacks:
                if not a.active(ts):
                    continue
                if a.kind == "injection":
                    extra = poisson(rng, lam * 0.08)
                    req, blk = req + extra, blk + round(extra * 0.9)
                elif a.kind == "jailbreak":
                    extra = poisson(rng, lam * 0.05)
                    req, unsafe_extra = req + extra, unsafe_extra + round(extra * 0.8)
                elif a.kind == "dos":
                    dos = poisson(rng, 40 * 60)
                    req += dos
                elif a.kind == "cost":
                    cost_extra += poisson(rng, 1.5 * 60) * 0.5
            rsp = req - min(blk, req)
            unsafe = min(rsp, poisson(rng, rsp * 0.002) + unsafe_extra)
            cost = rsp * COST_PER_RESPONSE * max(0.5, rng.gauss(1.0, 0.1)) + cost_extra
            for key, value in zip(
                rows, (req, blk, rsp, rsp - unsafe, int(cost * NANO), top, dos), strict=True
            ):
                rows[key].append(value)
        self.cols = {k: [0, *accumulate(v)] for k, v in rows.items()}

    def _sum(self, key: str, start: int, end: int) -> int:
        lo = min(max(0, (start - self.start) // 60), self.minutes)
        hi = min(max(0, (end - self.start) // 60), self.minutes)
        col = self.cols[key]
        return col[hi] - col[lo]

    async def window(self, start: int, end: int) -> WindowCounts:
        s = self._sum
        return WindowCounts(
            requests=s("req", start, end),
            blocked=s("blk", start, end),
            responses=s("rsp", start, end),
            safe=s("safe", start, end),
            cost_nanousd=s("cost", start, end),
        )

    async def windows(self, spans: Sequence[tuple[int, int]]) -> list[WindowCounts]:
        return [await self.window(start, end) for start, end in spans]

    async def top_users(self, start: int, end: int, k: int) -> list[tuple[str, int]]:
        users = [
            ("u-heavy", self._sum("top", start, end)),
            ("u-runaway", self._sum("dos", start, end)),
        ]
        return sorted((u for u in users if u[1] > 0), key=lambda u: (-u[1], u[0]))[:k]

    # The rest of the Store protocol: this store is read-only.
    async def load_offset(self, part: PartitionId) -> int | None:
        return None

    async def load_offsets(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        return dict.fromkeys(parts)

    async def take_over(self, parts: Sequence[PartitionId]) -> dict[PartitionId, int | None]:
        return dict.fromkeys(parts)

    async def apply(
        self, part: PartitionId, expected_offset: int | None, next_offset: int, delta: Delta
    ) -> ApplyResult:
        raise AssertionError("the synthetic store is read-only")

    async def drop_all(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def learned_cfg(days: int, seasonality: str = "none") -> Config:
    return Config.model_validate({"learning": {"days": days, "seasonality": seasonality}})


async def run_ticks(
    traffic: Traffic, cfg: Config, history: History, first: int, count: int
) -> list[Tick]:
    provider = build_baselines(cfg, history)
    evaluator = Evaluator(traffic, build_rules(cfg), provider)
    return [await evaluator.evaluate(first + 60 * i) for i in range(count)]


# -- three weeks: one learned, two attacked -------------------------------------


def day(n: int, hour: int, minute: int = 0) -> int:
    """Tick time on day ``n`` (1-based) of the scenario."""
    return T0 + (n - 1) * DAY_S + hour * HOUR_S + minute * 60


ATTACKS = (
    Attack("injection", day(9, 10, 7), 20),
    Attack("jailbreak", day(10, 3, 7), 20),  # at the daily trough
    Attack("dos", day(12, 15, 7), 15),
    Attack("cost", day(15, 21, 7), 15),
    Attack("injection", day(17, 12, 7), 20),
    Attack("jailbreak", day(17, 12, 7), 17),  # together: critical
    Attack("dos", day(20, 2, 7), 15),
)
EXPECTED = {
    "injection": "blocked_pct",
    "jailbreak": "safety_pct",
    "dos": "top_user_rps",
    "cost": "spend_hour",
}


async def test_three_weeks_first_learned_then_attacks_found_without_false_critical() -> None:
    minutes = 21 * 1440
    traffic = Traffic(T0 - HOUR_S, minutes + 60, seed=21, attacks=ATTACKS)
    ticks = await run_ticks(traffic, learned_cfg(7), MemoryHistory(14 * DAY_S), T0, minutes)
    week1 = [t for t in ticks if t.at < day(8, 0)]
    assert {t.status for t in week1} == {"learning"}
    assert week1[0].reason == "day 1 of 7" and week1[-1].reason == "day 7 of 7"
    assert all(r.baseline_source == "learning" for t in week1 for r in t.signals.values())
    later = [t for t in ticks if t.at >= day(8, 0)]
    assert "learning" not in {t.status for t in later}
    assert all(r.baseline_source == "learned" for t in later for r in t.signals.values())

    # each attack turns its signal red within its window (plus the signal's window)
    for a in ATTACKS:
        name = EXPECTED[a.kind]
        during = [t for t in later if a.start < t.at <= a.end + 300]
        assert any(name in t.red for t in during), (a, name)
    # critical only while two attacks overlap, plus the hold after them
    combined = (day(17, 12, 7), day(17, 12, 7) + 20 * 60 + 300 + 3 * 60)
    critical = [t.at for t in later if t.status == "critical"]
    assert critical and all(combined[0] < at <= combined[1] for at in critical), critical

    def near_attack(at: int) -> bool:
        return any(a.start < at <= a.end + HOUR_S + 180 for a in ATTACKS)

    false_warnings = [t for t in later if t.status == "warning" and not near_attack(t.at)]
    episodes = sum(
        1
        for prev, t in zip([None, *false_warnings], false_warnings, strict=False)
        if prev is None or t.at - prev.at > 60
    )
    rate = len(false_warnings) / len(later)
    print(
        f"\nthree weeks: {len(later)} ticks after learning, {len(critical)} critical "
        f"(all in the combined attack); outside attacks {len(false_warnings)} warning ticks "
        f"({rate:.2%}) in {episodes} episodes"
    )
    # Single-signal warnings are the significance test's own false-alarm rate
    # (p < 0.001 per tick and signal); they never page. Critical never fires falsely.
    assert rate < 0.01


# -- restart in the middle of learning ------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def restartable(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[], History | None]]:
    """Makes the history each 'process' gets: None means the storage builder picks it."""
    if request.param == "memory":
        shared = MemoryHistory(14 * DAY_S)
        yield lambda: shared
        return
    yield lambda: None


async def test_restart_in_the_middle_of_learning_keeps_the_day_count(
    restartable: Callable[[], History | None], request: pytest.FixtureRequest
) -> None:
    traffic = Traffic(T0 - HOUR_S, 9 * 1440, seed=4)
    cfg = learned_cfg(7)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    processes = AsyncExitStack()

    async def process() -> LearnedBaselines:
        """A fresh process: new provider, and over Redis a new client and storage."""
        history = restartable()
        if history is None:
            settings = storage_settings(
                cfg, redis_url=request.getfixturevalue("redis_url"), prefix=prefix
            )
            storage = await processes.enter_async_context(open_storage(settings))
            built = build_baselines(cfg, storage.history)
            assert isinstance(built, LearnedBaselines)
            assert isinstance(built.history, RedisHistory)
            assert built.history.ticks_key.startswith(f"{prefix}:{{history}}")
            return built
        built = build_baselines(cfg, history)
        assert isinstance(built, LearnedBaselines)
        return built

    async def evaluate(provider: LearnedBaselines, ats: range) -> list[Tick]:
        evaluator = Evaluator(traffic, build_rules(cfg), provider)
        return [await evaluator.evaluate(at) for at in ats]

    try:
        # every 10 min for 2.5 days, then "crash"
        before = await evaluate(await process(), range(T0, T0 + 60 * HOUR_S, 600))
        assert before[0].reason == "day 1 of 7" and before[-1].reason == "day 3 of 7"
        learned_before = before[-1].signals["safety_pct"].baseline
        after = await evaluate(await process(), range(T0 + 61 * HOUR_S, T0 + 62 * HOUR_S, 600))
        assert after[0].status == "learning" and after[0].reason == "day 3 of 7"
        # the new process learned from the old one's history
        assert after[0].signals["safety_pct"].baseline == pytest.approx(learned_before, abs=0.05)
        assert after[0].signals["safety_pct"].baseline_source == "learning"
        done = await evaluate(await process(), range(day(8, 0), day(8, 0) + 600, 600))
        assert done[0].status != "learning" and done[0].reason is None
        assert done[0].signals["safety_pct"].baseline_source == "learned"
    finally:
        if restartable() is None:
            url = request.getfixturevalue("redis_url")
            async with open_storage(storage_settings(cfg, redis_url=url, prefix=prefix)) as storage:
                await storage.store.drop_all()  # the history's keys share the prefix
        await processes.aclose()


async def test_redis_wipe_restarts_learning_with_the_lost_history(redis_url: str) -> None:
    traffic = Traffic(T0 - HOUR_S, 2 * 1440, seed=7)
    cfg = learned_cfg(1)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        history = RedisHistory(client, prefix=prefix, keep_s=cfg.learning.history_days * DAY_S)
        evaluator = Evaluator(traffic, build_rules(cfg), build_baselines(cfg, history))
        for at in range(T0, T0 + 2 * HOUR_S, 60):
            await evaluator.evaluate(at)
        learned = await evaluator.evaluate(T0 + DAY_S)
        assert learned.status != "learning"
        assert learned.signals["safety_pct"].baseline_source == "learned"
        doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert doomed
        await client.delete(*doomed)  # Redis restarted without persistence
        # within the hour the cached medians still answer; the next hour notices
        wiped = await evaluator.evaluate(T0 + DAY_S + HOUR_S)
        assert wiped.status == "learning" and wiped.reason == "day 1 of 1"
        assert wiped.signals["safety_pct"].baseline_source == "learning"
        assert wiped.signals["safety_pct"].baseline == 100.0 - build_rules(cfg).floor("safety_pct")
    finally:
        doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if doomed:
            await client.delete(*doomed)
        await client.aclose()


# -- hour-of-day versus flat on a strongly diurnal load ---------------------------


def strong_diurnal(ts: float) -> float:
    """~11x between the 03:00 trough and the 15:00 peak (the simulator's is 2.6x)."""
    hour = (ts % 86400.0) / 3600.0
    return math.exp(1.2 * math.cos(2.0 * math.pi * (hour - 15.0) / 24.0))


async def test_hour_of_day_cuts_false_warnings_on_a_diurnal_load() -> None:
    days, learn = 7, 3
    traffic = Traffic(T0 - HOUR_S, days * 1440 + 60, seed=9, shape=strong_diurnal)
    counts: dict[str, dict[str, int]] = {}
    red_ticks: dict[str, dict[str, int]] = {}
    for seasonality in ("none", "hour_of_day"):
        cfg = learned_cfg(learn, seasonality)
        ticks = await run_ticks(traffic, cfg, MemoryHistory(14 * DAY_S), T0, days * 1440)
        judged = [t for t in ticks if t.at >= T0 + learn * DAY_S]
        counts[seasonality] = {
            s: sum(t.status == s for t in judged) for s in ("ok", "warning", "critical")
        }
        red_ticks[seasonality] = {
            name: sum(name in t.red for t in judged) for name in ("top_user_rps", "spend_hour")
        }
    total = sum(counts["none"].values())
    print(f"\nstrongly diurnal load, {total} ticks after {learn} days of learning, no attacks:")
    for s in ("none", "hour_of_day"):
        print(f"  seasonality={s:<12} {counts[s]}  red ticks: {red_ticks[s]}")
    flat_alerts = counts["none"]["warning"] + counts["none"]["critical"]
    seasonal_alerts = counts["hour_of_day"]["warning"] + counts["hour_of_day"]["critical"]
    assert flat_alerts > 10 * max(seasonal_alerts, 1)
    assert counts["hour_of_day"]["critical"] == 0


# -- the baseline verb and replay --learn-from, end to end ------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Scenario]:
    out = tmp_path_factory.mktemp("logs")
    normal, attacked = out / "normal.jsonl", out / "attacked.jsonl"
    events, _ = simulate(start=T0, duration_s=2 * HOUR_S, seed=5, base_rps=3)
    write_log(events, normal)
    attack = Scenario("injection_jailbreak", T0 + 2 * HOUR_S + 1207, 900)
    events, _ = simulate(
        start=T0 + 2 * HOUR_S, duration_s=HOUR_S, seed=6, base_rps=3, scenarios=[attack]
    )
    write_log(events, attacked)
    return normal, attacked, attack


def test_baseline_verb_prints_a_section_config_accepts(
    logs: tuple[Path, Path, Scenario], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    normal, _, _ = logs
    assert main(["baseline", str(normal), "--seasonality", "hour_of_day"]) == 0
    printed = capsys.readouterr().out
    target = tmp_path / "conf" / "baselines.toml"
    assert (
        main(["baseline", str(normal), "--seasonality", "hour_of_day", "--write", str(target)]) == 0
    )
    assert target.read_text() == printed
    cfg = load_config(target, {})
    b = cfg.baselines
    assert b.safety_pct is not None and 99.0 < b.safety_pct <= 100.0
    assert b.top_user_rps is not None and 0.0 < b.top_user_rps < 1.0
    assert b.spend_hour is not None and 0.0 < b.spend_hour < 5.0
    assert b.blocked_pct is not None and 0.0 <= b.blocked_pct < 0.5
    # per signal and hour: the baseline and the windows / events it rests on
    for name in ("blocked_pct", "safety_pct", "top_user_rps", "spend_hour"):
        assert f"# {name:<13} hour      baseline  scope   windows      events" in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith("#    ")]
    assert len(rows) == 4 * 24
    assert cfg.learned_signals() == ()


async def test_the_verb_leaves_out_the_logs_first_partial_windows(
    logs: tuple[Path, Path, Scenario],
) -> None:
    normal, _, _ = logs
    table, summary = await learn_from_logs([str(normal)], Config(), seasonality="none")
    spend = table.flat["spend_hour"]
    # the log's first minute may be partly filled, so it counts as warm-up:
    # the first 60 ticks' hour-long windows reach back into it
    assert spend.windows == table.ticks - 60 and spend.events is None
    blocked = table.flat["blocked_pct"]
    # non-overlapping 5-minute windows, the first five ticks left out
    assert blocked.windows == (table.ticks - 5) // 5
    assert blocked.events is not None and blocked.events <= summary.counted


def test_baseline_verb_fails_on_a_log_without_events(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    assert main(["baseline", str(empty)]) == 1


def test_replay_learn_from_uses_learned_baselines_and_finds_the_attack(
    logs: tuple[Path, Path, Scenario], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    normal, attacked, attack = logs
    cfg_file = tmp_path / "sentinel.toml"
    cfg_file.write_text("[baselines]\nspend_hour = 3.0\n")
    timeline = tmp_path / "timeline.jsonl"
    argv = [
        "replay",
        str(attacked),
        "--config",
        str(cfg_file),
        "--timeline",
        str(timeline),
        "--no-progress",
    ]
    assert main([*argv, "--learn-from", str(normal)]) == 0
    printed = capsys.readouterr().out
    # what each learned baseline rests on, per signal and hour, as the verb prints it
    assert "# blocked_pct   hour      baseline  scope   windows      events" in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith("#    ")]
    assert len(rows) == 4 * 24 and all(row[1] == f"{i % 24:02d}" for i, row in enumerate(rows))
    lines = [orjson.loads(line) for line in timeline.read_bytes().splitlines()]
    assert lines and all(line["status"] != "learning" for line in lines)
    for line in lines:
        sources = {n: s["baseline_source"] for n, s in line["signals"].items()}
        assert sources == {
            "blocked_pct": "learned",
            "safety_pct": "learned",
            "top_user_rps": "learned",
            "spend_hour": "static",
        }
    critical = [
        datetime.fromisoformat(line["at"]).timestamp()
        for line in lines
        if line["status"] == "critical"
    ]
    assert critical, "the combined attack was not found"
    # found within its window (plus the 5-minute signal windows and the hold)
    assert all(attack.start < at <= attack.end + 300 + 180 for at in critical), critical

    # without --learn-from the same replay is a fresh deployment: learning, no alerts
    assert main(argv) == 0
    fresh = [orjson.loads(line) for line in timeline.read_bytes().splitlines()]
    assert {line["status"] for line in fresh} == {"learning"}
    assert fresh[0]["reason"] == "day 1 of 7"


def test_render_toml_is_valid_for_awkward_values_and_missing_signals() -> None:
    table = BaselineTable(
        flat={
            "blocked_pct": Learned(0.0, 8, 8000, "all"),
            "safety_pct": Learned(99.99999, 8, 8000, "all"),
            "top_user_rps": Learned(1.23456789e-05, 40, None, "all"),
        },
        hourly={
            "blocked_pct": {0: Learned(0.0, 8, 8000, "hour")},
            "top_user_rps": {23: Learned(4.0, 40, None, "hour")},
        },
        ticks=40,
        first_at=T0,
        last_at=T0 + 39 * 60,
    )
    text = render_toml(table, seasonality="hour_of_day", sources=["/x/normal.jsonl"])
    parsed = tomllib.loads(text)
    assert parsed == {
        "baselines": {"blocked_pct": 0.0, "safety_pct": 99.99999, "top_user_rps": 1.23457e-05}
    }
    assert "# spend_hour: too little usable history (needs half an hour of ticks)" in text
    assert "0 means the floor" in text
    assert "blocked_pct = 0.0  # pooled over 8 windows, 8000 events" in text
    assert "top_user_rps = 1.23457e-05  # median of 40 ticks" in text
    rows = [line for line in text.splitlines() if line.startswith("#    ")]
    assert "   23           4.0  hour         40           -" in rows[2 * 24 + 23]
    assert "   22   1.23457e-05  all          40           -" in rows[2 * 24 + 22]
    assert rows[3 * 24].split() == ["#", "00", "floor"]
