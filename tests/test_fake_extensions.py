"""The fake SGLang server's newer imitations: progress metrics and the stall (issue #14), memory
release and resume (issue #13), multi-node ranks (issue #11). Each test names what it proves;
every client call has a bounded timeout, every fake is killed with its whole group."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.testing import free_port
from supervisor.testing.fake_sglang._logs import scheduler_prefix
from supervisor.testing.fake_sglang._ranks import parse_dist_init_addr
from tests.conftest import fake_argv
from tests.test_fidelity import sglang_source

QUICK = ("--fake-load-time", "0.2", "--fake-warmup-time", "0.2")
CHAT = "/v1/chat/completions"


class Fake:
    """A fake server process whose output is collected as it comes."""

    def __init__(self, port: int, *flags: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            fake_argv(port, *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            time.sleep(0.05)
        raise AssertionError(f"never logged {text!r}:\n{self.output()[-3000:]}")

    def wait_ok(self, path: str = "/health", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base + path, timeout=10).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered 200:\n{self.output()[-3000:]}")

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)


@contextlib.contextmanager
def fake(port: int, *flags: str) -> Iterator[Fake]:
    server = Fake(port, *flags)
    try:
        yield server
    finally:
        server.kill()


def scrape(server: Fake) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(server.base + "/metrics", timeout=5).text
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **want: str
) -> float:
    """Sum of the samples of `name` carrying the labels `want`."""
    return sum(
        v for (n, labels), v in samples.items() if n == name and set(want.items()) <= set(labels)
    )


def progress(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[Any, float]:
    """Every series that must not move without work (PROGRESS.md's progress counters)."""
    names = (
        "sglang:realtime_tokens_total",
        "sglang:prompt_tokens_total",
        "sglang:generation_tokens_total",
        "sglang:num_requests_total",
    )
    return {k: v for k, v in samples.items() if k[0] in names}


def chat(n: int | None = None, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "tell me a story"}], **extra}
    if n is not None:
        body.update(max_tokens=n, ignore_eos=True)
    if stream:
        body["stream"] = True
    return body


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Run `fn` in a daemon thread; its result or exception lands in the returned list."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn(*args))
        except Exception as e:  # the test looks at it
            box.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def stream_lines(
    url: str, body: dict[str, Any], got: list[tuple[float, str]], timeout: float
) -> None:
    with httpx.stream("POST", url, json=body, timeout=timeout) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                got.append((time.monotonic(), line[6:]))


def until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def contents(got: list[tuple[float, str]]) -> list[tuple[float, str]]:
    out = []
    for at, data in got:
        choices = json.loads(data)["choices"] if data != "[DONE]" else []
        if choices and choices[0]["delta"].get("content"):
            out.append((at, choices[0]["delta"]["content"]))
    return out


# ============================================================================ progress (#14)
def test_metrics_is_404_without_enable_metrics(port: int) -> None:
    with fake(port, *QUICK) as server:
        server.wait_ok()
        r = httpx.get(server.base + "/metrics", timeout=5)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})


def test_counters_advance_while_generating_and_stand_still_when_idle(port: int) -> None:
    flags = ("--enable-metrics", "--tp-size", "2", "--fake-token-time", "0.05")
    with fake(port, *QUICK, *flags, "--fake-time-scale", "0.2") as server:
        server.wait_ok()
        r = httpx.get(server.base + "/metrics", timeout=5)
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE sglang:realtime_tokens_total counter" in r.text
        assert "# TYPE sglang:num_running_reqs gauge" in r.text
        assert "# TYPE sglang:http_requests_active gauge" in r.text
        before = scrape(server)
        got: list[tuple[float, str]] = []
        thread, _ = in_thread(stream_lines, server.base + CHAT, chat(20, stream=True), got, 30)
        until(lambda: len(contents(got)) >= 3)
        during = scrape(server)
        thread.join(30)
        after = scrape(server)
        # mid-stream: the scheduler holds it, the HTTP side counts it, decode moved
        assert value(during, "sglang:num_running_reqs") == 1
        assert value(during, "sglang:http_requests_active", endpoint=CHAT, method="POST") == 1
        decode = "sglang:realtime_tokens_total"
        assert value(during, decode, mode="decode") > value(before, decode, mode="decode")
        # afterwards: one token per token made; the tokenizer counters moved once, streaming
        assert value(after, decode, mode="decode") - value(before, decode, mode="decode") == 20
        assert value(after, decode, mode="prefill_compute") > value(
            before, decode, mode="prefill_compute"
        )
        gen = "sglang:generation_tokens_total"
        assert (
            value(after, gen, is_streaming="true") - value(before, gen, is_streaming="true") == 20
        )
        done = "sglang:num_requests_total"
        assert (
            value(after, done, is_streaming="true") - value(before, done, is_streaming="true") == 1
        )
        assert value(after, "sglang:num_running_reqs") == 0
        assert value(after, "sglang:http_requests_active", endpoint=CHAT, method="POST") == 0
        # labels: tokenizer series have no tp_rank; heartbeats are per rank
        assert all("tp_rank" not in dict(k[1]) for k in after if k[0] == gen)
        ranks = {
            dict(k[1])["tp_rank"] for k in after if k[0] == "sglang:scheduler_idle_seconds_total"
        }
        assert ranks == {"0", "1"}
        # idle: nothing moves but the heartbeat
        idle0 = scrape(server)
        time.sleep(1.2)
        idle1 = scrape(server)
        assert progress(idle0) == progress(idle1)
        heartbeat = "sglang:scheduler_idle_seconds_total"
        assert value(idle1, heartbeat, tp_rank="1") - value(idle0, heartbeat, tp_rank="1") >= 0.4
        cpu = "sglang:scheduler_process_cpu_seconds_total"
        assert value(idle1, cpu) > value(idle0, cpu)
        assert value(idle1, "sglang:num_running_reqs") == 0


def test_token_pacing_streams_tokens_one_by_one(port: int) -> None:
    with fake(port, *QUICK, "--fake-token-time", "0.05") as server:
        server.wait_ok()
        got: list[tuple[float, str]] = []
        started = time.monotonic()
        stream_lines(server.base + CHAT, chat(10, stream=True), got, 30)
        took = time.monotonic() - started
        tokens = contents(got)
        assert len(tokens) == 10 and took >= 0.45
        assert tokens[-1][0] - tokens[0][0] >= 0.3  # they came one by one, not in one burst
        started = time.monotonic()
        r = httpx.post(server.base + CHAT, json=chat(10), timeout=30)
        assert r.json()["usage"]["completion_tokens"] == 10
        assert time.monotonic() - started >= 0.45  # a plain answer waits for its last token


def test_ignore_eos_gives_exactly_max_tokens(port: int) -> None:
    with fake(port, *QUICK) as server:
        server.wait_ok()

        def ask(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = httpx.post(server.base + path, json=body, timeout=30)
            assert r.status_code == 200, r.text
            return r.json()

        for n in (2, 7, 40):  # shorter and longer than the fake's natural answer
            r = ask(CHAT, chat(n))
            assert r["usage"]["completion_tokens"] == n
            assert len(r["choices"][0]["message"]["content"].split()) == n
            assert r["choices"][0]["finish_reason"] == "length"
        r = ask(CHAT, chat(max_completion_tokens=5, ignore_eos=True))
        assert r["usage"]["completion_tokens"] == 5
        natural = ask(CHAT, chat(max_tokens=2))  # without ignore_eos the model stops by itself
        assert natural["choices"][0]["finish_reason"] == "stop"
        assert natural["usage"]["completion_tokens"] > 2
        r = ask("/v1/completions", {"prompt": "Once", "max_tokens": 12, "ignore_eos": True})
        assert r["usage"]["completion_tokens"] == 12 and len(r["choices"][0]["text"].split()) == 12
        params = {"max_new_tokens": 5, "ignore_eos": True}
        r = ask("/generate", {"text": "The capital of France is", "sampling_params": params})
        assert r["meta_info"]["completion_tokens"] == 5
        assert r["meta_info"]["finish_reason"] == {"type": "length", "length": 5}
        r = ask("/generate", {"text": "The capital of France is", "sampling_params": {}})
        assert r["text"] == " Paris." and r["meta_info"]["finish_reason"]["type"] == "stop"


def test_stall_freezes_counters_while_stuck_requests_pile_up(port: int) -> None:
    flags = ("--enable-metrics", "--fake-fault", "stall", "--fake-crash-after", "1.5")
    timing = ("--fake-token-time", "0.1", "--fake-time-scale", "0.25")
    with fake(port, *QUICK, *flags, *timing, "--fake-health-check-timeout", "3") as server:
        server.wait_ok()
        in_flight: list[tuple[float, str]] = []
        in_thread(stream_lines, server.base + CHAT, chat(1000, stream=True), in_flight, 60)
        server.wait_line("fake: scheduler stalled")
        time.sleep(0.3)
        frozen, made = scrape(server), len(in_flight)
        # new requests are taken and never answered: a plain one, and a stream, which gets no
        # byte, not even its status line (serving_chat.py:_handle_streaming_request awaits the
        # first chunk before it answers; the real engine does the same, test_real_engine_edges)
        in_thread(lambda: httpx.post(server.base + CHAT, json=chat(), timeout=60))
        stuck = socket.create_connection(("127.0.0.1", port), timeout=30)
        body = json.dumps(chat(stream=True)).encode()
        stuck.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(server.base + "/health", timeout=1.5)
        assert httpx.get(server.base + "/v1/models", timeout=5).status_code == 200
        time.sleep(1.0)
        later = scrape(server)
        assert len(in_flight) == made  # the stream stopped where it was
        stuck.settimeout(0.5)
        with pytest.raises(TimeoutError):
            stuck.recv(1)  # no status line: the first chunk never came
        assert progress(later) == progress(frozen) and progress(frozen)
        for heartbeat in (
            "sglang:scheduler_idle_seconds_total",
            "sglang:scheduler_process_cpu_seconds_total",
        ):
            assert value(later, heartbeat) == value(frozen, heartbeat)
        assert (
            value(later, "sglang:num_running_reqs") == value(frozen, "sglang:num_running_reqs") == 1
        )
        active = value(later, "sglang:http_requests_active", endpoint=CHAT, method="POST")
        assert (
            active == 3 > value(frozen, "sglang:http_requests_active", endpoint=CHAT, method="POST")
        )
        # a client that gives up stops counting within SGLang's 4 s look (1 s at this scale)
        thread, box = in_thread(lambda: httpx.post(server.base + CHAT, json=chat(), timeout=1.0))

        def active_now() -> float:
            return value(
                scrape(server), "sglang:http_requests_active", endpoint=CHAT, method="POST"
            )

        until(lambda: active_now() == 4, 5)
        thread.join(5)
        assert isinstance(box[0], httpx.ReadTimeout)
        until(lambda: active_now() == 3, 5)
        # SGLang's /health gives up after HEALTH_CHECK_TIMEOUT with 503 and its error line
        r = httpx.get(server.base + "/health", timeout=10)
        assert r.status_code == 503
        assert (
            "Health check failed. Server couldn't get a response from detokenizer"
            in server.output()
        )
        assert server.proc.poll() is None
        stuck.close()


def raw_post(port: int, path: str, body: dict[str, Any]) -> socket.socket:
    """A POST sent by hand, so that the test sees every byte the server sends, or none."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    data = json.dumps(body).encode()
    client.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return client


def test_openai_streams_answer_with_their_first_chunk_and_a_native_stream_at_once(
    port: int,
) -> None:
    """0.5.23's `_handle_streaming_request` (serving_chat.py, serving_completions.py) awaits the
    generator's first chunk before it returns the StreamingResponse: while generation is paused
    a chat or completions stream gets no byte, its status line, headers and role chunk come with
    the first output; `/generate`'s `serve_generate_request` returns its stream at once."""
    with fake(port, *QUICK) as server:
        server.wait_ok()
        assert post(server, "/pause_generation", {"mode": "in_place"}).status_code == 200
        native = raw_post(port, "/generate", {"text": "hi", "stream": True})
        held = {
            CHAT: raw_post(port, CHAT, chat(stream=True)),
            "/v1/completions": raw_post(
                port, "/v1/completions", {"model": "m", "prompt": "hi", "stream": True}
            ),
        }
        assert native.recv(64).startswith(b"HTTP/1.")  # the native stream's headers, at once
        for client in held.values():
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(1)  # nothing while nothing is made
        assert post(server, "/continue_generation", {}).status_code == 200
        for path, client in held.items():
            client.settimeout(10)
            got = b""
            while b"data: [DONE]" not in got:
                more = client.recv(65536)
                assert more, got
                got += more
            head, _, events = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
            assert b"text/event-stream" in head
            first = json.loads(events.split(b"\n\n")[0].removeprefix(b"data: "))
            if path == CHAT:
                assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            client.close()
        native.close()


def test_stall_after_requests_lets_warmups_pass(port: int) -> None:
    flags = ("--fake-fault", "stall", "--fake-stall-after-requests", "2")
    with fake(port, *QUICK, *flags, "--fake-time-scale", "0.25") as server:
        server.wait_ok()  # SGLang's own warmup and /health are not counted
        for _ in range(2):
            assert httpx.post(server.base + CHAT, json=chat(), timeout=10).status_code == 200
        server.wait_line("fake: scheduler stalled", 5)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base + CHAT, json=chat(), timeout=1.5)


# ============================================================================ memory (#13)
def post(
    server: Fake, path: str, body: Any = None, *, timeout: float = 10, **kw: Any
) -> httpx.Response:
    if body is None:
        return httpx.post(server.base + path, timeout=timeout, **kw)
    return httpx.post(server.base + path, json=body, timeout=timeout, **kw)


def test_control_endpoints_answer_like_sglang_without_the_memory_saver(port: int) -> None:
    with fake(port, *QUICK, "--fake-time-scale", "0.25") as server:
        server.wait_ok()
        r = post(server, "/release_memory_occupation")  # Body() is required
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "missing"
        r = httpx.get(server.base + "/release_memory_occupation", timeout=5)
        assert r.status_code == 422
        assert (
            post(server, "/release_memory_occupation", {"tags": "x"}).json()["detail"][0]["type"]
            == "list_type"
        )
        bad = post(server, "/resume_memory_occupation", {"tags": [1]}).json()["detail"][0]
        assert bad["type"] == "string_type" and bad["loc"] == ["body", "tags", 0]
        assert post(server, "/pause_generation", {"mode": "bogus"}).status_code == 422
        r = post(server, "/pause_generation", {})
        assert (r.status_code, r.json()) == (
            200,
            {"message": "Generation paused successfully.", "status": "ok"},
        )
        assert httpx.get(server.base + "/ready", timeout=5).status_code == 503
        with pytest.raises(httpx.ReadTimeout):  # held at the tokenizer while paused
            post(server, CHAT, chat(), timeout=1)
        r = post(server, "/release_memory_occupation", {})
        assert (r.status_code, r.text, r.headers["content-type"]) == (
            200,
            "null",
            "application/json",
        )
        assert post(server, "/release_memory_occupation", {}).status_code == 200  # no-op adapter
        r = post(server, "/continue_generation", {})
        assert r.json() == {"message": "Generation continued successfully.", "status": "ok"}
        assert httpx.get(server.base + "/ready", timeout=5).status_code == 200
        assert post(server, CHAT, chat()).status_code == 200  # nothing was really freed
        assert post(server, "/resume_memory_occupation", {}).text == "null"
        # a resume without a release: offload_tags.remove raises, the scheduler and tree die
        with pytest.raises(httpx.TransportError):
            post(server, "/resume_memory_occupation", {})
        assert server.wait_exit(10) == -signal.SIGKILL
    out = server.output()
    assert "KeyError: 'kv_cache'" in out and "Scheduler hit an exception" in out
    assert "SIGQUIT received. signum=None, frame=None. It usually means one child failed." in out


def test_release_while_generating_kills_the_tree(port: int) -> None:
    with fake(port, *QUICK, "--fake-token-time", "0.1") as server:
        server.wait_ok()
        got: list[tuple[float, str]] = []
        in_thread(stream_lines, server.base + CHAT, chat(200, stream=True), got, 60)
        until(lambda: bool(contents(got)))
        with pytest.raises(httpx.TransportError):  # never answered: the tree dies first
            post(server, "/release_memory_occupation", {})
        assert server.wait_exit(10) == -signal.SIGKILL
    out = server.output()
    assert (
        "AssertionError: release_memory_occupation should be called only when server is idle."
        in out
    )
    # at TP 1 the scheduler's record has no ` TP0` tag, as on the real engine
    assert re.search(r"^\[[\d: -]+\] Scheduler hit an exception: Traceback", out, re.M), out
    assert " TP0]" not in out


@pytest.mark.parametrize(
    ("tp", "dp", "prefixes"),
    [
        (1, 1, [""]),
        (2, 1, [" TP0", " TP1"]),
        (8, 1, [f" TP{r}" for r in range(8)]),
        (4, 2, [" DP0 TP0", " DP0 TP1", " DP1 TP2", " DP1 TP3"]),
        (8, 8, [f" DP{r} TP{r}" for r in range(8)]),
    ],
)
def test_the_scheduler_log_prefix_follows_configure_scheduler_process(
    tp: int, dp: int, prefixes: list[str]
) -> None:
    """srt/managers/scheduler.py:configure_scheduler_process: ` DP{d}` only with a DP rank (DP
    attention: `tp_rank // (tp_size // dp_size)`), ` TP{t}` only when tp_size > 1."""
    assert [scheduler_prefix(rank, tp, dp) for rank in range(tp)] == prefixes


def test_second_release_with_the_memory_saver_exits_the_scheduler(port: int) -> None:
    flags = ("--enable-memory-saver", "--enable-weights-cpu-backup", "--fake-time-scale", "0.25")
    with fake(port, *QUICK, *flags) as server:
        server.wait_ok()
        assert post(server, "/pause_generation", {"mode": "abort"}).status_code == 200
        assert post(server, "/release_memory_occupation", {}).status_code == 200
        with pytest.raises(httpx.TransportError):
            post(server, "/release_memory_occupation", {})
        assert server.wait_exit(10) == -signal.SIGKILL
    out = server.output()
    assert (
        "[torch_memory_saver.cpp] Cannot pause allocation that is not active. tag=kv_cache" in out
    )
    assert "Subprocess scheduler_0 (pid=" in out and "crashed with exit code 1." in out


@pytest.mark.parametrize("path", ["/health", CHAT])
def test_a_generation_on_released_memory_kills_the_tree(port: int, path: str) -> None:
    with fake(port, *QUICK, "--enable-memory-saver", "--fake-time-scale", "0.25") as server:
        server.wait_ok()
        assert post(server, "/pause_generation", {}).status_code == 200
        assert post(server, "/release_memory_occupation", {"tags": ["kv_cache"]}).status_code == 200
        assert post(server, "/continue_generation", {}).status_code == 200
        with pytest.raises(httpx.TransportError):
            if path == "/health":
                httpx.get(server.base + path, timeout=10)
            else:
                post(server, path, chat())
        assert server.wait_exit(10) == -signal.SIGKILL
    assert "CUDA error: an illegal memory access was encountered" in server.output()


def test_sleep_and_wake_with_cpu_backup_generates_the_known_answer(port: int) -> None:
    flags = (
        "--enable-memory-saver",
        "--enable-weights-cpu-backup",
        "--fake-health-check-timeout",
        "1",
    )
    with fake(port, *QUICK, *flags, "--fake-time-scale", "0.25") as server:
        server.wait_ok()
        assert post(server, "/pause_generation", {"mode": "abort"}).status_code == 200
        r = httpx.get(server.base + "/health", timeout=10)  # its generation waits out the pause
        assert r.status_code == 503
        server.wait_line("Health check failed", 5)  # the log line may trail the answer a little
        assert post(server, "/release_memory_occupation", {}).text == "null"
        assert post(server, "/resume_memory_occupation", {}).text == "null"
        assert post(server, "/continue_generation", {}).status_code == 200
        assert httpx.get(server.base + "/ready", timeout=5).status_code == 503  # UnHealthy
        assert httpx.get(server.base + "/health", timeout=10).status_code == 200
        assert httpx.get(server.base + "/ready", timeout=5).status_code == 200
        body = {"text": "The capital of France is", "sampling_params": {"max_new_tokens": 8}}
        assert post(server, "/generate", body).json()["text"] == " Paris."


@pytest.mark.parametrize(
    ("flags", "fault"),
    [
        (("--enable-weights-cpu-backup", "--fake-fault", "resume-fails"), "resume-fails"),
        (("--enable-weights-cpu-backup", "--fake-fault", "unhealthy-after-resume"), "unhealthy"),
        (("--enable-weights-cpu-backup", "--fake-fault", "garbage-after-resume"), "garbage"),
        ((), "garbage"),  # no CPU backup: the resumed weights are new, empty memory
    ],
)
def test_broken_wakes(port: int, flags: tuple[str, ...], fault: str) -> None:
    with fake(port, *QUICK, "--enable-memory-saver", *flags, "--fake-time-scale", "0.25") as server:
        server.wait_ok()
        assert post(server, "/pause_generation", {}).status_code == 200
        assert post(server, "/release_memory_occupation", {}).status_code == 200
        r = post(server, "/resume_memory_occupation", {})
        if fault == "resume-fails":
            assert (r.status_code, r.json()) == (
                400,
                {"error": {"message": "CUDA error: out of memory"}},
            )
            return
        assert r.status_code == 200
        assert post(server, "/continue_generation", {}).status_code == 200
        health = httpx.get(server.base + "/health", timeout=10)
        body = {"text": "The capital of France is", "sampling_params": {"max_new_tokens": 8}}
        generated = post(server, "/generate", body)
        if fault == "unhealthy":
            assert health.status_code == 503 and generated.status_code == 500
            assert post(server, CHAT, chat()).status_code == 500
        else:  # only a check of the answer tells
            assert health.status_code == 200 and generated.status_code == 200
            assert "Paris" not in generated.json()["text"]


def test_control_endpoints_want_the_admin_key_when_one_is_set(port: int) -> None:
    with fake(port, *QUICK, "--api-key", "user", "--admin-api-key", "admin") as server:
        server.wait_ok()
        user, admin = ({"Authorization": f"Bearer {k}"} for k in ("user", "admin"))
        assert post(server, "/pause_generation", {}, headers=user).status_code == 401
        assert post(server, "/pause_generation", {}, headers=admin).status_code == 200
        assert post(server, "/continue_generation", {}, headers=admin).status_code == 200
        assert post(server, CHAT, chat(), headers=admin).status_code == 401
        assert post(server, CHAT, chat(), headers=user).status_code == 200
    assert "'admin_api_key': 'admin'" in server.output()


# ============================================================================ ranks (#11)
def rank(port: int, dist: int, node_rank: int, *flags: str) -> Fake:
    return Fake(
        port,
        *QUICK,
        "--tp-size",
        "2",
        "--nnodes",
        "2",
        "--node-rank",
        str(node_rank),
        "--dist-init-addr",
        f"127.0.0.1:{dist}",
        "--fake-time-scale",
        "0.1",
        *flags,
    )


@contextlib.contextmanager
def cluster(port: int, *rank0_flags: str) -> Iterator[tuple[Fake, Fake]]:
    dist, worker_port = free_port(), free_port()
    head = rank(port, dist, 0, "--fake-dist-timeout", "30", *rank0_flags)
    worker: Fake | None = None
    try:
        worker = rank(worker_port, dist, 1, "--fake-dist-timeout", "30")
        head.wait_ok()
        worker.wait_ok()
        yield head, worker
    finally:
        head.kill()
        if worker is not None:
            worker.kill()


def test_rank_0_serves_only_once_the_worker_joined_and_sigterm_stops_both(port: int) -> None:
    dist, worker_port = free_port(), free_port()
    head = rank(port, dist, 0, "--fake-dist-timeout", "30")
    worker: Fake | None = None
    try:
        head.wait_line("TP0] Init parallel begin.")
        time.sleep(1.0)  # far longer than its load and warmup: it waits for the worker
        with pytest.raises(httpx.ConnectError):
            httpx.get(head.base + "/health", timeout=2)
        assert "Load weight begin" not in head.output()
        worker = rank(worker_port, dist, 1, "--fake-dist-timeout", "30")
        head.wait_ok()
        worker.wait_ok()
        for path in ("/health", "/health_generate", "/ping"):
            r = httpx.get(worker.base + path, timeout=5)
            assert (r.status_code, r.text) == (200, "")
        r = httpx.get(worker.base + "/v1/models", timeout=5)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
        assert httpx.post(worker.base + "/health", timeout=5).status_code == 405
        assert (
            f"Dummy health check server started in background thread at 127.0.0.1:{worker_port}"
            in worker.output()
        )
        assert "TP1] Init parallel ends." in worker.output()
        worker.proc.send_signal(signal.SIGTERM)  # a worker only logs it
        worker.wait_line(
            "SIGTERM received on node_rank 1; waiting for the rank-0 ShutdownReq broadcast"
        )
        time.sleep(1.0)
        assert worker.proc.poll() is None
        head.proc.send_signal(signal.SIGTERM)  # rank 0 drains, then the broadcast stops both
        assert head.wait_exit(20) == 0
        assert worker.wait_exit(20) == 0
    finally:
        head.kill()
        if worker is not None:
            worker.kill()
    assert "Scheduler or DataParallelController" in worker.output()


def test_a_lost_worker_makes_rank_0_hang_silently(port: int) -> None:
    with cluster(port, "--enable-metrics", "--fake-health-check-timeout", "20") as (head, worker):
        before = len(head.lines)
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.wait_exit(10)
        time.sleep(0.3)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(head.base + "/health", timeout=2)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(head.base + CHAT, json=chat(), timeout=2)
        assert head.proc.poll() is None
        frozen = scrape(head)
        time.sleep(0.5)
        assert progress(scrape(head)) == progress(frozen)  # /metrics answers, frozen
        said = [line for line in head.lines[before:] if "INFO:" not in line]
        assert said == []  # as a collective would: not a word


def test_the_worker_dies_when_rank_0_is_killed(port: int) -> None:
    with cluster(port) as (head, worker):
        os.kill(head.proc.pid, signal.SIGKILL)
        assert worker.wait_exit(10) == -signal.SIGKILL  # launch_phase_sigquit_handler's tree kill
    out = worker.output()
    assert "Connection closed by peer [127.0.0.1]" in out
    assert "Received sigquit from a child process. It usually means the child failed." in out


def test_a_rendezvous_that_never_completes_fails_both_sides(port: int) -> None:
    dist = free_port()
    head = rank(port, dist, 0, "--fake-dist-timeout", "1")
    lonely = rank(free_port(), free_port(), 1, "--fake-dist-timeout", "1")
    try:
        assert head.wait_exit(15) == -signal.SIGKILL
        assert lonely.wait_exit(15) == -signal.SIGKILL
    finally:
        head.kill()
        lonely.kill()
    assert (
        "DistStoreError: Timed out after 1 seconds waiting for clients. 1/2 clients joined."
        in head.output()
    )
    assert "DistNetworkError: The client socket has timed out after 1000ms" in lonely.output()


def test_dist_init_addr_is_parsed_like_sglangs_network_address() -> None:
    assert parse_dist_init_addr("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_dist_init_addr("[fd00::1]:5000") == ("fd00::1", 5000)
    assert parse_dist_init_addr("node-0:5000") == ("node-0", 5000)
    for bad in ("fd00::1:5000", "host", "[fd00::1]", ":5000"):
        with pytest.raises(ValueError):
            parse_dist_init_addr(bad)
    done = subprocess.run(
        fake_argv(free_port(), "--nnodes", "2"), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "--dist-init-addr is required" in done.stderr


# ============================================================================ the source itself
SOURCE_TEXTS = [
    (
        "srt/managers/scheduler_components/weight_updater.py",
        '"release_memory_occupation should be called only when server is idle."',
    ),
    ("srt/managers/scheduler_components/weight_updater.py", "self.offload_tags.remove(tag)"),
    (
        "srt/constants.py",
        "GPU_MEMORY_TYPE_KV_CACHE,\n    GPU_MEMORY_TYPE_WEIGHTS,\n    GPU_MEMORY_TYPE_CUDA_GRAPH,",
    ),
    (
        "srt/entrypoints/http_server.py",
        '{"message": "Generation paused successfully.", "status": "ok"}',
    ),
    (
        "srt/entrypoints/http_server.py",
        '{"message": "Generation continued successfully.", "status": "ok"}',
    ),
    ("srt/entrypoints/http_server.py", '{"error": {"message": str(e)}}'),
    (
        "srt/entrypoints/http_server.py",
        'f"Health check failed. Server couldn\'t get a response from detokenizer for last "',
    ),
    (
        "srt/entrypoints/http_server.py",
        'HEALTH_CHECK_TIMEOUT = int(os.getenv("SGLANG_HEALTH_CHECK_TIMEOUT", 20))',
    ),
    (
        "srt/managers/tokenizer_manager.py",
        "await self.is_pause_cond.wait_for(lambda: not self.is_pause)",
    ),
    ("srt/managers/tokenizer_manager.py", "return not self.is_pause and self.is_healthy()"),
    ("srt/environ.py", "SGLANG_REQUEST_STATE_WAIT_TIMEOUT = EnvInt(4)"),
    ("srt/observability/metrics_collector.py", 'name="sglang:realtime_tokens_total"'),
    ("srt/observability/metrics_collector.py", 'name="sglang:scheduler_idle_seconds_total"'),
    ("srt/observability/metrics_collector.py", 'name="sglang:scheduler_process_cpu_seconds_total"'),
    (
        "srt/observability/metrics_collector.py",
        '"is_streaming": "true" if is_streaming else "false"',
    ),
    ("srt/observability/metrics_collector.py", 'documentation="The number of running requests."'),
    ("srt/observability/http_request_metrics.py", 'name="sglang:http_requests_active"'),
    (
        "srt/managers/scheduler_components/metrics_reporter.py",
        "_SCHEDULER_TIME_ACCOUNTING_INTERVAL_NS = 1_000_000_000",
    ),
    ("srt/utils/auth.py", "if auth_level == AuthLevel.ADMIN_OPTIONAL:"),
    ("srt/entrypoints/engine.py", 'f"SIGTERM received on node_rank {get_parallel().node_rank}; "'),
    ("srt/entrypoints/engine.py", '"waiting for the rank-0 ShutdownReq broadcast to stop "'),
    ("srt/entrypoints/engine.py", 'f"Scheduler or DataParallelController {proc.pid} "'),
    (
        "srt/utils/common.py",
        'f"Dummy health check server started in background thread at {NetworkAddress(host, port).to_host_port_str()}"',
    ),
    ("srt/distributed/bootstrap.py", 'logger.info("Init parallel begin.")'),
    # a scheduler's log prefix: a DP tag only with a DP rank, a TP tag only above TP 1
    ("srt/managers/scheduler.py", 'if shown_dp is not None:\n        prefix += f" DP{shown_dp}"'),
    ("srt/managers/scheduler.py", 'if parallel.tp_size > 1:\n        prefix += f" TP{shown_tp}"'),
    # an OpenAI stream answers (status line, headers) only with its first chunk
    ("srt/entrypoints/openai/serving_chat.py", "first_chunk = await generator.__anext__()"),
    ("srt/entrypoints/openai/serving_completions.py", "first_chunk = await generator.__anext__()"),
]


@pytest.mark.parametrize(("path", "text"), SOURCE_TEXTS)
def test_the_imitated_texts_are_in_the_installed_sglang_source(path: str, text: str) -> None:
    source = sglang_source()
    if source is None:
        pytest.skip("no SGLang source here: run .ci/run, or set SGLANG_PARSER_PYTHON")
    assert text in (source / Path(path)).read_text(), f"{path} no longer says {text}"
