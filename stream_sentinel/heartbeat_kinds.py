"""Heartbeat targets and their wire formats: pure functions, no I/O.

Everything a push needs is decided here (failure or success, message, URL,
body) so it can be tested without a server; ``heartbeat.py`` only sends.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args
from urllib.parse import quote, quote_plus

import orjson
from yarl import URL

from stream_sentinel.model import SIGNALS, SignalReading, Tick

Kind = Literal["generic", "healthchecks", "uptime-kuma", "webhook"]
KINDS: tuple[Kind, ...] = get_args(Kind)
COMPOSITE = "composite"
TOKEN_KEYS: tuple[str, ...] = (COMPOSITE, *SIGNALS)

# Monitors store the message in a text column or a query string; proxies commonly
# reject URLs over 8 KiB, so a runaway custom message must not make the ping fail.
MAX_MESSAGE_CHARS = 1000
MAX_RETRIES = 10
# Only these ask the client to come back later; any other 4xx means the request
# (usually the token) is wrong and repeating it cannot help.
RETRYABLE_4XX = frozenset({408, 429})

Verdict = Literal["ok", "retry", "rejected"]


@dataclass(frozen=True)
class HeartbeatTarget:
    """One monitor. ``tokens`` maps ``"composite"`` and signal names to secrets."""

    name: str
    kind: Kind
    url: str
    tokens: Mapping[str, str] = field(repr=False)
    timeout_s: float = 5.0
    retries: int = 2

    def __post_init__(self) -> None:
        # Messages name the field and never echo a token value.
        where = f"heartbeat target {self.name!r}"
        if not self.name:
            raise ValueError("heartbeat target: name must not be empty")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}")
        _check_url(self.url, self.kind, where)
        if not self.tokens:
            raise ValueError(f"{where}: tokens must name at least one of {', '.join(TOKEN_KEYS)}")
        for key, token in self.tokens.items():
            if key not in TOKEN_KEYS:
                raise ValueError(f"{where}: unknown token key {key!r}")
            if not isinstance(token, str) or not token:
                raise ValueError(f"{where}: token {key!r} must be a non-empty string")
            if not _is_utf8(token):
                # e.g. undecodable bytes from an environment variable or token file
                raise ValueError(f"{where}: token {key!r} is not valid UTF-8 text")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"{where}: timeout_s must be a positive number")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"{where}: retries must be between 0 and {MAX_RETRIES}")
        # A read-only copy: the caller's dict cannot change the target afterwards.
        object.__setattr__(self, "tokens", MappingProxyType(dict(self.tokens)))


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_url(url: str, kind: Kind, where: str) -> None:
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: url is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{where}: url must be an absolute http(s) URL")
    if parsed.fragment:
        raise ValueError(f"{where}: url must not have a fragment")
    if kind in ("healthchecks", "uptime-kuma") and parsed.raw_query_string:
        raise ValueError(f"{where}: url of a {kind} target is a base URL without a query")


@dataclass(frozen=True)
class PushRequest:
    """A fully built HTTP request; URL and body carry the token, so no repr."""

    method: Literal["GET", "POST"]
    url: URL = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = None


def token_keys(target: HeartbeatTarget) -> tuple[str, ...]:
    """The keys this target pushes, composite first, in a stable order."""
    return tuple(key for key in TOKEN_KEYS if key in target.tokens)


def is_failure(tick: Tick, key: str) -> bool:
    """Whether the push for ``key`` tells the monitor something is wrong.

    ``warning`` and ``learning`` are successes: one red signal must not page,
    and a sentinel that is still learning must still prove it is alive.
    """
    if key == COMPOSITE:
        return tick.status in ("critical", "stale")
    reading = _reading(tick, key)
    return reading is not None and reading.state == "red"


def _reading(tick: Tick, key: str) -> SignalReading | None:
    # Walks SIGNALS so an arbitrary string key narrows to a SignalName for the lookup.
    return next((tick.signals.get(name) for name in SIGNALS if name == key), None)


def _fmt(value: float | None, template: str) -> str:
    return "n/a" if value is None else template.format(value)


def summary(tick: Tick) -> str:
    """The seed's message shape: ``blocked=0.12%, safety=99.71%, ...``."""

    def value(name: str) -> float | None:
        reading = _reading(tick, name)
        return None if reading is None else reading.value

    return ", ".join(
        (
            "blocked=" + _fmt(value("blocked_pct"), "{:.2f}%"),
            "safety=" + _fmt(value("safety_pct"), "{:.2f}%"),
            "top_user_rps=" + _fmt(value("top_user_rps"), "{:.2f}"),
            "spend_hour=" + _fmt(value("spend_hour"), "${:.2f}"),
        )
    )


# how each signal's value, baseline and threshold read in a message
UNITS: Mapping[str, str] = MappingProxyType(
    {
        "blocked_pct": "{:.2f}%",
        "safety_pct": "{:.2f}%",
        "top_user_rps": "{:.2f}",
        "spend_hour": "${:.2f}",
    }
)


def heartbeat_message(tick: Tick, signal: str | None = None) -> str:
    """The one heartbeat message: the composite's summary (``signal`` None)
    or that signal's own line. One line, never a user id.

    Composite: ``blocked=0.12%, safety=99.71%, top_user_rps=3.20,
    spend_hour=$4.10``, then ``; red: a, b`` when any signal is red,
    prefixed with ``warning: ``/``critical: ``/``learning (note): ``/
    ``stale: reason; ``. A signal: ``blocked_pct red: value=33.33%,
    baseline=0.10%, threshold=0.30%, p=1.2e-05``.
    """
    if signal is not None:
        return _signal_line(tick, signal)
    text = summary(tick)
    if tick.red:
        text += "; red: " + ", ".join(tick.red)
    reason = _one_line(tick.reason)
    if tick.status == "stale":
        return f"stale: {reason or 'unknown'}; {text}"
    if tick.status == "learning":
        return f"learning ({reason}): {text}" if reason else f"learning: {text}"
    if tick.status in ("warning", "critical"):
        return f"{tick.status}: {text}"
    return text


def _signal_line(tick: Tick, signal: str) -> str:
    reading = _reading(tick, signal)
    if reading is None:  # a stale tick reads no signal: say why
        reason = _one_line(tick.reason)
        return f"{signal} n/a: {tick.status}" + (f" ({reason})" if reason else "")
    unit = UNITS[reading.name]
    p_value = "n/a" if reading.p_value is None else f"{reading.p_value:.2g}"
    line = (
        f"{signal} {reading.state}: value={_fmt(reading.value, unit)}, "
        f"baseline={_fmt(reading.baseline, unit)}, threshold={_fmt(reading.threshold, unit)}, "
        f"p={p_value}"
    )
    if reading.baseline_source != "static":
        line += f" (baseline {reading.baseline_source})"
    return line


def _one_line(reason: str | None) -> str | None:
    # reasons may carry exception text; a message stays on one line
    return " ".join(reason.split()) if reason else None


def _query(pairs: Iterable[tuple[str, str]]) -> str:
    # quote(safe="") rather than urlencode's "+" for spaces: "%20" means a space
    # to every server, "+" only to form decoders.
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in pairs)


def _append_path(base: str, *segments: str) -> URL:
    # Each segment is quoted whole, so a "/" or "?" inside a token stays inside it.
    root = URL(base)
    path = root.raw_path.rstrip("/") + "".join("/" + quote(s, safe="") for s in segments)
    return root.with_path(path, encoded=True)


def build_request(
    target: HeartbeatTarget, key: str, tick: Tick, failure: bool, message: str
) -> PushRequest:
    """The request that tells ``target`` the outcome for ``key`` (composite or a signal)."""
    token = target.tokens[key]
    message = message[:MAX_MESSAGE_CHARS]
    if target.kind == "healthchecks":
        segments = (token, "fail") if failure else (token,)
        return PushRequest(
            "POST",
            _append_path(target.url, *segments),
            message.encode(),
            "text/plain; charset=utf-8",
        )
    if target.kind == "uptime-kuma":
        url = _append_path(target.url, "api", "push", token)
        query = _query((("status", "down" if failure else "up"), ("msg", message), ("ping", "")))
        return PushRequest("GET", URL(f"{url}?{query}", encoded=True))
    if target.kind == "generic":
        base = URL(target.url)
        query = _query((("token", token), ("status", _status(failure)), ("msg", message)))
        existing = base.raw_query_string
        full = f"{existing}&{query}" if existing else query
        return PushRequest("GET", URL(f"{base.with_query(None)}?{full}", encoded=True))
    payload = {
        "token": token,
        "signal": key,
        "status": _status(failure),
        "state": tick.status if key == COMPOSITE else _signal_state(tick, key),
        "message": message,
        "tick": tick.to_json(),
    }
    return PushRequest("POST", URL(target.url), orjson.dumps(payload), "application/json")


def _status(failure: bool) -> str:
    return "critical" if failure else "ok"


def _signal_state(tick: Tick, key: str) -> str | None:
    reading = _reading(tick, key)
    return None if reading is None else reading.state


def classify(kind: Kind, status: int, body: bytes) -> Verdict:
    """Whether a response means delivered, worth retrying, or refused for good."""
    if 200 <= status < 300:
        # Older Uptime Kuma answers an unknown token with 200 and {"ok": false}.
        if kind == "uptime-kuma" and _kuma_refused(body):
            return "rejected"
        return "ok"
    if status >= 500 or status in RETRYABLE_4XX:
        return "retry"
    # 3xx included: redirects are not followed, since a moved endpoint is a
    # config error to surface, and following one would turn the POST into a GET.
    return "rejected"


def _kuma_refused(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("ok") is False


def backoff_delay(retry: int, rng: random.Random, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**retry)]``.

    Full jitter spreads replicas and targets that failed together, so they do not
    retry in lockstep against a recovering monitor.
    """
    if retry < 0:
        raise ValueError("retry must be >= 0")
    ceiling = min(cap_s, base_s * 2.0 ** min(retry, 62))
    return rng.uniform(0.0, ceiling)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, raw or URL-quoted, replaced by ``***``."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            # backslashreplace: redaction must never raise, even on unencodable text.
            quoted = (
                quote(secret, safe="", errors="backslashreplace"),
                quote(secret, errors="backslashreplace"),
                quote_plus(secret, errors="backslashreplace"),
            )
            forms.update((secret, *quoted))
    # Longest first, so a secret that contains another is not left half-visible.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
