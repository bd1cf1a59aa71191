"""Black-box tests of `python -m supervisor run`: real processes, real sockets, real signals.

Each test corresponds to a line of the core issue's "Done when". Bounds on time are the issue's
own (1 s, 2 s, stop timeout + 2 s); they are 5-20x what the code needs on an idle machine.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import ROOT, cli, fake_argv

FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]


def run_cli(
    port: int, fake_flags: list[str], *flags: str, env: dict[str, str] | None = None
) -> Watched:
    args = [
        "run",
        "--port",
        str(port),
        "--ready-line",
        "fired up",
        *flags,
        "--",
        *fake_argv(port, *fake_flags),
    ]
    return Watched(cli(*args, env=env))


def test_demo_reaches_serving_answers_and_stops_with_exit_0(port: int) -> None:
    with run_cli(port, [*FAST, "--tp-size", "2", "--fake-grandchildren"]) as w:
        w.wait_for("state=serving", 30)
        tree = w.tree()
        # keeper (and its inner keeper under gVisor), main, two schedulers, a grandchild each
        assert len(tree) - w.keepers(tree) == 5, tree
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "fake/model"
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(30)
        assert rc == 0, w.output()
        assert w.alive(tree) == []
        assert "state=stopping" in w.output() and "state=dead" in w.output()


def test_death_after_serving_exits_1_within_1s_and_leaves_no_process(port: int) -> None:
    with run_cli(
        port,
        [
            *FAST,
            "--tp-size",
            "2",
            "--fake-grandchildren",
            "--fake-fault",
            "crash-after-serving",
            "--fake-crash-after",
            "0.5",
        ],
    ) as w:
        w.wait_for("state=serving", 30)
        tree = w.tree()
        died = w.wait_for("It usually means one child failed.", 10)
        rc, exited = w.wait_exit(10)
        assert rc == 1, w.output()
        assert len(tree) >= 5 and w.alive(tree) == []
        assert exited - died < 1.0, f"took {exited - died:.2f} s"
        out = w.output()
        assert "CRASH REPORT" in out and "signal SIGKILL" in out
        assert out.count("CRASH REPORT") == 1
    # the autouse fixture fails the test if any scheduler or grandchild is still alive


def test_death_while_loading_exits_3_within_2s_with_cause(port: int) -> None:
    with run_cli(
        port, ["--fake-load-time", "1", "--fake-fault", "crash-loading", "--tp-size", "2"]
    ) as w:
        died = w.wait_for("scheduler died during initialization", 30)
        rc, exited = w.wait_exit(10)
        assert rc == 3, w.output()
        assert exited - died < 2.0
        assert "startup failed" in w.output() and "exit code 1" in w.output()
        assert "OOM killer" in w.output()  # the cause, from its own output


def test_port_that_never_answers_exits_3_at_startup_timeout(port: int) -> None:
    args = [
        "run",
        "--port",
        str(port),
        "--startup-timeout",
        "2",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    ]
    start = time.monotonic()
    with Watched(cli(*args)) as w:
        rc, exited = w.wait_exit(20)
        assert rc == 3, w.output()
        assert 2.0 <= exited - start < 10.0
        assert "did not answer 200 within 2 s" in w.output()
        assert "connection refused" in w.output()


def test_health_503_forever_times_out_with_last_status(port: int) -> None:
    with run_cli(port, [*FAST, "--fake-fault", "health-503"], "--startup-timeout", "3") as w:
        rc, _ = w.wait_exit(20)
        assert rc == 3
        assert "last probe: HTTP 503" in w.output()


def test_hung_server_is_recycled_once_liveness_budget_is_spent(port: int) -> None:
    with run_cli(
        port,
        [*FAST, "--fake-fault", "hang", "--fake-crash-after", "0.5"],
        "--liveness-interval",
        "0.3",
        "--liveness-timeout",
        "0.5",
        "--liveness-failures",
        "3",
    ) as w:
        w.wait_for("state=serving", 30)
        hung = w.wait_for("hanging with the port open", 10)
        rc, exited = w.wait_exit(15)
        assert rc == 1, w.output()
        # 3 probes of at most 0.3 s wait + 0.5 s timeout each, plus the kill
        assert exited - hung < 6.0
        assert "stopped answering" in w.output() and "3 liveness probes failed" in w.output()


def test_sigterm_exits_0_within_stop_timeout_even_when_the_tree_resists(port: int) -> None:
    with run_cli(
        port,
        [*FAST, "--tp-size", "2", "--fake-grandchildren", "--fake-fault", "ignore-sigterm"],
        "--stop-timeout",
        "1.5",
    ) as w:
        w.wait_for("state=serving", 30)
        tree = w.tree()
        keepers = w.keepers(tree)
        t0 = time.monotonic()
        w.signal(signal.SIGTERM)
        rc, exited = w.wait_exit(15)
        assert rc == 0, w.output()
        assert len(tree) - keepers == 5 and w.alive(tree) == []
        assert exited - t0 < 1.5 + 2.0
        assert "still running after 1.5 s; SIGKILL" in w.output()


def test_escaped_scheduler_is_killed_when_main_dies(port: int) -> None:
    with run_cli(
        port,
        [
            *FAST,
            "--tp-size",
            "2",
            "--fake-fault",
            "escape",
            "--fake-fault",
            "crash-after-serving",
            "--fake-crash-after",
            "0.3",
        ],
    ) as w:
        w.wait_for("state=serving", 30)
        tree = w.tree()
        rc, _ = w.wait_exit(10)
        assert rc == 1, w.output()
        assert len(tree) >= 3 and w.alive(tree) == []  # the escaped scheduler included


def test_four_warmups_of_1s_run_concurrently_under_2s(port: int, tmp_path: Path) -> None:
    payloads = [
        {
            "name": f"w{i}",
            "path": "/v1/chat/completions",
            "expect": "content",
            "body": {"model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]},
        }
        for i in range(4)
    ]
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps(payloads))
    with run_cli(port, [*FAST, "--fake-gen-time", "1.0"], "--warmup", str(warmup)) as w:
        warm = w.wait_for("state=warm", 30)
        serving = w.wait_for("state=serving", 30)
        assert serving - warm < 2.0, f"warmup took {serving - warm:.2f} s"
        assert w.output().count("verdict=ok") == 4
        w.signal(signal.SIGTERM)
        assert w.wait_exit(30)[0] == 0


def test_failed_warmup_exits_3_and_says_which(port: int, tmp_path: Path) -> None:
    warmup = tmp_path / "warmup.json"
    warmup.write_text(
        json.dumps(
            [
                {
                    "name": "tools",
                    "path": "/v1/chat/completions",
                    "expect": ["tool_calls"],
                    "body": {"messages": [{"role": "user", "content": "hi"}]},
                }
            ]
        )
    )
    with run_cli(port, FAST, "--warmup", str(warmup)) as w:
        rc, _ = w.wait_exit(30)
        assert rc == 3
        assert "warmup failed: tools: tool_calls is missing" in w.output()


def test_api_key_never_appears_in_output(port: int, tmp_path: Path) -> None:
    key = "sk-very-secret-0123456789"
    warmup = tmp_path / "warmup.json"
    warmup.write_text(
        json.dumps(
            [
                {
                    "name": "chat",
                    "path": "/v1/chat/completions",
                    "expect": "content",
                    "body": {"messages": [{"role": "user", "content": "hi"}]},
                }
            ]
        )
    )
    with run_cli(
        port,
        [
            *FAST,
            "--api-key",
            key,
            "--fake-fault",
            "crash-after-serving",
            "--fake-crash-after",
            "0.5",
        ],
        "--api-key-env",
        "TEST_KEY",
        "--warmup",
        str(warmup),
        env={"TEST_KEY": key},
    ) as w:
        rc, _ = w.wait_exit(30)
        assert rc == 1
        out = w.output()
        assert "verdict=ok" in out  # the key was used: the warmup passed the 401 check
        assert key not in out
        assert "'api_key': '***'" in out and "--api-key ***" in out


def test_missing_api_key_variable_is_a_usage_error(port: int) -> None:
    w = Watched(
        cli(
            "run",
            "--port",
            str(port),
            "--api-key-env",
            "NOPE_NOT_SET",
            "--",
            "true",
            env={"NOPE_NOT_SET": ""},
        )
    )
    rc, _ = w.wait_exit(20)
    assert rc == 2
    assert "NOPE_NOT_SET is not set" in w.output()


def test_bad_command_is_a_usage_error_with_one_line(port: int) -> None:
    w = Watched(cli("run", "--port", str(port), "--", "/no/such/binary"))
    rc, _ = w.wait_exit(20)
    assert rc == 2
    assert "command not found: '/no/such/binary'" in w.output()


def test_bad_warmup_file_is_a_usage_error(port: int, tmp_path: Path) -> None:
    bad = tmp_path / "w.json"
    bad.write_text('[{"name": "x", "path": "/v1/chat/completions"}]')
    w = Watched(cli("run", "--port", str(port), "--warmup", str(bad), "--", "true"))
    rc, _ = w.wait_exit(20)
    assert rc == 2
    assert "is missing ['body']" in w.output()


@pytest.mark.slow
def test_log_flood_is_forwarded_whole_without_slowing_the_child(port: int, tmp_path: Path) -> None:
    lines = 300_000
    out = tmp_path / "out.log"
    args = [
        "run",
        "--port",
        str(port),
        "--ready-line",
        "fired up",
        "--",
        *fake_argv(port, *FAST, "--fake-fault", "log-flood", "--fake-flood-lines", str(lines)),
    ]
    with out.open("w") as sink:
        popen = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args], stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 120
            while "flood done" not in out.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            popen.send_signal(signal.SIGTERM)
            assert popen.wait(30) == 0
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
    text = out.read_text()
    assert text.count("Decode batch, #running-req: 1") == lines
    took = float(text.split("flood done lines=")[1].split("seconds=")[1].split()[0])
    # The same child writing into `cat > /dev/null`, measured now on this machine. The goal
    # (1.5x) is measured in benchmarks/; this bound is generous so that only a real regression
    # (a pump that lets the pipe fill, as a slow redaction once did at 13x) breaks it.
    baselines = []
    for _ in range(3):
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        result = tmp_path / "cat.json"
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "flood_child.py"), str(lines), str(result)],
            stderr=cat.stdin,
            check=True,
        )
        cat.stdin.close()
        cat.wait()
        baselines.append(json.loads(result.read_text())["seconds"])
    assert took < max(4 * min(baselines), min(baselines) + 2.0), (took, baselines)


def test_sglang_warmup_error_is_a_startup_failure_with_its_cause(port: int) -> None:
    args = [
        "serve",
        "--profile",
        "qwen3-8b",
        "--fake",
        "--port",
        str(port),
        "--fake-arg=--fake-load-time=0.2",
        "--fake-arg=--fake-warmup-time=0.2",
        "--fake-arg=--fake-fault=warmup-error",
    ]
    with Watched(cli(*args)) as w:
        rc, _ = w.wait_exit(60)
        assert rc == 3
        # the fake's warmup error is an illegal memory access: the GPU fault outranks "warmup failed"
        assert "signal SIGKILL (cause: gpu-illegal-memory-access" in w.output()


def test_slow_sglang_warmup_is_waited_out_through_503(port: int) -> None:
    # SGLang's own warmup: the port is open and /health says 503 for 20 x 0.25 s, long enough
    # for a backoff probe to land in it even on a loaded machine.
    with run_cli(
        port,
        ["--fake-load-time", "0.2", "--fake-warmup-time", "0.25", "--fake-fault", "slow-warmup"],
    ) as w:
        w.wait_for("state=serving", 30)
        probes = [line for line in w.output().splitlines() if "health probe:" in line]
        assert [p.split("health probe: ")[1] for p in probes] == [
            "connection refused",
            "HTTP 503",
            "HTTP 200",
        ]
        w.signal()
        assert w.wait_exit(30)[0] == 0


def test_metrics_port_serves_the_supervisor_metrics(port: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from supervisor.testing import free_port

    mport = free_port()
    with run_cli(port, FAST, "--metrics-port", str(mport)) as w:
        w.wait_for("state=serving", 30)
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        state = {
            s.labels["supervisor_state"]: s.value for s in families["supervisor_state"].samples
        }
        assert state["serving"] == 1.0 and state["starting"] == 0.0
        phases = {s.labels["phase"] for s in families["supervisor_startup_phase_seconds"].samples}
        assert {"spawn", "healthy", "total"} <= phases
        assert any(s.value > 0 for s in families["supervisor_log_lines"].samples)
        w.signal()
        assert w.wait_exit(30)[0] == 0


def test_a_200kb_log_line_passes_whole_and_redacted(port: int, tmp_path: Path) -> None:
    # asyncio's StreamReader.readline gives up at 64 KiB; SGLang's server_args line can be longer.
    key = "k-long-line-secret"
    with run_cli(
        port,
        [*FAST, "--api-key", key, "--fake-long-line", "200000"],
        "--api-key-env",
        "LL_KEY",
        env={"LL_KEY": key},
    ) as w:
        w.wait_for("state=serving", 30)
        line = next(line for line in w.output().splitlines() if "server_args={" in line)
        assert len(line) > 200_000 and line.endswith("x'}")
        assert key not in w.output() and "'api_key': '***'" in line
        w.signal()
        assert w.wait_exit(30)[0] == 0


# --------------------------------------------------------------------------- hardening (#12)
class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def stale_server(port: int) -> Iterator[http.server.ThreadingHTTPServer]:
    """Something else answering 200 on the port: a server left behind by a previous run."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_stale_server_on_the_port_is_refused_before_spawning(port: int) -> None:
    with stale_server(port):
        w = Watched(cli("run", "--port", str(port), "--", *SLEEPER))
        rc, _ = w.wait_exit(20)
    assert rc == 2, w.output()
    assert w.output().strip().splitlines()[-1] == (
        f"python -m supervisor: error: port {port} on 127.0.0.1 is already in use (a stale "
        "server?): stop it or choose another port"
    )
    assert "spawned" not in w.output() and "state=warm" not in w.output()


def test_a_stale_server_that_answers_for_a_silent_child_fails_startup(port: int) -> None:
    # The port was free when checked; then something else took it while the child never listens.
    with Watched(cli("run", "--port", str(port), "--startup-timeout", "30", "--", *SLEEPER)) as w:
        w.wait_for("spawned pid=", 20)
        with stale_server(port):
            rc, _ = w.wait_exit(30)
    assert rc == 3, w.output()
    out = w.output()
    assert f"answered, but port {port} is held by pid {os.getpid()}" in out
    assert "state=serving" not in out and "state=warm" not in out


def test_the_metrics_port_must_not_be_the_servers_port(port: int) -> None:
    w = Watched(cli("run", "--port", str(port), "--metrics-port", str(port), "--", *SLEEPER))
    rc, _ = w.wait_exit(20)
    assert rc == 2
    lines = w.output().strip().splitlines()
    assert len(lines) == 1 and "is the server's own port" in lines[0], lines


def test_a_taken_metrics_port_is_one_line_exit_2(port: int) -> None:
    with stale_server(free_port()) as taken:
        mport = taken.server_address[1]
        w = Watched(cli("run", "--port", str(port), "--metrics-port", str(mport), "--", *SLEEPER))
        rc, _ = w.wait_exit(20)
    assert rc == 2
    assert w.output().strip().splitlines() == [
        f"python -m supervisor: error: --metrics-port {mport}: cannot listen (Address already in use)"
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_during_startup_is_acknowledged_and_still_exits_0(
    port: int, signum: int
) -> None:
    with run_cli(port, ["--fake-load-time", "20", "--tp-size", "2"]) as w:
        w.wait_for("health probe: connection refused", 20)
        w.signal(signum)
        w.wait_for("stopping", 10)
        w.signal(signum)
        rc, _ = w.wait_exit(20)
        assert rc == 0, w.output()
        name = signal.Signals(signum).name
        assert f"received {name}: stopping" in w.output()
        assert f"received {name} again" in w.output()


def test_a_second_signal_after_the_tree_is_dead_changes_nothing(port: int) -> None:
    # The child dies of the first SIGTERM at once; the second lands while the CLI winds down.
    with Watched(cli("run", "--port", str(port), "--", *SLEEPER)) as w:
        w.wait_for("spawned pid=", 20)
        w.signal(signal.SIGTERM)
        w.wait_for("state=dead", 10)
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(20)
    assert rc == 0, w.output()


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_idle_metrics_connections_never_take_the_server_down(port: int) -> None:
    mport = free_port()
    w = Watched(
        cli(
            "run",
            "--port",
            str(port),
            "--ready-line",
            "fired up",
            "--metrics-port",
            str(mport),
            "--",
            *fake_argv(port, *FAST),
            preexec_fn=_low_fd_limit,  # 128 descriptors: 400 connections would exhaust them
        )
    )
    with w:
        w.wait_for("state=serving", 30)
        idle = [socket.create_connection(("127.0.0.1", mport), timeout=5) for _ in range(400)]
        try:
            time.sleep(2)
            assert w.popen.poll() is None, w.output()
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 20
        while True:  # the endpoint itself recovers once the idle clients are gone
            try:
                if httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the metrics endpoint never recovered"
            time.sleep(0.2)
        assert "state=dead" not in w.output()
        w.signal()
        rc, _ = w.wait_exit(30)
        assert rc == 0, w.output()
        assert "Traceback" not in w.output()


def test_a_bad_flag_through_the_real_cli_is_one_line_exit_2() -> None:
    """The flag checks themselves are the fast tier's (tests/test_cli_flags.py); this is the
    contract end to end: a real process, one line on its output, exit 2, nothing started."""
    w = Watched(cli("run", "--port", "8000", "--startup-timeout", "nan", "--", *SLEEPER))
    rc, _ = w.wait_exit(20)
    lines = w.output().strip().splitlines()
    assert rc == 2, w.output()
    assert len(lines) == 1 and "argument --startup-timeout: must be a finite number" in lines[0]


def test_a_warmup_path_that_is_a_directory_is_one_line_exit_2(port: int, tmp_path: Path) -> None:
    w = Watched(cli("run", "--port", str(port), "--warmup", str(tmp_path), "--", *SLEEPER))
    rc, _ = w.wait_exit(20)
    lines = w.output().strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "cannot read it" in lines[0], lines


DEMO_FAST = [
    "--fake-arg=--fake-load-time=0.3",
    "--fake-arg=--fake-warmup-time=0.2",
    "--fake-arg=--fake-time-scale=0.1",
]


def demo_key(w: Watched) -> str:
    line = next(line for _, line in w.lines if line.startswith("export OPENAI_BASE_URL="))
    return line.split("OPENAI_API_KEY=")[1].split()[0]


def test_demo_runs_with_a_key_shown_once_and_refuses_requests_without_it(port: int) -> None:
    with Watched(cli("demo", "--port", str(port), *DEMO_FAST)) as w:
        w.wait_for("state=serving", 60)
        key = demo_key(w)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/models", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/models", headers=auth, timeout=5).status_code == 200
        w.signal()
        assert w.wait_exit(30)[0] == 0
        assert w.output().count(key) == 1, "the demo key must be shown once, then redacted"
        assert " --config " in w.output() and "--api-key" not in w.output()  # keys in a file
        # the printed line pastes into a shell as it is
        export = next(line for _, line in w.lines if line.startswith("export OPENAI_BASE_URL="))
        echo = 'printf "%s %s" "$OPENAI_BASE_URL" "$OPENAI_API_KEY"'
        pasted = subprocess.run(
            ["bash", "-c", f"{export}\n{echo}"], capture_output=True, text=True, timeout=10
        )
        assert pasted.returncode == 0 and pasted.stdout == f"{base}/v1 {key}", pasted


def test_demo_restarts_at_once_on_the_port_it_just_left(port: int) -> None:
    # A stopped server leaves its port in TIME_WAIT; the preflight must not take that for "taken".
    env = {"RESTART_KEY": "restart-secret"}
    auth = {"Authorization": "Bearer restart-secret"}
    for run in range(2):
        args = ["demo", "--port", str(port), "--api-key-env", "RESTART_KEY", *DEMO_FAST]
        with Watched(cli(*args, env=env)) as w:
            w.wait_for("state=serving", 60)
            with httpx.Client() as client:  # keep-alive: the server closes first on its way out
                r = client.get(f"http://127.0.0.1:{port}/v1/models", headers=auth, timeout=5)
                assert r.status_code == 200
                w.signal()
                assert w.wait_exit(30)[0] == 0, f"run {run}: {w.output()}"


def test_demo_help_lists_only_the_demos_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    ).stdout
    for flag in ("--port", "--api-key-env", "--warmup", "--fake-arg", "--metrics-port"):
        assert flag in out
    for flag in ("--engine-command", "--liveness-interval", "--dry-run", "--model-path", "--fake "):
        assert flag not in out, flag
    assert "exit codes:" in out


def test_serve_refuses_a_missing_warmup_file_in_one_line(port: int, tmp_path: Path) -> None:
    args = ["serve", "--profile", "qwen3-8b", "--fake", "--port", str(port)]
    w = Watched(cli(*args, "--warmup", str(tmp_path / "missing.json")))
    rc, _ = w.wait_exit(30)
    lines = w.output().strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "no such file" in lines[0], lines


def test_serve_adds_the_warmup_file_to_the_profiles_set(port: int, tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            [
                {
                    "name": "my-traffic",
                    "path": "/v1/chat/completions",
                    "expect": "content",
                    "body": {"messages": [{"role": "user", "content": "hi"}]},
                }
            ]
        )
    )
    args = ["serve", "--profile", "qwen3-8b", "--fake", "--port", str(port), *DEMO_FAST]
    with Watched(cli(*args, "--warmup", str(extra))) as w:
        w.wait_for("state=serving", 60)
        verdicts = [line for line in w.output().splitlines() if "verdict=ok" in line]
        assert any("my-traffic" in line for line in verdicts), w.output()
        assert len(verdicts) >= 2, "the profile's own payloads must still run"
        w.signal()
        assert w.wait_exit(30)[0] == 0


def test_a_reader_that_goes_away_does_not_take_the_server_down(port: int) -> None:
    """`... | head -2`: the pipe breaks; the supervisor keeps serving and still exits 0 on SIGTERM."""
    proc = cli("run", "--port", str(port), "--no-liveness", "--", *fake_argv(port, *FAST))
    assert proc.stdout is not None
    for _ in range(2):
        proc.stdout.readline()
    proc.stdout.close()  # the reader is gone: every later write of the supervisor gets EPIPE
    deadline = time.monotonic() + 30
    served = 0
    while time.monotonic() < deadline and served < 5:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                served += 1  # each request makes the fake log a line: a write into the gone pipe
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert served == 5
    time.sleep(1)
    assert proc.poll() is None, f"the supervisor died with {proc.returncode}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
