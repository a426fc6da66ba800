"""User ids (and tenants) are attacker-controlled text. Whatever they hold (hash-tag braces, colons,
newlines, ANSI escapes, bidi overrides, 10 kB) they never pick a Redis key or its
Cluster slot, never break a JSON line, a URL or a log line, and come back intact.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping

import aiohttp
import orjson
import pytest
from yarl import URL

from stream_sentinel.aggregate import BatchAggregator
from stream_sentinel.alerts import alert_event
from stream_sentinel.decode import MAX_TENANT, MAX_USER_ID, Decoder
from stream_sentinel.decode_rows import RowDecoder
from stream_sentinel.events import Rejection
from stream_sentinel.heartbeat import heartbeat_message
from stream_sentinel.heartbeat_kinds import HeartbeatTarget, build_request
from stream_sentinel.httpserver import build_http_app, start_http
from stream_sentinel.ingest import BatchProcessor
from stream_sentinel.metrics import Metrics
from stream_sentinel.model import SignalReading, Tick
from stream_sentinel.store.base import PartitionId
from stream_sentinel.store.redis import RedisStore
from stream_sentinel.store.redis_client import connect

NOW = 1_790_000_100.0
HOSTILE = [
    "{slot}",
    "}{",
    "{}",
    "a:b:{c}:d",
    "ss:parts",
    "line\nbreak\r\nX-Injected: 1",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "\u202eevil\u202c",
    "zero\u200bwidth\u2028sep",
    "\u0000nul",
    "👩‍👩‍👧 ünï©ødé",
    "../../etc/passwd",
    "%0d%0a",
    "*",
    "x" * MAX_USER_ID,  # the longest the decoder takes
]
PARTS = [PartitionId("llm.requests", 0), PartitionId("llm.requests", 7)]


def _requests(ids: list[str]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "type": "request",
                "ts": NOW + i % 50,
                "user_id": uid,
                "blocked": False,
            }
        )
        for i, uid in enumerate(ids)
    ]


async def test_hostile_ids_never_choose_a_key_or_a_slot_on_the_cluster(
    redis_cluster_url: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = connect(redis_cluster_url)
    store = RedisStore(client, prefix=prefix, bucket_width=60, counter_ttl_s=4000, user_ttl_s=700)
    processor = BatchProcessor(Decoder(), BatchAggregator(60))
    try:
        for n, part in enumerate(PARTS):
            raw = _requests(HOSTILE * (n + 1))
            out = processor.process(
                part=part, topic_type="request", offsets=range(len(raw)), values=raw, now=NOW
            )
            assert not out.dead
            await store.apply(part, None, out.next_offset, out.delta)
        keys = [k.decode() async for k in client.scan_iter(match=f"{prefix}:*")]
        assert f"{prefix}:parts" in keys
        for part in PARTS:
            tag = f"{{{part.topic}:{part.partition}}}"
            want = await client.cluster_keyslot(tag)
            mine = [k for k in keys if k.startswith(f"{prefix}:{tag}:")]
            assert mine and {await client.cluster_keyslot(k) for k in mine} == {want}
        # nothing but the registry and the two partitions' keys, none naming a user
        assert len(keys) == 1 + sum(1 for k in keys if "{llm.requests:" in k)
        for uid in HOSTILE:
            if uid != "*":
                assert not any(uid in k for k in keys), uid
        top = dict(await store.top_users(int(NOW) - 60, int(NOW) + 120, 100))
        assert top == {uid: 3 for uid in HOSTILE}  # once on partition 0, twice on 7
    finally:
        doomed = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if doomed:
            await client.delete(*doomed)
        await store.close()


def test_a_ten_kilobyte_user_id_is_a_dead_letter_and_its_neighbours_count() -> None:
    huge = "\x1b[2J" + "A" * 10_240
    raw = _requests(["before", huge, "after", "\n" * (MAX_USER_ID + 1)])
    out = BatchProcessor(Decoder(), BatchAggregator(60)).process(
        part=PARTS[0], topic_type="request", offsets=range(len(raw)), values=raw, now=NOW
    )
    assert [(d.offset, d.reason) for d in out.dead] == [
        (1, "length:user_id"),
        (3, "length:user_id"),
    ]
    assert all("AAAA" not in d.detail and "\x1b" not in d.detail for d in out.dead)
    users: Counter[str] = Counter()
    for inc in out.delta.values():
        users.update(inc.users)
    assert users == Counter({"before": 1, "after": 1})


def test_hostile_tenants_decode_intact_on_both_paths() -> None:
    # tenants are as untrusted as user ids: the decoders keep every character
    # (hashing and escaping are the consumers' job) and refuse only the length
    raws = [
        orjson.dumps(
            {"event_id": f"e{i}", "ts": NOW, "user_id": "u", "blocked": False, "tenant": tenant}
        )
        for i, tenant in enumerate(HOSTILE)
    ]
    decoder = Decoder()
    rows = RowDecoder(decoder).rows(raws, "request")
    for raw, row, tenant in zip(raws, rows, HOSTILE, strict=True):
        event = decoder.decode(raw, topic_type="request", now=NOW)
        assert not isinstance(event, Rejection) and event.tenant == tenant
        assert row is not None and row.tenant == tenant


def test_a_ten_kilobyte_tenant_is_a_dead_letter_and_its_neighbours_count() -> None:
    huge = "\x1b[2J" + "A" * 10_240
    raw = [
        orjson.dumps({**orjson.loads(one), "tenant": tenant})
        for one, tenant in zip(
            _requests(["before", "huge", "after", "newlines"]),
            ["t", huge, "t", "\n" * (MAX_TENANT + 1)],
            strict=True,
        )
    ]
    out = BatchProcessor(Decoder(), BatchAggregator(60)).process(
        part=PARTS[0], topic_type="request", offsets=range(len(raw)), values=raw, now=NOW
    )
    assert [(d.offset, d.reason) for d in out.dead] == [(1, "length:tenant"), (3, "length:tenant")]
    assert all("AAAA" not in d.detail and "\x1b" not in d.detail for d in out.dead)
    users: Counter[str] = Counter()
    for inc in out.delta.values():
        users.update(inc.users)
    assert users == Counter({"before": 1, "after": 1})


def _tick(reason: str | None = None) -> Tick:
    status = "stale" if reason else "critical"
    reading = SignalReading("top_user_rps", 9.0, 1.0, 2.0, "red", None, 500)
    return Tick(
        at=int(NOW) - int(NOW) % 60,
        status=status,  # type: ignore[arg-type]
        red=("top_user_rps",),
        signals={"top_user_rps": reading},
        top_users=tuple((uid, 1.5) for uid in HOSTILE),
        reason=reason,
    )


def _one_line_json(body: bytes) -> None:
    # raw control characters would split a JSON line or drive a terminal; U+2028
    # may stay raw (valid JSON, and JSON-lines readers split on "\n" only)
    for bad in (b"\n", b"\r", b"\x1b", b"\x00"):
        assert bad not in body, bad


async def test_status_and_alerts_carry_hostile_ids_escaped_and_intact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tick = _tick()

    async def ready() -> Mapping[str, bool | str]:
        return {"ok": True}

    app = build_http_app(
        metrics=Metrics(),
        status_provider=lambda: tick.to_json(),
        ready_checks=ready,
        status_token=None,
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/status") as response,
        ):
            body = await response.read()
    finally:
        await runner.cleanup()
    _one_line_json(body)
    assert [u for u, _ in orjson.loads(body)["top_users"]] == HOSTILE
    event = orjson.dumps(alert_event(tick, "ok", epoch=3, replica="r1"))
    _one_line_json(event)
    assert [u for u, _ in orjson.loads(event)["top_users"]] == HOSTILE
    # the per-tick log line and the heartbeat message never name users at all
    message = heartbeat_message(tick)
    assert not any(uid in message for uid in HOSTILE if len(uid) > 2)
    for record in caplog.records:
        text = record.getMessage()
        assert "\x1b" not in text and "X-Injected" not in text and "evil" not in text


@pytest.mark.parametrize("kind", ["generic", "uptime-kuma", "healthchecks"])
def test_heartbeat_urls_stay_on_their_host_and_path(kind: str) -> None:
    target = HeartbeatTarget(
        name="t",
        kind=kind,
        url="https://hb.example/base",
        tokens={"composite": "tok"},  # type: ignore[arg-type]
    )
    # a stale reason carries exception text from the store: it reaches the message
    tick = _tick(reason="boom\r\nHost: evil.example\x1b[0m ../../admin?x=1#f")
    message = heartbeat_message(tick)
    request = build_request(target, "composite", tick, True, message)
    url = URL(str(request.url))
    assert (url.scheme, url.host, url.port) == ("https", "hb.example", 443)
    assert url.raw_path.startswith("/base/") or url.raw_path == "/base"
    assert "/admin" not in url.raw_path and ".." not in url.raw_path
    text = str(request.url)
    assert not any(c in text for c in "\r\n\x1b #"), text
    assert "evil.example" not in url.host
    if kind == "generic":
        assert url.query["token"] == "tok" and url.query["status"] == "critical"
        assert "Host: evil.example" in url.query["msg"]  # carried as data, decoded intact
