"""Config: defaults, TOML, env overrides, secret files, errors that name the key, redaction."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stream_sentinel.config import Config, ConfigError, HeartbeatTokens, load_config
from stream_sentinel.config_env import format_key
from stream_sentinel.model import SIGNALS

TOKEN = "TOKEN-7f3a9c-composite"
TOKEN2 = "TOKEN-b41d-blocked"
STATUS = "STATUS-c0ffee-bearer"
REDIS_PW = "REDISPW-9d9d"

DESIGN_TOML = """
[kafka]
bootstrap_servers = "localhost:9092"
group_id = "stream-sentinel"
request_topic = "llm.requests"
response_topic = "llm.responses"
dlq_topic = "llm.sentinel.dlq"

[redis]
url = "redis://localhost:6379/0"
key_prefix = "ss"

[alerting]
tick_seconds = 60
multiplier = 2.0
red_needed = 2
min_events = 50
significance = 0.001
clear_ticks = 3

[baselines]
blocked_pct = 0.1
safety_pct = 99.5
top_user_rps = 5.0
spend_hour = 41.67

[learning]
days = 7
seasonality = "none"

[[heartbeat]]
kind = "generic"
url = "https://hb.example/api/heartbeat"
tokens = { composite = "c1", blocked_pct = "b1", safety_pct = "s1", top_user_rps = "t1", \
           spend_hour = "h1" }

[http]
host = "127.0.0.1"
port = 9464
"""

HB = '[[heartbeat]]\nurl = "https://hb.example/hb"\ntokens = {{ composite = "{}" }}\n'


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "sentinel.toml"
    path.write_text(text)
    return load_config(path, env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value


# --- defaults and file discovery ---------------------------------------------------------


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {})
    assert cfg == Config()
    assert (cfg.kafka.bootstrap_servers, cfg.kafka.group_id) == (
        "localhost:9092",
        "stream-sentinel",
    )
    assert (cfg.kafka.request_topic, cfg.kafka.response_topic) == ("llm.requests", "llm.responses")
    assert (cfg.kafka.dlq_topic, cfg.kafka.alerts_topic) == (
        "llm.sentinel.dlq",
        "llm.sentinel.alerts",
    )
    assert cfg.redis.url is None and cfg.redis.key_prefix == "ss"
    a = cfg.alerting
    assert (a.tick_seconds, a.multiplier, a.red_needed, a.min_events) == (60, 2.0, 2, 50)
    assert (a.significance, a.clear_ticks, a.lateness_seconds, a.top_k) == (0.001, 3, 30, 10)
    assert a.absolute_limits == {} and a.floors == {}
    assert (cfg.learning.days, cfg.learning.seasonality, cfg.learning.history_days) == (
        7,
        "none",
        14,
    )
    i = cfg.ingest
    assert (i.max_event_bytes, i.safety_threshold, i.max_future_seconds) == (65536, 0.5, 300)
    assert i.batch_max_records == 20_000 and i.prices == {}
    assert cfg.heartbeat == ()
    assert (cfg.http.host, cfg.http.port, cfg.http.status_token) == ("127.0.0.1", 9464, None)
    assert cfg.static_baselines() == {} and cfg.learned_signals() == SIGNALS


def test_design_example_loads_verbatim(tmp_path: Path) -> None:
    cfg = load(tmp_path, DESIGN_TOML)
    assert cfg.static_baselines() == {
        "blocked_pct": 0.1,
        "safety_pct": 99.5,
        "top_user_rps": 5.0,
        "spend_hour": 41.67,
    }
    assert cfg.learned_signals() == ()
    assert cfg.redis.url is not None
    assert cfg.redis.url.get_secret_value() == "redis://localhost:6379/0"
    (hb,) = cfg.heartbeat
    assert (hb.name, hb.kind, hb.timeout_seconds, hb.retries) == ("generic-0", "generic", 5.0, 2)
    assert hb.tokens.secret_values() == {
        "composite": "c1",
        "blocked_pct": "b1",
        "safety_pct": "s1",
        "top_user_rps": "t1",
        "spend_hour": "h1",
    }


def test_sentinel_toml_in_cwd_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sentinel.toml").write_text("[alerting]\ntick_seconds = 7\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}).alerting.tick_seconds == 7


def test_sentinel_config_variable_and_explicit_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sentinel.toml").write_text("[alerting]\ntick_seconds = 7\n")
    (tmp_path / "a.toml").write_text("[alerting]\ntick_seconds = 8\n")
    (tmp_path / "b.toml").write_text("[alerting]\ntick_seconds = 9\n")
    assert load_config(None, {"SENTINEL_CONFIG": "a.toml"}).alerting.tick_seconds == 8
    assert load_config("b.toml", {"SENTINEL_CONFIG": "a.toml"}).alerting.tick_seconds == 9
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SENTINEL_CONFIG": "missing.toml"})
    assert info.value.key == "missing.toml"


def test_partial_learning_baselines(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[baselines]\nsafety_pct = 99\nspend_hour = 0\n")
    assert cfg.static_baselines() == {"safety_pct": 99.0, "spend_hour": 0.0}
    assert cfg.learned_signals() == ("blocked_pct", "top_user_rps")


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    with pytest.raises(ValidationError):
        cfg.alerting.tick_seconds = 5  # type: ignore[misc]


# --- TOML errors -------------------------------------------------------------------------


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    err = error(tmp_path, "[alerting]\ntick_seconds = = 3\n")
    assert err.key.endswith("sentinel.toml")
    assert "line 2" in err.problem
    assert str(err).startswith(f"config error: {err.key}: invalid TOML")


def test_missing_and_non_utf8_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", {})
    assert info.value.key == str(tmp_path / "nope.toml") and "No such file" in info.value.problem
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[kafka]\ngroup_id = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad, {})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[kafka]\nbootstrap_server = 'x'\n", "kafka.bootstrap_server"),
        ("[kafkaa]\n", "kafkaa"),
        ("[alerting]\ntick_seconds = '60'\n", "alerting.tick_seconds"),
        ("[alerting]\ntick_seconds = true\n", "alerting.tick_seconds"),
        ("[alerting]\ntick_seconds = 1.5\n", "alerting.tick_seconds"),
        ("[alerting]\ntick_seconds = 0\n", "alerting.tick_seconds"),
        ("[alerting]\nmultiplier = 0\n", "alerting.multiplier"),
        ("[alerting]\nmultiplier = nan\n", "alerting.multiplier"),
        ("[alerting]\nmultiplier = inf\n", "alerting.multiplier"),
        ("[alerting]\nsignificance = 1.0\n", "alerting.significance"),
        ("[alerting]\nsignificance = -0.1\n", "alerting.significance"),
        ("[alerting]\nred_needed = 0\n", "alerting.red_needed"),
        ("[alerting]\nred_needed = 5\n", "alerting.red_needed"),
        ("[alerting]\nclear_ticks = 0\n", "alerting.clear_ticks"),
        ("[alerting]\nmin_events = 0\n", "alerting.min_events"),
        ("[alerting]\nlateness_seconds = -1\n", "alerting.lateness_seconds"),
        ("[alerting]\ntop_k = 0\n", "alerting.top_k"),
        ("[alerting]\nabsolute_limits = { bogus = 1 }\n", "alerting.absolute_limits.bogus"),
        (
            "[alerting]\nabsolute_limits = { spend_hour = -1 }\n",
            "alerting.absolute_limits.spend_hour",
        ),
        ("[alerting]\nfloors = { blocked_pct = 0 }\n", "alerting.floors.blocked_pct"),
        ("[baselines]\nblocked_pct = 101\n", "baselines.blocked_pct"),
        ("[baselines]\nsafety_pct = -1\n", "baselines.safety_pct"),
        ("[baselines]\ntop_user_rps = 'five'\n", "baselines.top_user_rps"),
        ("[learning]\nseasonality = 'weekly'\n", "learning.seasonality"),
        ("[learning]\ndays = 0\n", "learning.days"),
        ("[learning]\ndays = 20\n", "learning"),
        ("[ingest]\nsafety_threshold = 1.5\n", "ingest.safety_threshold"),
        ("[ingest]\nmax_event_bytes = 0\n", "ingest.max_event_bytes"),
        ("[ingest]\nbatch_max_records = 0\n", "ingest.batch_max_records"),
        ("[ingest]\nmax_future_seconds = -5\n", "ingest.max_future_seconds"),
        (
            "[ingest.prices.'gpt-4.1']\nprompt_per_1k = -1\ncompletion_per_1k = 0\n",
            'ingest.prices."gpt-4.1".prompt_per_1k',
        ),
        ("[ingest.prices.m]\nprompt_per_1k = 1\n", "ingest.prices.m.completion_per_1k"),
        ("[http]\nport = 65536\n", "http.port"),
        ("[http]\nport = -1\n", "http.port"),
        ("[http]\nhost = ''\n", "http.host"),
        ("[redis]\nurl = 'http://localhost'\n", "redis.url"),
        ("[redis]\nkey_prefix = '{ss}'\n", "redis.key_prefix"),
        ("[kafka]\ndlq_topic = 'has space'\n", "kafka.dlq_topic"),
        ("[kafka]\ngroup_id = ''\n", "kafka.group_id"),
        ("heartbeat = 3\n", "heartbeat"),
    ],
)
def test_invalid_value_names_its_key(tmp_path: Path, text: str, key: str) -> None:
    err = error(tmp_path, text)
    assert err.key == key
    assert str(err).startswith(f"config error: {key}: ")


def test_every_error_is_reported(tmp_path: Path) -> None:
    err = error(tmp_path, "[alerting]\ntick_seconds = 0\nmultiplier = 0\n")
    assert [k for k, _ in err.errors] == ["alerting.tick_seconds", "alerting.multiplier"]
    assert str(err).splitlines()[1].startswith("config error: alerting.multiplier: ")


def test_port_zero_and_edge_values_are_accepted(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "[http]\nport = 0\n[alerting]\nsignificance = 0\nred_needed = 4\n"
        "[redis]\nurl = 'unix:///run/redis.sock'\n[ingest]\nsafety_threshold = 1\n",
    )
    assert (cfg.http.port, cfg.alerting.significance, cfg.alerting.red_needed) == (0, 0.0, 4)
    assert cfg.ingest.safety_threshold == 1.0


# --- heartbeat targets -------------------------------------------------------------------


def test_heartbeat_entries_and_derived_names(tmp_path: Path) -> None:
    text = (
        HB.format("a")
        + '[[heartbeat]]\nkind = "healthchecks"\nurl = "https://hc.example"\n'
        + 'tokens = { spend_hour = "b" }\ntimeout_seconds = 1.5\nretries = 0\n'
        + '[[heartbeat]]\nname = "kuma-main"\nkind = "uptime-kuma"\nurl = "http://k:3001/"\n'
        + 'tokens = { safety_pct = "c" }\n'
    )
    cfg = load(tmp_path, text)
    assert [h.name for h in cfg.heartbeat] == ["generic-0", "healthchecks-1", "kuma-main"]
    assert cfg.heartbeat[1].timeout_seconds == 1.5 and cfg.heartbeat[1].retries == 0
    assert cfg.heartbeat[2].tokens.secret_values() == {"safety_pct": "c"}


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ('url = "ftp://h/x"\ntokens = { composite = "t" }', "heartbeat[0].url"),
        ('url = "https:///path"\ntokens = { composite = "t" }', "heartbeat[0].url"),
        ('url = "https://u:p@h/x"\ntokens = { composite = "t" }', "heartbeat[0].url"),
        ('url = "https://h/x#frag"\ntokens = { composite = "t" }', "heartbeat[0].url"),
        (
            'url = "https://h/x?a=1"\nkind = "healthchecks"\ntokens = { composite = "t" }',
            "heartbeat[0].url",
        ),
        (
            'kind = "uptime-kuma"\nurl = "https://h/?a=1"\ntokens = { composite = "t" }',
            "heartbeat[0].url",
        ),
        (
            'kind = "pagerduty"\nurl = "https://h"\ntokens = { composite = "t" }',
            "heartbeat[0].kind",
        ),
        ('url = "https://h"\ntokens = {}', "heartbeat[0].tokens"),
        ('url = "https://h"', "heartbeat[0].tokens"),
        ('tokens = { composite = "t" }', "heartbeat[0].url"),
        ('url = "https://h"\ntokens = { compsite = "t" }', "heartbeat[0].tokens.compsite"),
        ('url = "https://h"\ntokens = { composite = "" }', "heartbeat[0].tokens.composite"),
        ('url = "https://h"\ntokens = { composite = "a b" }', "heartbeat[0].tokens.composite"),
        ('url = "https://h"\ntokens = { composite = 5 }', "heartbeat[0].tokens.composite"),
        ('url = "https://h"\ntokens = { composite = "t" }\nname = "a b"', "heartbeat[0].name"),
        (
            'url = "https://h"\ntokens = { composite = "t" }\ntimeout_seconds = 0',
            "heartbeat[0].timeout_seconds",
        ),
        ('url = "https://h"\ntokens = { composite = "t" }\nretries = 11', "heartbeat[0].retries"),
        ('url = "https://h"\ntokens = { composite = "t" }\ntoken = "x"', "heartbeat[0].token"),
    ],
)
def test_invalid_heartbeat_names_its_key(tmp_path: Path, entry: str, key: str) -> None:
    assert error(tmp_path, f"[[heartbeat]]\n{entry}\n").key == key


def test_heartbeat_names_must_be_unique(tmp_path: Path) -> None:
    text = (HB.format("a") + 'name = "x"\n') + (HB.format("b") + 'name = "x"\n')
    err = error(tmp_path, text)
    assert err.key == "heartbeat" and "'x'" in err.problem


def test_tokens_model_needs_at_least_one() -> None:
    with pytest.raises(ValidationError):
        HeartbeatTokens()


# --- environment overrides ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "path", "expected"),
    [
        (
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS",
            "k1:9092,k2:9092",
            "kafka.bootstrap_servers",
            "k1:9092,k2:9092",
        ),
        ("SENTINEL_KAFKA_GROUP_ID", "123", "kafka.group_id", "123"),
        ("SENTINEL_KAFKA_ALERTS_TOPIC", "a.b", "kafka.alerts_topic", "a.b"),
        ("SENTINEL_REDIS_KEY_PREFIX", "pfx", "redis.key_prefix", "pfx"),
        ("SENTINEL_ALERTING_TICK_SECONDS", "5", "alerting.tick_seconds", 5),
        ("SENTINEL_ALERTING_MULTIPLIER", "3", "alerting.multiplier", 3.0),
        ("SENTINEL_ALERTING_SIGNIFICANCE", "1e-4", "alerting.significance", 1e-4),
        ("SENTINEL_ALERTING_LATENESS_SECONDS", "0", "alerting.lateness_seconds", 0),
        ("SENTINEL_BASELINES_SPEND_HOUR", "41.67", "baselines.spend_hour", 41.67),
        ("SENTINEL_LEARNING_SEASONALITY", "hour_of_day", "learning.seasonality", "hour_of_day"),
        ("SENTINEL_LEARNING_HISTORY_DAYS", "30", "learning.history_days", 30),
        ("SENTINEL_INGEST_MAX_EVENT_BYTES", "1024", "ingest.max_event_bytes", 1024),
        ("SENTINEL_HTTP_HOST", "0.0.0.0", "http.host", "0.0.0.0"),
        ("SENTINEL_HTTP_PORT", "0", "http.port", 0),
        ("SENTINEL_alerting_top_k", "3", "alerting.top_k", 3),
    ],
)
def test_env_overrides_each_section(
    tmp_path: Path, var: str, value: str, path: str, expected: object
) -> None:
    cfg: object = load(tmp_path, "[alerting]\ntick_seconds = 30\n", {var: value})
    for part in path.split("."):
        cfg = getattr(cfg, part)
    assert cfg == expected and type(cfg) is type(expected)


def test_env_wins_over_toml_and_ignores_other_variables(tmp_path: Path) -> None:
    env = {"SENTINEL_ALERTING_TICK_SECONDS": "9", "PATH": "/bin", "KAFKA_BOOTSTRAP_SERVERS": "x"}
    cfg = load(tmp_path, "[alerting]\ntick_seconds = 30\nmultiplier = 4.0\n", env)
    assert (cfg.alerting.tick_seconds, cfg.alerting.multiplier) == (9, 4.0)
    assert cfg.kafka.bootstrap_servers == "localhost:9092"


def test_a_key_named_like_a_secret_file_is_set_as_itself(tmp_path: Path) -> None:
    # [learning] history_file is a plain key, not the file of a secret "history"
    env = {"SENTINEL_LEARNING_HISTORY_FILE": "/var/lib/sentinel/history.jsonl"}
    cfg = load(tmp_path, "[learning]\nhistory_file = 'x'\n", env)
    assert cfg.learning.history_file == "/var/lib/sentinel/history.jsonl"
    with pytest.raises(ConfigError, match="unknown setting"):
        load(tmp_path, "", {"SENTINEL_LEARNING_NOPE_FILE": "/x"})


def test_empty_env_value_clears_optional_keys(tmp_path: Path) -> None:
    text = "[redis]\nurl = 'redis://r:6379/1'\n[baselines]\nblocked_pct = 0.1\nsafety_pct = 99.5\n"
    env = {"SENTINEL_REDIS_URL": "", "SENTINEL_BASELINES_BLOCKED_PCT": ""}
    cfg = load(tmp_path, text, env)
    assert cfg.redis.url is None
    assert cfg.static_baselines() == {"safety_pct": 99.5}
    assert cfg.learned_signals() == ("blocked_pct", "top_user_rps", "spend_hour")


def test_empty_env_value_for_required_key_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, "", {"SENTINEL_KAFKA_GROUP_ID": ""})
    assert err.key == "kafka.group_id" and "(from SENTINEL_KAFKA_GROUP_ID)" in err.problem


def test_env_redis_url(tmp_path: Path) -> None:
    cfg = load(tmp_path, "", {"SENTINEL_REDIS_URL": "rediss://r.example:6380/2"})
    assert cfg.redis.url is not None
    assert cfg.redis.url.get_secret_value() == "rediss://r.example:6380/2"


def test_env_table_entries_and_whole_tables(tmp_path: Path) -> None:
    env = {
        "SENTINEL_ALERTING_ABSOLUTE_LIMITS_BLOCKED_PCT": "1.0",
        "SENTINEL_ALERTING_FLOORS": "{ spend_hour = 0.5, top_user_rps = 1 }",
        "SENTINEL_INGEST_PRICES": (
            '{ "gpt-4o" = { prompt_per_1k = 0.005, completion_per_1k = 0.015 } }'
        ),
        "SENTINEL_INGEST_PRICES_LOCAL": "{ prompt_per_1k = 0, completion_per_1k = 0 }",
    }
    cfg = load(tmp_path, "[alerting]\nabsolute_limits = { spend_hour = 100 }\n", env)
    assert cfg.alerting.absolute_limits == {"spend_hour": 100.0, "blocked_pct": 1.0}
    assert cfg.alerting.floors == {"spend_hour": 0.5, "top_user_rps": 1.0}
    assert cfg.ingest.prices["gpt-4o"].completion_per_1k == 0.015
    assert cfg.ingest.prices["local"].prompt_per_1k == 0.0


def test_env_type_error_names_key_and_variable(tmp_path: Path) -> None:
    err = error(tmp_path, "", {"SENTINEL_ALERTING_MULTIPLIER": "double"})
    assert err.key == "alerting.multiplier"
    assert err.problem.endswith("(from SENTINEL_ALERTING_MULTIPLIER)")
    assert error(tmp_path, "", {"SENTINEL_ALERTING_TICK_SECONDS": "1.5"}).key == (
        "alerting.tick_seconds"
    )
    assert error(tmp_path, "", {"SENTINEL_HTTP_PORT": "2026-01-01"}).key == "http.port"


@pytest.mark.parametrize(
    "var",
    [
        "SENTINEL_KAFKA_BOOTSTRAP_SERVER",
        "SENTINEL_BOGUS_KEY",
        "SENTINEL_",
        "SENTINEL_ALERTING_TICK_SECONDS_X_Y",
        "SENTINEL_HEARTBEAT_URL",
        "SENTINEL_HEARTBEAT_0_TOKEN",
        "SENTINEL_HEARTBEAT_0_TOKENS_BOGUS",
        "SENTINEL_HTTP_PORT_NUMBER",
        "SENTINEL_ALERTING_MULTIPLIER_FILE",
    ],
)
def test_unknown_env_variable_is_named(tmp_path: Path, var: str) -> None:
    err = error(tmp_path, HB.format("t"), {var: "1"})
    assert err.key == var
    assert str(err).startswith(f"config error: {var}: ")


def test_env_heartbeat_override_and_append(tmp_path: Path) -> None:
    env = {
        "SENTINEL_HEARTBEAT_0_KIND": "healthchecks",
        "SENTINEL_HEARTBEAT_0_TIMEOUT_SECONDS": "2",
        "SENTINEL_HEARTBEAT_0_TOKENS_BLOCKED_PCT": TOKEN2,
        "SENTINEL_HEARTBEAT_1_KIND": "uptime-kuma",
        "SENTINEL_HEARTBEAT_1_URL": "http://127.0.0.1:3001",
        "SENTINEL_HEARTBEAT_1_TOKENS_COMPOSITE": TOKEN,
    }
    cfg = load(tmp_path, HB.format("orig"), env)
    first, second = cfg.heartbeat
    assert (first.kind, first.timeout_seconds, first.name) == (
        "healthchecks",
        2.0,
        "healthchecks-0",
    )
    assert first.tokens.secret_values() == {"composite": "orig", "blocked_pct": TOKEN2}
    assert (second.name, second.kind, second.url) == (
        "uptime-kuma-1",
        "uptime-kuma",
        "http://127.0.0.1:3001",
    )
    assert second.tokens.secret_values() == {"composite": TOKEN}


def test_env_heartbeats_append_in_numeric_order(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    for i in range(12):
        env[f"SENTINEL_HEARTBEAT_{i}_URL"] = f"https://h{i}.example"
        env[f"SENTINEL_HEARTBEAT_{i}_TOKENS_COMPOSITE"] = f"t{i}"
    cfg = load(tmp_path, "", env)
    assert [h.url for h in cfg.heartbeat] == [f"https://h{i}.example" for i in range(12)]
    assert cfg.heartbeat[10].tokens.secret_values() == {"composite": "t10"}


def test_env_heartbeat_gap_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, HB.format("t"), {"SENTINEL_HEARTBEAT_2_URL": "https://h"})
    assert err.key == "SENTINEL_HEARTBEAT_2_URL" and "next index is 1" in err.problem


def test_env_into_non_table_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, "alerting = 5\n", {"SENTINEL_ALERTING_TICK_SECONDS": "5"})
    assert err.key == "SENTINEL_ALERTING_TICK_SECONDS" and "alerting is not a table" in err.problem


# --- secrets from files ------------------------------------------------------------------


def test_env_secret_files(tmp_path: Path) -> None:
    (tmp_path / "hb").write_text(TOKEN + "\n")
    (tmp_path / "status").write_text(STATUS + "\r\n")
    (tmp_path / "redis").write_text(f"redis://:{REDIS_PW}@r:6379/0")
    env = {
        "SENTINEL_HEARTBEAT_0_TOKENS_SPEND_HOUR_FILE": str(tmp_path / "hb"),
        "SENTINEL_HTTP_STATUS_TOKEN_FILE": str(tmp_path / "status"),
        "SENTINEL_REDIS_URL_FILE": str(tmp_path / "redis"),
    }
    cfg = load(tmp_path, HB.format("c"), env)
    assert cfg.heartbeat[0].tokens.secret_values() == {"composite": "c", "spend_hour": TOKEN}
    assert cfg.http.status_token is not None
    assert cfg.http.status_token.get_secret_value() == STATUS
    assert cfg.redis.url is not None
    assert cfg.redis.url.get_secret_value() == f"redis://:{REDIS_PW}@r:6379/0"


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "hb").write_text(TOKEN + "\n\n")
    env = {"SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE_FILE": str(tmp_path / "hb")}
    err = error(tmp_path, HB.format("c").replace('composite = "c"', 'safety_pct = "s"'), env)
    assert err.key == "heartbeat[0].tokens.composite" and TOKEN not in str(err)


def test_env_secret_file_problems(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    err = error(tmp_path, HB.format("c"), {"SENTINEL_HTTP_STATUS_TOKEN_FILE": missing})
    assert err.key == "SENTINEL_HTTP_STATUS_TOKEN_FILE" and missing in err.problem
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    err = error(tmp_path, "", {"SENTINEL_HTTP_STATUS_TOKEN_FILE": str(tmp_path / "big")})
    assert "larger than 64 KiB" in err.problem
    (tmp_path / "bin").write_bytes(b"\xff\xfe" + TOKEN.encode())
    err = error(tmp_path, "", {"SENTINEL_HTTP_STATUS_TOKEN_FILE": str(tmp_path / "bin")})
    assert "not UTF-8" in err.problem and err.__context__ is None
    (tmp_path / "empty").write_text("")
    err = error(tmp_path, "", {"SENTINEL_HTTP_STATUS_TOKEN_FILE": str(tmp_path / "empty")})
    assert err.key == "http.status_token"


def test_env_value_and_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "s").write_text(STATUS)
    env = {
        "SENTINEL_HTTP_STATUS_TOKEN": "x",
        "SENTINEL_HTTP_STATUS_TOKEN_FILE": str(tmp_path / "s"),
    }
    err = error(tmp_path, "", env)
    assert err.key == "SENTINEL_HTTP_STATUS_TOKEN_FILE" and STATUS not in str(err)


def test_toml_secret_files_relative_to_config(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "c").write_text(TOKEN + "\n")
    (secrets / "s").write_text(STATUS)
    (secrets / "r").write_text("redis://localhost:6379/3\n")
    text = (
        '[redis]\nurl_file = "secrets/r"\n[http]\nstatus_token_file = "secrets/s"\n'
        '[[heartbeat]]\nurl = "https://h"\ntokens = { safety_pct = "x" }\n'
        f'tokens_file = {{ composite = "secrets/c", spend_hour = "{secrets / "s"}" }}\n'
    )
    cfg = load(tmp_path, text)
    assert cfg.heartbeat[0].tokens.secret_values() == {
        "composite": TOKEN,
        "safety_pct": "x",
        "spend_hour": STATUS,
    }
    assert cfg.http.status_token is not None
    assert cfg.http.status_token.get_secret_value() == STATUS
    assert cfg.redis.url is not None
    assert cfg.redis.url.get_secret_value() == "redis://localhost:6379/3"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[http]\nstatus_token_file = "nope"\n', "http.status_token_file"),
        ('[http]\nstatus_token = "a"\nstatus_token_file = "f"\n', "http.status_token_file"),
        ("[http]\nstatus_token_file = 3\n", "http.status_token_file"),
        ('[http]\nhost_file = "f"\n', "http.host_file"),
        (
            '[[heartbeat]]\nurl = "https://h"\ntokens_file = { composite = "nope" }\n',
            "heartbeat[0].tokens_file.composite",
        ),
        (
            '[[heartbeat]]\nurl = "https://h"\ntokens = { composite = "a" }\n'
            'tokens_file = { composite = "f" }\n',
            "heartbeat[0].tokens_file.composite",
        ),
        ('[[heartbeat]]\nurl = "https://h"\ntokens_file = "f"\n', "heartbeat[0].tokens_file"),
    ],
)
def test_toml_secret_file_problems(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "f").write_text("secret")
    err = error(tmp_path, text)
    assert err.key == key
    if "nope" in text:
        assert str(tmp_path / "nope") in err.problem


def test_env_overrides_toml_secret_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("from-file")
    cfg = load(
        tmp_path,
        '[http]\nstatus_token_file = "f"\n',
        {"SENTINEL_HTTP_STATUS_TOKEN": STATUS},
    )
    assert cfg.http.status_token is not None
    assert cfg.http.status_token.get_secret_value() == STATUS


# --- secrets never shown -----------------------------------------------------------------


def secret_config(tmp_path: Path) -> Config:
    text = (
        f'[redis]\nurl = "redis://admin:{REDIS_PW}@r:6379/0"\n[http]\nstatus_token = "{STATUS}"\n'
        + HB.format(TOKEN)
        + '[[heartbeat]]\nkind = "webhook"\nurl = "https://w"\n'
        + f'tokens = {{ blocked_pct = "{TOKEN2}" }}\n'
    )
    return load(tmp_path, text)


ALL_SECRETS = (TOKEN, TOKEN2, STATUS, REDIS_PW)


def test_secrets_absent_from_repr_str_dump_and_redacted(tmp_path: Path) -> None:
    cfg = secret_config(tmp_path)
    redacted = cfg.redacted_dict()
    shown = [repr(cfg), str(cfg), cfg.model_dump_json(), json.dumps(redacted), repr(cfg.heartbeat)]
    for text in shown:
        for secret in ALL_SECRETS:
            assert secret not in text
    assert redacted["http"]["status_token"] == "***"
    assert redacted["heartbeat"][0]["tokens"]["composite"] == "***"
    assert redacted["heartbeat"][1]["tokens"] == {
        "composite": None,
        "blocked_pct": "***",
        "safety_pct": None,
        "top_user_rps": None,
        "spend_hour": None,
    }
    assert redacted["redis"]["url"] == "redis://***@r:6379/0"
    assert redacted["alerting"]["tick_seconds"] == 60


def test_secrets_lists_every_secret_for_scrubbing(tmp_path: Path) -> None:
    assert set(secret_config(tmp_path).secrets()) == {TOKEN, TOKEN2, STATUS, REDIS_PW, "admin"}
    cfg = load(tmp_path, "[redis]\nurl = 'unix:///s.sock?db=0&password=" + REDIS_PW + "'\n")
    assert cfg.secrets() == (REDIS_PW,)
    assert cfg.redacted_dict()["redis"]["url"] == "unix:///s.sock?***"


def test_secrets_absent_from_errors_and_tracebacks(tmp_path: Path) -> None:
    # Invalid secrets: pydantic's own error text would echo them as input_value.
    text = f'[http]\nstatus_token = "{STATUS} x"\n' + HB.format(TOKEN) + "retries = -1\n"
    env = {"SENTINEL_HEARTBEAT_0_TOKENS_SPEND_HOUR": f"{TOKEN2}\t"}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert {k for k, _ in info.value.errors} == {
        "heartbeat[0].tokens.spend_hour",
        "heartbeat[0].retries",
        "http.status_token",
    }
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "http.status_token" in rendered
    for secret in ALL_SECRETS:
        assert secret not in rendered
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_secret_file_conflict_error_hides_both_values(tmp_path: Path) -> None:
    (tmp_path / "f").write_text(TOKEN2)
    text = HB.format(TOKEN) + 'tokens_file = { composite = "f" }\n'
    err = error(tmp_path, text)
    assert err.key == "heartbeat[0].tokens_file.composite"
    assert TOKEN not in str(err) and TOKEN2 not in str(err)


@settings(max_examples=60, deadline=None)
@given(token=st.text(st.characters(categories=("L", "N", "P", "S")), min_size=6, max_size=40))
def test_any_token_is_hidden(token: str) -> None:
    tokens = HeartbeatTokens.model_validate({"composite": token})
    cfg = Config.model_validate(
        {"heartbeat": [{"url": "https://h", "tokens": {"composite": token}}]}
    )
    assert tokens.secret_values() == {"composite": token}
    assert cfg.secrets() == (token,)
    # a short token may occur in the output by chance (e.g. "llm.re" in a topic
    # name): the rendering must contain it exactly as often as without the token
    neutral = Config.model_validate(
        {"heartbeat": [{"url": "https://h", "tokens": {"composite": "\u2603" * 8}}]}
    )

    def texts(c: Config) -> list[str]:
        return [repr(c), str(c), json.dumps(c.redacted_dict()), c.model_dump_json()]

    for text, plain in zip(texts(cfg), texts(neutral), strict=True):
        assert text.count(token) == plain.count(token)


@settings(max_examples=60, deadline=None)
@given(value=st.integers(min_value=-(2**70), max_value=2**70))
def test_tick_seconds_from_env_is_accepted_or_named(
    tmp_path_factory: pytest.TempPathFactory, value: int
) -> None:
    empty = tmp_path_factory.mktemp("cfg") / "empty.toml"
    empty.write_text("")
    try:
        cfg = load_config(empty, {"SENTINEL_ALERTING_TICK_SECONDS": str(value)})
    except ConfigError as err:
        assert err.key == "alerting.tick_seconds" and not 1 <= value <= 3600
    else:
        assert cfg.alerting.tick_seconds == value and 1 <= value <= 3600


def test_format_key() -> None:
    assert format_key(("heartbeat", 0, "tokens", "composite")) == "heartbeat[0].tokens.composite"
    assert format_key(("alerting", "floors", "x", "[key]")) == "alerting.floors.x"
    assert format_key(("ingest", "prices", 'a."b', "x")) == 'ingest.prices."a.\\"b".x'


# What Kubernetes sets in every pod of a namespace holding a Service named
# "sentinel" with ports 9464/TCP (named http) and 9000/UDP.
KUBERNETES_SERVICE_LINKS = {
    "SENTINEL_SERVICE_HOST": "10.96.0.12",
    "SENTINEL_SERVICE_PORT": "9464",
    "SENTINEL_SERVICE_PORT_HTTP": "9464",
    "SENTINEL_PORT": "tcp://10.96.0.12:9464",
    "SENTINEL_PORT_9464_TCP": "tcp://10.96.0.12:9464",
    "SENTINEL_PORT_9464_TCP_PROTO": "tcp",
    "SENTINEL_PORT_9464_TCP_PORT": "9464",
    "SENTINEL_PORT_9464_TCP_ADDR": "10.96.0.12",
    "SENTINEL_PORT_9000_UDP": "udp://10.96.0.12:9000",
}


def test_kubernetes_service_variables_are_not_settings(tmp_path: Path) -> None:
    env = {**KUBERNETES_SERVICE_LINKS, "SENTINEL_HTTP_PORT": "9500"}
    cfg = load(tmp_path, "", env)
    assert cfg.http.port == 9500
    assert cfg.http.host == "127.0.0.1"


@pytest.mark.parametrize(
    "var",
    [
        "SENTINEL_HTTP_PORTS",
        "SENTINEL_PORTS",
        "SENTINEL_PORT_HTTP",
        "SENTINEL_PORT_9464_TCP_HOST",
        "SENTINEL_SERVICE_HOSTNAME",
        "SENTINEL_SERVICE",
    ],
)
def test_near_misses_of_service_variables_are_still_errors(tmp_path: Path, var: str) -> None:
    err = error(tmp_path, "", {**KUBERNETES_SERVICE_LINKS, var: "1"})
    assert err.key == var
