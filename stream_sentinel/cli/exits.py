"""Exit codes of every verb (README lists them)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_INPUT: Final = 1  # a file that cannot be read or written (log, truth, timeline, report)
EXIT_CONFIG: Final = 2  # bad usage, option value or config key
EXIT_UNAVAILABLE: Final = 3  # a server (Kafka, Redis) cannot be reached
EXIT_TOPIC_MISSING: Final = 4  # a Kafka topic the verb needs does not exist
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141  # what a shell reports for a process killed by SIGPIPE
