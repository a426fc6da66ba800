"""Soak: the real service at a steady load for a long time; is its memory flat?

    eval "$(scripts/services start)"
    PYTHONPATH=. .venv/bin/python bench/soak.py [--minutes 30] [--rate 300] [--out soak.json]

Needs the real broker (KAFKA_BOOTSTRAP_SERVERS), or ``--private-broker`` to
start one of its own from the jars ``scripts/services`` cached. Starts a private
``redis-server`` (so its ``used_memory`` is ours alone, not the other users'
of a shared server) and ``stream-sentinel run`` as a subprocess against a
private request/response topic pair, then produces ``--rate`` contract events
per second (event time = now, 1,000 users, 2 % blocked, 1 % unsafe) in a
bounded loop on loopback for ``--minutes``.

After ``--warmup-s`` (default 960 s: the store's steady state, see below)
it samples every ``--every-s`` seconds: the service's RSS (``VmRSS`` of its
process), Redis ``used_memory`` and ``DBSIZE``, events counted (from
``/metrics``) and produced. At the end it waits until the service has counted
everything produced, stops it with SIGTERM (exit 0 expected) and judges:

- counted == produced (nothing lost, nothing doubled, none invalid);
- RSS flat: last / first sample <= ``--rss-tolerance`` (default 1.20);
- Redis flat: last / first sample <= ``--redis-tolerance`` (default 1.20).

Why the long warm-up: per-user counts live in 300 s pages that expire 630 s
(top-user window + lateness + margin) after their last write, so Redis holds
3-4 user pages per partition once 300 + 630 s have passed and grows until
then; that is the bound working, not a leak. Counter pages live ~65 min but
are a few hundred bytes each. Pages roll over on whole multiples of 300 s,
so ``used_memory`` is a saw-tooth with that period; samples a whole number
of 5 minutes apart (the first and the last, with the defaults) see the same
phase. A leak instead grows with the event count, sample after sample.

Prints one line per sample, writes them with the verdict as JSON to
``--out``, exits 1 when a check fails. Topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_options import kafka_options, security_env
from prometheus_client.parser import text_string_to_metric_families
from redis import asyncio as aioredis

USERS = 1000


@dataclass
class Sample:
    minute: float  # since the end of the warm-up
    rss_kib: int
    redis_used_memory: int
    redis_keys: int
    counted: int
    produced: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.1)  # a server starting up: nothing to await but the port
    proc.kill()
    raise RuntimeError("private redis-server did not start")


def start_service(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_sentinel", "run"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names], timeout_ms=30_000)
        async with asyncio.timeout(30):
            for name in names:
                while True:
                    (found,) = await admin.describe_topics([name])
                    if sum(p["leader"] >= 0 for p in found["partitions"]) == partitions:
                        break
                    await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(names, timeout_ms=30_000)
    finally:
        await admin.close()


async def counted(session: aiohttp.ClientSession, port: int) -> int:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return int(
        sum(
            s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == "stream_sentinel_events_total" and s.labels.get("result") == "counted"
        )
    )


class Load:
    """A bounded produce loop: ``rate`` events/s in 10 slices a second."""

    def __init__(self, bootstrap: str, topics: dict[str, str], rate: int) -> None:
        self.bootstrap, self.topics, self.rate = bootstrap, topics, rate
        self.produced = 0
        self.rng = random.Random(11)

    def event(self, i: int) -> dict[str, object]:
        user = f"user-{self.rng.randrange(USERS)}"
        ts = round(time.time() - self.rng.uniform(0, 2), 3)
        if i % 2 == 0:
            return {"event_id": f"s{i}", "type": "request", "ts": ts, "user_id": user,
                    "blocked": self.rng.random() < 0.02}  # fmt: skip
        return {"event_id": f"s{i}", "type": "response", "ts": ts, "user_id": user,
                "safe": self.rng.random() > 0.01, "cost_usd": 0.001}  # fmt: skip

    async def run(self, until: float) -> None:
        producer = AIOKafkaProducer(**kafka_options(self.bootstrap), linger_ms=5, acks="all")
        await producer.start()
        loop = asyncio.get_running_loop()
        try:
            slice_s, start = 0.1, loop.time()
            n = 0
            while loop.time() < until:
                # the schedule, not the last send, sets the pace: no drift under load
                due = int((loop.time() - start) * self.rate)
                futures = []
                while n < due:
                    e = self.event(n)
                    futures.append(
                        await producer.send(
                            self.topics[str(e["type"])],
                            orjson.dumps(e),
                            key=str(e["user_id"]).encode(),
                        )
                    )
                    n += 1
                await asyncio.gather(*futures)
                self.produced = n
                await asyncio.sleep(slice_s)
        finally:
            await producer.stop()


async def soak(args: argparse.Namespace) -> tuple[dict[str, object], list[Sample]]:
    broker = None
    if args.private_broker:
        # a broker of our own: a shared one restarted by someone else mid-run
        # would end the soak (it did, once)
        from tests.integration.harness import PrivateKafka

        broker = PrivateKafka()
        await broker.start()
        bootstrap = broker.bootstrap
    else:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not bootstrap:
        raise SystemExit('KAFKA_BOOTSTRAP_SERVERS is not set: eval "$(scripts/services start)"')
    try:
        return await _soak(args, bootstrap)
    finally:
        if broker is not None:
            broker.close()


async def _soak(args: argparse.Namespace, bootstrap: str) -> tuple[dict[str, object], list[Sample]]:
    tag = uuid.uuid4().hex[:8]
    topics = {"request": f"soak.req.{tag}", "response": f"soak.resp.{tag}"}
    dlq = f"soak.dlq.{tag}"
    await create_topics(bootstrap, list(topics.values()), args.partitions)
    await create_topics(bootstrap, [dlq], 1)
    redis_port, http_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="ss-soak-")
    redis_proc = start_redis(redis_port, workdir)
    log_path = Path(workdir) / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env.update(
        {
            **security_env(),
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SENTINEL_KAFKA_GROUP_ID": f"soak-{tag}",
            "SENTINEL_KAFKA_REQUEST_TOPIC": topics["request"],
            "SENTINEL_KAFKA_RESPONSE_TOPIC": topics["response"],
            "SENTINEL_KAFKA_DLQ_TOPIC": dlq,
            "SENTINEL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SENTINEL_HTTP_PORT": str(http_port),
            "SENTINEL_ALERTING_TICK_SECONDS": str(args.tick_s),
            "SENTINEL_BASELINES_BLOCKED_PCT": "2.0",
            "SENTINEL_BASELINES_SAFETY_PCT": "99.0",
            "SENTINEL_BASELINES_TOP_USER_RPS": "5.0",
            "SENTINEL_BASELINES_SPEND_HOUR": "1000",
        }
    )
    svc = start_service(env, log_path)
    redis = aioredis.Redis(port=redis_port)
    samples: list[Sample] = []
    load = Load(bootstrap, topics, args.rate)
    loop = asyncio.get_running_loop()
    rc_svc: int | None = None
    try:
        async with aiohttp.ClientSession() as session:
            started = loop.time()
            end = started + args.warmup_s + args.minutes * 60
            producing = asyncio.create_task(load.run(end))
            print(f"soak: {args.rate} events/s for {args.minutes} min after "
                  f"{args.warmup_s:g} s warm-up; service log {log_path}", flush=True)  # fmt: skip
            next_sample = started + args.warmup_s
            while True:
                await asyncio.wait({producing}, timeout=max(0.0, next_sample - loop.time()))
                if svc.poll() is not None:
                    raise RuntimeError(f"service exited {svc.returncode}; see {log_path}")
                if producing.done() and loop.time() < next_sample:
                    producing.result()  # raises what stopped the load
                info = await redis.info("memory")
                sample = Sample(
                    minute=round((loop.time() - started - args.warmup_s) / 60, 2),
                    rss_kib=rss_kib(svc.pid),
                    redis_used_memory=int(info["used_memory"]),
                    redis_keys=int(await redis.dbsize()),
                    counted=await counted(session, http_port),
                    produced=load.produced,
                )
                samples.append(sample)
                print(json.dumps(asdict(sample)), flush=True)
                next_sample += args.every_s
                if next_sample > end + 1:
                    break
            await producing
            # everything produced is counted (lag drains) before the verdict
            deadline = loop.time() + 120
            while (got := await counted(session, http_port)) != load.produced:
                if loop.time() > deadline:
                    raise RuntimeError(f"counted {got} of {load.produced} after the load")
                await asyncio.sleep(0.5)
        svc.send_signal(signal.SIGTERM)
        rc_svc = await asyncio.to_thread(svc.wait, 60)
    finally:
        if svc.poll() is None:
            svc.kill()
        await redis.aclose()
        redis_proc.kill()
        redis_proc.wait(10)
        await delete_topics(bootstrap, [*topics.values(), dlq])

    first, last = samples[0], samples[-1]
    rss_ratio = last.rss_kib / first.rss_kib
    redis_ratio = last.redis_used_memory / first.redis_used_memory
    verdict = {
        "rate": args.rate,
        "minutes": args.minutes,
        "produced": load.produced,
        "counted": got,
        "service_exit": rc_svc,
        "rss_ratio": round(rss_ratio, 3),
        "rss_max_kib": max(s.rss_kib for s in samples),
        "redis_ratio": round(redis_ratio, 3),
        "redis_max_used_memory": max(s.redis_used_memory for s in samples),
        "rss_tolerance": args.rss_tolerance,
        "redis_tolerance": args.redis_tolerance,
        "ok": got == load.produced
        and rc_svc == 0
        and rss_ratio <= args.rss_tolerance
        and redis_ratio <= args.redis_tolerance,
    }
    print(json.dumps(verdict), flush=True)
    return verdict, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=300, help="events per second")
    parser.add_argument("--warmup-s", type=float, default=960)
    parser.add_argument("--every-s", type=float, default=60)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--tick-s", type=int, default=10)
    parser.add_argument("--rss-tolerance", type=float, default=1.20)
    parser.add_argument("--redis-tolerance", type=float, default=1.20)
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--private-broker",
        action="store_true",
        help="run a broker of our own (PrivateKafka from tests/integration/harness.py)",
    )
    args = parser.parse_args()
    verdict, samples = asyncio.run(soak(args))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"verdict": verdict, "samples": [asdict(s) for s in samples]}, indent=1)
        )
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
