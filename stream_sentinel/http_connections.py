"""Per-connection limits the HTTP server enforces below aiohttp.

aiohttp (3.14) has no header or body read timeout and no connection cap: a
client that opens connections and sends nothing, or a byte at a time, holds
them for its keep-alive (an hour by default). :class:`ConnectionGuard` sees
every connection through :class:`GuardedProtocol`, a thin wrapper around the
protocol aiohttp's public ``web.Server`` factory makes, and closes those that
are too slow, too idle, or the oldest idle ones when there are too many.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

# Descriptors kept free for what the process itself opens (Kafka, Redis, files).
RESERVED_FDS: Final = 64
# The kernel's queue of connections not yet accepted (they hold no descriptor).
ACCEPT_BACKLOG: Final = 128
EOF_GRACE_S: Final = 1.0
CLOSING_FORGOTTEN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 15.0
    max_connections: int = 256


def fd_bounded(max_connections: int) -> int:
    """``max_connections`` lowered so connections alone cannot exhaust the open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(8, min(max_connections, soft - RESERVED_FDS))


class RateLimitedLog:
    """At most one line per ``interval_s``; the next line says how many were held back."""

    __slots__ = ("_clock", "_held", "_interval_s", "_next_at")

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = float("-inf")
        self._held = 0

    def emit(self, logger: logging.Logger, level: int, message: str, *args: object) -> bool:
        now = self._clock()
        if now < self._next_at:
            self._held += 1
            return False
        held, self._held = self._held, 0
        self._next_at = now + self._interval_s
        suffix = f" ({held} more like it since the last line)" if held else ""
        logger.log(level, message + suffix, *args)
        return True


@dataclass(slots=True)
class _Connection:
    transport: asyncio.BaseTransport
    idle_since: float  # opened, or the last response
    served: int = 0
    busy: bool = False  # a request is in the app
    head_started: float | None = None  # first byte of a request not yet in the app
    eof: bool = False  # the client will send nothing more (half-closed)
    on_eof: Callable[[], None] | None = None  # tells the request in the app


class ConnectionGuard:
    """Tracks the server's connections and closes the ones over a limit."""

    def __init__(self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.max_connections = fd_bounded(limits.max_connections)
        self._clock = clock
        self._open: dict[asyncio.BaseTransport, _Connection] = {}  # oldest first
        # closed by us, their descriptors not yet freed (asyncio frees them a
        # loop turn later): they still count against the cap
        self._closing: dict[asyncio.BaseTransport, float] = {}
        self._shed_log = RateLimitedLog(10.0)

    def __len__(self) -> int:
        return len(self._open)

    @property
    def closing(self) -> int:
        return len(self._closing)

    def room(self, pending: int) -> int:
        """How many more connections may be accepted now, ``pending`` of them
        accepted already but not yet opened (a TLS handshake, say)."""
        return self.max_connections - len(self._open) - len(self._closing) - pending

    # -- events from GuardedProtocol and the request middleware -------------------

    def opened(self, transport: asyncio.BaseTransport) -> None:
        self._open[transport] = _Connection(transport, self._clock())
        excess = len(self._open) - self.max_connections
        if excess > 0 and self.shed(excess, keep=transport) < excess:
            self._close(self._open[transport])  # every other one is mid-request

    def data(self, transport: asyncio.BaseTransport) -> None:
        # Bytes during a request are its body or a pipelined next one: a pipelined
        # head left unfinished then gets the keep-alive deadline, not the head one.
        conn = self._open.get(transport)
        if conn is not None and not conn.busy and conn.head_started is None:
            conn.head_started = self._clock()

    def eof(self, transport: asyncio.BaseTransport) -> bool:
        """The client half-closed; returns whether a request is in flight (keep writing)."""
        conn = self._open.get(transport)
        if conn is None:
            return False
        conn.eof = True
        if conn.on_eof is not None:
            conn.on_eof()
        return conn.busy or conn.head_started is not None

    def request_started(
        self, transport: asyncio.BaseTransport | None, on_eof: Callable[[], None]
    ) -> None:
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy, conn.head_started, conn.on_eof = True, None, on_eof
            if conn.eof:
                on_eof()

    def request_done(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy, conn.on_eof = False, None
            conn.served, conn.idle_since = conn.served + 1, self._clock()

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)
        self._closing.pop(transport, None)

    # -- enforcement ---------------------------------------------------------------

    def shed(self, count: int, keep: asyncio.BaseTransport | None = None) -> int:
        """Close up to ``count`` connections not in a request, the longest waiting first
        (idle since their last answer, or since the first byte of an unfinished head);
        returns how many were closed."""
        idle = [c for c in self._open.values() if not c.busy and c.transport is not keep]
        idle.sort(key=lambda c: c.idle_since if c.head_started is None else c.head_started)
        victims = idle[:count]
        for conn in victims:
            self._close(conn)
        if victims:
            self._shed_log.emit(
                log, logging.WARNING, "http: %d connections open, closed the oldest idle", len(self)
            )
        return len(victims)

    def sweep(self) -> int:
        """Close connections past their head or keep-alive deadline; returns how many."""
        now, lim = self._clock(), self.limits
        expired = []
        for conn in self._open.values():
            if conn.busy:
                continue  # body reads have their own timeout, handlers are bounded
            if conn.eof:  # nothing more will come; a moment for the last answer to leave
                late = conn.head_started is not None or now - conn.idle_since > EOF_GRACE_S
            elif conn.head_started is not None:
                late = now - conn.head_started > lim.header_timeout_s
            else:  # never used: as long as a head may take; used: the keep-alive
                wait = lim.keepalive_timeout_s if conn.served else lim.header_timeout_s
                late = now - conn.idle_since > wait
            if late:
                expired.append(conn)
        for conn in expired:
            self._close(conn)
        # a close that never reported back must not hold its place for good
        for transport, since in list(self._closing.items()):
            if now - since > CLOSING_FORGOTTEN_S:
                del self._closing[transport]
        return len(expired)

    async def run(self) -> None:
        lim = self.limits
        period = max(0.05, min(1.0, lim.header_timeout_s / 4, lim.keepalive_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def _close(self, conn: _Connection) -> None:
        # abort, not close: the descriptor is freed now, not after a TLS goodbye
        self._open.pop(conn.transport, None)
        transport = conn.transport
        self._closing[transport] = self._clock()
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()

    def close_all(self) -> None:
        for conn in list(self._open.values()):
            self._close(conn)


class GuardedProtocol(asyncio.Protocol):
    """Forwards every protocol event to aiohttp's handler, telling the guard first."""

    __slots__ = ("_guard", "_inner", "_transport")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._guard.opened(transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._guard.data(self._transport)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        in_flight = self._transport is not None and self._guard.eof(self._transport)
        inner = self._inner.eof_received()
        # Half-closed mid-request: keep the sending side open for the 400 (TLS cannot).
        transport = self._transport
        if in_flight and transport is not None and transport.get_extra_info("sslcontext") is None:
            return True
        return inner

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.closed(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


GUARD_KEY: Final = web.AppKey("connections", ConnectionGuard)


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD_KEY]

    def cut_off() -> None:
        # only a body still expected: an empty payload is a shared object
        if request.body_exists and not request.content.is_eof():
            request.content.set_exception(ConnectionResetError("the client closed mid-body"))

    guard.request_started(request.transport, cut_off)
    try:
        return await handler(request)
    finally:
        guard.request_done(request.transport)
