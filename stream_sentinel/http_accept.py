"""The HTTP server's own accept loop: descriptors are counted before accept().

asyncio's server accepts up to its backlog per wake-up, before any of those
connections reaches a protocol where a cap could see them, and on "out of
descriptors" it stops accepting for a whole second (``ACCEPT_RETRY_DELAY``).
Under a connection flood near the open-file limit, a health probe that
arrives then waits that second, and the kubelet counts a failure. Here a
connection is accepted only while the server holds fewer descriptors than its
cap (:meth:`ConnectionGuard.room`, which counts the ones closed but not yet
freed); at the cap the oldest idle connections are closed first, and
accepting resumes a moment later, once their descriptors are free.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Final

from .http_connections import ConnectionGuard, RateLimitedLog

log = logging.getLogger(__name__)

# accepted per wake-up of one listening socket: the loop keeps serving requests
ACCEPT_BATCH: Final = 32
# shed at once when full: a flood fills the freed places as fast as they free
SHED_BATCH: Final = 16
# a full server looks again this much later (closed descriptors are freed by then)
FULL_RETRY_S: Final = 0.005
# out of descriptors all the same (the process's other files): look again soon
EXHAUSTED_RETRY_S: Final = 0.05
_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


async def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``, one per address it resolves to.

    Raises OSError (the port taken or privileged, an unknown host), worded as
    asyncio's ``create_server`` words it."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listening: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            listening.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" serves IPv6 only, as asyncio's does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {reason}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in listening:
            sock.close()
        raise
    return listening


class Acceptor:
    """Accepts on ``sockets`` while ``guard`` has room; hands each connection to
    a protocol from ``factory`` (after the TLS handshake when ``tls`` is set)."""

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        guard: ConnectionGuard,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout_s: float | None = None,
    ) -> None:
        self.sockets = sockets
        self._factory = factory
        self._guard = guard
        self._tls = tls
        self._handshake_timeout_s = handshake_timeout_s
        self._loop = asyncio.get_running_loop()
        self._connecting: set[asyncio.Task[None]] = set()  # accepted, not yet in the guard
        self._serving = False
        self._said = RateLimitedLog(10.0)

    def start(self) -> None:
        self._serving = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._ready, sock)

    def close(self) -> None:
        """Stop accepting; connections not yet handed over are dropped."""
        self._serving = False
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in self._connecting:
            task.cancel()

    def _ready(self, sock: socket.socket) -> None:
        room = self._guard.room(pending=len(self._connecting))
        if room <= 0:
            # full: free the oldest idle places, unless places freed just now
            # are still on their way back (shedding those again would empty us)
            if not self._guard.closing:
                self._guard.shed(SHED_BATCH)
            self._pause(sock, FULL_RETRY_S)
            return
        for _ in range(min(room, ACCEPT_BATCH)):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._exhausted(exc)
                    self._pause(sock, EXHAUSTED_RETRY_S)
                    return
                # the client gave up before we took it (ECONNABORTED, EPROTO...)
                log.debug("http: accept failed: %s", exc)
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._hand_over(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _pause(self, sock: socket.socket, for_s: float) -> None:
        self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            if self._serving:
                self._loop.add_reader(sock.fileno(), self._ready, sock)

        self._loop.call_later(for_s, resume)

    def _exhausted(self, exc: OSError) -> None:
        # half: the kernel's queue refills what is freed, oldest caller first
        self._guard.shed(max(1, len(self._guard) // 2))
        self._said.emit(
            log,
            logging.WARNING,
            "http: cannot accept a connection (%s); %d open, shedding idle ones",
            errno.errorcode.get(exc.errno or 0, "?"),
            len(self._guard),
        )

    async def _hand_over(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._handshake_timeout_s if self._tls else None,
            )
        except asyncio.CancelledError:
            conn.close()  # cancelled before asyncio took it: ours to close
            raise
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # a failed or slow handshake: asyncio closed the socket (and said why)
            log.debug("http: connection dropped before its first request: %s", exc)
