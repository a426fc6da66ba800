"""HeartbeatSender against real HTTP servers on 127.0.0.1 that behave like the monitors."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

import orjson
import pytest
from aiohttp import ClientSession, web

from stream_sentinel.heartbeat import (
    HeartbeatSender,
    HeartbeatTarget,
    heartbeat_message,
)
from stream_sentinel.model import SIGNALS, SignalName, SignalReading, Status, Tick

KEYS = ("composite", *SIGNALS)


# --- fake monitors ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    at: float  # loop time the request reached the handler


@dataclass
class Fake:
    """One fake monitor: what it received and how it should answer."""

    base: str = ""
    seen: list[Seen] = field(default_factory=list)
    known: set[str] = field(default_factory=set)
    fail_first: dict[str, int] = field(default_factory=dict)  # token -> 500s before a 200

    def paths(self) -> list[str]:
        return [s.raw_path for s in self.seen]


Handler = Callable[[web.Request, Fake], Awaitable[web.StreamResponse]]


async def record(request: web.Request, fake: Fake) -> None:
    fake.seen.append(
        Seen(
            request.method,
            request.raw_path.split("?", 1)[0],
            tuple(parse_qsl(request.query_string, keep_blank_values=True)),
            await request.read(),
            asyncio.get_running_loop().time(),
        )
    )


def answer_500_first(fake: Fake, token: str) -> bool:
    left = fake.fail_first.get(token, 0)
    if left:
        fake.fail_first[token] = left - 1
    return left > 0


async def healthchecks(request: web.Request, fake: Fake) -> web.StreamResponse:
    # Routed by hand on the raw path, so an escaped "/" in a token cannot match a route.
    await record(request, fake)
    parts = request.raw_path.split("?", 1)[0].split("/")
    if len(parts) not in (3, 4) or parts[1] != "ping" or parts[3:] not in ([], ["fail"]):
        return web.Response(status=404, text="not found")
    token = unquote(parts[2])
    if token not in fake.known:
        return web.Response(status=404, text="not found")
    if answer_500_first(fake, token):
        return web.Response(status=500, text="oops")
    return web.Response(text="OK")


async def uptime_kuma(request: web.Request, fake: Fake) -> web.StreamResponse:
    await record(request, fake)
    parts = request.raw_path.split("?", 1)[0].split("/")
    token = unquote(parts[3]) if len(parts) == 4 and parts[1:3] == ["api", "push"] else None
    if token not in fake.known:
        return web.json_response({"ok": False, "msg": "Monitor not found"}, status=500)
    return web.json_response({"ok": True})


async def receiver(request: web.Request, fake: Fake) -> web.StreamResponse:
    await record(request, fake)
    if request.path == "/moved":
        raise web.HTTPTemporaryRedirect(fake.base + "/api/heartbeat")
    return web.Response(text="ok")


@dataclass
class Monitors:
    hc: Fake
    kuma: Fake
    generic: Fake
    hook: Fake
    hang: Fake
    release: asyncio.Event  # set only at teardown, so hung handlers can finish
    hang_entered: asyncio.Event


async def serve(runners: list[web.AppRunner], fake: Fake, handler: Handler) -> None:
    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request, fake)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    host, port = runner.addresses[0][:2]
    fake.base = f"http://{host}:{port}"


@pytest.fixture
async def monitors() -> AsyncIterator[Monitors]:
    release, entered = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request, fake: Fake) -> web.StreamResponse:
        await record(request, fake)
        entered.set()
        await release.wait()
        return web.Response(text="too late")

    m = Monitors(Fake(), Fake(), Fake(), Fake(), Fake(), release, entered)
    runners: list[web.AppRunner] = []
    for fake, handler in (
        (m.hc, healthchecks),
        (m.kuma, uptime_kuma),
        (m.generic, receiver),
        (m.hook, receiver),
        (m.hang, hang),
    ):
        await serve(runners, fake, handler)
    yield m
    release.set()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as s:
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def tokens_for(prefix: str) -> dict[str, str]:
    return {key: f"{prefix}-{key}-{uuid.uuid4()}" for key in KEYS}


def all_kinds(
    m: Monitors, retries: int = 2
) -> tuple[list[HeartbeatTarget], dict[str, dict[str, str]]]:
    """One target of each kind, every token known to its fake monitor."""
    tokens = {name: tokens_for(name) for name in ("hc", "kuma", "gen", "hook")}
    m.hc.known.update(tokens["hc"].values())
    m.kuma.known.update(tokens["kuma"].values())
    targets = [
        HeartbeatTarget("hc", "healthchecks", m.hc.base + "/ping", tokens["hc"], retries=retries),
        HeartbeatTarget("kuma", "uptime-kuma", m.kuma.base, tokens["kuma"], retries=retries),
        HeartbeatTarget("gen", "generic", m.generic.base + "/api/heartbeat", tokens["gen"]),
        HeartbeatTarget("hook", "webhook", m.hook.base + "/hook", tokens["hook"], retries=retries),
    ]
    return targets, tokens


# --- ticks --------------------------------------------------------------------

VALUES: dict[SignalName, float] = {
    "blocked_pct": 0.12,
    "safety_pct": 99.71,
    "top_user_rps": 3.2,
    "spend_hour": 4.1,
}


def make_tick(status: Status, red: tuple[SignalName, ...] = (), reason: str | None = None) -> Tick:
    signals = {
        name: SignalReading(name, VALUES[name], 1.0, 2.0, "red" if name in red else "ok")
        for name in SIGNALS
    }
    return Tick(1_790_000_040, status, red, signals, (("u1", 3.2),), reason)


TICKS: dict[str, tuple[Tick, set[str]]] = {
    # tick, and the keys whose push must report a failure
    "ok": (make_tick("ok"), set()),
    "warning": (make_tick("warning", ("blocked_pct",)), {"blocked_pct"}),
    "critical": (
        make_tick("critical", ("blocked_pct", "spend_hour")),
        {"composite", "blocked_pct", "spend_hour"},
    ),
    "stale": (make_tick("stale", reason="store unreachable"), {"composite"}),
    "learning": (make_tick("learning", reason="learning baselines"), set()),
}


# --- tests --------------------------------------------------------------------


@pytest.mark.parametrize("case", list(TICKS))
async def test_every_kind_gets_exact_requests(
    case: str, monitors: Monitors, session: ClientSession
) -> None:
    tick, failing = TICKS[case]
    targets, tokens = all_kinds(monitors)
    calls: list[tuple[str, str]] = []
    sender = HeartbeatSender(targets, session, on_result=lambda t, r: calls.append((t, r)))
    loop = asyncio.get_running_loop()

    results = await sender.push(tick, deadline=loop.time() + 10)

    assert [(r.target, r.signal, r.result, r.failure) for r in results] == [
        (t, k, "ok", k in failing) for t in ("hc", "kuma", "gen", "hook") for k in KEYS
    ]
    assert calls == [(t, "ok") for t in ("hc", "kuma", "gen", "hook") for _ in KEYS]

    def msg(key: str) -> str:
        return heartbeat_message(tick, None if key == "composite" else key)

    hc = {(s.method, s.raw_path, s.body) for s in monitors.hc.seen}
    assert len(monitors.hc.seen) == len(KEYS)
    assert hc == {
        (
            "POST",
            f"/ping/{tokens['hc'][k]}" + ("/fail" if k in failing else ""),
            msg(k).encode(),
        )
        for k in KEYS
    }
    kuma = {(s.method, s.raw_path, s.query, s.body) for s in monitors.kuma.seen}
    assert len(monitors.kuma.seen) == len(KEYS)
    assert kuma == {
        (
            "GET",
            f"/api/push/{tokens['kuma'][k]}",
            (("status", "down" if k in failing else "up"), ("msg", msg(k)), ("ping", "")),
            b"",
        )
        for k in KEYS
    }
    gen = {(s.method, s.raw_path, s.query) for s in monitors.generic.seen}
    assert len(monitors.generic.seen) == len(KEYS)
    assert gen == {
        (
            "GET",
            "/api/heartbeat",
            (
                ("token", tokens["gen"][k]),
                ("status", "critical" if k in failing else "ok"),
                ("msg", msg(k)),
            ),
        )
        for k in KEYS
    }
    hooks = sorted((orjson.loads(s.body) for s in monitors.hook.seen), key=lambda b: b["signal"])
    assert {(s.method, s.raw_path, s.query) for s in monitors.hook.seen} == {("POST", "/hook", ())}
    assert hooks == sorted(
        (
            {
                "token": tokens["hook"][k],
                "signal": k,
                "status": "critical" if k in failing else "ok",
                "state": tick.status if k == "composite" else tick.signals[k].state,  # type: ignore[index]
                "message": msg(k),
                "tick": tick.to_json(),
            }
            for k in KEYS
        ),
        key=lambda b: str(b["signal"]),
    )


async def test_composite_carries_the_summary_and_a_signal_its_own_line(
    monitors: Monitors, session: ClientSession
) -> None:
    tick = TICKS["warning"][0]
    hc_tokens = {"composite": str(uuid.uuid4()), "blocked_pct": str(uuid.uuid4())}
    monitors.hc.known.update(hc_tokens.values())
    target = HeartbeatTarget("hc", "healthchecks", monitors.hc.base + "/ping", hc_tokens)
    loop = asyncio.get_running_loop()
    await HeartbeatSender([target], session).push(tick, deadline=loop.time() + 10)
    bodies = {s.raw_path: s.body.decode() for s in monitors.hc.seen}
    values = "blocked=0.12%, safety=99.71%, top_user_rps=3.20, spend_hour=$4.10"
    # The composite is a success ping, yet it says "warning" and which signal is red.
    assert bodies[f"/ping/{hc_tokens['composite']}"] == f"warning: {values}; red: blocked_pct"
    # the red signal's push: its own value, baseline, threshold and p-value
    assert bodies[f"/ping/{hc_tokens['blocked_pct']}/fail"] == (
        "blocked_pct red: value=0.12%, baseline=1.00%, threshold=2.00%, p=n/a"
    )


async def test_healthchecks_hosted_url_shape_over_http(
    monitors: Monitors, session: ClientSession
) -> None:
    """Hosted Healthchecks pings are https://hc-ping.com/<uuid>: no /ping segment.
    (The self-hosted shape, {url}/ping/<uuid>, is what the other tests push to.)"""
    tick = TICKS["critical"][0]
    token = str(uuid.uuid4())
    target = HeartbeatTarget("hosted", "healthchecks", monitors.generic.base, {"composite": token})
    loop = asyncio.get_running_loop()
    [result] = await HeartbeatSender([target], session).push(tick, deadline=loop.time() + 10)
    assert result.result == "ok"
    assert [(s.method, s.raw_path) for s in monitors.generic.seen] == [("POST", f"/{token}/fail")]


async def test_caller_message_function_is_used_and_quoted(
    monitors: Monitors, session: ClientSession
) -> None:
    tick = TICKS["ok"][0]
    asked: list[str | None] = []

    def message_for(t: Tick, signal: str | None) -> str:
        asked.append(signal)
        return f"custom {signal} & top=u1/?#"

    target = HeartbeatTarget(
        "kuma",
        "uptime-kuma",
        monitors.kuma.base,
        {"composite": "tok/one?x", "spend_hour": "tok two"},
    )
    monitors.kuma.known.update(target.tokens.values())
    loop = asyncio.get_running_loop()
    results = await HeartbeatSender([target], session).push(
        tick, message_for, deadline=loop.time() + 10
    )
    assert [r.result for r in results] == ["ok", "ok"]
    assert sorted(asked, key=str) == [None, "spend_hour"]
    seen = sorted((s.raw_path, s.query) for s in monitors.kuma.seen)
    query = (("status", "up"), ("msg", "custom {} & top=u1/?#"), ("ping", ""))
    assert seen == [
        ("/api/push/tok%20two", tuple((k, v.format("spend_hour")) for k, v in query)),
        ("/api/push/tok%2Fone%3Fx", tuple((k, v.format("None")) for k, v in query)),
    ]


def hc_target(m: Monitors, token: str, retries: int = 2) -> HeartbeatTarget:
    return HeartbeatTarget(
        "hc", "healthchecks", m.hc.base + "/ping", {"composite": token}, retries=retries
    )


def fast_sender(
    targets: list[HeartbeatTarget],
    session: ClientSession,
    on_result: Callable[[str, str], None] | None = None,
    logger: logging.Logger | None = None,
) -> HeartbeatSender:
    """Seeded jitter and short backoff, so retry tests take milliseconds."""
    return HeartbeatSender(
        targets,
        session,
        on_result=on_result,
        rng=random.Random(1),
        logger=logger,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )


async def test_retries_on_500_then_succeeds(monitors: Monitors, session: ClientSession) -> None:
    token = str(uuid.uuid4())
    monitors.hc.known.add(token)
    monitors.hc.fail_first[token] = 2
    loop = asyncio.get_running_loop()
    [result] = await fast_sender([hc_target(monitors, token)], session).push(
        TICKS["ok"][0], deadline=loop.time() + 10
    )
    assert monitors.hc.paths() == [f"/ping/{token}"] * 3
    assert (result.result, result.attempts, result.http_status, result.detail) == (
        "ok",
        3,
        200,
        None,
    )


async def test_gives_up_after_bounded_retries(monitors: Monitors, session: ClientSession) -> None:
    token = str(uuid.uuid4())
    monitors.hc.known.add(token)
    monitors.hc.fail_first[token] = 10
    calls: list[tuple[str, str]] = []
    sender = fast_sender(
        [hc_target(monitors, token, retries=3)], session, on_result=lambda *a: calls.append(a)
    )
    loop = asyncio.get_running_loop()
    [result] = await sender.push(TICKS["ok"][0], deadline=loop.time() + 10)
    assert len(monitors.hc.seen) == 4
    assert (result.result, result.attempts, result.http_status) == ("error", 4, 500)
    assert calls == [("hc", "error")]


async def test_404_is_rejected_without_retry(monitors: Monitors, session: ClientSession) -> None:
    token = str(uuid.uuid4())  # not known to the fake: like a deleted check
    calls: list[tuple[str, str]] = []
    sender = fast_sender(
        [hc_target(monitors, token)], session, on_result=lambda *a: calls.append(a)
    )
    loop = asyncio.get_running_loop()
    [result] = await sender.push(TICKS["critical"][0], deadline=loop.time() + 10)
    assert monitors.hc.paths() == [f"/ping/{token}/fail"]
    assert (result.result, result.attempts, result.http_status) == ("rejected", 1, 404)
    assert calls == [("hc", "rejected")]


async def test_redirects_are_not_followed(monitors: Monitors, session: ClientSession) -> None:
    target = HeartbeatTarget("gen", "generic", monitors.generic.base + "/moved", {"composite": "c"})
    loop = asyncio.get_running_loop()
    [result] = await fast_sender([target], session).push(TICKS["ok"][0], deadline=loop.time() + 10)
    assert monitors.generic.paths() == ["/moved"]
    assert (result.result, result.attempts, result.http_status) == ("rejected", 1, 307)


async def test_kuma_refusal_in_a_200_is_rejected(session: ClientSession) -> None:
    """Older Uptime Kuma answers an unknown token with 200 {"ok": false}."""

    async def old_kuma(request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "msg": "Monitor not found or not active."})

    app = web.Application()
    app.router.add_get("/api/push/{token}", old_kuma)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        target = HeartbeatTarget("kuma", "uptime-kuma", f"http://{host}:{port}", {"composite": "x"})
        loop = asyncio.get_running_loop()
        [result] = await fast_sender([target], session).push(
            TICKS["ok"][0], deadline=loop.time() + 10
        )
    finally:
        await runner.cleanup()
    assert (result.result, result.attempts, result.http_status) == ("rejected", 1, 200)


async def test_kuma_unknown_token_500_is_retried_then_error(
    monitors: Monitors, session: ClientSession
) -> None:
    target = HeartbeatTarget(
        "kuma", "uptime-kuma", monitors.kuma.base, {"composite": "nope"}, retries=1
    )
    loop = asyncio.get_running_loop()
    [result] = await fast_sender([target], session).push(TICKS["ok"][0], deadline=loop.time() + 10)
    assert monitors.kuma.paths() == ["/api/push/nope"] * 2
    assert (result.result, result.http_status) == ("error", 500)


async def test_connection_refused_is_an_error(session: ClientSession) -> None:
    target = HeartbeatTarget(
        "down",
        "generic",
        f"http://127.0.0.1:{closed_port()}/hb",
        {"composite": "down-token"},
        retries=2,
    )
    loop = asyncio.get_running_loop()
    [result] = await fast_sender([target], session).push(TICKS["ok"][0], deadline=loop.time() + 10)
    assert (result.result, result.attempts, result.http_status) == ("error", 3, None)
    assert result.detail is not None and "ClientConnectorError" in result.detail


async def test_hung_target_is_cut_at_the_deadline_others_are_not_delayed(
    monitors: Monitors, session: ClientSession
) -> None:
    targets, _ = all_kinds(monitors)
    # Its own timeout is far away: only the tick deadline can stop it.
    hung = HeartbeatTarget(
        "hung", "generic", monitors.hang.base + "/hb", {"composite": "h"}, timeout_s=60.0
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + 1.0
    calls: list[tuple[str, str]] = []
    sender = HeartbeatSender([*targets, hung], session, on_result=lambda *a: calls.append(a))

    results = await sender.push(TICKS["critical"][0], deadline=deadline)
    returned = loop.time()

    assert monitors.hang_entered.is_set()
    assert deadline <= returned < deadline + 0.5
    by_target = {(r.target, r.signal): r for r in results}
    assert by_target[("hung", "composite")].result == "timeout"
    assert by_target[("hung", "composite")].attempts == 1
    assert ("hung", "timeout") in calls and len(calls) == len(results) == 4 * len(KEYS) + 1
    others = [r for r in results if r.target != "hung"]
    assert {r.result for r in others} == {"ok"}
    for fake in (monitors.hc, monitors.kuma, monitors.generic, monitors.hook):
        assert len(fake.seen) == len(KEYS)
        assert all(start <= s.at < deadline for s in fake.seen)


async def test_request_timeout_is_retried_then_reported_as_timeout(
    monitors: Monitors, session: ClientSession
) -> None:
    slow = HeartbeatTarget(
        "slow", "generic", monitors.hang.base + "/hb", {"composite": "s"}, timeout_s=0.2, retries=1
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    [result] = await fast_sender([slow], session).push(TICKS["ok"][0], deadline=deadline)
    # Two attempts of 0.2 s each, far inside the tick budget.
    assert loop.time() < deadline - 5
    assert len(monitors.hang.seen) == 2
    assert (result.result, result.attempts) == ("timeout", 2)


async def test_no_retry_is_started_that_cannot_finish_before_the_deadline(
    monitors: Monitors, session: ClientSession
) -> None:
    token = str(uuid.uuid4())
    monitors.hc.known.add(token)
    monitors.hc.fail_first[token] = 5
    # Every backoff draw is at least 1000 s x a uniform draw: past a 2 s deadline.
    sender = HeartbeatSender(
        [hc_target(monitors, token)],
        session,
        rng=random.Random(0),
        backoff_base_s=1000.0,
        backoff_cap_s=1000.0,
    )
    assert random.Random(0).uniform(0, 1000.0) > 2.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    [result] = await sender.push(TICKS["ok"][0], deadline=deadline)
    assert loop.time() < deadline
    assert (result.result, result.attempts) == ("error", 1)


async def test_past_deadline_reports_timeouts_without_raising(session: ClientSession) -> None:
    target = HeartbeatTarget(
        "x", "generic", "http://127.0.0.1:9/hb", {"composite": "t", "spend_hour": "u"}
    )
    loop = asyncio.get_running_loop()
    results = await HeartbeatSender([target], session).push(
        TICKS["ok"][0], deadline=loop.time() - 1
    )
    assert [(r.signal, r.result) for r in results] == [
        ("composite", "timeout"),
        ("spend_hour", "timeout"),
    ]


async def test_no_targets_is_a_no_op(session: ClientSession) -> None:
    loop = asyncio.get_running_loop()
    assert await HeartbeatSender([], session).push(TICKS["ok"][0], deadline=loop.time() + 1) == []


def test_duplicate_target_names_are_refused() -> None:
    t = HeartbeatTarget("same", "generic", "http://h/x", {"composite": "a"})
    with pytest.raises(ValueError, match="unique"):
        HeartbeatSender([t, t], None)  # type: ignore[arg-type]


async def garbage_server() -> tuple[asyncio.Server, int]:
    """Answers any request with an invalid status line: aiohttp's error then names the URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_tokens_never_logged_or_reported(
    monitors: Monitors, session: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    garbage, garbage_port = await garbage_server()
    secrets = tokens_for("sekrit")
    targets, tokens = all_kinds(monitors, retries=1)
    # Make half of them fail in every way: unknown tokens, 500s, refused, garbage, hang.
    for key in ("composite", "blocked_pct"):
        monitors.hc.known.discard(tokens["hc"][key])
        monitors.kuma.known.discard(tokens["kuma"][key])
    monitors.hc.fail_first[tokens["hc"]["spend_hour"]] = 1
    refused, garbage_url = f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{garbage_port}"
    targets += [
        HeartbeatTarget("refused", "healthchecks", refused, secrets, retries=1),
        HeartbeatTarget("garbage", "uptime-kuma", garbage_url, {"composite": secrets["composite"]}),
        HeartbeatTarget(
            "hung",
            "healthchecks",
            monitors.hang.base,
            {"safety_pct": secrets["safety_pct"]},
            0.1,
            0,
        ),
        HeartbeatTarget(
            "cut", "webhook", monitors.hang.base, {"spend_hour": secrets["spend_hour"]}
        ),
    ]
    loop = asyncio.get_running_loop()
    async with garbage:
        results = await fast_sender(targets, session, logger=logging.getLogger("hb-test")).push(
            TICKS["critical"][0], deadline=loop.time() + 1.5
        )
    by = {(r.target, r.signal): r for r in results}
    # Each failure path really ran, so the redaction below was exercised.
    assert by[("hc", "composite")].result == "rejected"
    assert by[("kuma", "composite")].result == "error"
    assert by[("refused", "composite")].result == "error"
    assert by[("garbage", "composite")].result == "error"
    assert by[("garbage", "composite")].detail is not None
    assert "url=" in by[("garbage", "composite")].detail  # aiohttp named the URL ...
    assert "***" in by[("garbage", "composite")].detail  # ... and the token in it is scrubbed
    assert by[("hung", "safety_pct")].result == "timeout"
    assert by[("cut", "spend_hour")].result == "timeout"
    assert by[("hc", "spend_hour")].result == "ok"
    assert any(r.levelno == logging.WARNING for r in caplog.records)

    every_token = [*secrets.values(), *(t for group in tokens.values() for t in group.values())]
    text = caplog.text + "".join(repr(r) for r in results) + repr(targets)
    for token in every_token:
        assert token not in text
        assert quote(token, safe="") not in text
