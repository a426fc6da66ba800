"""The stale reason a tick reports: every cause that holds, rebuilding first."""

from __future__ import annotations

import itertools

import pytest

from stream_sentinel.health import stale_reason


def test_a_healthy_pipeline_has_no_reason() -> None:
    assert stale_reason(store_ok=True, rebuilding=False, stalled=False) is None


@pytest.mark.parametrize(
    ("store_ok", "rebuilding", "stalled", "reason"),
    [
        (False, False, False, "store unreachable"),
        (True, True, False, "rebuilding"),
        (True, False, True, "consumer stalled"),
        # a Redis restarted empty: the rebuild must show while the store flaps
        (False, True, False, "rebuilding, store unreachable"),
        (False, True, True, "rebuilding, store unreachable"),
        (False, False, True, "store unreachable"),
        (True, True, True, "rebuilding"),
    ],
)
def test_each_cause_is_named(store_ok: bool, rebuilding: bool, stalled: bool, reason: str) -> None:
    assert stale_reason(store_ok=store_ok, rebuilding=rebuilding, stalled=stalled) == reason


def test_rebuilding_always_shows_first() -> None:
    # heartbeat messages start "stale: <reason>": a wipe reads as a rebuild
    for store_ok, stalled in itertools.product([True, False], repeat=2):
        reason = stale_reason(store_ok=store_ok, rebuilding=True, stalled=stalled)
        assert reason is not None and reason.startswith("rebuilding")
