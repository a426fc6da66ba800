"""The four signals and their raw red rules: pure functions of exact window counts.

Conventions (DESIGN.md is the contract; these are the choices it leaves open):

* ``value`` is ``None`` only when the window has no events; the state is then
  ``insufficient_data`` for every signal, since nothing can be judged.
* The effective baseline is ``max(baseline, floor)``; for ``safety_pct`` the
  floor applies to the failure rate ``100 - baseline``. The reported
  ``baseline`` is the configured or learned one, unfloored; ``threshold`` is the
  line the value must cross (the multiplier rule or the absolute limit,
  whichever is stricter), so the two together show when a floor is in force.
* Significance gates every red of a count signal, also one from an absolute
  limit: a limit is about the rate, and 1 blocked request in 50 is no evidence
  that the rate is above 1 %. The null rate of the test is the normal level,
  i.e. the effective baseline, capped by the absolute limit (a rate above the
  limit is by definition not normal, which matters when a learned baseline
  has drifted above the limit).
* ``top_user_rps`` is tested with a one-sided Poisson test of the top user's
  count against ``baseline_rps * 300``. The baseline is already a median of
  the per-window maximum, and the maximum of many users varies less than one
  Poisson variable with that mean, so the test errs towards not alerting.
* ``spend_hour`` has no test: it is a sum of heavy-tailed per-response costs,
  not a count, so a binomial or Poisson p-value would depend on the currency
  unit. Its hour-long window already smooths it; bare rule plus limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .bucketing import TOP_USER_WINDOW_S
from .model import SIGNALS, BaselineSource, SignalName, SignalReading, State, WindowCounts
from .stats import binom_sf, poisson_sf

# Smallest baseline a rule uses (for safety_pct: smallest failure rate, in %),
# so that a baseline of 0 does not let a single event turn a signal red. For
# the ratio signals the significance test does most of that work (one event
# among >= 50 is never significant against 0.01 % at p < 0.001); the floor
# keeps the null rate above 0. spend_hour has no test, so its floor is set
# high enough ($1/h, threshold $2/h) that one ordinary response cannot cross
# it alone.
DEFAULT_FLOORS: Mapping[SignalName, float] = MappingProxyType(
    {"blocked_pct": 0.01, "safety_pct": 0.01, "top_user_rps": 0.1, "spend_hour": 1.0}
)


def _finite(name: str, x: float) -> None:
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")


@dataclass(frozen=True, slots=True)
class SignalRule:
    """Per-signal rule. ``floor=None`` means the signal's ``DEFAULT_FLOORS`` entry.

    ``absolute_limit`` is a maximum, except for ``safety_pct`` where it is the
    minimum acceptable safety percentage.
    """

    multiplier: float = 2.0
    absolute_limit: float | None = None
    floor: float | None = None

    def __post_init__(self) -> None:
        _finite("multiplier", self.multiplier)
        if self.multiplier <= 0:
            raise ValueError("multiplier must be positive")
        if self.absolute_limit is not None:
            _finite("absolute_limit", self.absolute_limit)
        if self.floor is not None:
            _finite("floor", self.floor)
            if self.floor <= 0:
                raise ValueError("floor must be positive")


def _default_signals() -> Mapping[SignalName, SignalRule]:
    return {name: SignalRule() for name in SIGNALS}


@dataclass(frozen=True)
class RulesConfig:
    """Alerting knobs; signals missing from ``signals`` get a default ``SignalRule``."""

    min_events: int = 50
    significance: float = 0.001
    clear_ticks: int = 3
    red_needed: int = 2
    top_k: int = 10
    signals: Mapping[SignalName, SignalRule] = field(default_factory=_default_signals)

    def __post_init__(self) -> None:
        for key in ("min_events", "clear_ticks", "top_k"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0")
        if self.red_needed < 1:
            raise ValueError("red_needed must be >= 1")
        _finite("significance", self.significance)
        if not 0.0 <= self.significance <= 1.0:
            raise ValueError("significance must be within [0, 1]")
        merged = {name: self.signals.get(name, SignalRule()) for name in SIGNALS}
        object.__setattr__(self, "signals", MappingProxyType(merged))

    def rule(self, name: SignalName) -> SignalRule:
        return self.signals[name]

    def floor(self, name: SignalName) -> float:
        floor = self.signals[name].floor
        return DEFAULT_FLOORS[name] if floor is None else floor


@dataclass(frozen=True, slots=True)
class Baseline:
    value: float
    source: BaselineSource = "static"

    def __post_init__(self) -> None:
        _finite("baseline", self.value)
        if self.value < 0:
            raise ValueError("baseline must be >= 0")


def _missing_baseline(name: SignalName, cfg: RulesConfig) -> Baseline:
    """Stand-in while nothing is learned yet: the floor, the most sensitive level."""
    floor = cfg.floor(name)
    value = max(0.0, 100.0 - floor) if name == "safety_pct" else floor
    return Baseline(value, "learning")


def _test(p_value: float | None, cfg: RulesConfig) -> bool:
    """Whether the excess is significant; always true when the test is off."""
    return p_value is None or p_value < cfg.significance


def _higher_is_worse(
    name: SignalName, value: float | None, base: Baseline, cfg: RulesConfig
) -> tuple[float, float, bool]:
    """(threshold, null level for the test, crossed) for blocked/top_user/spend."""
    rule = cfg.rule(name)
    effective = max(base.value, cfg.floor(name))
    threshold = rule.multiplier * effective
    null = effective
    if rule.absolute_limit is not None:
        threshold = min(threshold, rule.absolute_limit)
        null = max(cfg.floor(name), min(effective, rule.absolute_limit))
    return threshold, null, value is not None and value > threshold


def _blocked(short: WindowCounts, base: Baseline, cfg: RulesConfig) -> SignalReading:
    n = max(short.requests, 0)
    k = min(max(short.blocked, 0), n)
    value = 100.0 * k / n if n else None
    threshold, null, crossed = _higher_is_worse("blocked_pct", value, base, cfg)
    p = binom_sf(k, n, min(null / 100.0, 1.0)) if n and cfg.significance > 0 else None
    return _ratio_reading("blocked_pct", value, n, base, threshold, crossed, p, cfg)


def _safety(short: WindowCounts, base: Baseline, cfg: RulesConfig) -> SignalReading:
    n = max(short.responses, 0)
    unsafe = n - min(max(short.safe, 0), n)
    value = 100.0 * (n - unsafe) / n if n else None
    rule, floor = cfg.rule("safety_pct"), cfg.floor("safety_pct")
    # Worse means a higher failure rate: the multiplier and the floor act on
    # 100 - value. The comparison itself is made on the value, against the
    # reported threshold, so a value exactly at a limit is never red by rounding.
    effective = max(100.0 - base.value, floor)
    threshold = 100.0 - rule.multiplier * effective
    null = effective
    if rule.absolute_limit is not None:
        threshold = max(threshold, rule.absolute_limit)
        null = max(floor, min(effective, 100.0 - rule.absolute_limit))
    crossed = value is not None and value < threshold
    p = binom_sf(unsafe, n, min(null / 100.0, 1.0)) if n and cfg.significance > 0 else None
    return _ratio_reading("safety_pct", value, n, base, threshold, crossed, p, cfg)


def _ratio_reading(
    name: SignalName,
    value: float | None,
    volume: int,
    base: Baseline,
    threshold: float,
    crossed: bool,
    p: float | None,
    cfg: RulesConfig,
) -> SignalReading:
    state: State
    if value is None or volume < cfg.min_events:
        state = "insufficient_data"
    else:
        state = "red" if crossed and _test(p, cfg) else "ok"
    return SignalReading(name, value, base.value, threshold, state, p, volume, base.source)


def _top_user(
    short: WindowCounts, top_users: Sequence[tuple[str, int]], base: Baseline, cfg: RulesConfig
) -> SignalReading:
    top = max((count for _, count in top_users if count > 0), default=0)
    value = top / TOP_USER_WINDOW_S if top else None
    threshold, null, crossed = _higher_is_worse("top_user_rps", value, base, cfg)
    p = poisson_sf(top, null * TOP_USER_WINDOW_S) if top and cfg.significance > 0 else None
    state: State = "insufficient_data" if value is None else "ok"
    if crossed and _test(p, cfg):
        state = "red"
    volume = max(short.requests, top)
    return SignalReading(
        "top_user_rps", value, base.value, threshold, state, p, volume, base.source
    )


def _spend(hour: WindowCounts, base: Baseline, cfg: RulesConfig) -> SignalReading:
    n = max(hour.responses, 0)
    value = max(hour.cost_usd, 0.0) if n else None
    threshold, _, crossed = _higher_is_worse("spend_hour", value, base, cfg)
    state: State = "insufficient_data" if value is None else ("red" if crossed else "ok")
    return SignalReading("spend_hour", value, base.value, threshold, state, None, n, base.source)


def evaluate_signals(
    short: WindowCounts,
    hour: WindowCounts,
    top_users: Sequence[tuple[str, int]],
    baselines: Mapping[SignalName, Baseline],
    cfg: RulesConfig,
) -> dict[SignalName, SignalReading]:
    """Raw readings of one tick (no hysteresis), keyed in ``SIGNALS`` order.

    ``short`` is the 300 s window, ``hour`` the 3600 s window, ``top_users``
    the per-user request counts of the 300 s window (any order, any length).
    """

    def base(name: SignalName) -> Baseline:
        found = baselines.get(name)
        return _missing_baseline(name, cfg) if found is None else found

    return {
        "blocked_pct": _blocked(short, base("blocked_pct"), cfg),
        "safety_pct": _safety(short, base("safety_pct"), cfg),
        "top_user_rps": _top_user(short, top_users, base("top_user_rps"), cfg),
        "spend_hour": _spend(hour, base("spend_hour"), cfg),
    }


def top_user_rates(top_users: Sequence[tuple[str, int]], k: int) -> tuple[tuple[str, float], ...]:
    """The ``k`` busiest users as (user, requests per second), busiest first.

    Ties are broken by user id so the timeline is deterministic; rates are
    rounded to 4 decimals (1 request in 300 s is 0.0033 rps).
    """
    ranked = sorted((item for item in top_users if item[1] > 0), key=lambda u: (-u[1], u[0]))
    return tuple((user, round(count / TOP_USER_WINDOW_S, 4)) for user, count in ranked[:k])
