"""Config values that try path or URL injection: each is a config error naming its
key, the CLI exits 2, and no message echoes the hostile value (it may hold a secret).

Also the Redis Cluster URL scheme, validated here like any other Redis URL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from stream_sentinel.config import ConfigError, load_config
from stream_sentinel.store.build import open_storage
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.wiring import storage_settings

HB = '[[heartbeat]]\nurl = "{url}"\ntokens = {{ composite = "{token}" }}\n'


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = tmp_path / "sentinel.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://hb.example/x\\r\\nHost: evil.example", "evil.example"),
        ("https://hb.example/x\\nX-Injected: 1", "X-Injected"),
        ("https://hb.example/x\\tsneaky", "sneaky"),
        ("https://hb.example/a b", "a b"),
        ("https://hb.example\\\\@evil.example/", "evil.example"),
        ("https://user:SECRETPW@hb.example/", "SECRETPW"),
        ("javascript:alert(1)//hb.example", "alert"),
        ("data:text/html,SECRETPW", "SECRETPW"),
        ("file:///etc/passwd", "passwd"),
        ("//hb.example/no-scheme", "no-scheme"),
        ("https://hb.example:99999/", "99999"),
    ],
)
def test_hostile_heartbeat_urls_are_refused(tmp_path: Path, url: str, secret: str) -> None:
    err = error(tmp_path, HB.format(url=url, token="t"))
    assert err.key == "heartbeat[0].url"
    assert secret not in str(err)


@pytest.mark.parametrize("token", ["..", ".", "a\\u0000b", "a\\u001b[31mb", "tok en"])
def test_hostile_tokens_are_refused(tmp_path: Path, token: str) -> None:
    err = error(tmp_path, HB.format(url="https://hb.example/", token=token))
    assert err.key == "heartbeat[0].tokens.composite"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[http]\nstatus_token_file = "../../etc/passwd"\n', "http.status_token_file"),
        ('[http]\nstatus_token_file = "secrets/../../x"\n', "http.status_token_file"),
        ('[http]\nstatus_token_file = "a\\u0000b"\n', "http.status_token_file"),
        ('[redis]\nurl_file = "x\\ny"\n', "redis.url_file"),
        (
            '[[heartbeat]]\nurl = "https://h"\ntokens_file = { composite = "../t" }\n',
            "heartbeat[0].tokens_file.composite",
        ),
    ],
)
def test_secret_file_paths_that_climb_or_smuggle_are_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    (tmp_path.parent / "t").write_text("would-be-read")
    err = error(tmp_path, text)
    assert err.key == key
    assert "would-be-read" not in str(err)


def test_secret_file_path_from_env_with_dotdot_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("SECRET-VIA-DOTDOT")
    climbing = str(tmp_path / "sub" / ".." / "s")
    err = error(tmp_path, "", {"SENTINEL_HTTP_STATUS_TOKEN_FILE": climbing})
    assert err.key == "SENTINEL_HTTP_STATUS_TOKEN_FILE" and "'..'" in err.problem
    assert "SECRET-VIA-DOTDOT" not in str(err)


def test_plain_secret_file_paths_still_work(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "s").write_text("STATUS-TOKEN-7d1e2a94\n")
    path = tmp_path / "sentinel.toml"
    path.write_text('[http]\nstatus_token_file = "secrets/s"\n')
    cfg = load_config(path, {})
    assert cfg.http.status_token is not None
    assert cfg.http.status_token.get_secret_value() == "STATUS-TOKEN-7d1e2a94"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[kafka]\nrequest_topic = '../../etc'\n", "kafka.request_topic"),
        ("[kafka]\nresponse_topic = 'a/b'\n", "kafka.response_topic"),
        ('[kafka]\ndlq_topic = "dlq\\r\\nx"\n', "kafka.dlq_topic"),
        ("[kafka]\nalerts_topic = 'ünï'\n", "kafka.alerts_topic"),
        ("[kafka]\nrequest_topic = '" + "a" * 250 + "'\n", "kafka.request_topic"),
        ('[kafka]\ngroup_id = "g\\u001b[2J"\n', "kafka.group_id"),
        ('[kafka]\nbootstrap_servers = "h:9092\\nother"\n', "kafka.bootstrap_servers"),
        ("[http]\nhost = 'http://0.0.0.0/'\n", "http.host"),
        ("[http]\nhost = '127.0.0.1 evil'\n", "http.host"),
        ('[redis]\nkey_prefix = "ss\\r\\nFLUSHALL"\n', "redis.key_prefix"),
        ('[redis]\nurl = "redis://h:6379/0\\r\\nFLUSHALL"\n', "redis.url"),
        ("[redis]\nurl = 'redis+cluster:///0'\n", "redis.url"),
        ("[redis]\nurl = 'redis+cluster://h:7001/3'\n", "redis.url"),
        ("[redis]\nurl = 'unix+cluster:///run/r.sock'\n", "redis.url"),
        ("[redis]\nurl = 'redis://h:notaport/0'\n", "redis.url"),
    ],
)
def test_injection_shaped_values_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    err = error(tmp_path, text)
    assert err.key == key
    assert "FLUSHALL" not in str(err)


def test_the_cli_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sentinel.toml"
    path.write_text(HB.format(url="https://hb.example/x\\r\\nHost: evil.example", token="t"))
    proc = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("config error: heartbeat[0].url: ")
    assert "evil.example" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7001",
        "redis+cluster://:pw@127.0.0.1:7001/0",
        "rediss+cluster://n:1",
    ],
)
async def test_cluster_urls_build_a_cluster_store(tmp_path: Path, url: str) -> None:
    path = tmp_path / "sentinel.toml"
    path.write_text("")
    cfg = load_config(path, {"SENTINEL_REDIS_URL": url})
    async with open_storage(storage_settings(cfg)) as storage:
        store = storage.store
        assert isinstance(store, RedisStore) and isinstance(store.client, RedisCluster)
    if "pw" in url:
        assert "pw" in cfg.secrets()  # scrubbed from logs like a single node's password


@pytest.mark.parametrize(
    "url", ["redis+cluster://127.0.0.1:7001/3", "http://h/", "redis://h:6379/0\r\nQUIT"]
)
def test_replay_refuses_a_bad_redis_url_with_exit_2(tmp_path: Path, url: str) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "replay", str(log), "--redis", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("config error: --redis: ")
    assert "Traceback" not in proc.stderr and "QUIT" not in proc.stderr
