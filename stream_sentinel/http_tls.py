"""HTTPS for the HTTP server: one SSL context whose certificate is re-read on
SIGHUP or when its files change, so a renewed certificate (cert-manager,
certbot) is served without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

WATCH_PERIOD_S: Final = 5.0


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the file, never its content."""


class ReloadingTls:
    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile, self.keyfile = Path(certfile), Path(keyfile)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files_stamp()
        self._load(self.context)

    def _files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.certfile, self.keyfile):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _load(self, context: ssl.SSLContext) -> None:
        for key, path in (("tls_certfile", self.certfile), ("tls_keyfile", self.keyfile)):
            if not path.is_file():
                raise TlsError(f"http.{key}: cannot read {path}")
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise TlsError(
                f"http.tls_certfile/tls_keyfile: unusable certificate or key ({reason})"
            ) from None

    def reload(self) -> bool:
        """Re-read both files into the live context; a bad pair keeps the old one."""
        self._stamp = self._files_stamp()
        try:
            # validated on a scratch context first: a half-loaded live one would serve nothing
            self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
            self._load(self.context)  # new handshakes use it; open connections keep theirs
        except TlsError as exc:
            log.warning("tls: kept the previous certificate: %s", exc)
            return False
        log.info("tls: certificate reloaded from %s", self.certfile)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            if self._files_stamp() != self._stamp:
                self.reload()
