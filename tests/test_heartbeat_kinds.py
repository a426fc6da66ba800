"""Pure heartbeat logic: failure rules, messages, wire formats, backoff, redaction."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.heartbeat_kinds import (
    KINDS,
    MAX_MESSAGE_CHARS,
    TOKEN_KEYS,
    HeartbeatTarget,
    Kind,
    backoff_delay,
    build_request,
    classify,
    heartbeat_message,
    is_failure,
    redact,
    summary,
    token_keys,
)
from stream_sentinel.model import SIGNALS, SignalName, SignalReading, State, Status, Tick

TOKENS = {"composite": "c-tok", "blocked_pct": "b-tok", "spend_hour": "s-tok"}


def reading(name: SignalName, value: float | None, state: State = "ok") -> SignalReading:
    return SignalReading(name, value, baseline=1.0, threshold=2.0, state=state)


def make_tick(status: Status = "ok", red: tuple[SignalName, ...] = (), **values: float) -> Tick:
    defaults = {"blocked_pct": 0.12, "safety_pct": 99.71, "top_user_rps": 3.2, "spend_hour": 4.1}
    defaults.update(values)
    signals = {
        name: reading(name, defaults[name], "red" if name in red else "ok") for name in SIGNALS
    }
    return Tick(at=1_790_000_000, status=status, red=red, signals=signals)


def target(kind: Kind, url: str = "http://127.0.0.1:9/base", **kw: object) -> HeartbeatTarget:
    tokens = kw.pop("tokens", TOKENS)
    return HeartbeatTarget("t", kind, url, tokens, **kw)  # type: ignore[arg-type]


# --- target validation ------------------------------------------------------


def test_target_repr_hides_tokens() -> None:
    t = target("generic")
    assert "tok" not in repr(t)
    assert "tok" not in str(t)


def test_target_tokens_are_a_frozen_copy() -> None:
    tokens = dict(TOKENS)
    t = target("generic", tokens=tokens)
    tokens["composite"] = "changed"
    assert t.tokens["composite"] == "c-tok"
    with pytest.raises(TypeError):
        t.tokens["composite"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "nagios"}, "kind must be one of"),
        ({"url": "ftp://h/x"}, "absolute http(s) URL"),
        ({"url": "/relative"}, "absolute http(s) URL"),
        ({"url": "http://h/x#frag"}, "fragment"),
        ({"kind": "healthchecks", "url": "http://h/?x=1"}, "without a query"),
        ({"kind": "uptime-kuma", "url": "http://h/?x=1"}, "without a query"),
        ({"tokens": {}}, "at least one"),
        ({"tokens": {"composite": "secret-value", "bogus": "secret-value"}}, "'bogus'"),
        ({"tokens": {"composite": ""}}, "non-empty"),
        ({"tokens": {"composite": "secret-value\udcff"}}, "UTF-8"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"retries": 11}, "retries"),
        ({"name": ""}, "name"),
    ],
)
def test_target_validation_names_the_field_not_the_secret(
    kwargs: dict[str, object], fragment: str
) -> None:
    args: dict[str, object] = {
        "name": "t",
        "kind": "generic",
        "url": "http://h/x",
        "tokens": TOKENS,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match="heartbeat target") as info:
        HeartbeatTarget(**args)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert "secret-value" not in str(info.value)


def test_generic_target_may_carry_its_own_query() -> None:
    assert target("generic", url="http://h/x?team=a").url == "http://h/x?team=a"


def test_token_keys_composite_first_then_signal_order() -> None:
    t = target("generic", tokens={"spend_hour": "1", "composite": "2", "blocked_pct": "3"})
    assert token_keys(t) == ("composite", "blocked_pct", "spend_hour")


# --- failure rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "failure"),
    [("ok", False), ("warning", False), ("learning", False), ("critical", True), ("stale", True)],
)
def test_composite_failure_only_when_critical_or_stale(status: Status, failure: bool) -> None:
    assert is_failure(make_tick(status), "composite") is failure


@pytest.mark.parametrize("state", ["ok", "red", "insufficient_data"])
def test_signal_failure_only_when_red(state: State) -> None:
    tick = Tick(1, "warning", (), {"blocked_pct": reading("blocked_pct", 1.0, state)})
    assert is_failure(tick, "blocked_pct") is (state == "red")
    # A signal the tick does not carry cannot be red.
    assert is_failure(tick, "spend_hour") is False


# --- messages ---------------------------------------------------------------


def test_summary_has_the_seed_shape() -> None:
    assert summary(make_tick()) == (
        "blocked=0.12%, safety=99.71%, top_user_rps=3.20, spend_hour=$4.10"
    )


def test_summary_missing_values_are_na() -> None:
    tick = Tick(1, "ok", (), {"blocked_pct": reading("blocked_pct", None)})
    assert summary(tick) == "blocked=n/a, safety=n/a, top_user_rps=n/a, spend_hour=n/a"


def test_composite_message_states_status_and_red_signals() -> None:
    tick = make_tick("warning", red=("blocked_pct",))
    assert heartbeat_message(tick) == (
        "warning: blocked=0.12%, safety=99.71%, top_user_rps=3.20, spend_hour=$4.10"
        "; red: blocked_pct"
    )
    assert heartbeat_message(make_tick()) == summary(make_tick())


def test_stale_composite_names_its_reason_first_on_one_line() -> None:
    tick = Tick(1, "stale", (), {}, reason="rebuilding,\nstore unreachable")
    assert heartbeat_message(tick) == (
        "stale: rebuilding, store unreachable; "
        "blocked=n/a, safety=n/a, top_user_rps=n/a, spend_hour=n/a"
    )


def test_a_signal_push_carries_its_own_line() -> None:
    red = SignalReading(
        "blocked_pct", 33.333, baseline=0.1, threshold=0.3, state="red", p_value=1.234e-5
    )
    spend = SignalReading("spend_hour", 4.1, baseline=41.67, threshold=83.34, state="ok")
    tick = Tick(1, "warning", ("blocked_pct",), {"blocked_pct": red, "spend_hour": spend})
    assert heartbeat_message(tick, "blocked_pct") == (
        "blocked_pct red: value=33.33%, baseline=0.10%, threshold=0.30%, p=1.2e-05"
    )
    # no p-value without enough events; the unit is the signal's own
    assert heartbeat_message(tick, "spend_hour") == (
        "spend_hour ok: value=$4.10, baseline=$41.67, threshold=$83.34, p=n/a"
    )
    # nothing of the other signals, nor the composite's summary
    assert "safety" not in heartbeat_message(tick, "blocked_pct")


def test_a_signal_line_says_where_its_baseline_comes_from_unless_static() -> None:
    learned = SignalReading(
        "top_user_rps", None, 5.0, 10.0, "insufficient_data", baseline_source="learned"
    )
    tick = Tick(1, "ok", (), {"top_user_rps": learned})
    assert heartbeat_message(tick, "top_user_rps") == (
        "top_user_rps insufficient_data: value=n/a, baseline=5.00, threshold=10.00, p=n/a"
        " (baseline learned)"
    )


def test_a_signal_of_a_stale_tick_says_why_it_has_no_value() -> None:
    tick = Tick(1, "stale", (), {}, reason="dead-letter topic x refuses writes")
    assert heartbeat_message(tick, "safety_pct") == (
        "safety_pct n/a: stale (dead-letter topic x refuses writes)"
    )


# --- wire formats -----------------------------------------------------------

NASTY = "a/b?c=d&e#f %+ü"


def test_healthchecks_success_and_fail_paths() -> None:
    t = target("healthchecks", url="http://h:1/hc/ping/", tokens={"composite": NASTY})
    ok = build_request(t, "composite", make_tick(), False, "all good")
    assert ok.method == "POST"
    assert ok.url.raw_path == "/hc/ping/" + quote(NASTY, safe="")
    assert ok.body == b"all good"
    assert ok.content_type == "text/plain; charset=utf-8"
    fail = build_request(t, "composite", make_tick(), True, "bad")
    assert fail.url.raw_path == "/hc/ping/" + quote(NASTY, safe="") + "/fail"
    assert fail.url.raw_query_string == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # hosted: the ping URL Healthchecks shows is https://hc-ping.com/<uuid>
        ("https://hc-ping.com", "https://hc-ping.com/{uuid}"),
        ("https://hc-ping.com/", "https://hc-ping.com/{uuid}"),
        # self-hosted: https://hc.example.org/ping/<uuid>
        ("https://hc.example.org/ping", "https://hc.example.org/ping/{uuid}"),
        ("http://10.0.0.5:8000/ping/", "http://10.0.0.5:8000/ping/{uuid}"),
    ],
)
def test_healthchecks_url_is_the_ping_url_up_to_the_uuid(url: str, expected: str) -> None:
    uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
    t = target("healthchecks", url=url, tokens={"composite": uuid})
    ok = build_request(t, "composite", make_tick(), False, "fine")
    fail = build_request(t, "composite", make_tick(), True, "down")
    assert str(ok.url) == expected.format(uuid=uuid)
    assert str(fail.url) == expected.format(uuid=uuid) + "/fail"


def test_uptime_kuma_query() -> None:
    t = target("uptime-kuma", url="http://h:1", tokens={"composite": NASTY})
    req = build_request(t, "composite", make_tick(), True, "x & y=1%")
    assert req.method == "GET" and req.body is None
    assert req.url.raw_path == "/api/push/" + quote(NASTY, safe="")
    assert req.url.raw_query_string == "status=down&msg=x%20%26%20y%3D1%25&ping="
    up = build_request(t, "composite", make_tick(), False, "m")
    assert up.url.query["status"] == "up"


def test_generic_query_keeps_existing_params() -> None:
    t = target("generic", url="http://h:1/api/heartbeat?team=a", tokens={"composite": NASTY})
    req = build_request(t, "composite", make_tick(), False, "hello world")
    split = urlsplit(str(req.url))
    assert split.path == "/api/heartbeat"
    assert parse_qsl(split.query) == [
        ("team", "a"),
        ("token", NASTY),
        ("status", "ok"),
        ("msg", "hello world"),
    ]
    crit = build_request(t, "composite", make_tick(), True, "m")
    assert crit.url.query["status"] == "critical"


def test_webhook_json_body() -> None:
    t = target("webhook", url="http://h:1/hook")
    tick = make_tick("warning", red=("blocked_pct",))
    req = build_request(t, "blocked_pct", tick, True, "msg")
    assert req.method == "POST" and req.content_type == "application/json"
    assert str(req.url) == "http://h:1/hook"
    assert req.body is not None
    assert orjson.loads(req.body) == {
        "token": "b-tok",
        "signal": "blocked_pct",
        "status": "critical",
        "state": "red",
        "message": "msg",
        "tick": tick.to_json(),
    }
    composite = orjson.loads(build_request(t, "composite", tick, False, "m").body or b"")
    assert (composite["signal"], composite["status"], composite["state"]) == (
        "composite",
        "ok",
        "warning",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_request_repr_hides_token(kind: Kind) -> None:
    req = build_request(target(kind), "composite", make_tick(), False, "m")
    assert "c-tok" not in repr(req)


def test_long_messages_are_capped() -> None:
    t = target("healthchecks")
    req = build_request(t, "composite", make_tick(), False, "x" * (MAX_MESSAGE_CHARS + 50))
    assert req.body == b"x" * MAX_MESSAGE_CHARS


@settings(max_examples=150)
@given(
    kind=st.sampled_from(KINDS),
    key=st.sampled_from(TOKEN_KEYS),
    token=st.text(min_size=1, max_size=40),
    message=st.text(max_size=80),
    failure=st.booleans(),
)
def test_untrusted_strings_never_shape_the_url(
    kind: Kind, key: str, token: str, message: str, failure: bool
) -> None:
    """Whatever the token and message hold, host, path shape and query keys stay fixed."""
    t = target(kind, url="http://h:1/base", tokens={key: token})
    req = build_request(t, key, make_tick(), failure, message)
    assert (req.url.host, req.url.port, req.url.fragment) == ("h", 1, "")
    segments = req.url.raw_path.split("/")
    if kind == "healthchecks":
        assert segments[:2] == ["", "base"]
        assert segments[2] == quote(token, safe="")
        assert segments[3:] == (["fail"] if failure else [])
        assert req.body == message.encode()
    elif kind == "uptime-kuma":
        assert segments == ["", "base", "api", "push", quote(token, safe="")]
        assert list(req.url.query.keys()) == ["status", "msg", "ping"]
        assert req.url.query["msg"] == message
    elif kind == "generic":
        assert req.url.raw_path == "/base"
        assert list(req.url.query.keys()) == ["token", "status", "msg"]
        assert req.url.query["token"] == token
        assert req.url.query["msg"] == message
    else:
        assert req.url.raw_path == "/base" and req.url.raw_query_string == ""
        assert orjson.loads(req.body or b"")["token"] == token


# --- response classification -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "body", "verdict"),
    [
        ("healthchecks", 200, b"OK", "ok"),
        ("healthchecks", 404, b"not found", "rejected"),
        ("generic", 204, b"", "ok"),
        ("generic", 301, b"", "rejected"),
        ("generic", 400, b"", "rejected"),
        ("generic", 408, b"", "retry"),
        ("generic", 429, b"", "retry"),
        ("generic", 500, b"", "retry"),
        ("webhook", 503, b"", "retry"),
        ("uptime-kuma", 200, b'{"ok":true}', "ok"),
        ("uptime-kuma", 200, b'{"ok":false,"msg":"Monitor not found or not active."}', "rejected"),
        ("uptime-kuma", 200, b"not json", "ok"),
        ("uptime-kuma", 404, b'{"ok":false}', "rejected"),
        ("uptime-kuma", 500, b"", "retry"),
    ],
)
def test_classify(kind: Kind, status: int, body: bytes, verdict: str) -> None:
    assert classify(kind, status, body) == verdict


# --- backoff ----------------------------------------------------------------


@settings(max_examples=200)
@given(
    retry=st.integers(min_value=0, max_value=1000),
    seed=st.integers(),
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=0.001, max_value=30.0),
)
def test_backoff_is_bounded(retry: int, seed: int, base: float, cap: float) -> None:
    delay = backoff_delay(retry, random.Random(seed), base, cap)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(retry, 62))


def test_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(7)
    samples = [[backoff_delay(r, rng, 0.1, 100.0) for _ in range(200)] for r in range(4)]
    for r, row in enumerate(samples):
        assert max(row) <= 0.1 * 2**r
        assert len(set(row)) == len(row)  # jittered, not a fixed step
    means = [sum(row) / len(row) for row in samples]
    assert means == sorted(means)


def test_backoff_is_reproducible_with_a_seed() -> None:
    def draw(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(r, rng, 0.2, 2.0) for r in range(5)]

    assert draw(3) == draw(3)


def test_backoff_rejects_negative_retry() -> None:
    with pytest.raises(ValueError, match="retry"):
        backoff_delay(-1, random.Random(0), 0.1, 1.0)


# --- redaction --------------------------------------------------------------


def test_redact_raw_and_quoted_forms() -> None:
    secret = "ab/c d+e"
    text = f"GET http://h/ping/{quote(secret, safe='')} failed; raw={secret}; form=ab%2Fc+d%2Be"
    out = redact(text, [secret])
    assert secret not in out
    assert quote(secret, safe="", errors="backslashreplace") not in out
    assert "ab%2Fc+d%2Be" not in out
    assert out.count("***") == 3


def test_redact_longest_secret_first_and_ignores_empty() -> None:
    assert redact("token=abcdef", ["abc", "abcdef", ""]) == "token=***"
    assert redact("nothing here", []) == "nothing here"


@settings(max_examples=150)
@given(
    secret=st.text(st.characters(exclude_characters="*"), min_size=1, max_size=30),
    prefix=st.text(max_size=20),
)
def test_redact_removes_every_occurrence(secret: str, prefix: str) -> None:
    quoted = quote(secret, safe="", errors="backslashreplace")
    out = redact(f"{prefix}{secret}|{quoted}|{secret}", [secret])
    assert secret not in out
    assert quote(secret, safe="", errors="backslashreplace") not in out
