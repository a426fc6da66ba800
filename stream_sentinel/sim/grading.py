"""What the global and the per-tenant scorers share: an attack's grade, its
scored span, severities, and the escaping of untrusted text for tables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..model import format_at
from .truth import AttackWindow

SEVERITY: Mapping[str, int] = {"warning": 1, "critical": 2}
CELL_CHARS = 64  # a tenant name may be 256 characters; a table cell shows this many


@dataclass(frozen=True, slots=True)
class AttackScore:
    window: AttackWindow
    detected_at: float | None  # ``at`` of the first qualifying tick
    worst_status: str  # most severe status seen inside the extended window
    ticks: int  # ticks inside the extended window

    @property
    def delay_s(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.window.start

    def to_json(self) -> dict[str, Any]:
        return {
            **self.window.to_json(),
            "detected_at": None if self.detected_at is None else format_at(int(self.detected_at)),
            "delay_s": self.delay_s,
            "worst_status": self.worst_status,
            "ticks": self.ticks,
        }


def extended(w: AttackWindow) -> tuple[float, float]:
    """The span in which the attack's signals may be red: its window plus the
    longest expected signal's window (a 60-minute sum stays red that long)."""
    return w.start, w.end + w.signal_window_s


def pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


# control characters (C0, DEL, C1) and the Unicode line and paragraph separators
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MARKUP = str.maketrans(
    {"\\": "\\\\", "|": "\\|", "`": "\\`", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
)


def cell(text: str) -> str:
    """Untrusted text (tenant names, attack names) as one inert markdown table
    cell: no line breaks, no column breaks, no HTML, bounded length."""
    flat = _BREAKS.sub(" ", text)
    if len(flat) > CELL_CHARS:
        flat = flat[: CELL_CHARS - 1] + "…"
    return flat.translate(_MARKUP)
