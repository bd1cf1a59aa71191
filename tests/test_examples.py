"""Every example runs against the supervised fake server (with an API key), and says the right thing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import ROOT, cli

KEY = "examples-secret-key"


@pytest.fixture(scope="module")
def endpoint():
    port = free_port()
    with Watched(
        cli(
            "demo",
            "--port",
            str(port),
            "--api-key-env",
            "EXAMPLES_KEY",
            "--fake-arg=--fake-load-time=0.3",
            "--fake-arg=--fake-warmup-time=0.2",
            env={"EXAMPLES_KEY": KEY},
        )
    ) as w:
        w.wait_for("state=serving", 60)
        yield f"http://127.0.0.1:{port}/v1"
        w.signal()
        assert w.wait_exit(30)[0] == 0
        assert KEY not in w.output()


def run_example(name: str, base: str, key: str = KEY, **extra_env: str) -> str:
    env = {**os.environ, "OPENAI_BASE_URL": base, "OPENAI_API_KEY": key, **extra_env}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT / "examples",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_client_setup(endpoint: str) -> None:
    out = run_example("client_setup.py", endpoint)
    assert "models: glm-5.1" in out and "using: glm-5.1 (available)" in out


def test_basic_chat(endpoint: str) -> None:
    out = run_example("basic_chat.py", endpoint)
    assert "Explain quicksort" in out and "[finish_reason=stop tokens=" in out


def test_streaming(endpoint: str) -> None:
    out = run_example("streaming.py", endpoint)
    chunks = int(out.rsplit("[", 1)[1].split()[0])
    assert chunks > 3 and "Write a haiku about GPUs." in out


def test_thinking_on_and_off(endpoint: str) -> None:
    out = run_example("thinking.py", endpoint)
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["Thinking"] not in ("", "None") and lines["Answer"]
    assert lines["Thinking (off)"] == "None" and lines["Answer (off)"]
    assert lines["Thinking"] not in lines["Answer"]  # never mixed into content


def test_streaming_reasoning_comes_first(endpoint: str) -> None:
    out = run_example("streaming_reasoning.py", endpoint)
    assert out.strip().endswith("[order: reasoning -> content]")
    # into a pipe: each part under its own label, on lines of its own, never run together
    lines = out.splitlines()
    assert lines[0] == "[reasoning]" and "[content]" in lines
    assert lines.index("[content]") > 1


def test_tool_calling_two_steps(endpoint: str) -> None:
    out = run_example("tool_calling.py", endpoint)
    assert 'Tool: get_weather({"city": "Tokyo"}) finish_reason=tool_calls' in out
    assert "Answer: Based on the tool result" in out and '"temperature": 22' in out


def test_json_mode(endpoint: str) -> None:
    out = run_example("json_mode.py", endpoint)
    data = json.loads(out)
    assert [p["name"] for p in data["planets"]] == ["Mercury", "Venus", "Earth"]


def test_legacy_completions(endpoint: str) -> None:
    out = run_example("legacy_completions.py", endpoint)
    assert "The capital city of France is" in out and "[finish_reason=stop]" in out


def test_list_models(endpoint: str) -> None:
    assert run_example("list_models.py", endpoint).strip() == "glm-5.1\towned_by=sglang"


def test_health_and_metrics(endpoint: str) -> None:
    out = run_example("health_and_metrics.py", endpoint, key="wrong-key")  # both are exempt
    assert "/health: 200 (healthy)" in out
    assert 'sglang:num_requests_total{model_name="glm-5.1"' in out


def test_a_wrong_key_gets_401(endpoint: str) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": endpoint, "OPENAI_API_KEY": "wrong"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "basic_chat.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT / "examples",
    )
    assert done.returncode != 0 and "401" in done.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_script(endpoint: str) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": endpoint, "OPENAI_API_KEY": KEY}
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "curl.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert '"object": "chat.completion"' in out and "data: [DONE]" in out
    assert '"id": "glm-5.1"' in out
    health, unauthorized = out.strip().splitlines()[-3], out.strip().splitlines()[-1]
    assert health == "200" and unauthorized == "401"


class Recorder:
    """A forwarding proxy on 127.0.0.1 that records the headers a client sends, the way Modal's
    proxy sees them, and passes each request on to the fake server (non-streaming only)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                recorder.seen.append(
                    {"path": self.path, **{k.lower(): v for k, v in headers.items()}}
                )
                r = httpx.request(
                    self.command,
                    recorder.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=30,
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorded(endpoint: str) -> Iterator[tuple[str, Recorder]]:
    root = endpoint[: -len("/v1")]
    recorder = Recorder(root)
    with recorder as base:
        yield base + "/v1", recorder


def test_multi_turn_sends_one_stable_session_id_per_conversation(recorded) -> None:
    base, recorder = recorded
    out = run_example("multi_turn_sticky.py", base, MODAL_KEY="wk-test", MODAL_SECRET="ws-test")
    turns = [line for line in out.splitlines() if line.startswith("[")]
    assert len(turns) == 5  # 3 turns on sorting, 2 on gpus
    assert "messages=7]" in turns[2] and "messages=5]" in turns[4]  # the history grows
    chats = [h for h in recorder.seen if h["path"] == "/v1/chat/completions"]
    assert len(chats) == 5
    ids = [h.get("modal-session-id") for h in chats]
    assert None not in ids
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] and ids[0] != ids[3]
    for h in chats:  # SGLang's key and Modal's proxy auth token travel side by side
        assert h["authorization"] == f"Bearer {KEY}"
        assert (h["modal-key"], h["modal-secret"]) == ("wk-test", "ws-test")


def test_without_a_proxy_token_no_modal_headers_are_sent(recorded) -> None:
    base, recorder = recorded
    env = {k: "" for k in ("MODAL_KEY", "MODAL_SECRET")}
    run_example("basic_chat.py", base, **env)
    run_example("health_and_metrics.py", base, key="wrong-key", **env)
    assert [h["path"] for h in recorder.seen] == ["/v1/chat/completions", "/health", "/metrics"]
    assert all("modal-key" not in h for h in recorder.seen)
