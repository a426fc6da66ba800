"""Status rules: hysteresis, the composite, one whole tick (its heartbeat message is
``heartbeat.heartbeat_message``).

This is the public face of the pure rule logic (no I/O): the signal math lives
in ``signal_math`` and is re-exported here so callers import from one place.

Choices DESIGN.md leaves open:

* A held red clears after ``clear_ticks`` consecutive raw ticks that are not
  red; ``insufficient_data`` counts as not red, otherwise an attack that stops
  together with the traffic (volume below ``min_events``) would stay red for
  ever. While held the reading keeps its current value and reports ``red``.
* A ``stale`` tick does not advance the hysteresis: its counts cannot be
  trusted (store down, rebuilding), so they must not count towards clearing.
* ``learning`` still runs the rules, so the red list is shown, but the
  composite is ``learning`` and nothing pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .model import SIGNALS, SignalName, SignalReading, Status, Tick, WindowCounts
from .signal_math import (
    DEFAULT_FLOORS,
    Baseline,
    RulesConfig,
    SignalRule,
    evaluate_signals,
    top_user_rates,
)

__all__ = [
    "DEFAULT_FLOORS",
    "Baseline",
    "Hold",
    "Hysteresis",
    "RulesConfig",
    "SignalRule",
    "apply_hysteresis",
    "composite",
    "evaluate_signals",
    "evaluate_tick",
    "top_user_rates",
]


@dataclass(frozen=True, slots=True)
class Hold:
    """Hysteresis of one signal: held red, and how many clear ticks so far."""

    red: bool = False
    clear_streak: int = 0


@dataclass(frozen=True)
class Hysteresis:
    """Immutable per-signal hold state carried from tick to tick.

    ``to_json``/``from_json`` let an evaluator keep it in the store, so a new
    leader does not clear a red signal early.
    """

    holds: Mapping[SignalName, Hold] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "holds", MappingProxyType(dict(self.holds)))

    def hold(self, name: SignalName) -> Hold:
        return self.holds.get(name, Hold())

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"red": h.red, "clear_streak": h.clear_streak} for name, h in self.holds.items()
        }

    @classmethod
    def from_json(cls, data: object) -> Hysteresis:
        """Inverse of ``to_json``; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("hysteresis state must be an object")
        holds: dict[SignalName, Hold] = {}
        for name in SIGNALS:
            item = data.get(name)
            if item is None:
                continue
            red = item.get("red") if isinstance(item, dict) else None
            streak = item.get("clear_streak") if isinstance(item, dict) else None
            if not isinstance(red, bool) or type(streak) is not int or streak < 0:
                raise ValueError(f"malformed hysteresis state for {name}")
            holds[name] = Hold(red, streak)
        return cls(holds)


def apply_hysteresis(
    raw: Mapping[SignalName, SignalReading], state: Hysteresis, cfg: RulesConfig
) -> tuple[dict[SignalName, SignalReading], Hysteresis]:
    """Readings as shown (held reds stay red) and the next hysteresis state."""
    shown: dict[SignalName, SignalReading] = {}
    holds = {name: h for name, h in state.holds.items() if name not in raw}
    for name, reading in raw.items():
        held = state.hold(name)
        if reading.state == "red":
            holds[name] = Hold(red=True)
            shown[name] = reading
        elif held.red and held.clear_streak + 1 < cfg.clear_ticks:
            holds[name] = Hold(red=True, clear_streak=held.clear_streak + 1)
            shown[name] = replace(reading, state="red")
        else:
            shown[name] = reading
    return shown, Hysteresis(holds)


def composite(
    readings: Mapping[SignalName, SignalReading],
    cfg: RulesConfig,
    *,
    learning: bool,
    stale_reason: str | None,
) -> tuple[Status, tuple[SignalName, ...]]:
    """Composite status and the red signals (in ``SIGNALS`` order)."""
    red = tuple(n for n in SIGNALS if n in readings and readings[n].state == "red")
    if stale_reason is not None:
        return "stale", red
    if learning:
        return "learning", red
    if len(red) >= cfg.red_needed:
        return "critical", red
    return ("warning" if red else "ok"), red


def evaluate_tick(
    at: int,
    short: WindowCounts,
    hour: WindowCounts,
    top_users: Sequence[tuple[str, int]],
    baselines: Mapping[SignalName, Baseline],
    cfg: RulesConfig,
    state: Hysteresis,
    *,
    learning: bool = False,
    learning_note: str | None = None,
    stale_reason: str | None = None,
) -> tuple[Tick, Hysteresis]:
    """One whole evaluation at ``at`` (exclusive end of both windows).

    ``learning_note`` (e.g. ``"day 3 of 7"``) and ``stale_reason`` end up in
    ``Tick.reason`` and the heartbeat message.
    """
    raw = evaluate_signals(short, hour, top_users, baselines, cfg)
    shown, next_state = apply_hysteresis(raw, state, cfg)
    if stale_reason is not None:
        next_state = state
    status, red = composite(shown, cfg, learning=learning, stale_reason=stale_reason)
    reason = stale_reason if status == "stale" else learning_note if status == "learning" else None
    tick = Tick(at, status, red, shown, top_user_rates(top_users, cfg.top_k), reason)
    return tick, next_state
