"""Edges of SGLang 0.5.23 that docs/FIDELITY.md read from source, now asked of the running engine.

Each test runs the real engine (SGLang on the CPU, a tiny GPT-2) and the fake with the same argv
and the same actions (real processes, sockets and signals), and requires the same answer; the
real engine is the arbiter (issue #17): where they differed, the fake was changed. One real
engine at a time, each start shared by every check that can use it:

- `--skip-server-warmup` without `--enable-metrics`: `/metrics` 404, no generate request, and a
  SIGTERM before the first one kills by the signal (uvicorn shuts down first);
- SGLang's own warmup timing out (SGLANG_WARMUP_TIMEOUT, its own knob): `Initialization failed.
  warmup error`, the whole tree SIGKILLed, `warmup-failed` from the supervisor for both;
- a scheduler SIGKILLed while loading, and a scheduler that raises while loading (a truncated
  weights file): the two launch-phase deaths, and the causes the supervisor names;
- a stopped detokenizer with a client that leaves (the 4 s look), then a drain with a stopped
  scheduler (the 15 s straggler kill).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from supervisor.engines.sglang_release import READY_LINE
from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import ROOT, cli, descendants
from tests.engines import CPU_FLAGS, build_tiny_model, require_real

pytestmark = [pytest.mark.real_engine, pytest.mark.slow, pytest.mark.xdist_group("real-engine")]

ENGINES = ("real", "fake")
KEY = "edge-key-0123456789"
CHAT = "/v1/chat/completions"
# What the real engine prints for a scheduler that raised while loading a truncated weights file
# (safetensors' own error, in the scheduler's record); the fake is given the same record.
TRUNCATED_WEIGHTS_ERROR = (
    "safetensors._safetensors_rust.SafetensorError: Error while deserializing header: "
    "incomplete metadata, file not fully covered"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_real()
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")


def engine_argv(
    engine: str, model: Path, port: int, *extra: str, metrics: bool = True
) -> list[str]:
    """`python -m sglang.launch_server` with the CPU flags, or the fake with the same ones."""
    flags = [f for f in CPU_FLAGS if metrics or f != "--enable-metrics"]
    if engine == "real":
        head = [require_real(), "-m", "sglang.launch_server", *flags]
    else:
        head = [sys.executable, "-m", "supervisor.testing.fake_sglang", *flags]
        head += ["--fake-time-scale", "0.2"]
    head += ["--model-path", str(model), "--served-model-name", "cpu-tiny"]
    return [*head, "--host", "127.0.0.1", "--port", str(port), *extra]


@contextmanager
def launched(argv: list[str], env: dict[str, str] | None = None) -> Iterator[Watched]:
    """The engine itself, in a session of its own; whatever is left of it is SIGKILLed after."""
    popen = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=ROOT,
        start_new_session=True,
    )
    watched = Watched(popen)
    try:
        yield watched
    finally:
        if popen.poll() is None:
            for pid in descendants(popen.pid):
                kill(pid, signal.SIGKILL)
            kill(popen.pid, signal.SIGKILL)
        watched.close()


def kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def request(port: int, path: str, key: str | None = None, timeout: float = 30) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def chat(port: int, **extra: object) -> int:
    body: dict[str, object] = {"model": "cpu-tiny", "max_tokens": 4, "temperature": 0}
    body.update(messages=[{"role": "user", "content": "hi"}], **extra)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{CHAT}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
        return resp.status


def until_status(watched: Watched, port: int, path: str, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert watched.popen.poll() is None, watched.output()[-3000:]
        try:
            if request(port, path, timeout=5)[0] == want:
                return
        except OSError:
            pass  # not bound yet
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered {want}:\n{watched.output()[-3000:]}")


def named(tree: Iterable[int], title: bytes) -> list[int]:
    """Those of `tree` whose command line holds `title` (SGLang's setproctitle; the fake's
    scheduler code prints the same title)."""
    found = []
    for pid in tree:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if title in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def active_chats(port: int) -> float:
    """`sglang:http_requests_active` for the chat route, from the engine's own /metrics."""
    _, body = request(port, "/metrics")
    for line in body.splitlines():
        if line.startswith("sglang:http_requests_active{") and f'endpoint="{CHAT}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def active_chats_are(port: int, want: float) -> bool:
    return active_chats(port) == want


def until(check: Callable[[], bool], timeout: float, what: str, watched: Watched) -> float:
    """Poll `check()` until true; the seconds it took."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what} not within {timeout} s:\n{watched.output()[-3000:]}")
        time.sleep(0.1)
    return time.monotonic() - t0


def test_skip_server_warmup_is_up_at_once_without_metrics_and_sigterm_kills_by_the_signal(
    tiny: Path,
) -> None:
    """FIDELITY: `/metrics` without `--enable-metrics` (404 `{"detail": "Not Found"}`, with or
    without a key, where `/v1/models` wants one); `--skip-server-warmup`: `Up` at once, no
    generate request (no `GET /model_info`, no `POST /generate`); and before the first
    generate request no drain exists: SIGTERM reaches uvicorn's own handler, which shuts down
    (`INFO:     Shutting down` ... `Finished server process [pid]`) and raises the signal
    again: the main process dies by SIGTERM (-15), nothing drained, nothing left."""
    answers = {}
    for engine in ENGINES:
        port = free_port()
        argv = engine_argv(
            engine, tiny, port, "--skip-server-warmup", "--api-key", KEY, metrics=False
        )
        with launched(argv) as watched:
            until_status(watched, port, "/ready", 200, 300)
            tree = watched.tree()
            schedulers = named(tree, b"sglang::scheduler")
            metrics = [request(port, "/metrics"), request(port, "/metrics", key="wrong")]
            models = request(port, "/v1/models")[0]
            time.sleep(1)  # the access lines of the above, printed
            watched.signal(signal.SIGTERM)
            rc, _ = watched.wait_exit(60)
            out = watched.output()
            answers[engine] = (
                [(status, json.loads(body)) for status, body in metrics],
                models,
                "GET /model_info" in out or "POST /generate" in out,
                rc,
                "Draining requests" in out,
                "INFO:     Shutting down" in out and "INFO:     Finished server process [" in out,
            )
            assert schedulers, f"{engine}: no scheduler in {tree}"
            assert watched.alive(tree, within=10) == [], f"{engine} left processes"
    not_found = (404, {"detail": "Not Found"})
    assert answers["real"] == ([not_found, not_found], 401, False, -signal.SIGTERM, False, True)
    assert answers["fake"] == answers["real"], answers


def supervised(engine: str, argv: list[str], env: dict[str, str] | None = None) -> Watched:
    port = int(argv[argv.index("--port") + 1])
    return Watched(cli("run", "--port", str(port), "--", *argv, env=env))


def startup_failure(out: str) -> tuple[str, str] | None:
    """(how the main process ended, the cause) from the supervisor's startup-failure line."""
    found = re.search(r"with (exit code -?\d+|signal SIG[A-Z]+) \(cause: ([a-z0-9-]+)", out)
    return (found.group(1), found.group(2)) if found else None


def test_a_warmup_that_times_out_kills_the_whole_tree_itself_included(tiny: Path) -> None:
    """FIDELITY: SGLang's own warmup failing: `GET /model_info` answered, the warmup
    `/generate` outlives SGLANG_WARMUP_TIMEOUT (SGLang's knob, 0.001 s here), `Initialization
    failed. warmup error: Traceback ...` with `requests`' ReadTimeout, then
    `kill_process_tree(os.getpid())`: the whole tree by SIGKILL, the main process included;
    the supervisor exits 3 naming `warmup-failed` for both engines."""
    answers = {}
    for engine in ENGINES:
        argv = engine_argv(engine, tiny, free_port())
        with supervised(engine, argv, env={"SGLANG_WARMUP_TIMEOUT": "0.001"}) as watched:
            watched.wait_for("Uvicorn running on", 300)
            tree = watched.tree()
            schedulers = named(tree, b"sglang::scheduler")
            rc, _ = watched.wait_exit(120)
            out = watched.output()
            failed = out.find("Initialization failed. warmup error: Traceback")
            answers[engine] = (
                rc,
                0 <= out.find("GET /model_info") < failed,
                "POST /generate HTTP" in out,  # never answered: the tree died first
                "Read timed out. (read timeout=0.001)" in out,
                "include_parent=True" in out,
                bool(re.search(r"main process pid=\d+ ended: signal SIGKILL", out)),
                startup_failure(out),
            )
            assert schedulers, f"{engine}: no scheduler in the tree before the failure"
            assert watched.alive(tree, within=10) == [], f"{engine} left processes"
    assert answers["real"] == (
        3,
        True,
        False,
        True,
        True,
        True,
        ("signal SIGKILL", "warmup-failed"),
    )
    assert answers["fake"] == answers["real"], answers


def test_the_launch_phase_deaths_and_their_causes_agree(tiny: Path, tmp_path: Path) -> None:
    """FIDELITY, the launch phase (nothing generated yet): (1) a scheduler SIGKILLed while
    loading: `RuntimeError: Rank 0 scheduler died during initialization (exit code: -9)`, exit
    1, `scheduler-killed-during-init`; (2) a scheduler raising while loading (a weights file cut
    in half): `Scheduler hit an exception: Traceback ...`, its SIGQUIT, `Received sigquit from a
    child process. It usually means the child failed.`, the tree SIGKILLed, the server
    included; the supervisor names the weights (`missing-weights`: safetensors' error outranks
    the generic lines). The fake SIGKILLed the same way, and given the same record."""
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for item in tiny.iterdir():
        data = item.read_bytes()
        (truncated / item.name).write_bytes(
            data[: len(data) // 2] if item.name == "model.safetensors" else data
        )
    answers: dict[str, list[object]] = {"real": [], "fake": []}
    for engine in ENGINES:
        # (1) SIGKILL the scheduler as soon as it has its title, long before it is ready
        slow = ("--fake-load-time", "60") if engine == "fake" else ()
        with supervised(engine, engine_argv(engine, tiny, free_port(), *slow)) as watched:
            deadline = time.monotonic() + 300
            victims: list[int] = []
            while not victims and time.monotonic() < deadline:
                assert watched.popen.poll() is None, watched.output()[-3000:]
                victims = named(descendants(watched.popen.pid), b"sglang::scheduler")
                time.sleep(0.1)
            assert victims, "no scheduler appeared"
            tree = watched.tree()
            os.kill(victims[0], signal.SIGKILL)
            rc, _ = watched.wait_exit(60)
            out = watched.output()
            answers[engine].append(
                (
                    rc,
                    "RuntimeError: Rank 0 scheduler died during initialization (exit code: -9)."
                    in out,
                    "Uvicorn running" in out,
                    startup_failure(out),
                )
            )
            assert watched.alive(tree, within=10) == [], f"{engine} left processes"
        # (2) the scheduler's own exception while loading
        record: tuple[str, ...] = ()
        if engine == "fake":
            record = (
                "--fake-fault=crash-loading",
                "--fake-crash-log=Scheduler hit an exception: Traceback (most recent call last):",
                '--fake-crash-log=  File "<fake-sglang>/site-packages/sglang/srt/model_loader/'
                'weight_utils.py", line 1354, in _load_file',
                f"--fake-crash-log={TRUNCATED_WEIGHTS_ERROR}",
            )
        with supervised(engine, engine_argv(engine, truncated, free_port(), *record)) as watched:
            rc, _ = watched.wait_exit(300)
            out = watched.output()
            answers[engine].append(
                (
                    rc,
                    bool(re.search(r"\] Scheduler hit an exception: Traceback", out)),
                    TRUNCATED_WEIGHTS_ERROR in out,
                    "Received sigquit from a child process. It usually means the child failed."
                    in out,
                    "It usually means one child failed." in out,  # the running phase's: not here
                    "include_parent=True" in out,
                    startup_failure(out),
                )
            )
    assert answers["real"] == [
        (3, True, False, ("exit code 1", "scheduler-killed-during-init")),
        (3, True, True, True, False, True, ("signal SIGKILL", "missing-weights")),
    ], answers["real"]
    assert answers["fake"] == answers["real"], answers


def test_a_client_leaving_a_stuck_request_then_a_drain_with_a_stopped_scheduler(
    tiny: Path,
) -> None:
    """FIDELITY: (1) the 4 s look: with the detokenizer stopped (SIGSTOP, sglang #33858) a
    streamed chat is stuck, `http_requests_active` counts it while its client waits and drops
    within SGLANG_REQUEST_STATE_WAIT_TIMEOUT (4 s) of the client leaving, yet the drain still
    counts it (`Remaining number of requests 1`); neither engine sends a byte, not even the
    status line, before the first output (serving_chat.py waits for the first chunk); (2) with the
    detokenizer going again and the scheduler stopped, the drain reaches 0, sends ShutdownReq
    and 15 s later `Schedulers still alive 15s after ShutdownReq, killing them before they
    released: [<the stopped scheduler>]`, then exit 0 by itself, nothing left. The fake's
    detokenizer never resumes (its `detokenizer-stall` fault plays the stop), so its part (2)
    runs on a second fake with its scheduler SIGSTOPped; its timings are scaled by 0.2 (the
    look 0.8 s, the straggler wait 3 s)."""
    answers: dict[str, list[object]] = {}
    for engine in ENGINES:
        port = free_port()
        fault = ("--fake-fault", "detokenizer-stall", "--fake-stall-after-requests", "1")
        argv = engine_argv(engine, tiny, port, *(fault if engine == "fake" else ()))
        got: list[object] = []
        with launched(argv) as watched:
            watched.wait_for(READY_LINE, 300)
            tree = watched.tree()
            assert chat(port) == 200  # one answered chat (the fake's fault strikes after it)
            detokenizers = named(tree, b"sglang::detokenizer") if engine == "real" else []
            for pid in detokenizers:
                os.kill(pid, signal.SIGSTOP)
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
            body = json.dumps(
                {
                    "model": "cpu-tiny",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 8,
                    "stream": True,
                }
            ).encode()
            client.sendall(
                f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            until(partial(active_chats_are, port, 1.0), 30, "the stuck chat counted", watched)
            client.settimeout(1.0)
            with pytest.raises(TimeoutError):
                client.recv(1)  # no status line: the first chunk never came (both engines)
            client.close()
            left = until(partial(active_chats_are, port, 0.0), 30, "the chat dropped", watched)
            assert left < (4 if engine == "real" else 0.8) + 5, left
            watched.signal(signal.SIGTERM)
            watched.wait_for("Remaining number of requests 1.", 30)
            got.append("still counted by the drain")
            if engine == "real":
                schedulers = named(tree, b"sglang::scheduler")
                for pid in schedulers:
                    os.kill(pid, signal.SIGSTOP)
                for pid in detokenizers:
                    os.kill(pid, signal.SIGCONT)
                got.append(drained_with_stragglers(watched, schedulers, 15))
        assert watched.alive(tree, within=10) == [], f"{engine} left processes"
        answers[engine] = got
    # the fake's part (2): a serving fake, its scheduler stopped, SIGTERM
    port = free_port()
    with launched(engine_argv("fake", tiny, port)) as watched:
        watched.wait_for(READY_LINE, 60)
        tree = watched.tree()
        schedulers = named(tree, b"sglang::scheduler")
        for pid in schedulers:
            os.kill(pid, signal.SIGSTOP)
        watched.signal(signal.SIGTERM)
        answers["fake"].append(drained_with_stragglers(watched, schedulers, 3))
        assert watched.alive(tree, within=10) == [], "the fake left processes"
    assert answers["real"] == [
        "still counted by the drain",
        ("Remaining number of requests 0.", "the stopped schedulers", 0),
    ]
    assert answers["fake"] == answers["real"], answers


def drained_with_stragglers(watched: Watched, stopped: list[int], wait_s: int) -> object:
    """The end of a drain whose schedulers cannot exit: 0 requests, `wait_s` later the
    straggler line naming them, exit 0 by itself."""
    assert stopped, "no scheduler to stop"
    zero = watched.wait_for("Remaining number of requests 0.", 60)
    line = f"Schedulers still alive {wait_s}s after ShutdownReq, killing them before they released:"
    killed = watched.wait_for(line, wait_s + 60)
    assert killed - zero >= wait_s - 1.5, (killed - zero, wait_s)
    rc, _ = watched.wait_exit(60)
    out = watched.output()
    assert f"{line} {sorted(stopped)}" in out, out[-3000:]
    return ("Remaining number of requests 0.", "the stopped schedulers", rc)
