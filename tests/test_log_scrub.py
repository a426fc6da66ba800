"""Secrets are scrubbed from log records whoever logs them, in any form a library prints."""

from __future__ import annotations

import io
import logging

from stream_sentinel.log_scrub import SecretScrubber


def _emit(scrubber: SecretScrubber, msg: str, *args: object, exc: bool = False) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(scrubber)
    logger = logging.getLogger(f"test.scrub.{id(out)}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError(msg % args)
            except ValueError:
                logger.exception("failed")
        else:
            logger.warning(msg, *args)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_a_secret_in_the_message_its_arguments_or_a_bytes_repr_is_replaced() -> None:
    scrubber = SecretScrubber(["pa$$w'rd", "tok"])
    assert _emit(scrubber, "login %s", "pa$$w'rd") == "login ***\n"
    # aiokafka logs SASL PLAIN's request as bytes: b'\x00user\x00pa$$w\'rd'
    logged = _emit(scrubber, "request %r", b"\x00user\x00pa$$w'rd")
    assert "pa$$w" not in logged and "***" in logged
    assert _emit(scrubber, "nothing to hide") == "nothing to hide\n"


def test_a_secret_in_a_traceback_is_replaced() -> None:
    logged = _emit(SecretScrubber(["hunter2"]), "bad %s", "hunter2", exc=True)
    assert "ValueError: bad ***" in logged and "hunter2" not in logged


def test_no_secrets_leaves_records_alone() -> None:
    assert _emit(SecretScrubber([]), "value %d", 3) == "value 3\n"
