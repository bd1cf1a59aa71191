"""The two engines the differential tests run: the real SGLang 0.5.23 on the CPU, and the fake.

Each is started the same way, black-box through the CLI: `serve --profile cpu-tiny` (with
`--fake` for the fake) or `run -- <the engine's own command>`. The real engine needs the project's
SGLang environment (`.venv-sglang`, built by `.ci/run` from requirements/sglang-0.5.23-engine.txt)
and a tiny GPT-2 made at test time; in CI (`SGLANG_REAL_REQUIRED=1`) a missing real engine is a
failure, elsewhere a skip that says how to get one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from supervisor.engines.sglang_check import find_sglang_python
from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import ROOT, cli, descendants

TINY_BUILDER = ROOT / "supervisor" / "testing" / "tiny_model.py"
#: A key with a quote, an apostrophe, a backslash and a space: every escaping SGLang does.
HOSTILE_KEY = "k\"e'y\\ with space-0123456789"
KEY_ENV = "REAL_TEST_API_KEY"
#: The admin key the tests name (`--admin-api-key-env`), as hostile as the client's.
HOSTILE_ADMIN_KEY = "adm\"in'\\ key-9876543210"
ADMIN_KEY_ENV = "REAL_TEST_ADMIN_KEY"
#: The flags SGLang's CPU path needs (the cpu-tiny profile's, for `run`).
CPU_FLAGS = (
    "--device",
    "cpu",
    "--attention-backend",
    "torch_native",
    "--sampling-backend",
    "pytorch",
    "--grammar-backend",
    "xgrammar",
    "--sleep-on-idle",
    "--max-total-tokens",
    "4096",
    "--enable-metrics",
)


@cache
def real_python() -> str | None:
    """The Python of the real engine, if SGLang and torch import there."""
    python = find_sglang_python()
    if python is None:
        return None
    done = subprocess.run(
        [python, "-c", "import sglang, torch, transformers, tokenizers, safetensors"],
        capture_output=True,
        timeout=180,
    )
    return python if done.returncode == 0 else None


def require_real() -> str:
    python = real_python()
    if python is None:
        why = (
            "the real SGLang 0.5.23 engine is not installed: run .ci/run (it builds .venv-sglang "
            "from requirements/sglang-0.5.23-engine.txt) or set SGLANG_PYTHON"
        )
        if os.environ.get("SGLANG_REAL_REQUIRED"):
            pytest.fail(why)
        pytest.skip(why)
    return python


def build_tiny_model(directory: Path) -> Path:
    python = require_real()
    subprocess.run([python, str(TINY_BUILDER), str(directory)], check=True, capture_output=True)
    return directory


@dataclass
class Served:
    """One supervised engine started through the CLI, and what a test needs to drive it."""

    engine: str  # "real" or "fake"
    watched: Watched
    port: int
    key: str
    metrics_port: int | None = None
    tree_at_serving: dict[int, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.watched.output()

    def request(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        key: str | None = "",
        timeout: float = 60,
        port: int | None = None,
        content_type: str = "application/json",
        method: str | None = None,
    ) -> tuple[int, str]:
        """(status, body text) of one request; key "" means this server's key, None none."""
        url = f"http://127.0.0.1:{port or self.port}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        use = self.key if key == "" else key
        if use is not None:
            headers["Authorization"] = f"Bearer {use}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def metrics_with_type(self, timeout: float = 30) -> tuple[str, str]:
        """(Content-Type, body) of the engine's own /metrics (exempt from keys)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.headers.get("Content-Type", ""), resp.read().decode("utf-8", "replace")

    def chat(self, content: str = "What's the weather in Tokyo?", **extra: Any) -> dict[str, Any]:
        return {
            "model": "cpu-tiny",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 8,
            "temperature": 0,
            "ignore_eos": True,
            **extra,
        }

    def schedulers(self) -> list[int]:
        """Pids of the engine's scheduler processes (SGLang's `sglang::scheduler*`, the fake's)."""
        return self.processes_named(b"sglang::scheduler")

    def processes_named(self, title: bytes) -> list[int]:
        """Pids of the tree whose command line holds `title` (SGLang's setproctitle)."""
        found = []
        for pid in descendants(self.watched.popen.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            # SGLang's setproctitle replaces the whole line; the fake's scheduler code prints it
            if title in cmd:
                found.append(pid)
        return found

    def stream_in_background(self, max_tokens: int) -> StreamReader:
        reader = StreamReader(self, max_tokens)
        reader.start()
        return reader


class StreamReader(threading.Thread):
    """A streaming chat read to its end in a thread: its chunks, and whether [DONE] came."""

    def __init__(self, served: Served, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.served = served
        self.max_tokens = max_tokens
        self.events: list[str] = []
        self.first = threading.Event()
        self.error: BaseException | None = None
        self.status = 0

    def run(self) -> None:
        body = self.served.chat(max_tokens=self.max_tokens, stream=True)
        req = urllib.request.Request(
            f"{self.served.base}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.served.key}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                self.status = resp.status
                for raw in resp:
                    line = raw.decode("utf-8", "replace").strip()
                    if line.startswith("data:"):
                        self.events.append(line[5:].strip())
                        self.first.set()
        except BaseException as exc:  # the test reads it
            self.error = exc
        finally:
            self.first.set()

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"


def start_serve(
    engine: str, model_dir: Path | None, *extra: str, key: str = HOSTILE_KEY, timeout: float = 300
) -> Served:
    """`serve --profile cpu-tiny` on the real engine (model_dir) or on the fake, up to serving."""
    port = free_port()
    args = ["serve", "--profile", "cpu-tiny", "--port", str(port), "--api-key-env", KEY_ENV]
    args += ["--admin-api-key-env", ADMIN_KEY_ENV]
    if engine == "fake":
        args += ["--fake", "--fake-arg=--fake-time-scale=0.2"]
    else:
        require_real()
        assert model_dir is not None
        args += ["--model-path", str(model_dir)]
    watched = Watched(cli(*args, *extra, env={KEY_ENV: key, ADMIN_KEY_ENV: HOSTILE_ADMIN_KEY}))
    served = Served(engine, watched, port, key)
    return _until_serving(served, timeout)


def start_run(
    engine: str, model_dir: Path | None, *flags: str, engine_flags: tuple[str, ...] = ()
) -> Served:
    """`run -- <engine command>`: the real `python -m sglang.launch_server`, or the fake's."""
    port = free_port()
    if engine == "fake":
        command = [sys.executable, "-m", "supervisor.testing.fake_sglang"]
        command += ["--fake-time-scale", "0.2"]
    else:
        python = require_real()
        assert model_dir is not None
        command = [python, "-m", "sglang.launch_server", *CPU_FLAGS]
    command += ["--model-path", str(model_dir or "/models/tiny"), "--served-model-name"]
    command += ["cpu-tiny", "--host", "127.0.0.1", "--port", str(port), *engine_flags]
    watched = Watched(cli("run", "--port", str(port), *flags, "--", *command))
    served = Served(engine, watched, port, key="")
    return _until_serving(served, 300)


def _until_serving(served: Served, timeout: float) -> Served:
    try:
        served.watched.wait_for("] state=serving from=", timeout)
    except AssertionError:
        served.watched.close()
        raise
    served.tree_at_serving = served.watched.tree()
    return served


def stop(served: Served, *, timeout: float = 120) -> tuple[int, float]:
    """SIGTERM the CLI; (exit code, seconds to exit)."""
    t0 = time.monotonic()
    served.watched.signal(signal.SIGTERM)
    rc, exited = served.watched.wait_exit(timeout)
    return rc, exited - t0
