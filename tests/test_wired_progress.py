"""Hang detection by progress, wired into the supervisor (issue #14): real processes, the fake.

`run --stall-window 3 --progress-interval 0.5` on the fake SGLang with `--enable-metrics`: a
stalled engine (port open, counters frozen, a request waiting) is recycled well within 30 s with
a crash report naming the stall; an idle server and a slow streamed generation are not; without
metrics the watch says so once and the liveness probe still recycles a hung server. The unit
tests at the end drive `_on_scrape` and the death path with the in-memory manager.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from supervisor import (
    CrashReport,
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    OutcomeKind,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
)
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.testing import InMemoryProcessManager
from supervisor.testing.recording import RecordingSink
from tests._watch import Watched
from tests.conftest import cli, fake_argv

FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]
PROGRESS = ["--stall-window", "3", "--progress-interval", "0.5"]
CHAT = "/v1/chat/completions"


def run_cli(port: int, fake_flags: list[str], *flags: str) -> Watched:
    args = ["run", "--port", str(port), "--ready-line", "fired up", *flags, "--"]
    return Watched(cli(*args, *fake_argv(port, *FAST, *fake_flags)))


def chat(max_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, **extra}


def post_in_thread(url: str, body: dict[str, Any], timeout: float) -> threading.Thread:
    def go() -> None:
        try:
            httpx.post(url, json=body, timeout=timeout)
        except httpx.HTTPError:
            pass  # the supervisor kills the server under it: expected

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.process
def test_a_stalled_engine_is_recycled_with_a_report_naming_the_stall(port: int) -> None:
    fake = ["--enable-metrics", "--fake-fault", "stall", "--fake-stall-after-requests", "1"]
    with run_cli(port, [*fake, "--fake-token-time", "0.05"], *PROGRESS) as w:
        w.wait_for("state=serving", 30)
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(base + CHAT, json=chat(), timeout=10).status_code == 200
        w.wait_for("fake: scheduler stalled", 10)
        sent = time.monotonic()
        post_in_thread(base + CHAT, chat(), 60)  # taken, never answered
        rc, exited = w.wait_exit(30)
        out = w.output()
        assert rc == 1, out
        assert exited - sent < 30
        assert "CRASH REPORT" in out and out.count("CRASH REPORT") == 1
        report = next(line for line in out.splitlines() if "server died after serving" in line)
        assert "stalled (no forward progress for" in report
        assert "waiting sglang:http_requests_active" in report  # the waiting work
        assert "counters frozen at " in report  # the frozen counters, with their values
        assert "sglang:realtime_tokens_total=" in report.split("counters frozen at ")[1]
        assert "cause=stalled" in report
        assert "event=unhealthy (stalled: " in out
        assert "progress: idle -> " in out  # one line per verdict change


@pytest.mark.process
def test_an_idle_server_is_not_recycled(port: int) -> None:
    with run_cli(port, ["--enable-metrics"], *PROGRESS) as w:
        w.wait_for("state=serving", 30)
        time.sleep(6)  # two stall windows of nothing
        assert w.popen.poll() is None, w.output()
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 0, out
        assert "stalled" not in out and "CRASH REPORT" not in out
        assert "progress: idle" in out


@pytest.mark.process
def test_a_slow_streamed_generation_is_not_recycled(port: int) -> None:
    with run_cli(port, ["--enable-metrics", "--fake-token-time", "0.1"], *PROGRESS) as w:
        w.wait_for("state=serving", 30)
        body = chat(60, ignore_eos=True, stream=True)
        chunks = 0
        started = time.monotonic()
        with httpx.stream("POST", f"http://127.0.0.1:{port}{CHAT}", json=body, timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                chunks += line.startswith("data: {")
        assert time.monotonic() - started > 4  # 60 tokens at 0.1 s: longer than the window
        assert chunks >= 60
        time.sleep(1)
        assert w.popen.poll() is None, w.output()
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 0, out
        assert "stalled" not in out
        assert "progressing" in out


@pytest.mark.process
def test_without_metrics_one_line_says_so_and_liveness_still_recycles(port: int) -> None:
    fake = ["--fake-fault", "hang", "--fake-crash-after", "4"]
    live = ["--liveness-interval", "0.3", "--liveness-timeout", "0.5", "--liveness-failures", "3"]
    with run_cli(port, fake, *PROGRESS, *live) as w:
        w.wait_for("state=serving", 30)
        rc, _ = w.wait_exit(40)
        out = w.output()
        assert rc == 1, out
        off = (
            "no engine metrics at /metrics: hang detection by progress is off; "
            "the liveness probe remains"
        )
        assert out.count(off) == 1
        assert "3 liveness probes failed in a row" in out
        assert "stalled" not in out


@pytest.mark.process
def test_no_progress_and_bad_progress_flags(port: int) -> None:
    for flags, needle in (
        (["--stall-window", "0"], "--stall-window: must be a finite number > 0"),
        (["--progress-interval", "nan"], "--progress-interval: must be a finite number > 0"),
        (["--stall-window", "3"], "must be at least twice the scrape interval"),
    ):
        done = cli("run", "--port", str(port), *flags, "--", "true")
        out, _ = done.communicate(timeout=30)
        assert done.returncode == 2, out
        assert needle in out and len(out.strip().splitlines()) == 1, out
    fake = ["--enable-metrics", "--fake-fault", "stall", "--fake-crash-after", "0.5"]
    with run_cli(port, fake, "--no-progress", *PROGRESS) as w:
        w.wait_for("fake: scheduler stalled", 30)
        time.sleep(4)  # longer than the window: nothing watches progress
        assert w.popen.poll() is None
        assert "progress:" not in w.output()
        w.signal(signal.SIGTERM)
        w.signal(signal.SIGTERM)  # a stalled engine never drains: kill now
        rc, _ = w.wait_exit(30)
        assert rc == 0, w.output()


# ============================================================================ in memory


class Body(httpx.AsyncByteStream):
    """A body httpx has not read yet: the scrape streams it raw, as from a socket."""

    def __init__(self, text: str) -> None:
        self.data = text.encode()

    async def __aiter__(self) -> Any:
        yield self.data


def metrics(running: int, decode: float, heartbeat: float) -> httpx.Response:
    return httpx.Response(200, stream=Body(metrics_text(running, decode, heartbeat)))


def metrics_text(running: int, decode: float, heartbeat: float) -> str:
    labels = 'model_name="m",engine_type="unified",tp_rank="0",pp_rank="0",moe_ep_rank="0"'
    return (
        f"sglang:num_running_reqs{{{labels}}} {running}\n"
        f"sglang:num_queue_reqs{{{labels}}} 0\n"
        f'sglang:realtime_tokens_total{{{labels},mode="decode"}} {decode}\n'
        f"sglang:scheduler_idle_seconds_total{{{labels}}} {heartbeat}\n"
    )


@pytest.mark.anyio
async def test_a_stall_takes_the_death_path_with_metrics_and_one_line_per_change() -> None:
    """Counters move, then freeze with work waiting: `stalled`, exit-1 outcome, metrics fed."""
    scrapes = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            scrapes["n"] += 1
            n = min(scrapes["n"], 3)  # moves for three scrapes, then stands still
            return metrics(1, 10.0 * n, float(n))
        return httpx.Response(200)

    sink = RecordingSink()
    reports: list[CrashReport] = []
    cfg = SupervisorConfig(
        launch=LaunchSpec(argv=("server",)),
        port=8000,
        health=HealthPolicy(startup_timeout=5, initial_backoff=0.01, max_backoff=0.02, jitter=0),
        liveness=LivenessPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
        progress=dataclasses.replace(
            SGLANG_PROGRESS, interval=0.05, timeout=0.05, stall_window=0.3
        ),
    )
    sup = Supervisor(
        cfg,
        manager=InMemoryProcessManager(),
        sink=sink,
        on_death=reports.append,
        transport=httpx.MockTransport(handler),
    )
    with anyio.fail_after(10):
        outcome = await sup.run()
    assert outcome.kind is OutcomeKind.DIED
    assert [r.reason for r in reports] == ["stalled"]
    report = reports[0]
    assert report.cause == "stalled" and report.failed_rank is None
    assert "sglang:num_running_reqs=1" in report.how
    assert "counters frozen at sglang:realtime_tokens_total=30" in report.how
    changes = [line for line in sink.lines if line.startswith("progress: ")]
    assert changes[0] == "progress: ok (1 waiting, counters still for 0.0 s)"
    assert changes[1] == "progress: ok -> progressing"
    assert changes[2].startswith("progress: progressing -> ok (1 waiting")
    assert changes[3].startswith("progress: ok -> stalled (1 waiting, counters still for 0.3")
    assert len(changes) == 4  # one line per change, none per scrape
    exposition = sup.metrics.exposition().decode()
    assert 'supervisor_progress_verdict{supervisor_progress_verdict="stalled"} 1.0' in exposition
    assert "supervisor_progress_waiting_work 1.0" in exposition
    assert 'supervisor_deaths_total{cause="stalled"} 1.0' in exposition


@pytest.mark.anyio
async def test_failed_scrapes_are_counted_and_said_once_per_run() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            calls["n"] += 1
            if calls["n"] in (2, 3, 5):
                return httpx.Response(500, text="boom")
            return metrics(0, 1.0, float(calls["n"]))
        return httpx.Response(200)

    sink = RecordingSink()
    cfg = SupervisorConfig(
        launch=LaunchSpec(argv=("server",)),
        port=8000,
        health=HealthPolicy(startup_timeout=5, initial_backoff=0.01, max_backoff=0.02, jitter=0),
        liveness=LivenessPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
        progress=dataclasses.replace(
            SGLANG_PROGRESS, interval=0.02, timeout=0.05, stall_window=0.5
        ),
    )
    manager = InMemoryProcessManager()
    sup = Supervisor(cfg, manager=manager, sink=sink, transport=httpx.MockTransport(handler))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        with anyio.fail_after(10):
            while calls["n"] < 7:
                await anyio.sleep(0.01)
        sup.stop()
    failed = [line for line in sink.lines if line.startswith("progress scrape failed")]
    assert len(failed) == 2, sink.lines  # the run 2-3 once, then 5 once
    assert "HTTP 500" in failed[0]
    exposition = sup.metrics.exposition().decode()
    assert "supervisor_progress_scrape_failures_total 3.0" in exposition


@pytest.mark.process
def test_one_wedged_dp_rank_is_recycled_while_the_others_serve(port: int) -> None:
    """sglang #32949: under DP attention one rank wedged with work on it, /health stayed 200 and
    the other ranks kept serving (so the engine's totals kept moving). Judged per rank
    (`dp_rank`), it is a stall; the report names the rank."""
    fake = [
        "--enable-metrics",
        "--enable-metrics-for-all-schedulers",
        "--enable-dp-attention",
        "--tp-size",
        "2",
        "--dp-size",
        "2",
        "--fake-fault",
        "dp-rank-stall",
    ]
    with run_cli(port, fake, *PROGRESS) as w:
        w.wait_for("state=serving", 30)
        base = f"http://127.0.0.1:{port}"
        stuck = post_in_thread(base + CHAT, chat(), 60)  # rank 0 answers, or rank 1 takes it
        answered = 0
        deadline = time.monotonic() + 30
        while w.popen.poll() is None and time.monotonic() < deadline:
            try:  # rank 0 keeps serving every other request: its counters keep moving
                r = httpx.post(base + CHAT, json=chat(), timeout=2)
                answered += r.status_code == 200
            except httpx.HTTPError:
                post_in_thread(base + CHAT, chat(), 60)
            time.sleep(0.2)
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 1, out
        assert answered >= 1, out  # the other rank served while rank 1 was wedged
        report = next(line for line in out.splitlines() if "server died after serving" in line)
        assert "rank dp_rank=1 (the other ranks serve): no forward progress" in report, report
        assert "cause=stalled" in report
        stuck.join(0)
