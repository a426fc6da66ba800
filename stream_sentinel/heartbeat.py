"""Heartbeat sender: one push per (target, token) per tick, all bounded by a deadline.

The evaluator calls :meth:`HeartbeatSender.push` once per tick with a deadline
before the next tick, so a slow or failing monitor costs at most that budget.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp

from stream_sentinel import __version__
from stream_sentinel.heartbeat_kinds import (
    COMPOSITE,
    KINDS,
    TOKEN_KEYS,
    HeartbeatTarget,
    Kind,
    PushRequest,
    backoff_delay,
    build_request,
    classify,
    heartbeat_message,
    is_failure,
    redact,
    token_keys,
)
from stream_sentinel.model import Tick

__all__ = [
    "COMPOSITE",
    "KINDS",
    "RESULTS",
    "TOKEN_KEYS",
    "HeartbeatSender",
    "HeartbeatTarget",
    "Kind",
    "MessageFor",
    "PushResult",
    "Result",
    "heartbeat_message",
    "redact",
]

Result = Literal["ok", "error", "rejected", "timeout"]
RESULTS: tuple[Result, ...] = ("ok", "error", "rejected", "timeout")
MessageFor = Callable[[Tick, str | None], str]

# Enough to see {"ok": false} from Uptime Kuma; a monitor has no reason to send more.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"stream-sentinel/{__version__}"


@dataclass(frozen=True, slots=True)
class PushResult:
    """What happened to one push. ``detail`` is already redacted."""

    target: str
    signal: str  # "composite" or a signal name
    result: Result
    failure: bool  # whether the push reported a failure (fail / down / critical)
    attempts: int
    http_status: int | None = None
    detail: str | None = None


@dataclass(slots=True)
class _Progress:
    # Survives the deadline's cancellation, so a timed-out push still reports
    # how far it got.
    attempts: int = 0
    http_status: int | None = None
    detail: str | None = None


class HeartbeatSender:
    """Pushes each tick to every target; never raises for a target's failure."""

    def __init__(
        self,
        targets: Sequence[HeartbeatTarget],
        session: aiohttp.ClientSession,
        *,
        on_result: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 2.0,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            # The name is the metric label; two targets under one name would merge.
            raise ValueError("heartbeat target names must be unique")
        if backoff_base_s < 0 or backoff_cap_s < 0:
            raise ValueError("backoff delays must be >= 0")
        self._targets = tuple(targets)
        self._session = session
        self._on_result = on_result
        self._rng = rng if rng is not None else random.Random()
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._secrets = tuple(tok for t in self._targets for tok in t.tokens.values())

    @property
    def targets(self) -> tuple[HeartbeatTarget, ...]:
        return self._targets

    async def push(
        self, tick: Tick, message_for: MessageFor | None = None, *, deadline: float
    ) -> list[PushResult]:
        """Push ``tick`` to all targets concurrently; return by ``deadline`` (loop time).

        Results come in target order, composite first within a target. Pushes
        still running at the deadline are cancelled and reported as ``timeout``.
        """
        render = message_for if message_for is not None else heartbeat_message
        # One message per key, shared by all targets: a custom message function is
        # called a bounded number of times, and before any I/O starts.
        messages = {
            key: render(tick, None if key == COMPOSITE else key)
            for key in {k for t in self._targets for k in token_keys(t)}
        }
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    self._push_one(target, key, tick, messages[key], deadline),
                    name=f"heartbeat:{target.name}:{key}",
                )
                for target in self._targets
                for key in token_keys(target)
            ]
        results = [task.result() for task in tasks]
        if self._on_result is not None:
            for r in results:
                self._on_result(r.target, r.result)
        return results

    async def _push_one(
        self, target: HeartbeatTarget, key: str, tick: Tick, message: str, deadline: float
    ) -> PushResult:
        failure = is_failure(tick, key)
        request = build_request(target, key, tick, failure, message)
        progress = _Progress()
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._attempts(target, key, request, deadline, progress)
        except TimeoutError:
            result = "timeout"
            progress.detail = "deadline reached before the push completed"
        if result != "ok":
            self._log.warning(
                "heartbeat %s/%s %s after %d attempt(s): %s",
                target.name,
                key,
                result,
                progress.attempts,
                progress.detail,
            )
        else:
            self._log.debug("heartbeat %s/%s delivered", target.name, key)
        return PushResult(
            target.name,
            key,
            result,
            failure,
            progress.attempts,
            progress.http_status,
            progress.detail,
        )

    async def _attempts(
        self,
        target: HeartbeatTarget,
        key: str,
        request: PushRequest,
        deadline: float,
        progress: _Progress,
    ) -> Result:
        loop = asyncio.get_running_loop()
        last: Result = "error"
        for attempt in range(target.retries + 1):
            if attempt:
                delay = backoff_delay(attempt - 1, self._rng, *self._backoff)
                if loop.time() + delay >= deadline:
                    # A retry that cannot start before the deadline only burns the budget.
                    return last
                await asyncio.sleep(delay)
            progress.attempts += 1
            verdict = await self._send(target, request, progress)
            if verdict == "ok":
                progress.detail = None
                return "ok"
            if verdict == "rejected":
                return "rejected"
            if verdict == "fatal":
                return "error"
            last = "timeout" if verdict == "timeout" else "error"
            self._log.info(
                "heartbeat %s/%s attempt %d failed: %s",
                target.name,
                key,
                progress.attempts,
                progress.detail,
            )
        return last

    async def _send(
        self, target: HeartbeatTarget, request: PushRequest, progress: _Progress
    ) -> Literal["ok", "retry", "rejected", "timeout", "fatal"]:
        headers = {"User-Agent": USER_AGENT}
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        try:
            async with self._session.request(
                request.method,
                request.url,
                data=request.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_RESPONSE_BYTES)
                progress.http_status = response.status
        except TimeoutError:
            progress.detail = f"no response within {target.timeout_s:g} s"
            return "timeout"
        except aiohttp.ClientError as exc:
            progress.detail = self._describe(exc)
            return "retry"
        except Exception as exc:
            # Whatever else the client raises must not take the sibling pushes
            # down with it (the task group would cancel them); it is not
            # transient, so it is not retried.
            progress.detail = self._describe(exc)
            return "fatal"
        verdict = classify(target.kind, response.status, body)
        if verdict != "ok":
            refused = " (the monitor refused the push)" if response.status < 300 else ""
            progress.detail = f"HTTP {response.status}{refused}"
        return verdict

    def _describe(self, exc: BaseException) -> str:
        # aiohttp puts the request URL, and so the token, into some messages.
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)
