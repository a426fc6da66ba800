"""The HTTP access log: requests at INFO, except what machines ask every few seconds.

Prometheus scrapes /metrics and orchestrators probe /healthz and /readyz around
the clock; at INFO those lines would bury everything else, so they are logged
at DEBUG. Same line format either way (aiohttp's).
"""

from __future__ import annotations

import logging
from typing import Any, Final, cast

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

QUIET_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz"})


class _AtDebug(logging.LoggerAdapter[logging.Logger]):
    """Hands aiohttp's INFO access lines to the logger at DEBUG."""

    def isEnabledFor(self, level: int) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG if level == logging.INFO else level)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


class ProbeQuietAccessLogger(AbstractAccessLogger):
    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._loud = AccessLogger(logger, log_format)
        self._quiet = AccessLogger(cast(logging.Logger, _AtDebug(logger, {})), log_format)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        chosen = self._quiet if request.path in QUIET_PATHS else self._loud
        chosen.log(request, response, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)  # DEBUG enabled implies INFO enabled
