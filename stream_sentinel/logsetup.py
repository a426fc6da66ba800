"""Logging for every verb: the ``[log]`` section, and text or JSON lines on stderr.

JSON lines carry ``time``, ``level``, ``logger`` and ``message``; a record logged
with ``extra={"fields": {...}}`` (the tick line) adds those fields, so a log
pipeline can filter on ``status`` without parsing the message.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal, get_args

import orjson
from pydantic import field_validator

from stream_sentinel.config_types import Section

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Keys a JSON line always has; fields of a record never replace them.
RESERVED = ("time", "level", "logger", "message", "exception")


class LogConfig(Section):
    level: LogLevel = "INFO"
    """Lowest level logged (DEBUG, INFO, WARNING, ERROR, CRITICAL; any case); `--log-level`
    overrides it. /metrics and probe requests are logged at DEBUG."""
    format: LogFormat = "text"
    """text: one readable line per record; json: one JSON object per line (time, level, logger,
    message, and the tick's fields on tick lines)."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def parse_level(text: str) -> LogLevel | None:
    """``text`` as a level name in any case, or None when it is not one."""
    upper = text.upper()
    return next((level for level in LOG_LEVELS if level == upper), None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update((k, v) for k, v in fields.items() if k not in RESERVED)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _StderrHandler(logging.StreamHandler[IO[str]]):
    """Writes to whatever ``sys.stderr`` is at the time, so a replaced stderr
    (a test's capture, a closed pipe's replacement) is never written after it is gone."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream: it flushes the old one, perhaps closed
        super().emit(record)


def configure_logging(level: LogLevel, fmt: LogFormat) -> None:
    """Send records at ``level`` and above to stderr in ``fmt``; calling it again replaces
    the handler it added before (and only that one: a host's own handlers stay)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
