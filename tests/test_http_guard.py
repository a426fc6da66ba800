"""The HTTP server's defences one by one: connection deadlines and shedding (with a
fake clock), the accept guard under a real open-file limit, the token back-off,
the Host rule and the access log line."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_sentinel.config import load_config
from stream_sentinel.config_env import ConfigError
from stream_sentinel.http_connections import (
    RESERVED_FDS,
    ConnectionGuard,
    ConnectionLimits,
    RateLimitedLog,
)
from stream_sentinel.http_guard import AuthThrottle, host_allowed

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


LIMITS = ConnectionLimits(
    header_timeout_s=5, body_timeout_s=5, keepalive_timeout_s=30, max_connections=16
)


def guard_with(clock: Clock, limits: ConnectionLimits = LIMITS) -> ConnectionGuard:
    guard = ConnectionGuard(limits, clock)
    guard.max_connections = limits.max_connections  # not lowered by this process's file limit
    return guard


def test_a_head_that_never_completes_is_closed_after_the_header_timeout() -> None:
    clock = Clock()
    guard = guard_with(clock)
    slow, fresh = FakeTransport(), FakeTransport()
    guard.opened(slow)
    guard.data(slow)  # a first byte...
    clock.now += 4
    guard.opened(fresh)
    guard.data(slow)  # ...and more bytes do not restart the clock
    assert guard.sweep() == 0
    clock.now += 1.5
    assert guard.sweep() == 1 and slow.aborted and not fresh.aborted
    clock.now += 4  # a connection that never sends a byte gets the same deadline
    assert guard.sweep() == 1 and fresh.aborted


def test_a_served_connection_gets_the_keepalive_and_a_busy_one_is_left_alone() -> None:
    clock = Clock()
    guard = guard_with(clock)
    kept, busy = FakeTransport(), FakeTransport()
    for t in (kept, busy):
        guard.opened(t)
        guard.data(t)
        guard.request_started(t, lambda: None)
    guard.request_done(kept)
    clock.now += 29
    assert guard.sweep() == 0
    clock.now += 2
    assert guard.sweep() == 1 and kept.aborted and not busy.aborted


def test_past_the_cap_the_longest_waiting_connections_go_first() -> None:
    clock = Clock()
    guard = guard_with(clock, ConnectionLimits(max_connections=8))
    transports = [FakeTransport() for _ in range(8)]
    for i, t in enumerate(transports):
        guard.opened(t)
        clock.now += 1
        if i == 0:
            guard.data(t)
            guard.request_started(t, lambda: None)  # the oldest is mid-request: kept
        if i == 1:
            guard.data(t)  # a head begun long ago (slowloris) waits longest
    guard.opened(newcomer := FakeTransport())
    assert [t.aborted for t in transports] == [False, True, *[False] * 6]
    clock.now += 1
    for _ in range(6):
        guard.opened(FakeTransport())
    assert [t.aborted for t in transports] == [False, *[True] * 7]
    assert not newcomer.aborted and len(guard) == 8


def test_a_newcomer_is_refused_when_every_connection_is_mid_request() -> None:
    clock = Clock()
    guard = guard_with(clock, ConnectionLimits(max_connections=8))
    for _ in range(8):
        t = FakeTransport()
        guard.opened(t)
        guard.data(t)
        guard.request_started(t, lambda: None)
    newcomer = FakeTransport()
    guard.opened(newcomer)
    assert newcomer.aborted and len(guard) == 8


def test_a_half_close_mid_body_reaches_the_request_even_before_it_started() -> None:
    clock = Clock()
    guard = guard_with(clock)
    t = FakeTransport()
    guard.opened(t)
    guard.data(t)
    assert guard.eof(t) is True  # in flight: keep the sending side open for the answer
    told: list[str] = []
    guard.request_started(t, lambda: told.append("eof"))
    assert told == ["eof"]
    guard.request_done(t)
    clock.now += 1.5
    assert guard.sweep() == 1 and t.aborted  # nothing more can come: not kept alive


def test_the_cap_is_lowered_to_fit_the_open_file_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    guard = ConnectionGuard(ConnectionLimits(max_connections=100_000))
    assert guard.max_connections <= soft - RESERVED_FDS


def test_closed_connections_hold_their_place_until_their_descriptor_is_freed() -> None:
    clock = Clock()
    guard = guard_with(clock)
    conns = [FakeTransport() for _ in range(LIMITS.max_connections)]
    for t in conns:
        guard.opened(t)
    assert guard.room(pending=0) == 0
    assert guard.shed(4) == 4 and guard.closing == 4
    # aborted, but asyncio frees the descriptors a loop turn later: still no room
    assert len(guard) == LIMITS.max_connections - 4 and guard.room(pending=0) == 0
    for t in conns[:3]:
        guard.closed(t)  # connection_lost: the descriptor is free now
    assert guard.room(pending=0) == 3 and guard.room(pending=2) == 1
    # a close that never reports back is forgotten after a while, not held for good
    for t in conns[4:]:
        guard.request_started(t, lambda: None)  # busy: not swept meanwhile
    clock.now += 6
    guard.sweep()
    assert guard.closing == 0 and guard.room(pending=0) == 4


def test_rate_limited_log_says_how_many_lines_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(10, clock)
    logger = logging.getLogger("test.ratelimit")
    caplog.set_level(logging.INFO, logger="test.ratelimit")
    said = [limited.emit(logger, logging.WARNING, "x %d", i) for i in range(50)]
    clock.now += 11
    limited.emit(logger, logging.WARNING, "x %d", 99)
    assert said.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "x 0",
        "x 99 (49 more like it since the last line)",
    ]


def test_token_back_off_doubles_per_client_and_resets_on_success() -> None:
    clock = Clock()
    throttle = AuthThrottle(free_failures=3, max_wait_s=8, clock=clock)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0
    waits = []
    for _ in range(6):
        throttle.failed("10.0.0.1")
        waits.append(throttle.wait_s("10.0.0.1"))
    assert waits == [1, 2, 4, 8, 8, 8]
    assert throttle.wait_s("10.0.0.2") == 0  # per client
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0


def test_token_back_off_forgets_the_least_recent_clients_past_its_bound() -> None:
    throttle = AuthThrottle(free_failures=0, max_clients=100, clock=Clock())
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.wait_s("10.0.0.0") == 0 and throttle.wait_s("10.0.3.231") > 0


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("localhost", True),
        ("LOCALHOST.:9464", True),
        ("sentinel.example", True),
        ("127.0.0.1:9464", True),
        ("10.1.2.3", True),
        ("[::1]:9464", True),
        ("[fe80::1%eth0]:9464", True),  # an address with its zone
        ("rebind.attacker.example", False),
        ("rebind.attacker.example:9464", False),
        ("localhost.attacker.example", False),
        ("", False),
    ],
)
def test_host_rule(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, frozenset({"localhost", "sentinel.example"})) is allowed


def test_default_allowed_hosts_are_localhost_and_the_bind_name() -> None:
    assert load_config(None, {}).http.host_names() == {"localhost"}
    env = {"SENTINEL_HTTP_HOST": "sentinel-0.internal", "SENTINEL_HTTP_ALLOWED_HOSTS": '["A.b"]'}
    assert load_config(None, env).http.host_names() == {"localhost", "sentinel-0.internal", "a.b"}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SENTINEL_HTTP_STATUS_TOKEN": "fifteen-chars.."}, "http.status_token"),
        ({"SENTINEL_HTTP_TLS_CERTFILE": "/x.pem"}, "http"),
        ({"SENTINEL_HTTP_HEADER_TIMEOUT_SECONDS": "0"}, "http.header_timeout_seconds"),
        ({"SENTINEL_HTTP_ALLOWED_HOSTS": '["a b"]'}, "http.allowed_hosts[0]"),
    ],
)
def test_http_config_refusals_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env)
    assert err.value.key == key
    assert "fifteen" not in str(err.value)


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "sentinel.toml"
    with path.open("w") as out:
        out.write("[ingest.prices]\n")
        for i in range(40_000):
            out.write(f"m{i} = {{ prompt_per_1k = 1.0, completion_per_1k = 1.0 }}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert "larger than" in err.value.problem


# -- the accept loop when descriptors run out ---------------------------------------------

CHILD = """
import asyncio, logging, resource, sys
from stream_sentinel.http_connections import GUARD_KEY
from stream_sentinel.httpserver import build_http_app, start_http
from stream_sentinel.metrics import Metrics

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

async def ready():
    return {}

async def main():
    app = build_http_app(metrics=Metrics(), status_provider=lambda: None,
                         ready_checks=ready, status_token=None)
    app[GUARD_KEY].max_connections = 100_000  # no cap: what an EMFILE does, alone
    server, port = await start_http(app, "127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await server.cleanup()

asyncio.run(main())
"""


def test_out_of_descriptors_sheds_idle_connections_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    flood: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        for _ in range(120):  # well past 96 descriptors
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = probe.recv(65536)
        # the acceptor sheds and looks again 50 ms later (asyncio's own server
        # stopped accepting for a whole second)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert time.monotonic() - started < 8  # generous for a loaded box
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=30)
    finally:
        for sock in flood:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "out of system resource" not in log, log[-2000:]
    lines = [line for line in log.splitlines() if "cannot accept a connection" in line]
    assert 1 <= len(lines) <= 3, log[-2000:]  # one line per 10 s, however many accept() fail


# -- TLS files ----------------------------------------------------------------------------


def test_tls_files_that_cannot_be_used_name_the_key_and_a_bad_renewal_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from stream_sentinel.http_tls import ReloadingTls, TlsError

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    with pytest.raises(TlsError, match=r"^http\.tls_certfile: cannot read"):
        ReloadingTls(str(cert), str(key))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = ReloadingTls(str(cert), str(key))
    assert tls.reload() is True
    good = cert.read_bytes()
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    caplog.set_level(logging.WARNING)
    assert tls.reload() is False
    assert "kept the previous certificate" in caplog.text and "not base64" not in caplog.text
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(good[:100])
    with pytest.raises(TlsError, match="unusable certificate or key"):
        ReloadingTls(str(garbage), str(key))


def test_config_tables_and_strings_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "sentinel.toml"
    rows = (f"m{i} = {{ prompt_per_1k = 1.0, completion_per_1k = 1.0 }}" for i in range(10_001))
    path.write_text("[ingest.prices]\n" + "\n".join(rows) + "\n")  # under 1 MiB: the count
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert err.value.key == "ingest.prices"
    with pytest.raises(ConfigError) as err:
        load_config(None, {"SENTINEL_REDIS_URL": "redis://h/0?x=" + "a" * 5000})
    assert err.value.key == "redis.url" and "4096" in err.value.problem
    assert "aaaa" not in str(err.value)
