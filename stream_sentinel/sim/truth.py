"""Labelled attack windows: what the simulator injected and what should have fired.

Shared by ``simulate`` (which writes them) and ``score`` (which grades a
timeline against them), so the two can never disagree on the file format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from ..bucketing import BLOCKED_WINDOW_S, SAFETY_WINDOW_S, SPEND_WINDOW_S, TOP_USER_WINDOW_S
from ..model import SIGNALS, SignalName, format_at

ExpectedStatus = Literal["warning", "critical"]

SIGNAL_WINDOW_S: Mapping[SignalName, int] = {
    "blocked_pct": BLOCKED_WINDOW_S,
    "safety_pct": SAFETY_WINDOW_S,
    "top_user_rps": TOP_USER_WINDOW_S,
    "spend_hour": SPEND_WINDOW_S,
}

TRUTH_VERSION = 1
MAX_TENANT_CHARS = 256  # the event contract's bound on ``tenant``


@dataclass(frozen=True, slots=True)
class AttackWindow:
    """One injected attack, ``[start, end)`` in Unix seconds of event time.

    ``tenant`` names the one tenant it was aimed at; ``None`` (the only kind
    before tenants, so older truth files read unchanged) is a global attack.
    """

    name: str
    start: float
    end: float
    expected_signals: tuple[SignalName, ...]
    expected_status: ExpectedStatus
    kind: str = ""
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"attack {self.name!r}: end must be after start")
        if self.tenant is not None and not 1 <= len(self.tenant) <= MAX_TENANT_CHARS:
            raise ValueError(f"attack {self.name!r}: tenant must be 1..256 characters")
        unknown = [s for s in self.expected_signals if s not in SIGNALS]
        if unknown or not self.expected_signals:
            raise ValueError(f"attack {self.name!r}: bad expected_signals {unknown!r}")

    @property
    def signal_window_s(self) -> int:
        """How long the expected signals can stay red after the attack stops."""
        return max(SIGNAL_WINDOW_S[s] for s in self.expected_signals)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            # human-readable copies; ignored when read back
            "start_at": format_at(int(self.start)),
            "end_at": format_at(int(self.end)),
            "expected_signals": list(self.expected_signals),
            "expected_status": self.expected_status,
        }
        if self.tenant is not None:
            doc["tenant"] = self.tenant
        return doc

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AttackWindow:
        status = raw["expected_status"]
        if status not in ("warning", "critical"):
            raise ValueError(f"bad expected_status {status!r}")
        signals: list[SignalName] = []
        for s in raw["expected_signals"]:
            if s not in SIGNALS:
                raise ValueError(f"unknown signal {s!r}")
            signals.append(s)
        tenant = raw.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise ValueError(f"tenant must be a string, got {type(tenant).__name__}")
        return cls(
            name=str(raw["name"]),
            start=float(raw["start"]),
            end=float(raw["end"]),
            expected_signals=tuple(signals),
            expected_status=status,
            kind=str(raw.get("kind", "")),
            tenant=tenant,
        )


def expected_status_for(signals: Sequence[SignalName], red_needed: int = 2) -> ExpectedStatus:
    return "critical" if len(signals) >= red_needed else "warning"


def truth_to_bytes(
    windows: Iterable[AttackWindow], *, meta: Mapping[str, Any] | None = None
) -> bytes:
    doc = {
        "version": TRUTH_VERSION,
        **(meta or {}),
        "attacks": [w.to_json() for w in windows],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def truth_from_bytes(data: bytes) -> list[AttackWindow]:
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != TRUTH_VERSION:
        raise ValueError(f"not a version {TRUTH_VERSION} truth file")
    return [AttackWindow.from_json(a) for a in doc["attacks"]]


def write_truth(
    windows: Iterable[AttackWindow], path: str | Path, *, meta: Mapping[str, Any] | None = None
) -> None:
    Path(path).write_bytes(truth_to_bytes(windows, meta=meta))


def read_truth(path: str | Path) -> list[AttackWindow]:
    return truth_from_bytes(Path(path).read_bytes())
