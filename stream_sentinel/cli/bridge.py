"""``stream-sentinel bridge litellm``: LiteLLM's ``generic_api`` posts -> event topics.

For users of the stock LiteLLM image, who cannot install a package into it:
LiteLLM's built-in ``generic_api`` logger POSTs batches of standard logging
records (``json_array``, ``ndjson`` or ``single``) to this endpoint, which maps
them exactly as the in-proxy callback does and produces the events. A record
that cannot be mapped is dead-lettered with the reason; nothing is dropped
silently. The answer comes after Kafka confirmed every message, so a 503 (Kafka
unreachable) leaves the batch to LiteLLM's retries.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from ..config import Config
from ..http_guard import BearerAuth
from ..httpserver import HttpServer, guarded_app, start_http
from ..ingest import DeadLetter
from ..integrations.litellm_events import MappingError, events_of
from ..kafka.clients import producer_factory

log = logging.getLogger(__name__)

PATH: Final = "/litellm"
SOURCE: Final = "bridge:litellm"  # the dead letters' source topic: where they came from
MIN_TOKEN_CHARS: Final = 16
EXIT_USAGE: Final = 2
EXIT_LISTEN: Final = 3  # as `run`: the port is taken or privileged


class BridgeSetupError(Exception):
    """A problem with the bridge's own flags (token file): exit 2 with this line."""


@dataclass
class Parsed:
    records: list[Any]
    raws: list[bytes]


def split_records(body: bytes) -> Parsed:
    """A body in any of generic_api's formats -> the records and their original bytes."""
    text = body.strip()
    if not text:
        return Parsed([], [])
    if text.startswith(b"["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Parsed([None], [text])
        if isinstance(doc, list):
            return Parsed(doc, [orjson.dumps(r) for r in doc])
    records: list[Any] = []
    raws: list[bytes] = []
    for line in text.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            records.append(None)
        raws.append(line)
    return Parsed(records, raws)


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BridgeSetupError(f"--token-file: cannot read {path} ({type(exc).__name__})") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise BridgeSetupError(
            f"--token-file: the token must have at least {MIN_TOKEN_CHARS} characters"
        )
    return token


class Bridge:
    def __init__(self, cfg: Config, auth: BearerAuth, producer: Any) -> None:
        self._cfg = cfg
        self._auth = auth
        self._producer = producer
        self._topics = {"request": cfg.kafka.request_topic, "response": cfg.kafka.response_topic}
        self.events = 0
        self.dead_lettered = 0

    async def handle(self, request: web.Request) -> web.Response:
        if not self._auth.allows(request.headers.get("Authorization")):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.read()
        parsed = split_records(body)
        messages: list[tuple[str, bytes | None, bytes]] = []
        dead = 0
        key = self._cfg.litellm.safety_score_key
        for record, raw in zip(parsed.records, parsed.raws, strict=True):
            reason, detail = "", ""
            if not isinstance(record, dict):
                reason, detail = "not_object", "a record is not a JSON object"
            else:
                try:
                    call = events_of(record, safety_score_key=key)
                except MappingError as exc:
                    reason, detail = exc.reason, str(exc)
                else:
                    for event in (call.request, call.response):
                        if event is not None:
                            user = event["user_id"].encode("utf-8")
                            messages.append(
                                (self._topics[event["type"]], user, orjson.dumps(event))
                            )
                    continue
            letter = DeadLetter(reason, detail, SOURCE, -1, -1, raw)
            messages.append((self._cfg.kafka.dlq_topic, None, letter.to_json()))
            dead += 1
        try:
            futures = [await self._producer.send(t, v, key=k) for t, k, v in messages]
            await asyncio.gather(*futures)
        except Exception as exc:
            log.warning("Kafka did not take a batch (%s); answering 503", type(exc).__name__)
            return web.json_response({"error": "kafka unavailable"}, status=503)
        self.events += len(messages) - dead
        self.dead_lettered += dead
        return web.json_response({"events": len(messages) - dead, "dead_lettered": dead})


def build_app(
    bridge: Bridge, max_body_bytes: int, *, secrets: Sequence[str] = ()
) -> web.Application:
    """The service's hardened HTTP shell (timeouts, connection cap, headers, scrubbed
    access log) with the one route of the bridge."""
    app = guarded_app(max_body_bytes=max_body_bytes, secrets=secrets)
    app.router.add_post(PATH, bridge.handle)
    return app


async def bridge_command(args: argparse.Namespace, cfg: Config) -> int:
    try:
        token = read_token(args.token_file)
    except BridgeSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .commands import require_topics

    k = cfg.kafka
    needed = [k.request_topic, k.response_topic, k.dlq_topic]
    if (code := await require_topics(cfg, needed, "bridge litellm")) is not None:
        return code
    producer = producer_factory(cfg, enable_idempotence=True, linger_ms=20)()
    await producer.start()
    server: HttpServer | None = None
    try:
        bridge = Bridge(cfg, BearerAuth(token), producer)
        app = build_app(bridge, args.max_body_bytes, secrets=[token])
        try:
            server, port = await start_http(app, args.host, args.port)
        except OSError as exc:
            where = f"{args.host}:{args.port}"
            print(f"error: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
            return EXIT_LISTEN
        log.info("bridge litellm listening on %s:%d%s", args.host, port, PATH)
        await _until_signal((signal.SIGINT, signal.SIGTERM))
        log.info(
            "bridge: %d events produced, %d dead-lettered", bridge.events, bridge.dead_lettered
        )
        return 0
    finally:
        if server is not None:
            await server.cleanup()
        await producer.stop()


async def _until_signal(signals: Sequence[signal.Signals]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def describe(p: Any) -> None:
    """The verb's arguments, for cli.main."""
    p.add_argument(
        "--token-file", required=True, help="file holding the bearer token LiteLLM sends"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9465, help="port to listen on (default 9465)")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest accepted batch; bigger ones get 413 (default 16 MiB)",
    )
    p.add_argument("--config", help="TOML config (default: sentinel.toml if present)")
