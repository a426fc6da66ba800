"""Building blocks of synthetic LLM traffic: models, prices, users, daily rhythm.

Everything draws from a ``random.Random`` passed in, never the global one, so
a seed reproduces a log byte for byte. Numbers are tuned so that normal traffic
at the default ``base_rps`` sits well inside DESIGN.md's default static
baselines (blocked ~0.05 %, unsafe ~0.2 %, top user ~1 rps, ~16 USD/h at peak).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..contract import ModelPrice

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    share: float  # of normal traffic
    prompt_per_1k: float  # USD
    completion_per_1k: float
    prompt_median: float  # tokens; lognormal
    completion_median: float
    sigma: float = 0.8


# A cheap-model-heavy mix, as most production chat traffic is; "o1" is only
# used by the cost attack (long prompts, long reasoning completions).
MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("llama-3.1-8b-instruct", 0.55, 0.00005, 0.00008, 300, 120),
    ModelProfile("gpt-4o-mini", 0.395, 0.00015, 0.0006, 300, 120),
    ModelProfile("claude-3-5-haiku", 0.04, 0.0008, 0.004, 300, 120),
    ModelProfile("gpt-4o", 0.015, 0.0025, 0.01, 300, 120),
    ModelProfile("o1", 0.0, 0.015, 0.06, 12000, 6000, sigma=0.3),
)
EXPENSIVE_MODEL = "o1"

# Hostile-looking but legal user ids (contract: any characters), mixed into the
# normal population so every consumer of user ids gets exercised.
ODD_USER_IDS: tuple[str, ...] = (
    "alice@example.com",
    "o'brien",
    "用户-7",
    "<svg/onload=alert(1)>",
    "{tag}key",
    "a b\tc",
)

NORMAL_BLOCK_REASONS: tuple[tuple[str, float], ...] = (
    ("prompt_injection", 0.4),
    ("pii", 0.3),
    ("policy", 0.2),
    ("jailbreak_pattern", 0.1),
)


def price_table() -> dict[str, ModelPrice]:
    """The simulator's prices, for configs that price responses without ``cost_usd``."""
    return {m.name: ModelPrice(m.prompt_per_1k, m.completion_per_1k) for m in MODELS}


def model_profile(name: str) -> ModelProfile:
    for m in MODELS:
        if m.name == name:
            return m
    raise KeyError(name)


def diurnal_factor(ts: float) -> float:
    """Traffic relative to the daily mean: peak 1.45 at 15:00 UTC, trough 0.55 at 03:00."""
    hour = (ts % 86400.0) / 3600.0
    return 1.0 + 0.45 * math.cos(2.0 * math.pi * (hour - 15.0) / 24.0)


PEAK_FACTOR = 1.45


class UserPool:
    """Weighted user ids; picking is O(log n) by bisection on cumulative weights."""

    def __init__(self, ids: Sequence[str], weights: Sequence[float]) -> None:
        if len(ids) != len(weights) or not ids:
            raise ValueError("ids and weights must be non-empty and of equal length")
        self.ids: tuple[str, ...] = tuple(ids)
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]

    def pick(self, rng: random.Random) -> str:
        i = bisect.bisect_right(self._cum, rng.random() * self._total)
        return self.ids[min(i, len(self.ids) - 1)]

    def share(self, user_id: str) -> float:
        i = self.ids.index(user_id)
        prev = self._cum[i - 1] if i else 0.0
        return (self._cum[i] - prev) / self._total

    def shares(self) -> tuple[float, ...]:
        """Each id's share, in ``ids`` order."""
        prev = [0.0, *self._cum[:-1]]
        return tuple((c - p) / self._total for c, p in zip(self._cum, prev, strict=True))

    @classmethod
    def uniform(cls, ids: Sequence[str]) -> UserPool:
        return cls(ids, [1.0] * len(ids))


def normal_users(rng: random.Random, count: int, *, max_share: float) -> UserPool:
    """Zipf-like heavy tail, capped so the biggest user stays a plausible client.

    Without the cap a Zipf head takes ~8 % of all traffic (~2.4 rps at peak),
    which is what a runaway client looks like; the cap keeps normal users normal.
    """
    count = max(count, len(ODD_USER_IDS) + 1)
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(count)]
    for _ in range(20):  # water-filling converges in a few rounds
        limit = max_share * sum(weights)
        if max(weights) <= limit * (1 + 1e-9):
            break
        weights = [min(w, limit) for w in weights]
    ids = [f"u{i:05d}" for i in range(count - len(ODD_USER_IDS))]
    ids.extend(ODD_USER_IDS)
    rng.shuffle(ids)
    return UserPool(ids, weights)


def pick_model(rng: random.Random) -> ModelProfile:
    r = rng.random()
    acc = 0.0
    for m in MODELS:
        acc += m.share
        if r < acc:
            return m
    return MODELS[0]


def pick_reason(rng: random.Random) -> str:
    r = rng.random()
    acc = 0.0
    for reason, p in NORMAL_BLOCK_REASONS:
        acc += p
        if r < acc:
            return reason
    return NORMAL_BLOCK_REASONS[0][0]


def tokens(rng: random.Random, median: float, sigma: float) -> int:
    return max(1, round(rng.lognormvariate(math.log(median), sigma)))


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """One stream of requests (and their responses) with fixed behaviour.

    ``rate(ts)`` is requests per second; ``p_blocked`` / ``p_unsafe`` are
    per request / per response; ``model`` pins the model (else the normal mix).
    """

    tag: str  # event id prefix, unique per stream
    start: float
    end: float
    rate: Callable[[float], float]
    users: UserPool
    p_blocked: float
    p_unsafe: float
    block_reason: str | None = None  # None: the normal mix of reasons
    model: str | None = None
    p_no_cost: float = 0.03  # responses left for the price table to cost
    p_score_only: float = 0.08  # responses carrying safety_score instead of safe
    # user id -> tenant for every id in ``users``; None: events carry no tenant
    tenant_of: Mapping[str, str] | None = None


def _arrivals(rng: random.Random, spec: TrafficSpec) -> Iterator[float]:
    t = spec.start
    while True:
        rate = spec.rate(t)
        if rate <= 0:
            return
        # the rate moves on the scale of hours, so using it at the last arrival
        # is indistinguishable from exact thinning at these rates
        t += rng.expovariate(rate)
        if t >= spec.end:
            return
        yield t


def _response(
    rng: random.Random, spec: TrafficSpec, req: Event, m: ModelProfile, event_id: str
) -> Event:
    prompt = int(req["prompt_tokens"])
    completion = tokens(rng, m.completion_median, m.sigma)
    # streaming finishes at ~2,000 tokens/s after ~0.1 s to first token
    latency = 0.1 + completion / 2000.0 + rng.expovariate(20.0)
    safe = rng.random() >= spec.p_unsafe
    resp: Event = {
        "event_id": event_id,
        "type": "response",
        "ts": round(req["ts"] + latency, 3),
        "user_id": req["user_id"],
        "model": m.name,
        "request_id": req["event_id"],
    }
    if rng.random() < spec.p_score_only:
        lo, hi = (0.6, 1.0) if safe else (0.0, 0.4)
        resp["safety_score"] = round(rng.uniform(lo, hi), 3)
    else:
        resp["safe"] = safe
    resp["prompt_tokens"] = prompt
    resp["completion_tokens"] = completion
    if rng.random() >= spec.p_no_cost:
        cost = ModelPrice(m.prompt_per_1k, m.completion_per_1k).usd(prompt, completion)
        resp["cost_usd"] = round(cost, 8)
    if "tenant" in req:
        resp["tenant"] = req["tenant"]
    return resp


def traffic(rng: random.Random, spec: TrafficSpec) -> Iterator[Event]:
    """Requests and responses of one stream, in ``ts`` order."""
    pending: list[tuple[float, int, Event]] = []
    seq = itertools.count()
    ids = itertools.count()
    fixed = model_profile(spec.model) if spec.model is not None else None
    tenant_of = spec.tenant_of
    for t in _arrivals(rng, spec):
        ts = round(t, 3)
        while pending and pending[0][0] <= ts:
            yield heapq.heappop(pending)[2]
        m = fixed or pick_model(rng)
        blocked = rng.random() < spec.p_blocked
        user = spec.users.pick(rng)
        req: Event = {
            "event_id": f"{spec.tag}{next(ids):09d}",
            "type": "request",
            "ts": ts,
            "user_id": user,
            "model": m.name,
            "blocked": blocked,
            "prompt_tokens": tokens(rng, m.prompt_median, m.sigma),
        }
        if tenant_of is not None:
            req["tenant"] = tenant_of[user]
        if blocked:
            # a blocked request never reaches the model, so it has no response
            req["block_reason"] = spec.block_reason or pick_reason(rng)
        else:
            resp = _response(rng, spec, req, m, f"{spec.tag}{next(ids):09d}")
            heapq.heappush(pending, (resp["ts"], next(seq), resp))
        yield req
    while pending:
        yield heapq.heappop(pending)[2]


def merge_streams(streams: Sequence[Iterator[Event]]) -> Iterator[Event]:
    return heapq.merge(*streams, key=_ts)


def _ts(event: Mapping[str, Any]) -> float:
    return float(event["ts"])


def jittered(events: Iterator[Event], rng: random.Random, jitter_s: float) -> Iterator[Event]:
    """Deliver events up to ``jitter_s`` late, as a real pipeline would (ts unchanged)."""
    if jitter_s <= 0:
        yield from events
        return
    held: list[tuple[float, int, Event]] = []
    seq = itertools.count()
    for e in events:
        ts = _ts(e)
        # nothing still to come can arrive before its own ts, so anything due by now is final
        while held and held[0][0] <= ts:
            yield heapq.heappop(held)[2]
        heapq.heappush(held, (ts + rng.uniform(0.0, jitter_s), next(seq), e))
    while held:
        yield heapq.heappop(held)[2]
