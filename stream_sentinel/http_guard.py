"""What the HTTP server checks and logs about each request: the Host header, the
status token's failed attempts, and the access log line."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Final

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Handler, Middleware

from stream_sentinel.http_connections import RateLimitedLog

log = logging.getLogger(__name__)
access_log = logging.getLogger("stream_sentinel.http.access")

# Scrapes and probes come every few seconds: at INFO they would drown everything else.
QUIET_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz"})
SCRUBBED: Final = "***"
_MAX_LOGGED_CHARS: Final = 200


def host_allowed(host_header: str | None, names: Collection[str]) -> bool:
    """Whether a Host header names this server.

    IP literals always pass: DNS rebinding needs a name the attacker controls,
    and orchestrators probe and scrape pods by IP. A missing header (HTTP/1.0)
    passes too; browsers always send one.
    """
    if host_header is None or "*" in names:
        return True
    host = host_header.strip()
    if host.startswith("["):  # [v6]:port
        return _is_ip(host[1:].partition("]")[0])
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit():
        name = host
    name = name.lower().rstrip(".")
    return _is_ip(name) or name in names


def host_check(names: Collection[str] | None) -> Middleware:
    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if names is not None and not host_allowed(request.headers.get("Host"), names):
            log.debug("refused a request for another host")
            raise web.HTTPMisdirectedRequest(headers={"Connection": "close"})
        return await handler(request)

    return check_host


@web.middleware
async def version_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.version.major == 1 and request.version.minor in (0, 1):
        return await handler(request)
    # HTTP/0.9 and HTTP/2.0 request lines parse, and aiohttp would answer in the
    # same version; our status line names the one version spoken. aiohttp has no
    # public setter (aiohttp pinned below 3.15, tests/test_http_internals.py).
    request._version = HttpVersion11
    request._cache.pop("version", None)  # `version` is cached once read
    raise web.HTTPVersionNotSupported(headers={"Connection": "close"})


async def expect_handler(request: web.Request) -> None:
    """Like aiohttp's default, but a refusal does not quote the client's header back."""
    if request.headers.get("Expect", "").lower() == "100-continue":
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return
    raise web.HTTPExpectationFailed(
        body=orjson.dumps({"error": "Expectation Failed"}), content_type="application/json"
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` in constant time; never shows the token."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not token:
            # An empty token would make "Bearer " a valid credential.
            raise ValueError("status token must be a non-empty string or None")
        self._token = token.encode()

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"

    def allows(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Encoded: compare_digest refuses non-ASCII str, and the header is untrusted;
        # aiohttp keeps bytes that are not UTF-8 as surrogates, which plain
        # encode() rejects with an exception (a 500 instead of a 401).
        given = credentials.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._token)


class AuthThrottle:
    """Per client: a few free failures, then a doubling wait (capped) before the next try.

    Bounded: past ``max_clients`` the least recently seen client is forgotten.
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        max_wait_s: float = 60.0,
        max_clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._max_wait_s = max_wait_s
        self._max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # failures, until
        self._warned = RateLimitedLog(60.0, clock)

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its token is checked again."""
        entry = self._clients.get(client)
        return 0.0 if entry is None else max(0.0, entry[1] - self._clock())

    def failed(self, client: str) -> None:
        failures = self._clients.pop(client, (0, 0.0))[0] + 1
        wait = 0.0
        if failures > self._free:
            wait = min(self._max_wait_s, 2.0 ** (failures - self._free - 1))
        self._clients[client] = (failures, self._clock() + wait)
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)
        self._warned.emit(
            log,
            logging.WARNING,
            "/status: wrong or missing token from %s (%d in a row)",
            _printable(client),
            failures,
        )

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


def _printable(text: str) -> str:
    """Untrusted text made safe for one log line: escaped, quoted-free, bounded."""
    cut = text[:_MAX_LOGGED_CHARS]
    escaped = cut.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return escaped.replace('"', '\\"') + ("..." if len(text) > _MAX_LOGGED_CHARS else "")


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, SCRUBBED)
    return text


class AccessLogger(AbstractAccessLogger):
    """One line per request: the path without its query (tokens travel there), every
    configured secret scrubbed, untrusted text escaped; probes and scrapes at DEBUG.

    aiohttp makes the instance itself, so the secrets come with the class:
    use :func:`access_logger_with`.
    """

    secrets: tuple[str, ...] = ()

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        path = scrub(request.path, self.secrets)
        agent = scrub(request.headers.get("User-Agent", "-"), self.secrets)
        self.logger.log(
            level,
            '%s "%s %s" %d %d %.1fms "%s"',
            request.remote or "-",
            _printable(request.method),
            _printable(path),
            response.status,
            response.body_length,
            time * 1000,
            _printable(agent),
        )

    @property
    def enabled(self) -> bool:
        # INFO, the lowest level any line is logged at besides DEBUG: asking for DEBUG
        # here would skip every line, /status included, whenever the level is INFO.
        return self.logger.isEnabledFor(logging.INFO)


def access_logger_with(secrets: Sequence[str]) -> type[AccessLogger]:
    """An :class:`AccessLogger` class that scrubs ``secrets`` (longest first, so a secret
    containing another is scrubbed whole)."""
    ordered = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    return type("ScrubbingAccessLogger", (AccessLogger,), {"secrets": ordered})
