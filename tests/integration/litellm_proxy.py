"""A real LiteLLM proxy as a subprocess, with mocked models and the test guardrails.

It runs from ``.venv-litellm`` (``make litellm-venv``: LiteLLM's proxy extra is
large and pins its own versions), with stream-sentinel installed there too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-litellm"
APP = Path(__file__).with_name("litellm_app")
# the guardrails of the documented example: the tests run the config users copy
GUARDS = REPO / "examples" / "litellm"
MASTER_KEY = "sk-master-test-0123456789"
MODEL = "gpt-4o-mini"


def litellm_bin() -> Path:
    exe = VENV / "bin" / "litellm"
    assert exe.exists(), f"{exe} is missing: `make litellm-venv` installs the LiteLLM proxy"
    return exe


def proxy_config(callbacks: Sequence[str]) -> str:
    quoted = ", ".join(f'"{c}"' for c in callbacks)
    return f"""\
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_key: sk-mock
      mock_response: "Hello from the mock"
guardrails:
  - guardrail_name: injection
    litellm_params: {{guardrail: guards.InjectionBlocker, mode: pre_call, default_on: true}}
  - guardrail_name: judge
    litellm_params: {{guardrail: guards.Judge, mode: post_call, default_on: true}}
  - guardrail_name: failopen
    litellm_params: {{guardrail: guards.FailOpen, mode: pre_call, default_on: true}}
litellm_settings:
  callbacks: [{quoted}]
general_settings:
  master_key: {MASTER_KEY}
"""


class LiteLLMProxy:
    def __init__(
        self, workdir: Path, port: int, callbacks: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.port = port
        self.dump = workdir / "records.jsonl"
        self.log = workdir / "proxy.log"
        config = workdir / "litellm.yaml"
        config.write_text(proxy_config(callbacks))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")},
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": os.pathsep.join((str(APP), str(GUARDS))),
            "RECORD_DUMP": str(self.dump),
            "NO_DOCS": "True",
            **env,
        }
        self.args = [str(litellm_bin()), "--config", str(config), "--port", str(port),
                     "--host", "127.0.0.1"]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 180) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.log.parent,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc.poll() is None, f"proxy exited:\n{self.tail()}"
                assert time.monotonic() < deadline, f"proxy did not answer:\n{self.tail()}"
                try:
                    async with session.get(self.url("/health/liveliness")) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def chat(
        self, session: aiohttp.ClientSession, prompt: str, user: str | None, *, stream: bool = False
    ) -> int:
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
        if user is not None:
            body["user"] = user
        if stream:
            body["stream"] = True
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        async with session.post(self.url("/v1/chat/completions"), json=body, headers=headers) as r:
            await r.read()
            return r.status

    def openai_chat(self, prompt: str, user: str) -> str:
        """One call through the official ``openai`` client (installed beside LiteLLM)."""
        script = (
            "import sys, openai\n"
            "c = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])\n"
            "r = c.chat.completions.create(model=sys.argv[3], user=sys.argv[4],"
            " messages=[{'role': 'user', 'content': sys.argv[5]}])\n"
            "print(r.choices[0].message.content)\n"
        )
        out = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", script, self.url(""), MASTER_KEY, MODEL, user,
             prompt],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return out.stdout.strip()

    def records(self) -> list[dict[str, Any]]:
        if not self.dump.exists():
            return []
        return [orjson.loads(line) for line in self.dump.read_bytes().splitlines() if line]

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
