"""Keep configured secrets out of every log line, whoever writes it.

Our own code never logs a secret, but libraries log what they send at DEBUG:
aiokafka logs a SASL PLAIN authentication request, password included. A filter
on the log handlers rewrites any record that contains a secret (as text, or as
it appears inside a ``repr`` of bytes or str) before it is formatted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "***"


class SecretScrubber(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = set()
        for secret in secrets:
            if secret:
                forms |= {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
        # longest first: a secret that contains another is replaced whole
        self._forms = sorted(forms, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._forms:
            return True
        message = record.getMessage()
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True

    def _scrub(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, REDACTED)
        return text


def scrub_secrets_from_logs(secrets: Iterable[str]) -> None:
    """Install the scrubber on every handler of the root logger."""
    scrubber = SecretScrubber(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)
