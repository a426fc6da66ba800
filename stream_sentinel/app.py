"""`stream-sentinel run`: wire consumer, evaluator, sinks and server from one Config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka.errors import KafkaError

from .alertmanager_push import AlertmanagerPusher
from .alerts import TenantTransitions, TransitionTracker, alert_event, tenant_alert_event
from .baselines import build_baselines
from .config import Config
from .evaluate import Evaluator
from .health import Health
from .heartbeat import HeartbeatSender, HeartbeatTarget, heartbeat_message
from .http_connections import ConnectionLimits
from .http_tls import ReloadingTls, TlsError
from .httpserver import HttpServer, build_http_app, start_http
from .ingest import Processed
from .kafka.alerts_topic import AlertsTopic
from .kafka.source import KafkaIngest
from .kafka.store_watch import StoreWatch
from .metrics import Metrics
from .model import Tick
from .status_doc import red_tenants_note, status_document, tenant_log_fields
from .store.base import PartitionId, Store, StoreRefused, StoreUnavailable
from .store.build import Storage, open_storage
from .store.lease import Lease
from .ticker import TickLoop
from .wiring import (
    build_alertmanager_targets,
    build_kafka_settings,
    build_processor,
    build_rules,
    storage_settings,
    tenants_top_k,
)

log = logging.getLogger(__name__)

# also when the servers refuse the configured credentials or TLS settings
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
STARTUP_STORE_WAIT_S = 10.0


class MetricsObserver:
    """Feeds the consumer's events into the app's own registry."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def batch_done(self, part: PartitionId, processed: Processed, store_seconds: float) -> None:
        for (kind, reason), n in processed.outcomes.items():
            self._m.count_event("request" if kind == "request" else "response", reason or None, n)
            if reason:
                self._m.dead_letters.labels(reason=self._m_reason(reason)).inc(n)
        self._m.observe_batch(sum(processed.outcomes.values()))
        self._m.store_write_seconds.observe(store_seconds)

    def _m_reason(self, reason: str) -> str:
        return reason if len(reason) <= 64 else reason[:64]

    def store_error(self, op: str) -> None:
        self._m.store_errors.labels(op="write" if op == "apply" else "read").inc()

    def lag(self, part: PartitionId, lag: int) -> None:
        self._m.set_consumer_lag(part.topic, part.partition, lag)

    def assignment_changed(
        self, assigned: Sequence[PartitionId], revoked: Sequence[PartitionId]
    ) -> None:
        self._m.partitions_assigned.set(len(assigned))
        # a revoked partition's lag is its new owner's to report: left here at
        # its last value, sum(lag) over replicas would count it twice
        for part in revoked:
            self._m.forget_partition(part.topic, part.partition)


class Service:
    """The live service on an open ``Storage``; whoever opened it closes it."""

    def __init__(self, cfg: Config, storage: Storage) -> None:
        self.cfg = cfg
        # random, not host and PID: it is shown in /status, which must not map the pod
        self.replica = uuid.uuid4().hex[:12]
        self.latest: Tick | None = None
        self.latest_at_wall = 0.0
        self.metrics = Metrics()
        self.store: Store = storage.store
        self.ingest = KafkaIngest(
            build_kafka_settings(cfg),
            self.store,
            build_processor(cfg),
            observer=MetricsObserver(self.metrics),
        )
        tick_s = cfg.alerting.tick_seconds
        self.stall_after_s = 2 * tick_s + 5
        self.watch = StoreWatch(
            self.store,
            (cfg.kafka.request_topic, cfg.kafka.response_topic),
            stall_after_s=self.stall_after_s,
            clock=time.time,
        )
        self.health = Health(self.watch, self.ingest, stall_after_s=self.stall_after_s)
        self.alerts = AlertsTopic(cfg.kafka.alerts_topic, clock=time.monotonic)
        self.lease_ttl_s = max(1.0, 1.5 * tick_s)
        self.lease: Lease = storage.lease(
            replica_id=self.replica, ttl_ms=int(self.lease_ttl_s * 1000)
        )
        self.evaluator = Evaluator(
            self.store,
            build_rules(cfg),
            build_baselines(cfg, storage.history, storage.store),
            read_ahead=storage.read_ahead,
            tenants_top_k=tenants_top_k(cfg),
        )
        self.tracker = TransitionTracker()
        self.tenant_tracker = TenantTransitions()
        self.session: aiohttp.ClientSession | None = None
        self.sender: HeartbeatSender | None = None
        self.alertmanager: AlertmanagerPusher | None = None
        self.loop = TickLoop(
            self.evaluator,
            self.lease,
            tick_seconds=tick_s,
            grace_s=min(2.0, tick_s / 4),
            lease_ttl_s=self.lease_ttl_s,
            health=self.health.reason,
            recheck=self.health.recheck,
            publish=self.publish,
            on_tick=self.on_tick,
        )
        self.metrics.bind_state(lambda: self.latest, lambda: self.loop.reporting)

    # -- health --------------------------------------------------------------

    async def ready_checks(self) -> dict[str, bool | str]:
        checks: dict[str, bool | str] = {
            "kafka": False,
            "topics": False,
            "partitions_assigned": False,
        }
        if self.cfg.redis.url is not None:  # the embedded store has nothing to check
            checks["redis"] = False
            try:
                await asyncio.wait_for(self.store.ping(), 2.0)
                checks["redis"] = True
            except (StoreUnavailable, TimeoutError):
                pass
        k = self.cfg.kafka
        wanted = (k.request_topic, k.response_topic, k.dlq_topic, k.alerts_topic)
        try:
            # one metadata request for every topic (the producer's partitions_for
            # would wait out its whole timeout on a missing topic)
            known = await asyncio.wait_for(self.ingest.consumer.topics(), 2.0)
            checks["kafka"] = True
            missing = [name for name in wanted if name not in known]
            checks["topics"] = f"missing: {', '.join(missing)}" if missing else True
        except Exception:  # any client error means "not reachable"
            checks["kafka"] = False
            checks["topics"] = "not checked: kafka unreachable"
        checks["partitions_assigned"] = bool(self.ingest.assigned)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.alerts.check(self.ingest.consumer), 2.0)
        return checks

    def ready_warnings(self) -> list[str]:
        """What /readyz shows beside its checks: outputs that cannot work (a
        refusing dead-letter topic passes ``topics`` yet stalls partitions)."""
        stalled = self.watch.stalled_note if self.loop.leader else None
        return [w for w in (self.alerts.warning, self.ingest.dead_letters.reason, stalled) if w]

    def status(self) -> dict[str, Any] | None:
        if self.latest is None and self.loop.leader:
            return None  # "starting": the first tick is at most one tick away
        # A follower never evaluates, so it has no tick to show; without a body
        # it would answer 503 "starting" for ever and hide that it is a follower.
        age = None if self.latest is None else time.time() - self.latest_at_wall
        return status_document(
            self.latest,
            leader=self.loop.reporting if self.latest is not None else False,
            replica=self.replica,
            age_s=age,
        )

    # -- outputs -------------------------------------------------------------

    def on_tick(self, tick: Tick, seconds: float) -> None:
        self.latest = tick
        self.latest_at_wall = time.time()
        self.metrics.observe_tick(seconds)
        line = tick.to_json()
        del line["top_users"]  # user ids are untrusted input: never in a log line
        if tick.tenants:  # nor tenants: their escaped, bounded labels stand in
            line["tenants"] = tenant_log_fields(tick.tenants)
        log.info(
            "tick %s status=%s red=%s %s%s",
            line["at"],
            tick.status,
            ",".join(tick.red) or "-",
            heartbeat_message(tick),
            red_tenants_note(tick.tenants),
            extra={"fields": line},
        )

    async def publish(self, tick: Tick, deadline: float) -> None:
        changed, previous = self.tracker.update(tick.status)
        jobs: list[Coroutine[Any, Any, Any]] = []
        if self.sender is not None and self.sender.targets:
            jobs.append(self.sender.push(tick, heartbeat_message, deadline=deadline))
        if self.alertmanager is not None and self.alertmanager.targets:
            jobs.append(self.alertmanager.push(tick, deadline=deadline))
        if changed:
            jobs.append(self._send_alert(tick, previous))
        for change in self.tenant_tracker.update(tick):
            event = tenant_alert_event(
                change, at=tick.at, epoch=self.loop.epoch, replica=self.replica
            )
            jobs.append(self._send_tenant_alert(event))
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _send_tenant_alert(self, event: dict[str, Any]) -> None:
        if await self.alerts.send(self.ingest.producer, self.ingest.consumer, orjson.dumps(event)):
            self.metrics.count_tenant_alert(event["status"])

    async def _send_alert(self, tick: Tick, previous: Any) -> None:
        event = alert_event(tick, previous, epoch=self.loop.epoch, replica=self.replica)
        if await self.alerts.send(self.ingest.producer, self.ingest.consumer, orjson.dumps(event)):
            self.metrics.count_alert(tick.status)

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> int:
        # first, so a SIGTERM at any point after start-up is a clean stop
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self._wait_for_store()
        except StoreUnavailable as exc:
            log.error("cannot start: %s", exc)
            return EXIT_CONFIG if isinstance(exc, StoreRefused) else EXIT_UNAVAILABLE
        try:
            http, port = await self._start_http()
        except (OSError, TlsError) as exc:
            # one line: a port taken or privileged, or an unusable certificate
            log.error("cannot start: %s", exc)
            return EXIT_CONFIG if isinstance(exc, TlsError) else EXIT_UNAVAILABLE
        loop.add_signal_handler(signal.SIGHUP, http.reload_tls)
        log.info(
            "http listening on %s:%d%s; replica %s (host %s, pid %d)",
            self.cfg.http.host,
            port,
            " (TLS)" if http.tls else "",
            self.replica,
            socket.gethostname(),
            os.getpid(),
        )
        self.session = aiohttp.ClientSession()
        self.sender = HeartbeatSender(
            [
                HeartbeatTarget(
                    hb.name,
                    hb.kind,
                    hb.url,
                    hb.tokens.secret_values(),
                    hb.timeout_seconds,
                    hb.retries,
                )
                for hb in self.cfg.heartbeat
            ],
            self.session,
            on_result=self.metrics.count_heartbeat,
        )
        self.alertmanager = AlertmanagerPusher(
            build_alertmanager_targets(self.cfg, port),
            self.session,
            self.lease,
            tick_seconds=self.cfg.alerting.tick_seconds,
            on_result=self.metrics.count_alertmanager,
            secrets=self.cfg.secrets(),
        )
        try:
            if not await self._start_kafka(stop):
                return 0
            self.watch.consumer = self.ingest.consumer
            settling = self.watch.start_settling()  # before our first commit
            await self.alerts.check(self.ingest.consumer)
            tasks = [
                asyncio.create_task(self.ingest.run(stop), name="ingest"),
                asyncio.create_task(self.loop.run(stop), name="ticks"),
            ]
            await stop.wait()
            log.info("stopping: finishing the batch in hand")
            settling.cancel()
            await asyncio.gather(*tasks, settling, return_exceptions=True)
        finally:
            await self.ingest.stop()
            await http.cleanup()
            await self.session.close()
        log.info("stopped")
        return 0

    async def _start_http(self) -> tuple[HttpServer, int]:
        web = self.cfg.http
        tls = None
        if web.tls_certfile is not None and web.tls_keyfile is not None:
            tls = ReloadingTls(web.tls_certfile, web.tls_keyfile)
        app = build_http_app(
            metrics=self.metrics,
            status_provider=self.status,
            ready_checks=self.ready_checks,
            ready_warnings=self.ready_warnings,
            status_token=web.status_token.get_secret_value() if web.status_token else None,
            limits=ConnectionLimits(
                header_timeout_s=web.header_timeout_seconds,
                body_timeout_s=web.body_timeout_seconds,
                keepalive_timeout_s=web.keepalive_timeout_seconds,
                max_connections=web.max_connections,
            ),
            allowed_hosts=web.host_names(),
            secrets=self.cfg.secrets(),
            tls=tls is not None,
        )
        return await start_http(app, web.host, web.port, tls=tls)

    async def _start_kafka(self, stop: asyncio.Event) -> bool:
        """Start the Kafka clients, retrying while the broker is unreachable."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.ingest.start()
                return True
            except KafkaError as exc:
                log.warning("kafka unreachable (%s); retrying in %.0fs", type(exc).__name__, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def _wait_for_store(self) -> None:
        deadline = time.monotonic() + STARTUP_STORE_WAIT_S
        while True:
            try:
                await self.store.ping()
                # every replica claims the generation at start: one that
                # starts after a wipe writes a new marker the leader notices
                await self.watch.claim()
                return
            except StoreRefused as exc:  # waiting will not change the server's mind
                raise StoreRefused(f"{exc} (redis.url = {_redacted_url(self.cfg)})") from None
            except StoreUnavailable as exc:
                # the reason names a type (ConnectionError, TimeoutError...), never a secret
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"redis unreachable after {STARTUP_STORE_WAIT_S:.0f}s "
                        f"({exc}; redis.url = {_redacted_url(self.cfg)})"
                    ) from None
                await asyncio.sleep(0.5)


def _redacted_url(cfg: Config) -> str:
    redis = cfg.redacted_dict().get("redis", {})
    return str(redis.get("url"))


async def run_service(cfg: Config) -> int:
    async with open_storage(storage_settings(cfg, history_file=True)) as storage:
        return await Service(cfg, storage).run()
