"""Alert events: one JSON message per composite transition."""

from __future__ import annotations

from typing import Any

from .model import Status, Tick, format_at


def alert_event(tick: Tick, previous: Status | None, *, epoch: int, replica: str) -> dict[str, Any]:
    return {
        "type": "stream_sentinel.alert",
        "at": format_at(tick.at),
        "status": tick.status,
        "previous": previous,
        "red": list(tick.red),
        "reason": tick.reason,
        "signals": {
            name: {
                "value": r.value,
                "threshold": r.threshold,
                "baseline": r.baseline,
                "baseline_source": r.baseline_source,
                "p_value": r.p_value,
                "state": r.state,
            }
            for name, r in tick.signals.items()
        },
        "top_users": [[u, rps] for u, rps in tick.top_users],
        "leader_epoch": epoch,
        "replica": replica,
    }


class TransitionTracker:
    """Remembers the last composite status; says when a new one is a transition."""

    def __init__(self) -> None:
        self.status: Status | None = None

    def update(self, status: Status) -> tuple[bool, Status | None]:
        previous = self.status
        self.status = status
        if previous is None:
            # a fresh leader announces anything that needs attention
            return status not in ("ok", "learning"), None
        return status != previous, previous
