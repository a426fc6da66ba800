"""Leader election: exactly one replica evaluates and posts heartbeats.

A Redis lease with expiry (SET NX PX), renewed by its holder, plus a fencing
epoch that grows on every change of holder. A replica that stops renewing
(killed, partitioned away) loses the lease when it expires and another takes
it over on its next attempt.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from .base import StoreUnavailable
from .redis_client import REDIS_ERRORS, RedisClient

# KEYS: holder, epoch. ARGV: me, ttl ms. Returns the epoch when we hold the lease, else 0.
_ACQUIRE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return 0
"""

# KEYS: holder, state. ARGV: me, state, ttl ms. Only the holder may write the state.
_SAVE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    async def acquire(self) -> int:
        """Take or renew the lease; the fencing epoch when held, else 0."""

    async def release(self) -> None: ...

    @property
    def held(self) -> bool: ...

    async def load_state(self) -> bytes | None:
        """The evaluator state the previous holder left (hysteresis), if any."""

    async def save_state(self, state: bytes) -> None:
        """Leave the evaluator state for the next holder; only while we hold the lease."""

    async def load_alert_state(self) -> bytes | None:
        """The Alertmanager episodes (when each alert started) any holder left, if any;
        raises StoreUnavailable when the store cannot be read."""

    async def save_alert_state(self, state: bytes) -> bool:
        """Keep the Alertmanager episodes for later ticks and holders; only while we
        hold the lease. Whether they were written."""


class LocalLease:
    """The embedded default: one process, always the leader."""

    def __init__(self) -> None:
        self._held = False
        self._alert_state: bytes | None = None

    async def acquire(self) -> int:
        self._held = True
        return 1

    async def release(self) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def load_state(self) -> bytes | None:
        return None  # one process: the evaluator keeps its own state

    async def save_state(self, state: bytes) -> None:
        return None

    async def load_alert_state(self) -> bytes | None:
        return self._alert_state

    async def save_alert_state(self, state: bytes) -> bool:
        self._alert_state = state
        return True


class RedisLease:
    def __init__(self, client: RedisClient, *, prefix: str, replica_id: str, ttl_ms: int) -> None:
        # one hash tag so the script's two keys share a slot on a Cluster
        self._keys = [f"{prefix}:{{leader}}:holder", f"{prefix}:{{leader}}:epoch"]
        self._state_key = f"{prefix}:{{leader}}:state"
        # same hash tag as the holder key: the fenced write is one slot on a Cluster
        self._alert_key = f"{prefix}:{{leader}}:alertmanager"
        self._client = client
        self._save = client.register_script(_SAVE_LUA)
        # the state outlives a failover but not a long absence of any leader
        self._state_ttl_ms = max(ttl_ms * 20, 600_000)
        self._me = replica_id
        self._ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._epoch = 0

    async def acquire(self) -> int:
        try:
            epoch = int(await self._acquire(keys=self._keys, args=[self._me, self._ttl_ms]))
        except REDIS_ERRORS as exc:
            # an unreachable store means we cannot prove we still hold it
            self._epoch = 0
            raise StoreUnavailable(f"lease: {type(exc).__name__}") from exc
        self._epoch = epoch
        return epoch

    async def release(self) -> None:
        held, self._epoch = self._epoch, 0
        if not held:
            return
        with contextlib.suppress(*REDIS_ERRORS):  # it expires by itself
            await self._release(keys=self._keys[:1], args=[self._me])

    @property
    def held(self) -> bool:
        return self._epoch > 0

    async def load_state(self) -> bytes | None:
        try:
            value = await self._client.get(self._state_key)
        except REDIS_ERRORS:
            return None
        return value.encode() if isinstance(value, str) else value

    async def save_state(self, state: bytes) -> None:
        with contextlib.suppress(*REDIS_ERRORS):  # best effort, next tick tries again
            await self._save(
                keys=[self._keys[0], self._state_key], args=[self._me, state, self._state_ttl_ms]
            )

    async def load_alert_state(self) -> bytes | None:
        try:
            value = await self._client.get(self._alert_key)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"alert state: {type(exc).__name__}") from exc
        return value.encode() if isinstance(value, str) else value

    async def save_alert_state(self, state: bytes) -> bool:
        try:
            written = await self._save(
                keys=[self._keys[0], self._alert_key], args=[self._me, state, self._state_ttl_ms]
            )
        except REDIS_ERRORS:
            return False  # the caller keeps its copy; the next tick tries again
        return bool(written)
