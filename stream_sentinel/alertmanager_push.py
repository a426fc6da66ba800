"""Pushes each tick's alerts to every ``[[alertmanager]]`` target.

Runs inside the tick loop's background publish task, bounded by the same
deadline as the heartbeats, so a slow or failing Alertmanager never delays a
tick. The episodes (``alertmanager.py``) are read from and written to the
store beside the lease before any request is made: the next tick, a restarted
process or a new leader continues them. When the store cannot be reached the
in-memory copy is used, and a stale alert still goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson

from . import __version__
from .alertmanager import (
    AlertKind,
    Episode,
    Firing,
    advance,
    dump_state,
    firing,
    load_state,
    postable_alerts,
)
from .heartbeat_kinds import redact
from .model import Tick
from .store.base import StoreUnavailable
from .store.lease import Lease

Result = Literal["ok", "error", "rejected", "timeout"]
RESULTS: tuple[Result, ...] = ("ok", "error", "rejected", "timeout")
MAX_RESPONSE_BYTES = 16 * 1024
USER_AGENT = f"stream-sentinel/{__version__}"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertmanagerTarget:
    name: str
    url: str  # base URL; alerts go to {url}/api/v2/alerts
    labels: Mapping[str, str] = field(default_factory=dict)
    severities: Mapping[AlertKind, str] = field(
        default_factory=lambda: {"signal_red": "warning", "critical": "page", "stale": "page"}
    )
    authorization: str | None = field(default=None, repr=False)  # the whole header value
    ssl_cafile: str | None = None
    timeout_s: float = 5.0
    generator_url: str = ""  # this sentinel's /status, as operators reach it

    @property
    def alerts_url(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"


class AlertmanagerPusher:
    """One per process; only the leader's publish task calls :meth:`push`."""

    def __init__(
        self,
        targets: Sequence[AlertmanagerTarget],
        session: aiohttp.ClientSession,
        lease: Lease,
        *,
        tick_seconds: float,
        on_result: Callable[[str, str], None] | None = None,
        secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._targets = tuple(targets)
        self._session = session
        self._lease = lease
        self._tick_s = tick_seconds
        self._on_result = on_result
        self._secrets = tuple(secrets)
        self._clock = clock
        self._episodes: dict[str, Episode] = {}
        # the state step of a tick must not interleave with the next tick's
        self._lock = asyncio.Lock()
        self._last: dict[str, str] = {}  # target -> last outcome logged
        self._ssl = {t.name: _ssl_context(t.ssl_cafile) for t in self._targets}

    @property
    def targets(self) -> tuple[AlertmanagerTarget, ...]:
        return self._targets

    @property
    def episodes(self) -> Mapping[str, Episode]:
        return dict(self._episodes)

    async def push(self, tick: Tick, *, deadline: float) -> dict[str, Result]:
        """Send ``tick``'s alerts to every target by ``deadline`` (loop time);
        the outcome per target. ``learning`` sends nothing."""
        if not self._targets or tick.status == "learning":
            return {}
        async with self._lock:
            now_firing = firing(tick)
            await self._advance(now_firing, tick.at)
            episodes = dict(self._episodes)
        async with asyncio.TaskGroup() as group:
            tasks = {
                t.name: group.create_task(self._send(t, episodes, now_firing, deadline))
                for t in self._targets
            }
        return {name: task.result() for name, task in tasks.items()}

    async def _advance(self, now_firing: Firing, at: int) -> None:
        try:
            raw = await asyncio.wait_for(self._lease.load_alert_state(), 3.0)
        except (StoreUnavailable, TimeoutError):
            raw = None  # our own copy, e.g. while the last leader reports "store unreachable"
        if raw is not None:
            try:
                self._episodes = load_state(raw)
            except ValueError as exc:
                log.warning("ignoring the stored alert state: %s", exc)
        self._episodes = advance(
            self._episodes, now_firing, at=at, now=self._clock(), tick_seconds=self._tick_s
        )
        # on failure the copy in memory serves, and the next tick writes again
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await asyncio.wait_for(self._lease.save_alert_state(dump_state(self._episodes)), 3.0)

    async def _send(
        self,
        target: AlertmanagerTarget,
        episodes: Mapping[str, Episode],
        now_firing: Firing,
        deadline: float,
    ) -> Result:
        alerts = postable_alerts(
            episodes,
            static_labels=target.labels,
            severities=target.severities,
            generator_url=target.generator_url,
            now_firing=now_firing,
        )
        # sent even when empty: every tick proves the path (auth, TLS, network), so a
        # broken target shows in the metric before the first attack needs it
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        if target.authorization is not None:
            headers["Authorization"] = target.authorization
        detail = ""
        try:
            async with asyncio.timeout_at(deadline):
                async with self._session.post(
                    target.alerts_url,
                    data=orjson.dumps(alerts),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                    ssl=self._ssl[target.name],
                    allow_redirects=False,
                ) as response:
                    body = await response.content.read(MAX_RESPONSE_BYTES)
            if response.status < 300:
                result: Result = "ok"
            else:
                # 4xx: Alertmanager refused the alerts (bad auth, bad labels): retrying as is
                # cannot help; 5xx: it is unwell. Either way, the next tick sends again.
                result = "rejected" if response.status < 500 else "error"
                detail = f"HTTP {response.status}: {body[:200].decode(errors='replace')}"
        except TimeoutError:
            result, detail = "timeout", "no answer before the timeout or the next tick"
        except Exception as exc:  # any client failure must not reach the sibling targets
            result, detail = "error", f"{type(exc).__name__}: {exc}"
        self._report(
            target.name, result, len(alerts), redact(" ".join(detail.split()), self._secrets)
        )
        return result

    def _report(self, name: str, result: Result, count: int, detail: str) -> None:
        if self._on_result is not None:
            self._on_result(name, result)
        # once per change of outcome, not once per tick: a down Alertmanager
        # would otherwise write a warning every tick for hours
        previous = self._last.get(name)
        self._last[name] = result
        if result == previous:
            return
        if result != "ok":
            log.warning("alertmanager %s: push %s (%s); repeats are counted, not logged",
                        name, result, detail)  # fmt: skip
        elif previous is not None:
            log.info("alertmanager %s: pushes delivered again (%d alerts)", name, count)


def _ssl_context(cafile: str | None) -> ssl.SSLContext | bool:
    if cafile is None:
        return True  # aiohttp's default verification against the system's CAs
    return ssl.create_default_context(cafile=cafile)
