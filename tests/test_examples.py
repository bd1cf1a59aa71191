"""Every example runs against the supervised fake server (with an API key), and says the right thing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

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


def run_example(name: str, base: str, key: str = KEY) -> str:
    env = {**os.environ, "OPENAI_BASE_URL": base, "OPENAI_API_KEY": key}
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
