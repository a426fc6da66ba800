"""Loopback heartbeat monitors: real aiohttp servers on 127.0.0.1 that answer
like healthchecks.io, Uptime Kuma and a JSON webhook endpoint.

Each server knows the tokens it was configured with and records every push as
the token *key* (``composite`` or a signal name), never the token itself, so a
failing assertion cannot print a secret. Tests await conditions on the record
(``PingLog.wait_for``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson
from aiohttp import web

T = TypeVar("T")


@dataclass(frozen=True)
class Ping:
    key: str  # "composite" or a signal name
    failure: bool
    message: str
    received: float  # loop time of arrival
    at: int | None = None  # the tick's time, when the wire format carries it (webhook)
    tick: dict[str, Any] | None = None  # the whole tick, when the wire format carries it


@dataclass
class PingLog:
    """Everything one monitor was sent, in arrival order."""

    pings: list[Ping] = field(default_factory=list)
    unknown: int = 0  # pushes with a token the monitor does not know
    malformed: list[str] = field(default_factory=list)  # what was wrong, never the request
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def record(self, ping: Ping | None = None, *, problem: str | None = None) -> None:
        async with self._changed:
            if ping is not None:
                self.pings.append(ping)
            elif problem is not None:
                self.malformed.append(problem)
            else:
                self.unknown += 1
            self._changed.notify_all()

    def of(self, key: str) -> list[Ping]:
        return [p for p in self.pings if p.key == key]

    async def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """The first truthy value of ``predicate``, re-checked after every push."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                return await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = [(p.key, p.failure, p.message) for p in self.pings[-10:]]
            raise AssertionError(f"no {what} within {timeout:g} s; last pings: {seen}") from None


class _Fake(ABC):
    """Serves ``app`` on an ephemeral loopback port for the ``async with`` block."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.by_token = {token: key for key, token in tokens.items()}
        self.log = PingLog()
        self.url = ""
        self._runner: web.AppRunner | None = None

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the fake's handlers to ``app``."""

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def now(self) -> float:
        return asyncio.get_running_loop().time()


class HealthchecksFake(_Fake):
    """``/ping/<uuid>`` success, ``/ping/<uuid>/fail`` failure, message in the body;
    200 "OK", or 404 "not found" for a uuid with no check (as healthchecks.io)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/ping/{token}", self._ping)
        app.router.add_route("*", "/ping/{token}/fail", self._ping)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.url += "/ping"  # the ping URL prefix, as a self-hosted Healthchecks shows it
        return self

    async def _ping(self, request: web.Request) -> web.Response:
        key = self.by_token.get(request.match_info["token"])
        if key is None:
            await self.log.record()
            return web.Response(status=404, text="not found")
        if request.method not in ("GET", "POST", "HEAD"):
            await self.log.record(problem=f"method {request.method}")
            return web.Response(status=405)
        body = await request.read()
        try:
            message = body.decode()
        except UnicodeDecodeError:
            await self.log.record(problem="body is not UTF-8")
            return web.Response(status=400)
        failure = request.path.endswith("/fail")
        await self.log.record(Ping(key, failure, message, self.now()))
        return web.Response(text="OK")


class UptimeKumaFake(_Fake):
    """``/api/push/<token>?status=up|down&msg=...&ping=``; 200 {"ok": true},
    500 {"ok": false, ...} for a token with no push monitor."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/push/{token}", self._push)

    async def _push(self, request: web.Request) -> web.Response:
        key = self.by_token.get(request.match_info["token"])
        if key is None:
            await self.log.record()
            body = {"ok": False, "msg": "Monitor not found or not active."}
            return web.json_response(body, status=500)
        status = request.query.get("status")
        if status not in ("up", "down") or "msg" not in request.query:
            await self.log.record(problem=f"status={status!r}, msg given: {'msg' in request.query}")
            return web.json_response({"ok": False, "msg": "bad request"}, status=400)
        await self.log.record(Ping(key, status == "down", request.query["msg"], self.now()))
        return web.json_response({"ok": True})


class WebhookFake(_Fake):
    """POSTed JSON ``{token, signal, status, message, tick}``; 204, or 401 for an
    unknown token. The tick's ``at`` tells which tick a push belongs to."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.url += "/hook"
        return self

    async def _hook(self, request: web.Request) -> web.Response:
        try:
            body: dict[str, Any] = orjson.loads(await request.read())
            token, status, message = body["token"], body["status"], body["message"]
            tick: dict[str, Any] = body["tick"]
            at = _parse_at(tick["at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            await self.log.record(problem=f"body: {type(exc).__name__}")
            return web.Response(status=400)
        key = self.by_token.get(token)
        if key is None or key != body.get("signal"):
            await self.log.record()
            return web.Response(status=401)
        failure = status == "critical"
        await self.log.record(Ping(key, failure, message, self.now(), at, tick))
        return web.Response(status=204)


def _parse_at(text: str) -> int:
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(parsed.timestamp())
