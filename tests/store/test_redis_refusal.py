"""Which Redis client errors are a refusal for good (exit at once) and what they say."""

from __future__ import annotations

import ssl

from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError

from stream_sentinel.store.redis_client import refusal


def _wrapped(cause: BaseException) -> RedisConnectionError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RedisConnectionError("Error connecting") from exc
    except RedisConnectionError as outer:
        return outer


def _verification(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = message
    return error


def test_credentials_and_acl_denials_are_refusals() -> None:
    assert "authentication failed" in str(refusal(AuthenticationError("WRONGPASS")))
    denied = refusal(NoPermissionError("this user has no permissions to run the 'ping' command"))
    assert denied is not None and "'ping'" in denied and "ACL" in denied


def test_certificate_problems_found_in_the_cause_chain() -> None:
    untrusted = refusal(_wrapped(_verification("unable to get local issuer certificate")))
    assert untrusted is not None and "redis.ssl_cafile" in untrusted
    mismatch = refusal(_wrapped(_verification("Hostname mismatch, certificate is not valid")))
    assert mismatch is not None and "Hostname mismatch" in mismatch


def test_a_server_that_is_down_or_busy_is_not_a_refusal() -> None:
    assert refusal(_wrapped(ConnectionRefusedError(111, "refused"))) is None
    assert refusal(RedisConnectionError("Connection closed by server.")) is None
    assert refusal(None) is None
