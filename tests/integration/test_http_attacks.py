"""The HTTP surface of the real service (`stream-sentinel run` as a subprocess),
attacked over raw sockets the way a client on the pod network could.

Each test starts its own service on a free port (embedded store, real Kafka
topics) and reads the service's own log afterwards: what matters is what the
attacker gets *and* what the operator's log shows. docs/reliability.md
("HTTP surface under attack") lists these probes and their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest
from conftest import TopicFactory

from .harness import free_port

pytestmark = pytest.mark.integration

TOKEN = "attack-probe-status-token-9c41e7d2"
NOFILE = 256  # the open-file limit of the pod
HEADER_TIMEOUT_S = 2.0
SECURITY_HEADERS = (  # what securityheaders.com grades
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
)


class Sentinel:
    """``stream-sentinel run``, its log in a file, optionally under a lower open-file limit."""

    def __init__(self, env: Mapping[str, str], *, nofile: int | None = None, debug: bool = False):
        self.port = int(env["SENTINEL_HTTP_PORT"])
        self.dir = Path(tempfile.mkdtemp(prefix="ss-http-"))
        self.log = self.dir / "service.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
        full.update(env)

        def limit_files() -> None:  # runs in the child, before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        level = ["--log-level", "DEBUG"] if debug else []
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_sentinel", *level, "run"],
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_files,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"service exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()[-3000:]}"
            await asyncio.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


Start = Callable[..., "asyncio.Future[Sentinel]"]


@pytest.fixture
async def start(kafka_bootstrap: str, make_topic: TopicFactory) -> AsyncIterator[Start]:
    started: list[Sentinel] = []
    requests, responses = await make_topic(1, "http-req"), await make_topic(1, "http-resp")
    dlq = await make_topic(1, "http-dlq")  # `run` refuses to start without its topics

    async def _start(
        extra: Mapping[str, str] | None = None, *, nofile: int | None = None, debug: bool = False
    ) -> Sentinel:
        env = {
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SENTINEL_KAFKA_GROUP_ID": f"g-{requests}",
            "SENTINEL_KAFKA_REQUEST_TOPIC": requests,
            "SENTINEL_KAFKA_RESPONSE_TOPIC": responses,
            "SENTINEL_KAFKA_DLQ_TOPIC": dlq,
            "SENTINEL_ALERTING_TICK_SECONDS": "1",
            "SENTINEL_HTTP_PORT": str(free_port()),
            "SENTINEL_HTTP_STATUS_TOKEN": TOKEN,
            "SENTINEL_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
            **(extra or {}),
        }
        svc = Sentinel(env, nofile=nofile, debug=debug)
        started.append(svc)
        await svc.wait_log("http listening on")
        return svc

    yield _start  # type: ignore[misc]
    for svc in started:
        svc.close()


def exchange(port: int, request: bytes, *, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes or ``timeout``; blocking, for a thread."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and not half_close:
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(line.split(b":")[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        None,
                    )
                    if length is not None and len(body) >= length:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:80]
    return int(response.split(b" ", 2)[1])


def headers_of(response: bytes) -> dict[str, str]:
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


def healthz_seconds(port: int) -> float:
    started = time.monotonic()
    response = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5)
    elapsed = time.monotonic() - started
    assert status_of(response) == 200, response[:200]
    return elapsed


def assert_no_error_lines(svc: Sentinel) -> None:
    text = svc.text()
    bad = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not bad, "\n".join(bad[:20])


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def open_flood(port: int, count: int, into: list[socket.socket], head: bytes = b"") -> None:
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if head:
            sock.sendall(head)
        into.append(sock)


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset: aborted by the server
        return True
    finally:
        sock.setblocking(True)


# -- 1. slowloris and idle floods under a low open-file limit ------------------------------


async def test_floods_under_a_low_file_limit_leave_healthz_answering_within_a_second(
    start: Start, sockets: list[socket.socket]
) -> None:
    svc = await start(nofile=NOFILE)
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    await asyncio.to_thread(open_flood, svc.port, 300, idle)
    await asyncio.to_thread(
        open_flood, svc.port, 200, slow, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-a: "
    )
    sockets.extend(idle + slow)
    # the slowloris keeps dribbling while the probe runs, as the real one would
    probes = []
    for _ in range(5):
        for sock in slow[:50]:
            with contextlib.suppress(OSError):  # already shed or timed out: the point
                sock.send(b"a")
        probes.append(await asyncio.to_thread(healthz_seconds, svc.port))
    assert max(probes) < 1.0, probes
    # the server never ran out of descriptors: it sheds before it accepts, so
    # no accept() failed (asyncio's server then stops accepting for a second)
    assert "cannot accept" not in svc.text()
    # past the header timeout every slowloris connection is gone, shed or timed out
    deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
    while not all(closed_by_server(s) for s in slow):
        assert time.monotonic() < deadline, sum(closed_by_server(s) for s in slow)
        await asyncio.sleep(0.2)
    # and the idle flood did not survive either (never-used connections get the head timeout)
    while not all(closed_by_server(s) for s in idle):
        assert time.monotonic() < deadline, sum(closed_by_server(s) for s in idle)
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(healthz_seconds, svc.port) < 1.0
    assert svc.proc.poll() is None
    assert_no_error_lines(svc)
    assert "out of system resource" not in svc.text()
    assert len(svc.text()) < 100_000  # a few rate-limited lines, not a flood


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(start: Start) -> None:
    svc = await start({"SENTINEL_HTTP_KEEPALIVE_TIMEOUT_SECONDS": "1"})
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b" 200 " in await reader.readuntil(b"\r\n\r\n")
    started = time.monotonic()
    async with asyncio.timeout(15):
        while await reader.read(65536):
            pass  # the rest of the response, then EOF when the server closes
    assert time.monotonic() - started < 10
    writer.close()


# -- 2. framing and encoding errors ------------------------------------------------------

BAD_BODIES = {
    "cut off (Content-Length)": (
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc",
        True,
    ),
    "cut off (chunked)": (
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        True,
    ),
    "not gzip": (
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        False,
    ),
    "not deflate (chunked)": (
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: deflate\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        False,
    ),
}


async def test_truncated_and_mis_encoded_bodies_get_400_and_no_error_line(start: Start) -> None:
    svc = await start()
    for name, (request, half_close) in BAD_BODIES.items():
        for _ in range(20):  # the issue saw 20 of 20 become 500s
            response = await asyncio.to_thread(exchange, svc.port, request, half_close=half_close)
            assert status_of(response) == 400, (name, response[:200])
    assert await asyncio.to_thread(healthz_seconds, svc.port) < 1.0
    assert_no_error_lines(svc)


async def test_version_and_expect_are_not_echoed(start: Start) -> None:
    svc = await start()
    for version in (b"HTTP/0.9", b"HTTP/2.0"):
        response = await asyncio.to_thread(
            exchange, svc.port, b"GET /healthz " + version + b"\r\nHost: localhost\r\n\r\n"
        )
        assert status_of(response) == 505  # status_of insists on "HTTP/1.1 "
    response = await asyncio.to_thread(
        exchange,
        svc.port,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nExpect: <script>x</script>\r\n\r\n",
    )
    assert status_of(response) == 417
    assert b"script" not in response


# -- 3. the access log -------------------------------------------------------------------


async def test_a_token_in_the_query_never_reaches_the_log(start: Start) -> None:
    svc = await start(debug=True)
    for target in (f"/status?token={TOKEN}", f"/metrics?token={TOKEN}", f"/x/{TOKEN}"):
        request = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ua-{TOKEN}\r\n\r\n"
        assert status_of(await asyncio.to_thread(exchange, svc.port, request.encode())) in (
            401,
            200,
            404,
        )
    await svc.wait_log('"GET /x/***" 404')
    text = svc.text()
    assert TOKEN not in text
    assert 'INFO stream_sentinel.http.access: 127.0.0.1 "GET /status" 401' in text
    # scrapes and probes at DEBUG, so an INFO log is not one line per scrape
    assert 'DEBUG stream_sentinel.http.access: 127.0.0.1 "GET /metrics" 200' in text


async def test_failed_tokens_are_logged_rate_limited_and_backed_off(start: Start) -> None:
    svc = await start()
    statuses = []
    for i in range(12):
        request = f"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer g{i}\r\n\r\n"
        statuses.append(status_of(await asyncio.to_thread(exchange, svc.port, request.encode())))
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:], statuses
    # while backed off even the right token waits: guessing gains nothing from speed
    right = f"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    response = await asyncio.to_thread(exchange, svc.port, right.encode())
    assert status_of(response) == 429 and int(headers_of(response)["retry-after"]) >= 1
    warnings = [line for line in svc.text().splitlines() if "wrong or missing token" in line]
    assert 1 <= len(warnings) <= 2, warnings  # one line a minute, not one per guess
    assert " WARNING " in warnings[0]


# -- 4. TLS --------------------------------------------------------------------------------


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def tls_get(port: int, cafile: Path, path: str = "/healthz") -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))  # verifies chain and 127.0.0.1
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_tls_with_hsts_and_a_certificate_reloaded_on_sighup(
    start: Start, tmp_path: Path
) -> None:
    first, second = make_cert(tmp_path, "first"), make_cert(tmp_path, "second")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(first[0], live_cert)
    shutil.copy(first[1], live_key)
    svc = await start(
        {"SENTINEL_HTTP_TLS_CERTFILE": str(live_cert), "SENTINEL_HTTP_TLS_KEYFILE": str(live_key)}
    )
    response = await asyncio.to_thread(tls_get, svc.port, first[0])
    assert status_of(response) == 200
    headers = headers_of(response)
    assert headers["strict-transport-security"].startswith("max-age=")
    assert all(name in headers for name in SECURITY_HEADERS), headers
    # plain HTTP on the TLS port gets nothing readable
    plain = await asyncio.to_thread(
        exchange, svc.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5
    )
    assert not plain.startswith(b"HTTP/")
    # a connection that never starts its handshake is dropped like a slow head
    with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as silent:
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
        while not closed_by_server(silent):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    # a renewed certificate is served after SIGHUP, without a restart
    shutil.copy(second[0], live_cert)
    shutil.copy(second[1], live_key)
    svc.proc.send_signal(signal.SIGHUP)
    await svc.wait_log("tls: certificate reloaded")
    assert status_of(await asyncio.to_thread(tls_get, svc.port, second[0])) == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(tls_get, svc.port, first[0])
    assert svc.proc.poll() is None
    assert_no_error_lines(svc)


# -- 5. start-up refusals -----------------------------------------------------------------


def run_briefly(env: Mapping[str, str], kafka_bootstrap: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    full.update({"SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **env})
    return subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "run"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_short_status_token_is_refused_at_start(kafka_bootstrap: str) -> None:
    proc = run_briefly({"SENTINEL_HTTP_STATUS_TOKEN": "hunter2"}, kafka_bootstrap)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: http.status_token: "), lines
    assert "hunter2" not in proc.stderr


@pytest.fixture
async def topics_env(make_topic: TopicFactory) -> dict[str, str]:
    """Topics that exist: `run` checks them before it binds its port."""
    return {
        "SENTINEL_KAFKA_REQUEST_TOPIC": await make_topic(1, "http-req"),
        "SENTINEL_KAFKA_RESPONSE_TOPIC": await make_topic(1, "http-resp"),
        "SENTINEL_KAFKA_DLQ_TOPIC": await make_topic(1, "http-dlq"),
        "SENTINEL_KAFKA_ALERTS_TOPIC": await make_topic(1, "http-alerts"),
    }


async def test_a_taken_port_is_one_line_and_an_exit_code(
    kafka_bootstrap: str, topics_env: dict[str, str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_briefly({**topics_env, "SENTINEL_HTTP_PORT": str(port)}, kafka_bootstrap)
    assert proc.returncode == 3, proc.stderr
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "Unclosed" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "cannot start" in lines[0] and "address already in use" in lines[0]


async def test_a_privileged_port_is_one_line_and_an_exit_code(
    kafka_bootstrap: str, topics_env: dict[str, str]
) -> None:
    # root may bind port 80: drop to nobody first (setpriv is util-linux, in every Debian)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    full.update({"SENTINEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SENTINEL_HTTP_PORT": "80"})
    full.update(topics_env)
    proc = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, "-m", "stream_sentinel", "run"],
        env=full, capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    assert "Traceback" not in output and "Unclosed" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "cannot start" in lines[0] and "permission denied" in lines[0]


# -- 6. Host, /status and /readyz contents --------------------------------------------------


async def test_a_foreign_host_is_refused_and_status_hides_the_machine(start: Start) -> None:
    svc = await start({"SENTINEL_HTTP_ALLOWED_HOSTS": '["sentinel.example"]'})

    def get(path: str, host: str) -> bytes:
        auth = f"Authorization: Bearer {TOKEN}\r\n" if path == "/status" else ""
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n"
        return exchange(svc.port, request.encode())

    for host in ("rebind.attacker.example", f"rebind.attacker.example:{svc.port}"):
        for path in ("/metrics", "/readyz", "/status"):
            assert status_of(await asyncio.to_thread(get, path, host)) == 421, (host, path)
    for host in ("localhost", f"127.0.0.1:{svc.port}", "sentinel.example", "[::1]"):
        assert status_of(await asyncio.to_thread(get, "/healthz", host)) == 200, host
    readyz = await asyncio.to_thread(get, "/readyz", "localhost")
    checks = orjson.loads(readyz.partition(b"\r\n\r\n")[2])["checks"]
    assert "redis" not in checks  # the embedded store: nothing to claim about Redis
    deadline = time.monotonic() + 60
    while status_of(body := await asyncio.to_thread(get, "/status", "localhost")) != 200:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)
    status = orjson.loads(body.partition(b"\r\n\r\n")[2])
    assert socket.gethostname() not in status["replica"]
    assert str(svc.proc.pid) not in status["replica"]


# -- 7. replay --redis-url-file keeps the password out of the process list ----------------


@pytest.fixture
def password_redis() -> Iterator[tuple[int, str]]:
    password = "pw-" + os.urandom(8).hex()
    port = free_port()
    directory = tempfile.mkdtemp(prefix="ss-redis-pw-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                    s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                    answer = b""
                    while b"+PONG" not in answer and (chunk := s.recv(64)):
                        answer += chunk
                    if b"+PONG" in answer:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "password redis-server did not start"
            time.sleep(0.05)
        yield port, password
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def redis_commands(port: int, password: str) -> int:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(f"AUTH {password}\r\nINFO stats\r\n".encode())
        data = b""
        while b"total_commands_processed:" not in data or not data.endswith(b"\r\n\r\n"):
            data += s.recv(65536)
    line = next(x for x in data.split(b"\r\n") if x.startswith(b"total_commands_processed:"))
    return int(line.split(b":")[1])


async def test_replay_reads_its_redis_url_from_a_file_not_the_command_line(
    password_redis: tuple[int, str], tmp_path: Path
) -> None:
    port, password = password_redis
    url_file = tmp_path / "redis-url"
    url_file.write_text(f"redis://:{password}@127.0.0.1:{port}/0\n")
    url_file.chmod(0o600)
    before = redis_commands(port, password)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    with ExitStack() as stack:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_sentinel", "replay", "-", "--no-progress",
             "--redis-url-file", str(url_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        stack.callback(lambda: proc.poll() is None and proc.kill())
        # alive (waiting on stdin) while we look at the process list
        ps = subprocess.run(
            ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
        )
        assert str(proc.pid) in ps.stdout and "--redis-url-file" in ps.stdout
        assert password not in ps.stdout
        assert proc.stdin is not None
        events = [
            {"event_id": f"e{i}", "type": "request", "ts": 1_800_000_000 + i, "user_id": "u",
             "blocked": False}
            for i in range(200)
        ]  # fmt: skip
        out, err = proc.communicate(b"".join(orjson.dumps(e) + b"\n" for e in events), 120)
    assert proc.returncode == 0, err
    assert b"counted: 200" in out
    assert password.encode() not in out + err
    assert redis_commands(port, password) > before + 5  # the replay did use that Redis


def test_replay_names_the_option_when_its_url_variable_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env.pop("SS_NO_SUCH_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "stream_sentinel", "replay", "-",
         "--redis-url-env", "SS_NO_SUCH_URL"],
        input="", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("config error: --redis-url-env: "), proc.stderr
