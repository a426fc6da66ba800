"""The sentinel's HTTP face: /metrics, /healthz, /readyz and /status.

Named ``httpserver`` rather than ``http``: a module called ``http`` shadows the
standard library (which aiohttp imports) whenever this directory itself ends
up on ``sys.path``, e.g. when a file in it is run as a script.

Everything served here is read-only and small. The app holds no state of its
own: callers pass in the metrics and the callables that read the live state.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from stream_sentinel.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

StatusProvider = Callable[[], Mapping[str, Any] | None]
ReadyChecks = Callable[[], Awaitable[Mapping[str, bool | str]]]

SERVER_NAME: Final = "stream-sentinel"  # replaces aiohttp's "Python/x aiohttp/y"
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Status and metrics are live values; a cached copy is a wrong copy.
    "Cache-Control": "no-store",
}
# aiohttp's default, spelled out so nobody adds %{Authorization}i to it.
ACCESS_LOG_FORMAT: Final = '%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"'
JSON: Final = "application/json"
# No endpoint takes a body: anything bigger than this is refused with 413
# before it is buffered (aiohttp's default would buffer 1 MiB per request).
MAX_BODY_BYTES: Final = 1024
# Header limits below aiohttp's (8 KiB per line, 128 headers): a monitoring
# endpoint needs a request line, Host, Authorization and a few more.
HANDLER_LIMITS: Final[Mapping[str, int]] = {
    "max_line_size": 4096,
    "max_field_size": 4096,
    "max_headers": 32,
}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=_to_json),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def _to_json(obj: Any) -> Any:
    # status_provider may hand back read-only mappings (MappingProxyType) that orjson rejects.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError


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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    # Set, not deleted: aiohttp fills in its own Server header if none is present.
    response.headers["Server"] = SERVER_NAME


@web.middleware
async def _limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, length)
    if request.body_exists:
        # chunked, or a small declared body: read() stops at client_max_size with a 413
        await request.read()
    return await handler(request)


class _GuardedHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, but its own error pages are ours too.

    Requests aiohttp cannot parse (bad request line, headers over the limits,
    TLS on the plain port) are answered by ``handle_error`` outside the app: no
    middleware, no ``on_response_prepare``, so without this they would carry
    ``Server: Python/x aiohttp/y``, no security headers, the client's bytes
    echoed in the body, and a traceback with those bytes in our log.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # our fault, not the client's: keep the traceback
            log.error("error handling a request", exc_info=exc)
        else:
            # The type only: the exception's text quotes what the client sent.
            # Debug, as aiohttp does for stray TLS: scanners must not flood the log.
            log.debug("refused a malformed request (%d %s)", status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
        response = _json({"error": reason}, status=status, headers=_STATIC_HEADERS)
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        # Same slots, one overridden method: aiohttp has no hook for these
        # error pages, and re-implementing __call__ would copy its private state.
        handler.__class__ = _GuardedHandler
        return handler


class _GuardedRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # adds __call__ only, no state
        return server


_STATIC_HEADERS: Final[Mapping[str, str]] = {**SECURITY_HEADERS, "Server": SERVER_NAME}


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns 404/405/500 into small JSON bodies; never a traceback or a version."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type",)}
        return _json({"error": exc.reason}, status=exc.status, headers=keep)
    except ConnectionResetError:
        raise  # the client left mid-body; aiohttp drops the connection quietly
    except Exception:
        log.exception("error serving %r", request.path)
        return _json({"error": "internal error"}, status=500)


class _Handlers:
    def __init__(
        self,
        metrics: Metrics,
        status_provider: StatusProvider,
        ready_checks: ReadyChecks,
        auth: BearerAuth | None,
        ready_timeout_s: float,
        ready_warnings: Callable[[], list[str]] | None = None,
    ) -> None:
        self._ready_warnings = ready_warnings
        self._metrics = metrics
        self._status_provider = status_provider
        self._ready_checks = ready_checks
        self._auth = auth
        self._ready_timeout_s = ready_timeout_s

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(self, request: web.Request) -> web.Response:
        # Answering at all proves the event loop is turning; readiness is /readyz.
        return _json({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self._ready_timeout_s):
                checks = dict(await self._ready_checks())
        except TimeoutError:
            return self._not_ready("timeout")
        except Exception as exc:
            # Only the type: messages of connection errors can carry URLs with passwords.
            log.warning("readiness checks raised %s", type(exc).__name__)
            return self._not_ready(type(exc).__name__)
        failed = sorted(name for name, ok in checks.items() if ok is not True)
        body: dict[str, Any] = {"ready": not failed, "failed": failed, "checks": checks}
        if self._ready_warnings is not None and (warnings := self._ready_warnings()):
            body["warnings"] = warnings
        return _json(body, status=503 if failed else 200)

    @staticmethod
    def _not_ready(error: str) -> web.Response:
        body = {"ready": False, "failed": ["ready_checks"], "error": error, "checks": {}}
        return _json(body, status=503)

    async def status(self, request: web.Request) -> web.Response:
        if self._auth is not None:
            header = request.headers.get("Authorization")
            if not self._auth.allows(header):
                challenge = f'Bearer realm="{SERVER_NAME}"'
                if header is not None:
                    challenge += ', error="invalid_token"'
                return _json(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": challenge}
                )
        status = self._status_provider()
        if status is None:
            return _json({"status": "starting"}, status=503)
        return _json(status)


def build_http_app(
    *,
    metrics: Metrics,
    status_provider: StatusProvider,
    ready_checks: ReadyChecks,
    status_token: str | None,
    ready_timeout_s: float = 5.0,
    ready_warnings: Callable[[], list[str]] | None = None,
) -> web.Application:
    """The HTTP app; serve it with :func:`start_http`.

    ``ready_checks`` maps check names to True (ready) or False / a short reason
    (not ready); it must not put secrets in reasons. ``ready_warnings`` lists
    what is wrong without making the replica unready (an output that cannot
    work, e.g. a missing alerts topic), shown as ``warnings``. ``status_token``, when
    set, is required as a bearer token on /status only: /metrics stays open for
    Prometheus and /healthz, /readyz for orchestrators.
    """
    auth = BearerAuth(status_token) if status_token is not None else None
    h = _Handlers(metrics, status_provider, ready_checks, auth, ready_timeout_s, ready_warnings)
    app = web.Application(
        middlewares=[_errors_as_json, _limit_body],
        client_max_size=MAX_BODY_BYTES,
        handler_args=dict(HANDLER_LIMITS),
    )
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_get("/readyz", h.readyz)
    app.router.add_get("/status", h.status)
    return app


async def start_http(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: an ephemeral port) and return the bound port.

    Stop with ``await runner.cleanup()``; in-flight requests get
    ``shutdown_timeout`` seconds to finish.
    """
    runner = _GuardedRunner(
        app,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound: int = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, bound
