"""[kafka] and [redis] security keys: what loads, what is refused (naming the
key), and the client arguments built from them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from stream_sentinel.config import ConfigError, load_config
from stream_sentinel.kafka.clients import client_options


def _error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env)
    return caught.value


SASL = {
    "SENTINEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "SENTINEL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "SENTINEL_KAFKA_SASL_USERNAME": "svc-sentinel",
    "SENTINEL_KAFKA_SASL_PASSWORD": "s3cret-Pa55",
}


def test_sasl_protocols_need_mechanism_user_and_password() -> None:
    err = _error({"SENTINEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert err.key == "kafka"
    assert "SASL_SSL needs sasl_mechanism, sasl_username, sasl_password" in err.problem
    partial = {k: v for k, v in SASL.items() if "PASSWORD" not in k}
    assert "needs sasl_password" in _error(partial).problem


def test_sasl_or_tls_keys_without_their_protocol_are_refused(pki: Path) -> None:
    err = _error({"SENTINEL_KAFKA_SASL_USERNAME": "u"})
    assert "sasl_username given but security_protocol is PLAINTEXT" in err.problem
    err = _error({"SENTINEL_KAFKA_SSL_CAFILE": str(pki / "ca.pem")})
    assert "ssl_cafile given but security_protocol is PLAINTEXT" in err.problem
    err = _error({**SASL, "SENTINEL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                  "SENTINEL_KAFKA_SSL_CAFILE": str(pki / "ca.pem")})  # fmt: skip
    assert "security_protocol is SASL_PLAINTEXT" in err.problem


def test_unknown_mechanism_and_protocol_are_refused() -> None:
    assert _error({**SASL, "SENTINEL_KAFKA_SASL_MECHANISM": "GSSAPI"}).key == (
        "kafka.sasl_mechanism"
    )
    assert _error({"SENTINEL_KAFKA_SECURITY_PROTOCOL": "TLS"}).key == "kafka.security_protocol"


def test_tls_files_must_exist_and_hold_pem(pki: Path, tmp_path: Path) -> None:
    ssl_env = {"SENTINEL_KAFKA_SECURITY_PROTOCOL": "SSL"}
    missing = tmp_path / "nope.pem"
    err = _error({**ssl_env, "SENTINEL_KAFKA_SSL_CAFILE": str(missing)})
    assert err.key == "kafka.ssl_cafile" and f"no such file: {str(missing)!r}" in err.problem
    err = _error({**ssl_env, "SENTINEL_KAFKA_SSL_CAFILE": str(pki / "not-pem.txt")})
    assert "ssl_cafile: no PEM CA certificate" in err.problem
    mismatched = {
        **ssl_env,
        "SENTINEL_KAFKA_SSL_CERTFILE": str(pki / "client.pem"),
        "SENTINEL_KAFKA_SSL_KEYFILE": str(pki / "other.key"),
    }
    assert "not a PEM certificate with its unencrypted key" in _error(mismatched).problem
    # refused, not a passphrase prompt on the terminal
    encrypted = {**mismatched, "SENTINEL_KAFKA_SSL_KEYFILE": str(pki / "client-encrypted.key")}
    assert "not a PEM certificate with its unencrypted key" in _error(encrypted).problem
    err = _error({**ssl_env, "SENTINEL_KAFKA_SSL_KEYFILE": str(pki / "client.key")})
    assert "ssl_keyfile needs ssl_certfile" in err.problem


def test_client_options_carry_sasl_and_a_verifying_tls_context(pki: Path, tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("from-a-file\n")
    env = {k: v for k, v in SASL.items() if "PASSWORD" not in k}
    env |= {
        "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9096,b-2.example:9096",
        "SENTINEL_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "SENTINEL_KAFKA_SSL_CAFILE": str(pki / "ca.pem"),
    }
    options = client_options(load_config(None, env).kafka)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "b-1.example:9096,b-2.example:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-sentinel",
        "sasl_plain_password": "from-a-file",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    unchecked = client_options(
        load_config(None, {**env, "SENTINEL_KAFKA_SSL_CHECK_HOSTNAME": "false"}).kafka
    )
    assert unchecked["ssl_context"].check_hostname is False
    assert unchecked["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # still verified


def test_plaintext_client_options_are_the_servers_only() -> None:
    options = client_options(load_config(None, {}).kafka)
    assert options == {"bootstrap_servers": "localhost:9092", "security_protocol": "PLAINTEXT"}


def test_passwords_are_secrets_shown_redacted(pki: Path) -> None:
    env = {
        **SASL,
        "SENTINEL_REDIS_URL": "rediss://redis.example:6380/0",
        "SENTINEL_REDIS_USERNAME": "sentinel",
        "SENTINEL_REDIS_PASSWORD": "redis-Pa55",
    }
    cfg = load_config(None, env)
    assert {"s3cret-Pa55", "redis-Pa55"} <= set(cfg.secrets())
    shown = repr(cfg.redacted_dict())
    assert "s3cret-Pa55" not in shown and "redis-Pa55" not in shown
    assert cfg.redacted_dict()["kafka"]["sasl_password"] == "***"
    assert "s3cret-Pa55" not in repr(cfg) and "redis-Pa55" not in repr(cfg)


def test_redis_tls_and_login_keys(pki: Path) -> None:
    env = {
        "SENTINEL_REDIS_URL": "rediss://redis.example:6380/0",
        "SENTINEL_REDIS_USERNAME": "sentinel",
        "SENTINEL_REDIS_PASSWORD": "pw",
        "SENTINEL_REDIS_SSL_CAFILE": str(pki / "ca.pem"),
        "SENTINEL_REDIS_SSL_CERTFILE": str(pki / "client.pem"),
        "SENTINEL_REDIS_SSL_KEYFILE": str(pki / "client.key"),
    }
    assert load_config(None, env).redis.client_options() == {
        "username": "sentinel",
        "password": "pw",
        "ssl_ca_certs": str(pki / "ca.pem"),
        "ssl_certfile": str(pki / "client.pem"),
        "ssl_keyfile": str(pki / "client.key"),
    }
    plain_url = {**env, "SENTINEL_REDIS_URL": "redis://redis.example:6379/0"}
    assert "need a rediss:// (or rediss+cluster://) url" in _error(plain_url).problem
    in_url = {
        "SENTINEL_REDIS_URL": "rediss://u:p@redis.example:6380/0",
        "SENTINEL_REDIS_PASSWORD": "pw",
    }
    assert "the url holds credentials too" in _error(in_url).problem
    assert "given without a url" in _error({"SENTINEL_REDIS_PASSWORD": "pw"}).problem
    cluster = {**env, "SENTINEL_REDIS_URL": "rediss+cluster://redis.example:6380"}
    assert load_config(None, cluster).redis.client_options()["ssl_ca_certs"] == str(pki / "ca.pem")
