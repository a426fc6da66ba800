"""One place that turns a configured Redis URL into a client: single node or Cluster.

A Cluster is chosen by the URL scheme, ``redis+cluster://`` (``rediss+cluster://``
with TLS), so the one secret ``redis.url`` (or ``replay --redis URL``) says it all
and no second key can disagree with it. The host:port is any node of the cluster;
the client learns the others from it.
"""

from __future__ import annotations

import ssl
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)

RedisClient: TypeAlias = aioredis.Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SINGLE_SCHEMES = ("redis", "rediss", "unix")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def check_url(url: str) -> str | None:
    """Why ``url`` cannot name a Redis we can use, or None. Never echoes the URL."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "must be a valid URL"
    scheme = parts.scheme
    if scheme not in SINGLE_SCHEMES and scheme not in CLUSTER_SCHEMES:
        return "must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL"
    if any(c in url for c in "\r\n\t ") or not url.isprintable():
        return "must not contain spaces or control characters"
    if scheme in CLUSTER_SCHEMES:
        if not parts.hostname:
            return "a redis+cluster:// URL needs a host (any node of the cluster)"
        # a Cluster has database 0 only; silently ignoring /3 would mix deployments
        if parts.path not in ("", "/", "/0"):
            return "a Redis Cluster has only database 0"
    return None


def connect(url: str, **kwargs: Any) -> RedisClient:
    """A client for ``url``; ``kwargs`` are socket options both client kinds take."""
    parts = urlsplit(url)
    plain = CLUSTER_SCHEMES.get(parts.scheme)
    if plain is None:
        return aioredis.Redis.from_url(url, **kwargs)
    path = "" if parts.path in ("", "/", "/0") else parts.path
    return RedisCluster.from_url(urlunsplit(parts._replace(scheme=plain, path=path)), **kwargs)


# What a call to either client kind raises when the store cannot serve it: a
# Cluster that cannot be reached at all raises RedisClusterException, which is
# not a RedisError.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


def refusal(exc: BaseException | None) -> str | None:
    """Why the server refuses this client for good (credentials, TLS, ACL), or
    None for what may pass (down, loading, a failover). Never quotes a secret."""
    if isinstance(exc, AuthenticationError):
        return "authentication failed: check redis.username and redis.password (or the URL's)"
    if isinstance(exc, NoPermissionError):
        # the server's text names the command or key, e.g. "...to run the 'ping' command"
        return f"the ACL user may not do what the store needs ({exc})"
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            message = exc.verify_message or "verification failed"
            if "mismatch" in message:
                return f"TLS: {message}: connect by a name the server's certificate holds"
            return (
                f"TLS: the server's certificate is not trusted ({message}): "
                "set redis.ssl_cafile to the CA that signed it"
            )
        if isinstance(exc, ssl.SSLError) and "CERTIFICATE" in str(exc.reason):
            return "TLS: the server refused the client certificate: check redis.ssl_certfile"
        exc = exc.__cause__ or exc.__context__
    return None
