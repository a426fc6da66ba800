"""simulate: determinism, contract validity, normal-traffic bands, visible attacks."""

from __future__ import annotations

import gzip
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from stream_sentinel.decode import Decoder
from stream_sentinel.events import Rejection, ResponseEvent
from stream_sentinel.sim.simulate import (
    EXPECTED_SIGNALS,
    Scenario,
    default_suite,
    simulate,
    write_log,
)
from stream_sentinel.sim.traffic import (
    MODELS,
    ODD_USER_IDS,
    diurnal_factor,
    normal_users,
    price_table,
)
from stream_sentinel.sim.truth import AttackWindow, read_truth, write_truth

DAY0 = 1_793_059_200.0  # 2026-10-27T00:00:00Z
PEAK = DAY0 + 14.5 * 3600  # the hour around the daily peak (15:00 UTC)

Event = dict[str, Any]


def _events(**kw: Any) -> list[Event]:
    events, _ = simulate(**kw)
    return list(events)


def _is_safe(e: Event) -> bool:
    return bool(e["safe"]) if "safe" in e else float(e["safety_score"]) >= 0.5


def _stats(events: Iterable[Event]) -> dict[str, float]:
    req = blocked = resp = safe = 0
    cost = 0.0
    for e in events:
        if e["type"] == "request":
            req += 1
            blocked += e["blocked"]
        else:
            resp += 1
            safe += _is_safe(e)
            cost += e.get("cost_usd", 0.0)
    return {
        "requests": req,
        "blocked_pct": 100.0 * blocked / req,
        "safety_pct": 100.0 * safe / resp,
        "cost": cost,
    }


def _max_user_rps(events: Iterable[Event], start: float, end: float) -> float:
    """Max over 5-min windows ending on whole minutes (as the evaluator ticks)."""
    per_minute: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for e in events:
        if e["type"] == "request":
            per_minute[int(e["ts"] // 60)][e["user_id"]] += 1
    best = 0.0
    for minute in range(int(start // 60) + 5, int(end // 60) + 1):
        window: Counter[str] = Counter()
        for m in range(minute - 5, minute):
            window.update(per_minute.get(m, {}))
        if window:
            best = max(best, window.most_common(1)[0][1] / 300.0)
    return best


@pytest.fixture(scope="module")
def normal_hour() -> list[Event]:
    return _events(start=PEAK, duration_s=3600, seed=3)


# -- determinism --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path, suffix: str) -> None:
    scenarios = [Scenario("injection", PEAK + 60, 60), Scenario("cost", PEAK + 180, 60)]

    def write(seed: int, name: str) -> bytes:
        events, _ = simulate(
            start=PEAK, duration_s=300, seed=seed, scenarios=scenarios, base_rps=5, users=300
        )
        path = tmp_path / f"{name}{suffix}"
        assert write_log(events, path) > 1000
        return path.read_bytes()

    first, again, other = write(1, "a"), write(1, "b"), write(2, "c")
    assert first == again
    assert first != other


def test_no_use_of_the_global_random(tmp_path: Path) -> None:
    random.seed(1)
    a = _events(start=PEAK, duration_s=60, seed=9, base_rps=5)
    random.seed(2)
    b = _events(start=PEAK, duration_s=60, seed=9, base_rps=5)
    assert a == b


def test_write_log_gzip_round_trip(tmp_path: Path) -> None:
    events = _events(start=PEAK, duration_s=60, seed=4, base_rps=5)
    path = tmp_path / "log.jsonl.gz"
    assert write_log(iter(events), path) == len(events)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert [orjson.loads(line) for line in lines] == events


# -- contract -----------------------------------------------------------------


def _check_contract(e: Event) -> None:
    assert isinstance(e["event_id"], str) and 1 <= len(e["event_id"]) <= 128
    assert e["type"] in ("request", "response")
    assert isinstance(e["ts"], float) and math.isfinite(e["ts"])
    assert isinstance(e["user_id"], str) and 1 <= len(e["user_id"]) <= 256
    assert isinstance(e["model"], str)
    for key in ("prompt_tokens", "completion_tokens"):
        if key in e:
            assert isinstance(e[key], int) and e[key] >= 0
    if e["type"] == "request":
        assert isinstance(e["blocked"], bool)
        assert ("block_reason" in e) == e["blocked"]
        assert "safe" not in e and "cost_usd" not in e
    else:
        assert isinstance(e.get("safe"), bool) or 0.0 <= e["safety_score"] <= 1.0
        assert isinstance(e["request_id"], str)
        if "cost_usd" in e:
            assert isinstance(e["cost_usd"], float) and 0.0 <= e["cost_usd"] < 100.0


def test_events_follow_contract_v1_and_order() -> None:
    scenarios = [Scenario(kind, PEAK + 60 * i, 90) for i, kind in enumerate(EXPECTED_SIGNALS)]
    events = _events(start=PEAK, duration_s=480, seed=5, scenarios=scenarios, base_rps=10)
    requests: dict[str, Event] = {}
    ids: set[str] = set()
    last_ts = -math.inf
    for e in events:
        _check_contract(e)
        assert e["event_id"] not in ids
        ids.add(e["event_id"])
        assert e["ts"] >= last_ts, "events must come in ts order without jitter"
        last_ts = e["ts"]
        if e["type"] == "request":
            requests[e["event_id"]] = e
        else:
            # every response answers an earlier, unblocked request of the same user
            req = requests[e["request_id"]]
            assert not req["blocked"] and req["user_id"] == e["user_id"]
            assert 0 < e["ts"] - req["ts"] < 30
            assert e["prompt_tokens"] == req["prompt_tokens"] and e["model"] == req["model"]
    assert min(e["ts"] for e in events) >= PEAK and last_ts < PEAK + 480 + 30


def test_events_pass_the_published_schemas_and_the_decoder() -> None:
    schema_dir = Path(__file__).resolve().parents[2] / "schemas"
    validators = {
        kind: Draft202012Validator(
            orjson.loads((schema_dir / f"llm_{kind}.v1.json").read_bytes()),
            format_checker=FormatChecker(),
        )
        for kind in ("request", "response")
    }
    scenarios = [Scenario(kind, PEAK + 30 * i, 20) for i, kind in enumerate(EXPECTED_SIGNALS)]
    events = _events(start=PEAK, duration_s=240, seed=13, scenarios=scenarios, base_rps=5)
    decoder = Decoder()
    kinds: Counter[str] = Counter()
    for e in events:
        validators[e["type"]].validate(e)
        decoded = decoder.decode(orjson.dumps(e))
        assert not isinstance(decoded, Rejection), (e, decoded)
        assert decoded.ts == e["ts"] and decoded.user_id == e["user_id"]
        if isinstance(decoded, ResponseEvent):
            assert decoded.safe == _is_safe(e)
        kinds[type(decoded).__name__] += 1
    assert kinds["RequestEvent"] > 500 and kinds["ResponseEvent"] > 500


def test_jitter_reorders_within_bound_and_keeps_every_event() -> None:
    kw: dict[str, Any] = {"start": PEAK, "duration_s": 120, "seed": 6, "base_rps": 10}
    plain = _events(**kw)
    jittered = _events(**kw, jitter_s=3.0)
    assert sorted(jittered, key=lambda e: e["event_id"]) == sorted(
        plain, key=lambda e: e["event_id"]
    )
    assert jittered != plain  # some order changed
    newest = -math.inf
    for e in jittered:
        newest = max(newest, e["ts"])
        assert newest - e["ts"] <= 3.0


# -- normal traffic -----------------------------------------------------------


def test_normal_traffic_sits_inside_default_baselines(normal_hour: list[Event]) -> None:
    s = _stats(normal_hour)
    assert 0.02 <= s["blocked_pct"] <= 0.08  # baseline 0.1 %, red at 0.2 %
    assert 99.7 <= s["safety_pct"] <= 99.9  # baseline 99.5 %, red at 99.0 %
    assert 8.0 <= s["cost"] <= 20.0  # per hour; baseline 41.67 USD/h, red at 83.3
    top = _max_user_rps(normal_hour, PEAK, PEAK + 3600)
    assert 0.5 <= top <= 1.5  # baseline 5 rps, red at 10


def test_normal_traffic_shape(normal_hour: list[Event]) -> None:
    requests = [e for e in normal_hour if e["type"] == "request"]
    responses = [e for e in normal_hour if e["type"] == "response"]
    per_user = Counter(e["user_id"] for e in requests)
    ranked = [n for _, n in per_user.most_common()]
    top_tenth = sum(ranked[: len(ranked) // 10])
    assert top_tenth / len(requests) > 0.3  # heavy tail
    assert len(per_user) > 1000
    models = Counter(e["model"] for e in responses)
    assert {m.name for m in MODELS if m.share > 0} == set(models)
    assert models.most_common(1)[0][0] == "llama-3.1-8b-instruct"
    no_cost = sum("cost_usd" not in e for e in responses) / len(responses)
    assert 0.01 < no_cost < 0.06
    score_only = sum("safe" not in e for e in responses) / len(responses)
    assert 0.04 < score_only < 0.12
    prices = price_table()
    for e in responses[:2000]:
        if "cost_usd" in e:
            p = prices[e["model"]]
            expected = (
                e["prompt_tokens"] * p.prompt_per_1k + e["completion_tokens"] * p.completion_per_1k
            ) / 1000
            assert e["cost_usd"] == pytest.approx(expected, abs=1e-8)


def test_diurnal_curve_peak_to_trough() -> None:
    assert diurnal_factor(DAY0 + 15 * 3600) == pytest.approx(1.45)
    assert diurnal_factor(DAY0 + 3 * 3600) == pytest.approx(0.55)
    peak = _stats(_events(start=DAY0 + 15 * 3600 - 300, duration_s=600, seed=8))["requests"]
    trough = _stats(_events(start=DAY0 + 3 * 3600 - 300, duration_s=600, seed=8))["requests"]
    assert 2.0 <= peak / trough <= 3.0


def test_user_cap_holds_for_any_population() -> None:
    for count in (10, 200, 5000):
        pool = normal_users(random.Random(count), count, max_share=0.03)
        shares = [pool.share(u) for u in pool.ids]
        assert max(shares) <= 0.03 + 1e-9 or count * 0.03 < 1
        assert set(ODD_USER_IDS) <= set(pool.ids)
        assert sum(shares) == pytest.approx(1.0)


# -- attacks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def attacked() -> tuple[list[Event], list[AttackWindow]]:
    # five quiet minutes, then six 5-minute attacks 7 minutes apart
    scenarios = [
        Scenario(kind, PEAK + 300 + 420 * i, 300, name=f"{kind}-{i}")
        for i, kind in enumerate(EXPECTED_SIGNALS)
    ]
    events, windows = simulate(start=PEAK, duration_s=300 + 6 * 420, seed=12, scenarios=scenarios)
    return list(events), windows


def _between(events: list[Event], lo: float, hi: float) -> list[Event]:
    return [e for e in events if lo <= e["ts"] < hi]


def test_truth_windows_match_scenarios(attacked: tuple[list[Event], list[AttackWindow]]) -> None:
    _, windows = attacked
    assert [w.kind for w in windows] == list(EXPECTED_SIGNALS)
    for w in windows:
        assert w.end - w.start == 300
        assert w.expected_signals == EXPECTED_SIGNALS[w.kind]  # type: ignore[index]
    combined = next(w for w in windows if w.kind == "injection_jailbreak")
    assert combined.expected_status == "critical"
    assert set(combined.expected_signals) == {"blocked_pct", "safety_pct"}
    assert all(w.expected_status == "warning" for w in windows if w is not combined)


def test_each_attack_is_visible_in_raw_events(
    attacked: tuple[list[Event], list[AttackWindow]],
) -> None:
    events, windows = attacked
    quiet = _stats(_between(events, PEAK, PEAK + 300))
    for w in windows:
        during = _between(events, w.start, w.end)
        s = _stats(during)
        if w.kind in ("injection", "injection_jailbreak"):
            assert 5.0 <= s["blocked_pct"] <= 10.0, w.kind
        if w.kind == "jailbreak":
            assert 95.0 <= s["safety_pct"] <= 97.5
        if w.kind == "injection_jailbreak":
            # its jailbreak half stops 3 minutes before the end
            jailbreak = _stats(_between(events, w.start, w.end - 180))
            assert 95.0 <= jailbreak["safety_pct"] <= 97.5
        if w.kind == "subtle_injection":
            assert 0.2 <= s["blocked_pct"] <= 0.5
        if w.kind == "dos":
            assert 35.0 <= _max_user_rps(during, w.start, w.end) <= 45.0
        if w.kind == "cost":
            assert s["cost"] >= 5 * quiet["cost"]
        # and nothing else moves: one attack, its own signals
        if "jailbreak" not in w.kind:
            assert s["safety_pct"] > 99.5, w.kind
        if "injection" not in w.kind:
            assert s["blocked_pct"] < 0.2, w.kind


def test_attacks_outside_the_run_are_dropped_and_clipped() -> None:
    scenarios = [Scenario("dos", PEAK - 500, 100), Scenario("cost", PEAK + 50, 600)]
    _, windows = simulate(start=PEAK, duration_s=100, seed=1, scenarios=scenarios)
    assert [(w.kind, w.start, w.end) for w in windows] == [("cost", PEAK + 50, PEAK + 100)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        simulate(start=PEAK, duration_s=0, seed=1)
    with pytest.raises(ValueError):
        simulate(start=PEAK, duration_s=10, seed=1, base_rps=-1)


# -- default suite and truth file ---------------------------------------------


def test_default_suite_spreads_the_six_attacks() -> None:
    suite = default_suite(DAY0, days=2)
    assert sorted(s.kind for s in suite) == sorted(EXPECTED_SIGNALS)
    for a, b in itertools.pairwise(suite):
        # a quiet gap longer than the longest signal window plus hysteresis
        assert b.start - a.end > 3 * 3600
    assert suite[0].start > DAY0 and suite[-1].end < DAY0 + 2 * 86400
    assert all(s.start % 60 != 0 for s in suite)
    subtle = next(s for s in suite if s.kind == "subtle_injection")
    assert diurnal_factor(subtle.start) == max(diurnal_factor(s.start) for s in suite)
    assert 30 * 60 <= subtle.duration_s <= 60 * 60


def test_truth_file_round_trip(tmp_path: Path) -> None:
    _, windows = simulate(
        start=DAY0, duration_s=2 * 86400, seed=1, scenarios=default_suite(DAY0, days=2)
    )
    path = tmp_path / "truth.json"
    write_truth(windows, path, meta={"seed": 1})
    assert read_truth(path) == windows
    doc = orjson.loads(path.read_bytes())
    assert doc["seed"] == 1 and doc["attacks"][0]["start_at"].endswith("Z")


def test_truth_reader_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(
        b'{"version": 1, "attacks": [{"name": "x", "start": 1, "end": 2, '
        b'"expected_signals": ["nope"], "expected_status": "warning"}]}'
    )
    with pytest.raises(ValueError):
        read_truth(path)
    path.write_bytes(b'{"attacks": []}')
    with pytest.raises(ValueError):
        read_truth(path)
