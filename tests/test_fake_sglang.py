"""The fake SGLang server itself: faithful to the reference where the supervisor relies on it."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx

from supervisor._proctree import proc_info
from tests.conftest import fake_argv


def start(port: int, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fake_argv(port, *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    import os

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, _ = proc.communicate(timeout=10)
    return out


def wait_status(url: str, status: int, timeout: float = 20) -> list[str]:
    """Poll until `url` answers `status`; return the sequence of distinct answers seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            answer = f"{r.status_code}:{r.text!r}"
        except httpx.ConnectError:
            answer = "refused"
        if not seen or seen[-1] != answer:
            seen.append(answer)
        if answer.startswith(f"{status}:"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"never {status}; saw {seen}")


def test_port_closed_while_loading_then_503_empty_then_200(port: int) -> None:
    proc = start(port, "--fake-load-time", "0.5", "--fake-warmup-time", "0.5")
    try:
        seen = wait_status(f"http://127.0.0.1:{port}/health", 200)
        assert seen[0] == "refused" and "503:''" in seen and seen[-1] == "200:''"
    finally:
        out = stop(proc)
    assert "The server is fired up and ready to roll!" in out
    assert "Load weight begin" in out and "Engine startup timings (s): load_weight=" in out


def test_api_key_rules_and_exempt_paths(port: int) -> None:
    flags = ("--fake-load-time", "0.1", "--fake-warmup-time", "0.1", "--enable-metrics")
    proc = start(port, *flags, "--api-key", "k1")
    try:
        wait_status(f"http://127.0.0.1:{port}/health", 200)
        base = f"http://127.0.0.1:{port}"
        for path in ("/v1/models", "/model_info", "/server_info"):
            r = httpx.get(base + path)
            assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
        for header, status in [
            ("k1", 401),
            ("Token k1", 401),
            ("Bearer k2", 401),
            ("Bearer k1", 200),
            ("bearer k1", 200),  # srt/utils/auth.py: the scheme is compared lower-cased
            ("BEARER k1", 200),
        ]:
            r = httpx.get(base + "/v1/models", headers={"Authorization": header})
            assert r.status_code == status, header
        for path in ("/health", "/health_generate", "/ready", "/metrics"):
            assert httpx.get(base + path).status_code == 200, path
        bad = httpx.post(
            base + "/v1/chat/completions",
            headers={"Authorization": "Bearer k1"},
            json={"messages": []},
        )
        assert (
            bad.status_code == 400 and bad.json()["object"] == "error" and bad.json()["code"] == 400
        )
    finally:
        out = stop(proc)
    assert (
        "'api_key': 'k1'" in out
    )  # like SGLang, the key is in clear: the supervisor must redact it


def test_schedulers_are_in_the_group_and_die_with_their_parent(port: int) -> None:
    proc = start(port, "--fake-load-time", "5", "--tp-size", "3")
    try:
        deadline = time.monotonic() + 10
        children: list[int] = []
        while time.monotonic() < deadline and len(children) < 3:
            children = kids(proc.pid)
            time.sleep(0.1)
        assert len(children) == 3
        time.sleep(0.5)  # past the window before PR_SET_PDEATHSIG is set
        assert all(proc_info(k).pgrp == proc.pid for k in children)
        import os

        os.kill(proc.pid, signal.SIGKILL)  # only the main process
        proc.wait(5)
        time.sleep(0.5)
        assert all(proc_info(k) is None or proc_info(k).zombie for k in children)
    finally:
        stop(proc)


def test_sigterm_while_loading_kills_by_the_signal(port: int) -> None:
    """No drain is installed before the first generate request: SIGTERM keeps its default."""
    proc = start(port, "--fake-load-time", "30", "--tp-size", "2")
    try:
        deadline = time.monotonic() + 20
        while len(kids(proc.pid)) < 2 and time.monotonic() < deadline:  # loading: schedulers up
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        out = stop(proc)
    assert "Draining requests" not in out


def test_with_skip_server_warmup_the_first_generation_installs_the_drain(port: int) -> None:
    """`--skip-server-warmup`: Up at once, but no generate request yet; a /health is one."""
    flags = ("--fake-load-time", "0.1", "--skip-server-warmup", "--fake-time-scale", "0.1")
    proc = start(port, *flags)
    try:
        wait_status(f"http://127.0.0.1:{port}/ready", 200)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        out = stop(proc)
    assert "Draining requests" not in out
    proc = start(port, *flags)
    try:
        wait_status(f"http://127.0.0.1:{port}/health", 200)  # a real one-token generation
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        out = stop(proc)
    assert "Draining requests and shutting down" in out


def kids(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def test_warmup_error_kills_its_own_tree_by_sigkill(port: int) -> None:
    proc = start(
        port, "--fake-load-time", "0.1", "--fake-warmup-time", "0.1", "--fake-fault", "warmup-error"
    )
    try:
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        out = stop(proc)
    assert "Initialization failed. warmup error" in out


def test_chat_shapes(port: int) -> None:
    proc = start(
        port, "--fake-load-time", "0.1", "--fake-warmup-time", "0.1", "--reasoning-parser", "glm45"
    )
    try:
        wait_status(f"http://127.0.0.1:{port}/health", 200)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "anything", "messages": [{"role": "user", "content": "hi"}]},
        ).json()
        assert len(r["id"]) == 32 and r["object"] == "chat.completion" and r["model"] == "anything"
        msg = r["choices"][0]["message"]
        assert msg["content"] and msg["reasoning_content"] and "tool_calls" not in msg
        assert r["choices"][0]["finish_reason"] == "stop" and r["usage"]["total_tokens"] > 0
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as s:
            events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        import json

        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]
        kinds = [
            "r" if "reasoning_content" in c["choices"][0]["delta"] else "c"
            for c in chunks[1:-2]
            if c["choices"][0]["delta"]
        ]
        assert kinds == sorted(
            kinds, reverse=True
        )  # every reasoning delta before any content delta
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    finally:
        stop(proc)
