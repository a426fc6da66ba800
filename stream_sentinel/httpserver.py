"""The sentinel's HTTP face: /metrics, /healthz, /readyz and /status.

Not named ``http``: that would shadow the standard library (which aiohttp imports)
whenever this directory is on ``sys.path``. Everything served is read-only and
small; callers pass in the metrics and the callables that read the live state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from stream_sentinel.http_accept import Acceptor, bind
from stream_sentinel.http_connections import (
    ACCEPT_BACKLOG,
    GUARD_KEY,
    ConnectionGuard,
    ConnectionLimits,
    GuardedProtocol,
    track_requests,
)
from stream_sentinel.http_guard import (
    AccessLogger,
    AuthThrottle,
    BearerAuth,
    access_log,
    access_logger_with,
    expect_handler,
    host_check,
    version_check,
)
from stream_sentinel.http_tls import ReloadingTls
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
    # Nothing here is a page: no browser feature is ever needed.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
# Only ever sent over TLS (a plain-HTTP HSTS header is ignored by browsers anyway).
HSTS: Final[Mapping[str, str]] = {"Strict-Transport-Security": "max-age=31536000"}
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


TLS_KEY: Final = web.AppKey("tls", bool)
ACCESS_LOG_KEY: Final = web.AppKey[type[AccessLogger]]("access_log")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if request.app[TLS_KEY]:
        response.headers.update(HSTS)
    # Set, not deleted: aiohttp fills in its own Server header if none is present.
    response.headers["Server"] = SERVER_NAME


def _limit_body(body_timeout_s: float, max_body_bytes: int) -> Middleware:
    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_body_bytes, length)
        if request.body_exists:
            try:
                # chunked, or a small declared body: read() stops at client_max_size with a 413
                async with asyncio.timeout(body_timeout_s):
                    await request.read()
            except TimeoutError:
                raise web.HTTPRequestTimeout(headers={"Connection": "close"}) from None
            except (web.RequestPayloadError, HttpProcessingError, ConnectionResetError) as exc:
                # cut off mid-body, bad chunking, a Content-Encoding that does not decode:
                # the client's fault, so 400 and a debug line, never a 500 and a traceback.
                # The body is given up: marked ended so aiohttp does not read it again
                # after the answer (and log the same error as its own).
                log.debug("refused a request body (%s)", type(exc).__name__)
                request.content.feed_eof()
                raise web.HTTPBadRequest(headers={"Connection": "close"}) from None
        return await handler(request)

    return limit_body


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
        headers = {**_STATIC_HEADERS, **(HSTS if request.secure else {})}
        response = _json({"error": reason}, status=status, headers=headers)
        response.force_close()
        return response


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
        ready_warnings: Callable[[], list[str]],
    ) -> None:
        self._metrics = metrics
        self._status_provider = status_provider
        self._ready_checks, self._ready_warnings = ready_checks, ready_warnings
        self._auth, self._ready_timeout_s = auth, ready_timeout_s
        self._throttle = AuthThrottle()

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
        warned = {"warnings": found} if (found := self._ready_warnings()) else {}
        body = {"ready": not failed, "failed": failed, "checks": checks, **warned}
        return _json(body, status=503 if failed else 200)

    @staticmethod
    def _not_ready(error: str) -> web.Response:
        body = {"ready": False, "failed": ["ready_checks"], "error": error, "checks": {}}
        return _json(body, status=503)

    async def status(self, request: web.Request) -> web.Response:
        if self._auth is not None:
            client = request.remote or "-"
            wait_s = self._throttle.wait_s(client)
            if wait_s > 0:  # the token is not even looked at: no guess counts
                retry = {"Retry-After": str(max(1, round(wait_s)))}
                return _json({"error": "too many attempts"}, status=429, headers=retry)
            header = request.headers.get("Authorization")
            if not self._auth.allows(header):
                self._throttle.failed(client)
                challenge = f'Bearer realm="{SERVER_NAME}"'
                if header is not None:
                    challenge += ', error="invalid_token"'
                return _json(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": challenge}
                )
            self._throttle.succeeded(client)
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
    ready_warnings: Callable[[], list[str]] = list,  # wrong, yet not unready
    limits: ConnectionLimits | None = None,
    allowed_hosts: Collection[str] | None = None,
    secrets: Sequence[str] = (),
    tls: bool = False,
) -> web.Application:
    """The HTTP app; serve it with :func:`start_http`.

    ``ready_checks`` maps check names to True (ready) or False / a short reason
    (not ready); it must not put secrets in reasons. ``status_token``, when
    set, is required as a bearer token on /status only: /metrics stays open for
    Prometheus and /healthz, /readyz for orchestrators. ``allowed_hosts``: the
    names a Host header may give (None: any); ``secrets`` are scrubbed from the
    access log; ``tls`` adds HSTS (serve with a matching ``tls`` in start_http).
    """
    auth = BearerAuth(status_token) if status_token is not None else None
    h = _Handlers(metrics, status_provider, ready_checks, auth, ready_timeout_s, ready_warnings)
    app = guarded_app(limits=limits, allowed_hosts=allowed_hosts, secrets=secrets, tls=tls)
    for path, handler in (
        ("/metrics", h.metrics),
        ("/healthz", h.healthz),
        ("/readyz", h.readyz),
        ("/status", h.status),
    ):
        app.router.add_get(path, handler, expect_handler=expect_handler)
    return app


def guarded_app(
    *,
    limits: ConnectionLimits | None = None,
    allowed_hosts: Collection[str] | None = None,
    secrets: Sequence[str] = (),
    tls: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """Every defence of this module, no routes (the service and ``bridge litellm``
    add theirs): Host check, body limits, JSON errors, headers, scrubbed access log."""
    limits = limits or ConnectionLimits()
    app = web.Application(
        middlewares=[
            track_requests,
            _errors_as_json,
            version_check,
            host_check(allowed_hosts),
            _limit_body(limits.body_timeout_s, max_body_bytes),
        ],
        client_max_size=max_body_bytes,
        handler_args={**HANDLER_LIMITS, "keepalive_timeout": limits.keepalive_timeout_s},
    )
    app[GUARD_KEY] = ConnectionGuard(limits)
    app[ACCESS_LOG_KEY] = access_logger_with(secrets)
    app[TLS_KEY] = tls
    app.on_response_prepare.append(_security_headers)
    return app


class HttpServer:
    """A running server: its port, its connections, and ``cleanup()`` to stop it (the
    name aiohttp's runners use)."""

    def __init__(
        self,
        runner: web.AppRunner,
        acceptor: Acceptor,
        guard: ConnectionGuard,
        tls: ReloadingTls | None,
    ) -> None:
        self._runner, self._acceptor, self.connections, self.tls = runner, acceptor, guard, tls
        self.port: int = acceptor.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(guard.run(), name="http-connections")]
        if tls is not None:
            self._tasks.append(asyncio.create_task(tls.watch(), name="http-tls-watch"))

    def reload_tls(self) -> None:
        if self.tls is not None:
            self.tls.reload()

    async def cleanup(self) -> None:
        """Stop accepting, give in-flight requests the shutdown timeout, close the rest."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._acceptor.close()
        await self._runner.cleanup()
        self.connections.close_all()


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
    tls: ReloadingTls | None = None,
) -> tuple[HttpServer, int]:
    """Serve ``app`` on ``host:port`` (0: an ephemeral port); returns the server and the
    bound port. Stop with ``await server.cleanup()``.

    Raises OSError when the port cannot be bound (taken, privileged).
    """
    runner = web.AppRunner(
        app,
        access_log_class=app[ACCESS_LOG_KEY],
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    guard = app[GUARD_KEY]
    aiohttp_server = runner.server
    assert aiohttp_server is not None  # set by setup()

    def connection() -> asyncio.Protocol:
        handler = aiohttp_server()
        # aiohttp has no hook for the error pages of requests it cannot parse
        # (tests/test_http_internals.py fails loudly if this stops fitting)
        handler.__class__ = _GuardedHandler
        return GuardedProtocol(handler, guard)

    try:
        sockets = await bind(host, port, ACCEPT_BACKLOG)
    except BaseException:
        await runner.cleanup()
        raise
    acceptor = Acceptor(
        sockets,
        connection,
        guard,
        tls=tls.context if tls is not None else None,
        # a TLS connection reaches the guard only once its handshake is done
        handshake_timeout_s=guard.limits.header_timeout_s,
    )
    acceptor.start()
    http = HttpServer(runner, acceptor, guard, tls)
    return http, http.port
