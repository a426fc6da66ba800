"""Alertmanager alerts from ticks: pure functions, no I/O (``alertmanager_push`` sends).

Each tick gives a set of *conditions* (what is wrong now). An *episode* is one
condition from its first tick until it has been resolved for
``RESOLVED_RESEND_S``; its ``starts_at`` is the first red tick and is what
Alertmanager shows as the alert's start. Episodes are kept beside the lease,
so a restart or a new leader continues them instead of starting new ones.

Identity: the labels of a condition (``alertname`` plus ``signal``, and for
a tenant's alerts ``tenant``) are the alert's identity in Alertmanager,
together with each target's static labels and severity. Never a user id:
users appear only in the annotations, escaped and bounded. A tenant is
untrusted too: its label is ``untrusted.label`` (printable, bounded, distinct
tenants never share one), its annotations ``untrusted.quoted``. A tenant that
leaves the top_k is no longer evaluated, so its alerts resolve like any
cleared condition (their summary says "resolved, was: ...").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from . import untrusted
from .heartbeat_kinds import heartbeat_message
from .model import SignalReading, TenantTick, Tick

AlertKind = Literal["signal_red", "critical", "stale", "tenant_signal_red", "tenant_critical"]
ALERTNAMES: Mapping[AlertKind, str] = {
    "signal_red": "LLMSecuritySignalRed",
    "critical": "LLMSecurityCritical",
    "stale": "StreamSentinelStale",
    "tenant_signal_red": "LLMSecurityTenantSignalRed",
    "tenant_critical": "LLMSecurityTenantCritical",
}
# a tenant's alerts take the severity configured for their global counterparts
SEVERITY_OF: Mapping[AlertKind, AlertKind] = {
    "signal_red": "signal_red",
    "critical": "critical",
    "stale": "stale",
    "tenant_signal_red": "signal_red",
    "tenant_critical": "critical",
}
# what a stale tick cannot tell: whether any signal, global or a tenant's, is red
UNKNOWN_WHEN_STALE: frozenset[AlertKind] = frozenset(
    {"signal_red", "critical", "tenant_signal_red", "tenant_critical"}
)
FIRING_TICKS = 3  # endsAt = now + 3 ticks: survives two lost pushes or a leader handover
RESOLVED_RESEND_S = 300.0  # a resolved alert is re-sent this long, in case one push was lost
TOP_USERS_SHOWN = 5
USER_ID_CHARS = 64
ANNOTATION_CHARS = 1024
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Condition:
    """One alert that is firing this tick."""

    kind: AlertKind
    labels: Mapping[str, str]  # identity: alertname (+ signal, + tenant)
    annotations: Mapping[str, str]

    @property
    def key(self) -> str:
        return episode_key(self.labels)


@dataclass(frozen=True, slots=True)
class Firing:
    """What one tick says: the conditions that hold, and the kinds it says nothing
    about (a stale tick cannot tell whether a signal is still red)."""

    conditions: tuple[Condition, ...]
    unknown: frozenset[AlertKind] = frozenset()


@dataclass(frozen=True, slots=True)
class Episode:
    kind: AlertKind
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float  # the first tick of the condition
    ends_at: float  # firing: the endsAt last sent; resolved: when it was resolved
    resolved: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "resolved": self.resolved,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Episode:
        kind = data["kind"]
        if kind not in ALERTNAMES:
            raise ValueError(f"unknown alert kind {kind!r}")
        return cls(
            kind=kind,
            labels={str(k): str(v) for k, v in data["labels"].items()},
            annotations={str(k): str(v) for k, v in data["annotations"].items()},
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            resolved=bool(data["resolved"]),
        )


Episodes = Mapping[str, Episode]


def episode_key(labels: Mapping[str, str]) -> str:
    # JSON of the sorted labels: unambiguous whatever characters a value holds
    return orjson.dumps(dict(sorted(labels.items()))).decode()


# -- what a tick says ------------------------------------------------------------


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _line(reading: SignalReading) -> str:
    p = "" if reading.p_value is None else f", p={reading.p_value:.3g}"
    return (
        f"{reading.name}={_num(reading.value)} (threshold {_num(reading.threshold)}, "
        f"baseline {_num(reading.baseline)} {reading.baseline_source}{p})"
    )


def escape_user(user_id: str) -> str:
    """An untrusted user id as a quoted, ASCII-only, markup-free token of bounded length.

    Receivers render annotations in Slack, e-mail (HTML) and pager apps: quotes,
    control characters, non-ASCII look-alikes and ``<>&`` are escaped, so a user id
    can neither break the list nor inject a link or a mention.
    """
    return untrusted.quoted(user_id, USER_ID_CHARS)


def top_users_text(top: Iterable[tuple[str, float]]) -> str:
    """The busiest users, escaped; as many of the first ``TOP_USERS_SHOWN`` as fit
    the annotation, then how many more there were."""
    users = list(top)
    shown: list[str] = []
    used = 0
    for user, rps in users[:TOP_USERS_SHOWN]:
        item = f"{escape_user(user)} {rps:.2f} rps"
        if used + len(item) + 2 > ANNOTATION_CHARS - 20:  # room for ", " and "(+N more)"
            break
        shown.append(item)
        used += len(item) + 2
    more = len(users) - len(shown)
    if not users:
        return "none"
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _bounded(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v if len(v) <= ANNOTATION_CHARS else v[: ANNOTATION_CHARS - 3] + "..."
            for k, v in annotations.items()}  # fmt: skip


def firing(tick: Tick) -> Firing:
    """The conditions of ``tick``. ``learning`` is never given here (nothing is sent)."""
    if tick.status == "stale":
        reason = " ".join((tick.reason or "unknown").split())
        stale = Condition(
            "stale",
            {"alertname": ALERTNAMES["stale"]},
            _bounded(
                {
                    "summary": f"stream-sentinel is stale: {reason}",
                    "description": "The pipeline cannot trust its own numbers (store unreachable,"
                    " consumer stalled or rebuilding), so attacks may go unseen.",
                    "reason": reason,
                }
            ),
        )
        return Firing((stale,), UNKNOWN_WHEN_STALE)
    red = ", ".join(tick.red) or "none"
    users = top_users_text(tick.top_users)
    summary = heartbeat_message(tick)
    out: list[Condition] = []
    for name in tick.red:
        reading = tick.signals.get(name)
        if reading is None:
            continue
        out.append(
            Condition(
                "signal_red",
                {"alertname": ALERTNAMES["signal_red"], "signal": name},
                _bounded(
                    {
                        "summary": f"{name} is red: {_line(reading)}",
                        "description": summary,
                        "value": _num(reading.value),
                        "baseline": _num(reading.baseline),
                        "threshold": _num(reading.threshold),
                        "p_value": _num(reading.p_value),
                        "red_signals": red,
                        "top_users": users,
                    }
                ),
            )
        )
    if tick.status == "critical":
        lines = "; ".join(_line(tick.signals[n]) for n in tick.red if n in tick.signals)
        out.append(
            Condition(
                "critical",
                {"alertname": ALERTNAMES["critical"]},
                _bounded(
                    {
                        "summary": summary,
                        "description": lines,
                        "red_signals": red,
                        "top_users": users,
                    }
                ),
            )
        )
    out.extend(tenant_conditions(tick.tenants))
    return Firing(tuple(out))


def tenant_conditions(tenants: Iterable[TenantTick]) -> list[Condition]:
    """One alert per red signal of a tenant, and one per critical tenant, each
    labelled with the tenant's escaped, bounded ``untrusted.label``."""
    out: list[Condition] = []
    for tenant in tenants:
        who = {"tenant": untrusted.label(tenant.tenant)}
        shown = untrusted.quoted(tenant.tenant)
        red = ", ".join(tenant.red) or "none"
        common = {
            "tenant": shown,
            "red_signals": red,
            "requests": str(tenant.requests),
            "top_users": top_users_text(tenant.top_users),
        }
        for name in tenant.red:
            reading = tenant.signals.get(name)
            if reading is None:
                continue
            labels = {"alertname": ALERTNAMES["tenant_signal_red"], "signal": name, **who}
            notes = {
                "summary": f"tenant {shown}: {name} is red: {_line(reading)}",
                "value": _num(reading.value),
                "baseline": _num(reading.baseline),
                "threshold": _num(reading.threshold),
                "p_value": _num(reading.p_value),
                **common,
            }
            out.append(Condition("tenant_signal_red", labels, _bounded(notes)))
        if tenant.status == "critical":
            lines = "; ".join(_line(tenant.signals[n]) for n in tenant.red if n in tenant.signals)
            labels = {"alertname": ALERTNAMES["tenant_critical"], **who}
            notes = {"summary": f"tenant {shown} is critical", "description": lines, **common}
            out.append(Condition("tenant_critical", labels, _bounded(notes)))
    return out


# -- episodes across ticks ---------------------------------------------------------


def advance(
    episodes: Episodes, now_firing: Firing, *, at: float, now: float, tick_seconds: float
) -> dict[str, Episode]:
    """The episodes after a tick at ``at`` (its window end), sent at wall time ``now``.

    A condition that is already firing keeps its ``starts_at``; one that is new,
    was resolved, or lapsed (its last endsAt passed: Alertmanager has resolved it
    by now, e.g. after a long outage of every replica) starts at ``at``.
    Episodes of kinds the tick says nothing about are left as they are.
    """
    out: dict[str, Episode] = {}
    ends_at = now + FIRING_TICKS * tick_seconds
    for cond in now_firing.conditions:
        old = episodes.get(cond.key)
        ongoing = old is not None and not old.resolved and old.ends_at >= now
        starts_at = old.starts_at if old is not None and ongoing else float(at)
        out[cond.key] = Episode(cond.kind, cond.labels, cond.annotations, starts_at, ends_at)
    for key, old in episodes.items():
        if key in out:
            continue
        if old.kind in now_firing.unknown:
            # a stale tick cannot tell whether a red signal cleared: the last known
            # alerts are kept alive, so Alertmanager never sees an all-clear during
            # a pipeline fault (a rebuild, a leader handover)
            out[key] = old if old.resolved else replace(old, ends_at=ends_at)
        elif not old.resolved:
            summary = "resolved, was: " + old.annotations.get("summary", "")
            notes = {**old.annotations, "summary": summary[:ANNOTATION_CHARS]}
            out[key] = replace(old, annotations=notes, ends_at=now, resolved=True)
        elif now - old.ends_at < RESOLVED_RESEND_S:
            out[key] = old
    return out


def to_rfc3339(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def postable_alerts(
    episodes: Episodes,
    *,
    static_labels: Mapping[str, str],
    severities: Mapping[AlertKind, str],
    generator_url: str,
    now_firing: Firing,
) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts`` for one target: every episode, firing
    ones a stale tick says nothing about included (kept alive, not resolved)."""
    alerts = []
    for episode in episodes.values():
        severity = severities[SEVERITY_OF[episode.kind]]
        labels = {**static_labels, **episode.labels, "severity": severity}
        alerts.append(
            {
                "labels": labels,
                "annotations": dict(episode.annotations),
                "startsAt": to_rfc3339(episode.starts_at),
                "endsAt": to_rfc3339(episode.ends_at),
                "generatorURL": generator_url,
            }
        )
    return alerts


def dump_state(episodes: Episodes) -> bytes:
    return orjson.dumps(
        {"v": STATE_VERSION, "episodes": {k: e.to_json() for k, e in episodes.items()}}
    )


def load_state(raw: bytes) -> dict[str, Episode]:
    """Episodes from :func:`dump_state`; ValueError when unreadable."""
    try:
        data = orjson.loads(raw)
        if data.get("v") != STATE_VERSION:
            raise ValueError("unknown alert state version")
        return {str(k): Episode.from_json(v) for k, v in data["episodes"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable alert state: {type(exc).__name__}") from exc
