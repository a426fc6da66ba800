"""The Alertmanager payload builder and its episodes: pure, no server."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from stream_sentinel.alertmanager import (
    ALERTNAMES,
    ANNOTATION_CHARS,
    FIRING_TICKS,
    RESOLVED_RESEND_S,
    SEVERITY_OF,
    USER_ID_CHARS,
    Episode,
    advance,
    dump_state,
    escape_user,
    firing,
    load_state,
    postable_alerts,
    to_rfc3339,
)
from stream_sentinel.alertmanager_config import AlertSeverities
from stream_sentinel.config import ConfigError, load_config
from stream_sentinel.model import SIGNALS, SignalName, SignalReading, Status, Tick

AT = 1_800_000_000
TICK_S = 60
SEVERITIES = {"signal_red": "warning", "critical": "page", "stale": "page"}
STATIC = {"service": "llm-gateway", "env": "prod"}


def tick(
    status: Status,
    red: Sequence[SignalName] = (),
    *,
    at: int = AT,
    top_users: Sequence[tuple[str, float]] = (("mallory", 0.4), ("user-01", 0.01)),
    reason: str | None = None,
) -> Tick:
    readings = {
        name: SignalReading(
            name,
            33.3 if name in red else 0.05,
            0.1,
            0.2,
            "red" if name in red else "ok",
            p_value=1e-12 if name in red else 0.5,
            volume=360,
        )
        for name in SIGNALS
    }
    return Tick(at, status, tuple(red), readings, tuple(top_users), reason)


def body(t: Tick, episodes: dict[str, Episode]) -> list[dict[str, object]]:
    return postable_alerts(
        episodes,
        static_labels=STATIC,
        severities=SEVERITIES,  # type: ignore[arg-type]
        generator_url="http://sentinel:9464/status",
        now_firing=firing(t),
    )


def step(episodes: dict[str, Episode], t: Tick, now: float) -> dict[str, Episode]:
    return advance(episodes, firing(t), at=t.at, now=now, tick_seconds=TICK_S)


def names(alerts: list[dict[str, object]]) -> set[tuple[str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("signal", ""))  # type: ignore[index,union-attr]
        for a in alerts
    }


def test_ok_and_warning_ticks() -> None:
    assert firing(tick("ok")).conditions == ()
    (cond,) = firing(tick("warning", ["blocked_pct"])).conditions
    assert dict(cond.labels) == {"alertname": "LLMSecuritySignalRed", "signal": "blocked_pct"}
    notes = cond.annotations
    assert (notes["value"], notes["baseline"], notes["threshold"]) == ("33.3", "0.1", "0.2")
    assert notes["p_value"] == "1e-12"
    assert notes["red_signals"] == "blocked_pct"
    assert notes["top_users"] == '"mallory" 0.40 rps, "user-01" 0.01 rps'
    assert notes["summary"].startswith("blocked_pct is red: blocked_pct=33.3 (threshold 0.2")
    assert notes["description"].startswith("warning: blocked=33.30%")


def test_critical_tick_fires_one_alert_per_red_signal_and_the_composite() -> None:
    t = tick("critical", ["blocked_pct", "safety_pct"])
    alerts = body(t, step({}, t, AT + 2))
    assert names(alerts) == {
        ("LLMSecuritySignalRed", "blocked_pct"),
        ("LLMSecuritySignalRed", "safety_pct"),
        ("LLMSecurityCritical", ""),
    }
    critical = next(a for a in alerts if a["labels"]["alertname"] == "LLMSecurityCritical")  # type: ignore[index]
    assert critical["labels"] == {**STATIC, "alertname": "LLMSecurityCritical", "severity": "page"}
    notes = critical["annotations"]
    assert notes["red_signals"] == "blocked_pct, safety_pct"  # type: ignore[index]
    assert "blocked_pct=33.3" in notes["description"] and "safety_pct=33.3" in notes["description"]  # type: ignore[index]
    assert critical["generatorURL"] == "http://sentinel:9464/status"
    assert critical["startsAt"] == to_rfc3339(AT) == "2027-01-15T08:00:00.000Z"
    assert critical["endsAt"] == to_rfc3339(AT + 2 + FIRING_TICKS * TICK_S)
    red = [a for a in alerts if a["labels"]["alertname"] == "LLMSecuritySignalRed"]  # type: ignore[index]
    assert {a["labels"]["severity"] for a in red} == {"warning"}  # type: ignore[index]


def test_stale_fires_its_own_alert_and_holds_the_others() -> None:
    attack = tick("critical", ["blocked_pct", "safety_pct"])
    episodes = step({}, attack, AT + 1)
    stale = Tick(AT + 60, "stale", (), {}, (), "store unreachable\nretrying")
    episodes = step(episodes, stale, AT + 61)
    alerts = body(stale, episodes)
    assert ("StreamSentinelStale", "") in names(alerts)
    (alert,) = [a for a in alerts if a["labels"]["alertname"] == "StreamSentinelStale"]  # type: ignore[index]
    assert alert["annotations"]["reason"] == "store unreachable retrying"  # type: ignore[index]
    # the stale tick cannot tell whether the red signals cleared: they are kept
    # alive (re-sent, endsAt moved on), never resolved, so no all-clear goes out
    held = [e for e in episodes.values() if e.kind != "stale"]
    assert len(held) == 3 and not any(e.resolved for e in held)
    assert all(e.ends_at == AT + 61 + FIRING_TICKS * TICK_S for e in held)
    assert len(alerts) == 4
    # back, still under attack: the same episodes go on, with their first tick
    again = tick("critical", ["blocked_pct", "safety_pct"], at=AT + 120)
    episodes = step(episodes, again, AT + 121)
    starts = {e.labels["alertname"]: e.starts_at for e in episodes.values() if not e.resolved}
    assert starts == {"LLMSecuritySignalRed": AT, "LLMSecurityCritical": AT}
    (stale_episode,) = [e for e in episodes.values() if e.kind == "stale"]
    assert stale_episode.resolved and stale_episode.ends_at == AT + 121


def test_starts_at_is_the_first_red_tick_and_resolution_is_re_sent_for_five_minutes() -> None:
    episodes: dict[str, Episode] = {}
    for i in range(4):  # red for four ticks
        t = tick("warning", ["spend_hour"], at=AT + i * TICK_S)
        episodes = step(episodes, t, AT + i * TICK_S + 1)
        (alert,) = body(t, episodes)
        assert alert["startsAt"] == to_rfc3339(AT)
    cleared_at = AT + 4 * TICK_S + 1
    episodes = step(episodes, tick("ok", at=AT + 4 * TICK_S), cleared_at)
    sent: list[list[dict[str, object]]] = []
    now = cleared_at
    while episodes:
        t = tick("ok", at=int(now))
        alerts = body(t, episodes)
        sent.append(alerts)
        (alert,) = alerts
        assert alert["endsAt"] == to_rfc3339(cleared_at)  # resolved: endsAt in the past
        assert alert["startsAt"] == to_rfc3339(AT)
        assert str(alert["annotations"]["summary"]).startswith("resolved, was: spend_hour is red")  # type: ignore[index]
        now += TICK_S
        episodes = step(episodes, t, now)
    assert len(sent) == RESOLVED_RESEND_S // TICK_S
    # red again later: a new episode with a new start
    t = tick("warning", ["spend_hour"], at=int(now) + 59)
    (alert,) = body(t, step(episodes, t, now + 60))
    assert alert["startsAt"] == to_rfc3339(int(now) + 59)


def test_a_red_again_soon_after_the_resolution_is_a_new_episode() -> None:
    first = step({}, tick("warning", ["blocked_pct"]), AT + 1)
    cleared = step(first, tick("ok", at=AT + 60), AT + 61)
    again = tick("warning", ["blocked_pct"], at=AT + 120)
    (alert,) = body(again, step(cleared, again, AT + 121))
    assert alert["startsAt"] == to_rfc3339(AT + 120)
    assert datetime.fromisoformat(str(alert["endsAt"])).timestamp() > AT + 121


def test_an_episode_alertmanager_already_let_lapse_starts_again() -> None:
    # every replica was gone for longer than the alert's endsAt: Alertmanager has
    # resolved it, so its first tick back is a new start, not a 3-hour-old one
    first = step({}, tick("warning", ["blocked_pct"]), AT + 1)
    later = tick("warning", ["blocked_pct"], at=AT + 3 * 3600)
    (alert,) = body(later, step(first, later, AT + 3 * 3600 + 1))
    assert alert["startsAt"] == to_rfc3339(AT + 3 * 3600)


HOSTILE = [
    'a", "b',
    "line\nbreak\r\x00",
    "<a href='http://evil'>click</a> & @channel",
    "é" * 300,
    "\u202eevil\u2066",
    "x" * 10_000,
]


@pytest.mark.parametrize("user", HOSTILE)
def test_user_ids_are_escaped_bounded_and_never_labels(user: str) -> None:
    t = tick("critical", ["blocked_pct", "top_user_rps"], top_users=[(user, 9.0)] * 12)
    alerts = body(t, step({}, t, AT + 1))
    for alert in alerts:
        for value in alert["labels"].values():  # type: ignore[attr-defined]
            assert user[:8] not in value
        for value in alert["annotations"].values():  # type: ignore[attr-defined]
            assert len(value) <= ANNOTATION_CHARS
            assert value.isascii() and value.isprintable()
            assert "<" not in value and ">" not in value and "&" not in value
        users = alert["annotations"]["top_users"]  # type: ignore[index]
        more = re.search(r" \(\+(\d+) more\)$", users)
        assert more is not None, users
        assert users.count(" 9.00 rps") + int(more[1]) == 12
    escaped = escape_user(user)
    decoded = json.loads(escaped.replace('..."', '"'))
    assert user.startswith(decoded)
    assert len(decoded) <= USER_ID_CHARS


def test_state_round_trips_and_rejects_garbage() -> None:
    t = tick("critical", ["blocked_pct", "safety_pct"])
    episodes = step({}, t, AT + 1)
    assert load_state(dump_state(episodes)) == episodes
    for raw in (b"", b"[]", b'{"v": 99, "episodes": {}}', b'{"v": 1, "episodes": {"k": 1}}'):
        with pytest.raises(ValueError):
            load_state(raw)
    bad_kind = dump_state(episodes).replace(b'"signal_red"', b'"nope"')
    with pytest.raises(ValueError):
        load_state(bad_kind)


def test_alertnames_are_the_contract() -> None:
    assert dict(ALERTNAMES) == {
        "signal_red": "LLMSecuritySignalRed",
        "critical": "LLMSecurityCritical",
        "stale": "StreamSentinelStale",
        "tenant_signal_red": "LLMSecurityTenantSignalRed",
        "tenant_critical": "LLMSecurityTenantCritical",
    }


# -- config ------------------------------------------------------------------------


def _load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "sentinel.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(path, env or {})


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('url = "http://u:p@am:9093"', "alertmanager[0].url", "credentials"),
        ('url = "ftp://am"', "alertmanager[0].url", "http"),
        ('url = "http://am:9093?x=1"', "alertmanager[0].url", "query"),
        ('url = "http://am"\nlabels = { alertname = "x" }', "alertmanager[0].labels", "itself"),
        ('url = "http://am"\nlabels = { "bad-name" = "x" }', "alertmanager[0].labels.bad-name",
         "pattern"),
        ('url = "http://am"\nbasic_auth_username = "u"', "alertmanager[0]", "both"),
        (
            'url = "http://am"\nbearer_token = "t"\nbasic_auth_username = "u"\n'
            'basic_auth_password = "p"',
            "alertmanager[0]",
            "not both",
        ),
        ('url = "http://am"\nssl_cafile = "/nonexistent/ca.pem"', "alertmanager[0].ssl_cafile",
         "cannot read"),
        ('url = "http://am"\ntimeout_seconds = 0', "alertmanager[0].timeout_seconds", "greater"),
    ],
)  # fmt: skip
def test_bad_targets_name_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"[[alertmanager]]\n{toml}\n")
    assert caught.value.key == key, str(caught.value)
    assert problem in caught.value.problem
    assert "u:p" not in str(caught.value)


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        _load(tmp_path, f'[[alertmanager]]\nurl = "https://am"\nssl_cafile = "{ca}"\n')


def test_targets_from_toml_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "am.token").write_text("s3cret-token\n", encoding="utf-8")
    cfg = _load(
        tmp_path,
        '[[alertmanager]]\nurl = "http://am:9093"\nlabels = { service = "gw" }\n'
        'bearer_token_file = "am.token"\n\n[[alertmanager]]\nname = "backup"\n'
        'url = "https://am2:9093/prefix"\nseverity = { signal_red = "info" }\n',
        {
            "SENTINEL_ALERTMANAGER_1_LABELS_ENV": "prod",
            "SENTINEL_ALERTMANAGER_2_URL": "http://am3",
        },
    )
    first, second, third = cfg.alertmanager  # type: ignore[attr-defined]
    assert (first.name, second.name, third.name) == ("alertmanager-0", "backup", "alertmanager-2")
    assert first.bearer_token.get_secret_value() == "s3cret-token"
    assert second.severity.signal_red == "info" and second.severity.critical == "page"
    assert dict(second.labels) == {"env": "prod"}
    assert "s3cret-token" in cfg.secrets()  # type: ignore[attr-defined]
    assert "s3cret-token" not in json.dumps(cfg.redacted_dict())  # type: ignore[attr-defined]


def test_target_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice"):
        _load(
            tmp_path,
            '[[alertmanager]]\nname = "a"\nurl = "http://x"\n'
            '[[alertmanager]]\nname = "a"\nurl = "http://y"\n',
        )


# -- docs/alerting.md says what the code does ------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs/alerting.md"


def test_the_documented_target_loads(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    (block,) = re.findall(r"^```toml\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/alertmanager.token").write_text("t0ken\n", encoding="utf-8")
    cfg = _load(tmp_path, block)
    (target,) = cfg.alertmanager  # type: ignore[attr-defined]
    assert target.bearer_token.get_secret_value() == "t0ken"
    assert target.severity == type(target.severity)()  # "the defaults" in the comment


def test_the_documented_alert_table_is_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [^|]*\|([^|]*)\| `(\w+)` \|$", text, re.MULTILINE)
    documented = {name: severity for name, _, severity in rows}
    defaults = AlertSeverities()
    assert documented == {
        name: getattr(defaults, SEVERITY_OF[kind]) for kind, name in ALERTNAMES.items()
    }
    signal_alerts = (ALERTNAMES["signal_red"], ALERTNAMES["tenant_signal_red"])
    tenant_alerts = (ALERTNAMES["tenant_signal_red"], ALERTNAMES["tenant_critical"])
    for name, labels, _ in rows:
        assert ("`signal`" in labels) == (name in signal_alerts)
        assert ("`tenant`" in labels) == (name in tenant_alerts)
