"""A real Alertmanager (Debian's prometheus-alertmanager) for the tests, and the
webhook receiver it notifies: a small aiohttp server on loopback, run on a
thread of its own so a session fixture can hold it across event loops.

Every test labels its alerts with a ``service`` of its own and reads only
those back (``filter=service="..."``), so tests share one Alertmanager.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookSink:
    """Records every notification Alertmanager posts (one JSON body per group), by
    path: ``/hook`` for the webhook receiver; a test may point other receivers
    (Slack, PagerDuty) at other paths of the same server."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        self._by_path: list[tuple[str, dict[str, Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "webhook sink did not start"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            with self._lock:
                self._by_path.append((request.path, body))
                if request.path == "/hook":
                    self._bodies.append(body)
            # PagerDuty's events API answers 202 with a JSON status; others take any 2xx
            return web.json_response({"status": "success"}, status=202)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def posts(self, path: str) -> list[dict[str, Any]]:
        """Every body posted to ``path``, in arrival order."""
        with self._lock:
            return [body for p, body in self._by_path if p == path]

    def alerts(self, service: str) -> list[dict[str, Any]]:
        """Every alert of every notification for ``service``, in arrival order."""
        with self._lock:
            bodies = list(self._bodies)
        return [
            alert
            for body in bodies
            for alert in body.get("alerts", [])
            if alert.get("labels", {}).get("service") == service
        ]


TEST_CONFIG = """\
route:
  receiver: webhook
  group_by: [alertname, service, signal]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


class AlertmanagerProcess:
    """``prometheus-alertmanager`` on a free port, with its own storage and no cluster."""

    def __init__(
        self,
        config: str,
        name: str = "alertmanager",
        *,
        web_config: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        authorization: str | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"ss-{name}-"))
        self.web_config = web_config
        self.ssl_context = ssl_context
        self.authorization = authorization
        self.port = free_port()
        self.config = self.dir / "alertmanager.yml"
        self.config.write_text(config, encoding="utf-8")
        self.log = self.dir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config and "tls_server_config" in self.web_config else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        args = [
            ALERTMANAGER,
            f"--config.file={self.config}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # no gossip: it would bind :9094, shared by every test run on the machine
            "--cluster.listen-address=",
        ]
        if self.web_config is not None:
            (self.dir / "web.yml").write_text(self.web_config, encoding="utf-8")
            args.append(f"--web.config.file={self.dir / 'web.yml'}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"alertmanager exited:\n{self.log_tail()}"
            try:
                self._request("GET", "/-/ready")
                return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"alertmanager not ready:\n{self.log_tail()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    # -- the v2 API, blocking (called through asyncio.to_thread from async tests) --

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=10, context=self.ssl_context) as response:
            raw = response.read()
        if path == "/-/ready":
            return None
        return json.loads(raw or b"null")

    def alerts(self, service: str, **flags: bool) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` for one service; resolved alerts are not listed."""
        query = [("filter", f'service="{service}"')]
        query += [(k, str(v).lower()) for k, v in flags.items()]
        return list(self._request("GET", f"/api/v2/alerts?{urllib.parse.urlencode(query)}"))

    def groups(self, service: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode([("filter", f'service="{service}"')])
        return list(self._request("GET", f"/api/v2/alerts/groups?{query}"))

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self._request("POST", "/api/v2/alerts", alerts)

    def silence(self, matchers: Mapping[str, str], minutes: float = 30) -> str:
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": _iso(now - 1),
            "endsAt": _iso(now + minutes * 60),
            "createdBy": "stream-sentinel tests",
            "comment": "silence during a test incident",
        }
        return str(self._request("POST", "/api/v2/silences", body)["silenceID"])


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def by_name(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(alertname, signal or "") -> the alert."""
    return {(a["labels"]["alertname"], a["labels"].get("signal", "")): a for a in alerts}


async def wait_for(
    check: Callable[[], T | None], what: str, timeout: float, tail: Callable[[], str] = str
) -> T:
    """The first non-None value of ``check`` (blocking; run in a thread), polled."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await asyncio.to_thread(check)
        if last is not None:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s\n{tail()}")
        await asyncio.sleep(0.2)
