"""Hang detection by progress: the pure tracker on an injected clock, then `watch_progress` against
a real HTTP server on 127.0.0.1 (frozen counters, advancing counters, 404, an endless body, a
trickle, a refused port), and SGLang's multiprocess exposition as prometheus_client writes it."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest
from prometheus_client.samples import Sample

from supervisor._errors import ConfigError
from supervisor._progress import ProgressPolicy, Selector, Verdict
from supervisor._progress_tracker import ProgressTracker, StallReport
from supervisor._progress_watch import Scrape, parse_samples, watch_progress
from supervisor.engines.sglang_progress import (
    SGLANG_PROGRESS,
    SGLANG_PROGRESS_COUNTERS,
    SGLANG_WORK_GAUGES,
)

pytestmark = pytest.mark.anyio

LABELS = {
    "model_name": "glm-5.1",
    "engine_type": "unified",
    "tp_rank": "0",
    "pp_rank": "0",
    "moe_ep_rank": "0",
}


def sglang(
    running: float = 0,
    queued: float = 0,
    decode: float = 0,
    prefill: float = 0,
    http: float | None = None,
    beat: float | None = None,
) -> list[Sample]:
    """The samples SGLang 0.5.23 exposes for the series the tracker reads."""
    samples = [
        Sample("sglang:num_running_reqs", dict(LABELS), running),
        Sample("sglang:num_queue_reqs", dict(LABELS), queued),
        Sample("sglang:realtime_tokens_total", {**LABELS, "mode": "decode"}, decode),
        Sample("sglang:realtime_tokens_total", {**LABELS, "mode": "prefill_compute"}, prefill),
    ]
    if http is not None:
        chat = {"endpoint": "/v1/chat/completions", "method": "POST"}
        samples.append(Sample("sglang:http_requests_active", chat, http))
        # The scrape itself and a liveness probe are in flight too; neither is work.
        samples.append(Sample("sglang:http_requests_active", {"endpoint": "/metrics"}, 1.0))
        samples.append(Sample("sglang:http_requests_active", {"endpoint": "/health"}, 1.0))
    if beat is not None:
        for rank in ("0", "1"):
            labels = {**LABELS, "tp_rank": rank}
            samples.append(Sample("sglang:scheduler_process_cpu_seconds_total", labels, beat))
            samples.append(Sample("sglang:scheduler_idle_seconds_total", labels, beat / 2))
    return samples


def policy(**kw: object) -> ProgressPolicy:
    base: dict[str, object] = {"interval": 1.0, "stall_window": 10.0}
    base.update(kw)
    return dataclasses.replace(SGLANG_PROGRESS, **base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- policy
def test_default_policy_and_names() -> None:
    p = SGLANG_PROGRESS
    assert (p.path, p.interval, p.timeout, p.stall_window) == ("/metrics", 4.0, 3.0, 40.0)
    assert p.max_body_bytes == 8 << 20 and p.absent_scrapes == 3 and p.enabled and p.watches
    assert p.work_gauges == SGLANG_WORK_GAUGES and p.progress_counters == SGLANG_PROGRESS_COUNTERS
    assert "sglang:realtime_tokens_total" in p.names
    assert "sglang:num_running_reqs" in p.names


def test_the_cores_default_reads_no_engines_metrics_so_it_watches_nothing() -> None:
    """The core ships no SGLang fact: an engine's selectors come through the seam."""
    p = ProgressPolicy()
    assert p.enabled and not p.watches and p.names == frozenset()
    with pytest.raises(ConfigError, match="work gauges and progress counters together"):
        ProgressPolicy(work_gauges=SGLANG_WORK_GAUGES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "metrics"}, "must start with '/'"),
        ({"interval": 0}, "interval must be a finite number > 0"),
        ({"timeout": float("inf")}, "timeout must be a finite number > 0"),
        ({"stall_window": 1.5}, "at least twice the scrape interval"),
        ({"max_body_bytes": 10}, "body cap must be >= 1024"),
        ({"absent_scrapes": 0}, "absent scrapes must be a whole number >= 1"),
        ({"work_gauges": ()}, "work gauges and progress counters together"),
        ({"progress_counters": ()}, "work gauges and progress counters together"),
        ({"progress_counters": ("sglang:x",)}, "each progress counter must be a Selector"),
        (
            {"progress_counters": (Selector("sglang:num_queue_reqs"),)},
            "cannot be both a work gauge and a progress counter",
        ),
        (
            {"heartbeat_counters": (Selector("sglang:realtime_tokens_total"),)},
            "cannot be both a progress counter and a heartbeat counter",
        ),
        ({"heartbeat_counters": ()}, "request gauges need heartbeat counters"),
    ],
)
def test_policy_rejects_with_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        policy(**kwargs)
    assert "\n" not in str(info.value)


def test_selector_validation_and_label_rule() -> None:
    with pytest.raises(ConfigError, match="not a Prometheus metric name"):
        Selector("bad name")
    with pytest.raises(ConfigError, match="not a Prometheus label name"):
        Selector("ok", {"1x": ("a",)})
    with pytest.raises(ConfigError, match="one or more string values"):
        Selector("ok", {"mode": ()})
    lone = Selector("x", {"mode": "decode"})  # type: ignore[dict-item]
    assert lone.labels["mode"] == ("decode",)  # a lone string is one value, not its letters
    sel = Selector("sglang:num_queue_reqs", {"priority": ("",)})
    assert sel.matches("sglang:num_queue_reqs", {"tp_rank": "0"})  # absent label reads as ""
    assert sel.matches("sglang:num_queue_reqs", {"priority": ""})
    assert not sel.matches("sglang:num_queue_reqs", {"priority": "3"})
    assert not sel.matches("sglang:num_running_reqs", {})
    assert str(sel) == 'sglang:num_queue_reqs{priority=~""}'


# --------------------------------------------------------------------------- tracker
def test_idle_server_never_stalls() -> None:
    tracker = ProgressTracker(policy())
    verdicts = {tracker.observe(sglang(decode=500), float(t)).verdict for t in range(0, 300)}
    assert verdicts == {Verdict.IDLE}


def test_slow_decode_with_counters_moving_never_stalls() -> None:
    # 0.1 s/token would move the counter at every scrape; be harsher: one move every 3 s.
    tracker = ProgressTracker(policy())
    seen = []
    for t in range(0, 90):
        seen.append(tracker.observe(sglang(running=1, decode=t // 3), float(t)).verdict)
    assert Verdict.STALLED not in seen
    assert Verdict.PROGRESSING in seen and Verdict.OK in seen


def test_work_with_frozen_counters_stalls_after_the_window_from_first_sight() -> None:
    tracker = ProgressTracker(policy())
    assert tracker.observe(sglang(decode=7), 0.0).verdict is Verdict.IDLE
    # Work arrives at t=5 on a server idle since t=0: it gets the whole window from t=5.
    assert tracker.observe(sglang(queued=2, decode=7), 5.0).verdict is Verdict.OK
    assert tracker.observe(sglang(queued=2, decode=7), 14.9).verdict is Verdict.OK
    status = tracker.observe(sglang(queued=2, decode=7), 15.0)
    assert status.verdict is Verdict.STALLED
    assert status.frozen_for_s == pytest.approx(10.0)
    assert status.since_progress_s == pytest.approx(15.0)
    report = StallReport.from_status(status, 10.0)
    assert report.work == {
        'sglang:num_queue_reqs{engine_type="unified",model_name="glm-5.1",moe_ep_rank="0",'
        'pp_rank="0",tp_rank="0"}': 2.0
    }
    text = report.describe()
    assert "no forward progress for 10.0 s" in text
    assert "sglang:num_queue_reqs=2" in text
    assert "sglang:realtime_tokens_total=7 (2 series)" in text


def test_window_runs_from_the_last_progress_when_work_waits_throughout() -> None:
    tracker = ProgressTracker(policy())
    tracker.observe(sglang(running=1, decode=1), 0.0)
    assert tracker.observe(sglang(running=1, decode=2), 5.0).verdict is Verdict.PROGRESSING
    assert tracker.observe(sglang(running=1, decode=2), 14.0).verdict is Verdict.OK
    assert tracker.observe(sglang(running=1, decode=2), 15.0).verdict is Verdict.STALLED


def test_work_that_drains_restarts_the_clock() -> None:
    tracker = ProgressTracker(policy())
    tracker.observe(sglang(running=1), 0.0)
    tracker.observe(sglang(running=1), 9.0)
    assert tracker.observe(sglang(running=0), 9.5).verdict is Verdict.IDLE
    assert tracker.observe(sglang(running=1), 10.0).verdict is Verdict.OK
    assert tracker.observe(sglang(running=1), 19.0).verdict is Verdict.OK
    assert tracker.observe(sglang(running=1), 20.0).verdict is Verdict.STALLED


def test_counter_reset_and_new_series_count_as_progress() -> None:
    tracker = ProgressTracker(policy())
    tracker.observe(sglang(running=1, decode=100), 0.0)
    status = tracker.observe(sglang(running=1, decode=3), 9.0)  # went down: an engine restart
    assert status.verdict is Verdict.PROGRESSING and status.reset
    assert tracker.observe(sglang(running=1, decode=3), 18.0).verdict is Verdict.OK
    extra = [*sglang(running=1, decode=3), Sample("sglang:prompt_tokens_total", {}, 0.0)]
    assert tracker.observe(extra, 27.0).verdict is Verdict.PROGRESSING  # a series appeared
    assert tracker.observe(extra, 36.9).verdict is Verdict.OK


def test_nan_counter_that_stays_nan_is_not_progress() -> None:
    tracker = ProgressTracker(policy())
    tracker.observe(sglang(running=1, decode=float("nan")), 0.0)
    assert tracker.observe(sglang(running=1, decode=float("nan")), 10.0).verdict is Verdict.STALLED


def test_missing_metrics_say_no_metrics_and_leave_the_clock_alone() -> None:
    tracker = ProgressTracker(policy())
    assert tracker.observe([], 0.0).verdict is Verdict.NO_METRICS
    gauges_only = sglang(running=1)[:2]
    assert tracker.observe(gauges_only, 1.0).verdict is Verdict.NO_METRICS
    assert tracker.observe_absent(2.0).verdict is Verdict.NO_METRICS
    assert tracker.last_progress_at is None
    tracker.observe(sglang(running=1, decode=4), 3.0)
    for t in (5.0, 8.0, 12.0):  # scrapes without the names in between tell nothing
        assert tracker.observe(gauges_only, t).verdict is Verdict.NO_METRICS
    # Counters unchanged across the gap: they did not move during it.
    assert tracker.observe(sglang(running=1, decode=4), 13.0).verdict is Verdict.STALLED


def test_request_at_a_stopped_loop_is_waiting_work_though_the_gauges_say_zero() -> None:
    # A lone request at an idle server: SGLang's gauges read 0/0 until its 40th decode step,
    # and a forward that hangs never reports. The loop's heartbeat stops; the request waits.
    tracker = ProgressTracker(policy())
    first = tracker.observe(sglang(decode=9, http=0, beat=100), 0.0)
    assert first.verdict is Verdict.IDLE and first.loop_moved is None
    status = tracker.observe(sglang(decode=10, http=1, beat=101), 1.0)
    assert status.verdict is Verdict.PROGRESSING and status.loop_moved is True
    assert status.work == 0 and status.requests == 1  # loop turning: not counted
    status = tracker.observe(sglang(decode=10, http=1, beat=101), 2.0)
    assert status.loop_moved is False and status.work == 1 and status.verdict is Verdict.OK
    assert tracker.observe(sglang(decode=10, http=1, beat=101), 11.9).verdict is Verdict.OK
    status = tracker.observe(sglang(decode=10, http=1, beat=101), 12.0)
    assert status.verdict is Verdict.STALLED
    report = StallReport.from_status(status, 10.0)
    assert list(report.work) == [
        'sglang:http_requests_active{endpoint="/v1/chat/completions",method="POST"}'
    ]


def test_slow_stream_reader_at_a_live_idle_scheduler_never_stalls() -> None:
    # The engine finished; a client reads its stream slowly, so the request stays in flight.
    tracker = ProgressTracker(policy())
    verdicts = {
        tracker.observe(sglang(decode=50, http=1, beat=float(t)), float(t)).verdict
        for t in range(0, 120)
    }
    assert verdicts == {Verdict.IDLE}


def test_requests_do_not_count_without_a_heartbeat_reading() -> None:
    tracker = ProgressTracker(policy())
    for t in range(0, 60):
        status = tracker.observe(sglang(decode=50, http=3), float(t))
        assert status.verdict is Verdict.IDLE and status.loop_moved is None


def test_scheduler_gauges_count_even_while_the_loop_turns() -> None:
    # A loop that spins without forward progress (a livelock) still stalls on its own gauges.
    tracker = ProgressTracker(policy())
    for t in range(0, 10):
        assert tracker.observe(sglang(queued=4, beat=float(t)), float(t)).verdict is Verdict.OK
    assert tracker.observe(sglang(queued=4, beat=10.0), 10.0).verdict is Verdict.STALLED


def test_priority_breakdowns_are_not_counted_twice() -> None:
    tracker = ProgressTracker(policy())
    samples = [
        Sample("sglang:num_queue_reqs", {**LABELS, "priority": ""}, 3.0),
        Sample("sglang:num_queue_reqs", {**LABELS, "priority": "1"}, 3.0),
        Sample("sglang:num_running_reqs", {**LABELS, "priority": ""}, 0.0),
        Sample("sglang:realtime_tokens_total", {**LABELS, "mode": "decode"}, 1.0),
    ]
    assert tracker.observe(samples, 0.0).work == 3.0


def test_custom_engine_names() -> None:
    p = policy(
        work_gauges=(Selector("vllm:num_requests_running"), Selector("vllm:num_requests_waiting")),
        progress_counters=(Selector("vllm:generation_tokens_total"),),
    )
    tracker = ProgressTracker(p)
    own = [
        Sample("vllm:num_requests_running", {}, 1.0),
        Sample("vllm:num_requests_waiting", {}, 0.0),
        Sample("vllm:generation_tokens_total", {}, 9.0),
    ]
    assert tracker.observe(own, 0.0).verdict is Verdict.OK
    assert tracker.observe(own, 20.0).verdict is Verdict.STALLED
    assert tracker.observe(sglang(running=5, decode=1), 21.0).verdict is Verdict.NO_METRICS


# --------------------------------------------------------------------------- parsing
METRICS_TEXT = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="glm-5.1",tp_rank="0"} 1.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="glm-5.1",tp_rank="0"} 0.0
# HELP sglang:realtime_tokens_total Total number of tokens processed (updated on each log interval). mode: prefill_compute, prefill_cache, decode.
# TYPE sglang:realtime_tokens_total counter
sglang:realtime_tokens_total{engine_type="unified",mode="decode",model_name="glm-5.1",tp_rank="0"} {decode}
sglang:realtime_tokens_total_not_this{a="b"} 5.0
# TYPE sglang:http_requests_active gauge
sglang:http_requests_active{endpoint="/v1/chat/completions",method="POST"} {http}
sglang:http_requests_active{endpoint="/metrics",method="GET"} 1.0
# TYPE sglang:scheduler_process_cpu_seconds_total counter
sglang:scheduler_process_cpu_seconds_total{engine_type="unified",model_name="glm-5.1",tp_rank="0"} {beat}
# TYPE sglang:e2e_request_latency_seconds histogram
sglang:e2e_request_latency_seconds_bucket{le="0.1",model_name="glm-5.1"} 0.0
"""


def metrics_text(
    decode: float = 42.0, running: float = 1.0, http: float = 0.0, beat: float = 7.0
) -> str:
    text = METRICS_TEXT.replace("{decode}", repr(float(decode)))
    text = text.replace("{http}", repr(float(http))).replace("{beat}", repr(float(beat)))
    return text.replace('tp_rank="0"} 1.0', f'tp_rank="0"}} {float(running)}', 1)


def test_parse_keeps_only_watched_samples() -> None:
    samples = parse_samples(metrics_text(), SGLANG_PROGRESS.names)
    assert sorted(s.name for s in samples) == [
        "sglang:http_requests_active",
        "sglang:http_requests_active",
        "sglang:num_queue_reqs",
        "sglang:num_running_reqs",
        "sglang:realtime_tokens_total",
        "sglang:scheduler_process_cpu_seconds_total",
    ]
    decode = next(s for s in samples if s.name == "sglang:realtime_tokens_total")
    assert decode.labels["mode"] == "decode" and decode.value == 42.0
    with pytest.raises(ValueError):
        parse_samples('sglang:num_running_reqs{tp_rank="0" 1.0\n', SGLANG_PROGRESS.names)


@pytest.mark.process
def test_sglang_multiprocess_exposition_is_read() -> None:
    """prometheus_client in multiprocess mode, as SGLang runs it: two scheduler ranks and the
    tokenizer writing their own files, one collector reading them all (what /metrics serves)."""
    script = textwrap.dedent(
        """
        import os, sys, tempfile
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
        from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess
        from prometheus_client import values
        labels = ["model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank"]
        run = Gauge("sglang:num_running_reqs", "running", labelnames=labels, multiprocess_mode="mostrecent")
        queue = Gauge("sglang:num_queue_reqs", "queued", labelnames=labels, multiprocess_mode="mostrecent")
        rt = Counter("sglang:realtime_tokens_total", "tokens", labelnames=labels + ["mode"])
        gen = Counter("sglang:generation_tokens_total", "gen", labelnames=["model_name", "engine_type", "is_streaming"])
        cpu = Counter("sglang:scheduler_process_cpu_seconds_total", "cpu", labelnames=labels)
        active = Gauge("sglang:http_requests_active", "active", labelnames=["endpoint", "method"], multiprocess_mode="livesum")
        for rank in ("0", "1"):  # two processes' files, as --enable-metrics-for-all-schedulers writes
            values.ValueClass = values.MultiProcessValue(lambda rank=rank: 1000 + int(rank))
            lv = dict(model_name="glm-5.1", engine_type="unified", tp_rank=rank, pp_rank="0", moe_ep_rank="0")
            run.labels(**lv).set(2)
            queue.labels(**lv).set(1)
            rt.labels(**lv, mode="decode").inc(100)
            cpu.labels(**lv).inc(1.5)
        active.labels(endpoint="/v1/chat/completions", method="POST").inc()
        active.labels(endpoint="/metrics", method="GET").inc()
        gen.labels(model_name="glm-5.1", engine_type="unified", is_streaming="true").inc(7)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        sys.stdout.write(generate_latest(registry).decode())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "sglang:realtime_tokens_total{" in out  # the name carries _total, once
    assert "_created" not in out  # multiprocess mode writes no creation samples
    tracker = ProgressTracker(SGLANG_PROGRESS)
    samples = parse_samples(out, SGLANG_PROGRESS.names)
    status = tracker.observe(samples, 0.0)
    assert status.verdict is Verdict.OK
    assert status.work >= 3.0  # running and queued from at least one rank
    assert status.requests == 1.0  # the chat request; the scrape's own /metrics is not work
    assert any("generation_tokens_total" in k for k in status.counters)
    assert any('mode="decode"' in k for k in status.counters)
    again = tracker.observe(samples, 1.0)  # the same reading: the loop stopped
    assert again.loop_moved is False and again.work == status.work + 1.0


# --------------------------------------------------------------------------- watch_progress
@dataclass
class MetricsServer:
    """A real HTTP server in a thread, serving whatever `mode` says at the moment."""

    mode: str = "metrics"  # metrics | advancing | 404 | endless | trickle | gzip
    decode: float = 42.0
    running: float = 1.0
    http: float = 0.0
    beat: float = 7.0
    beating: bool = False  # the heartbeat moves at every GET (a live scheduler loop)
    gets: int = 0
    disconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0


def _handler(state: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with state.lock:
                state.gets += 1
                if state.mode == "advancing":
                    state.decode += 1
                if state.beating:
                    state.beat += 1
                text = metrics_text(state.decode, state.running, state.http, state.beat)
                mode, body = state.mode, text.encode()
            try:
                if mode == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                if mode == "gzip":
                    self.send_header("Content-Encoding", "gzip")
                if mode in ("metrics", "advancing", "gzip"):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.end_headers()  # no length: the body ends when the connection closes
                if mode == "endless":
                    line = b'sglang:num_queue_reqs{tp_rank="0"} 1.0\n' * 1000
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        self.wfile.write(line)
                elif mode == "trickle":
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        self.wfile.write(b"#")
                        self.wfile.flush()
                        time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                with state.lock:
                    state.disconnects += 1

    return Handler


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    state = MetricsServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def fast(**kw: object) -> ProgressPolicy:
    base: dict[str, object] = {"interval": 0.05, "timeout": 1.0, "stall_window": 0.4}
    base.update(kw)
    return dataclasses.replace(SGLANG_PROGRESS, **base)  # type: ignore[arg-type]


def url(state: MetricsServer) -> str:
    return f"http://127.0.0.1:{state.port}/metrics"


async def first_scrapes(target: str, policy: ProgressPolicy, count: int) -> list[Scrape]:
    """Watch until `count` scrapes are in (10 s at most), then stop; the watch must not return."""
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(10) as scope:

            def hook(scrape: Scrape) -> None:
                scrapes.append(scrape)
                if len(scrapes) >= count:
                    scope.cancel()

            returned = await watch_progress(client, target, policy, on_scrape=hook)
            raise AssertionError(f"watch_progress returned {returned}")
    assert len(scrapes) >= count, f"only {len(scrapes)} scrapes in 10 s"
    return scrapes


async def test_frozen_counters_with_a_running_request_return_a_stall_report(
    server: MetricsServer,
) -> None:
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(10):
            report = await watch_progress(client, url(server), fast(), on_scrape=scrapes.append)
    assert report.stalled_for_s >= 0.4 - 1e-6  # grid times: equal up to an ulp
    assert list(report.work.values()) == [1.0]
    assert list(report.counters.values()) == [42.0]
    assert scrapes[-1].verdict is Verdict.STALLED
    assert {s.verdict for s in scrapes[:-1]} == {Verdict.OK}
    assert scrapes[-1].last_progress_unix is not None
    assert scrapes[-1].last_progress_unix <= time.time() - 0.4 + 1e-6
    assert server.gets == len(scrapes)  # one GET per scrape, never two at once


async def test_stall_lands_on_the_scrape_that_ends_the_window(server: MetricsServer) -> None:
    """Scrapes are judged at their grid times, so a window of 4 intervals ends on the 5th
    scrape, not one interval late because an answer came back a little faster."""
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(10):
            report = await watch_progress(
                client,
                url(server),
                fast(interval=0.2, stall_window=0.8),
                on_scrape=scrapes.append,
            )
    assert report.stalled_for_s == pytest.approx(0.8)
    gaps = [b.at - a.at for a, b in itertools.pairwise(scrapes)]
    assert gaps == pytest.approx([0.2] * len(gaps))


async def test_lone_request_at_a_hung_scheduler_returns_a_stall_report(
    server: MetricsServer,
) -> None:
    server.running, server.http = 0.0, 1.0  # gauges say idle; the HTTP front end holds one
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(10):
            report = await watch_progress(client, url(server), fast())
    assert report.work == {
        'sglang:http_requests_active{endpoint="/v1/chat/completions",method="POST"}': 1.0
    }
    assert "sglang:http_requests_active=1" in report.describe()


async def test_slow_reader_at_a_live_scheduler_never_stalls(server: MetricsServer) -> None:
    server.running, server.http, server.beating = 0.0, 1.0, True
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(1.2) as scope:
            await watch_progress(client, url(server), fast(), on_scrape=scrapes.append)
    assert scope.cancelled_caught and len(scrapes) >= 5
    assert {s.verdict for s in scrapes} == {Verdict.IDLE}


async def test_advancing_counters_never_stall(server: MetricsServer) -> None:
    server.mode = "advancing"
    scrapes: list[Scrape] = []
    returned = None
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(1.5):  # more than three stall windows
            returned = await watch_progress(client, url(server), fast(), on_scrape=scrapes.append)
    assert returned is None
    assert len(scrapes) >= 5
    assert Verdict.STALLED not in {s.verdict for s in scrapes}
    assert scrapes[-1].verdict is Verdict.PROGRESSING


async def test_idle_server_with_frozen_counters_never_stalls(server: MetricsServer) -> None:
    server.running = 0.0
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(1.2):
            await watch_progress(client, url(server), fast(), on_scrape=scrapes.append)
    assert len(scrapes) >= 5 and {s.verdict for s in scrapes} == {Verdict.IDLE}


async def test_absent_metrics_are_reported_once_then_the_watch_sleeps(
    server: MetricsServer,
) -> None:
    server.mode = "404"
    scrapes: list[Scrape] = []
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(0.6) as scope:
            await watch_progress(
                client, url(server), fast(absent_scrapes=3), on_scrape=scrapes.append
            )
    assert scope.cancelled_caught  # it never returned
    assert [s.verdict for s in scrapes] == [Verdict.NO_METRICS] * 3
    assert [s.gave_up for s in scrapes] == [False, False, True]
    assert server.gets == 3  # and it stopped scraping


async def test_endless_body_is_capped_not_buffered(server: MetricsServer) -> None:
    server.mode = "endless"
    cap = 64 * 1024
    scrapes = await first_scrapes(url(server), fast(max_body_bytes=cap, timeout=2.0), 2)
    first = scrapes[0]
    assert first.status is None and first.error is not None and "longer than" in first.error
    assert cap < first.size <= cap + 256 * 1024  # stopped within one network read of the cap
    assert first.latency_s < 2.0  # the cap, not the deadline, ended it
    assert all(s.verdict is None for s in scrapes)  # failures: never a stall
    for _ in range(50):  # the server notices the connection we dropped
        if server.disconnects:
            break
        await anyio.sleep(0.05)
    assert server.disconnects >= 1


async def test_trickle_hits_the_per_scrape_deadline(server: MetricsServer) -> None:
    server.mode = "trickle"
    scrapes = await first_scrapes(url(server), fast(timeout=0.5, stall_window=0.5), 1)
    assert scrapes[0].error == "no answer within 0.5 s"
    assert 0.4 <= scrapes[0].latency_s < 1.5
    assert 0 < scrapes[0].size < 1024


async def test_compressed_body_is_refused(server: MetricsServer) -> None:
    server.mode = "gzip"
    scrapes = await first_scrapes(url(server), fast(), 1)
    assert scrapes[0].error is not None and "compressed body" in scrapes[0].error


async def test_failed_scrapes_neither_stall_nor_give_up() -> None:
    from supervisor.testing import free_port

    target = f"http://127.0.0.1:{free_port()}/metrics"
    scrapes = await first_scrapes(target, fast(absent_scrapes=1), 8)
    assert {s.error for s in scrapes} == {"connection refused"}
    assert not any(s.gave_up for s in scrapes)


async def test_scrape_gap_keeps_the_clock(server: MetricsServer) -> None:
    """Counters read the same after failed scrapes: the stall is still measured from before."""
    scrapes: list[Scrape] = []

    def hook(scrape: Scrape) -> None:
        scrapes.append(scrape)
        if len(scrapes) == 2:
            server.mode = "404"  # after seeing metrics, an absence is not a give-up
        if len(scrapes) == 4:
            server.mode = "metrics"

    async with httpx.AsyncClient() as client:
        with anyio.fail_after(10):
            report = await watch_progress(
                client, url(server), fast(stall_window=0.5), on_scrape=hook
            )
    assert not any(s.gave_up for s in scrapes)
    assert Verdict.NO_METRICS in {s.verdict for s in scrapes}
    assert report.stalled_for_s >= 0.5


async def test_disabled_policy_never_scrapes(server: MetricsServer) -> None:
    async with httpx.AsyncClient() as client:
        with anyio.move_on_after(0.3) as scope:
            await watch_progress(client, url(server), fast(enabled=False))
    assert scope.cancelled_caught and server.gets == 0


# --------------------------------------------------------------------------- per-rank (DP attention)
def dp_ranks(*ranks: tuple[float, float], prompt: float = 0) -> list[Sample]:
    """What 0.5.23 exposes under DP attention with --enable-metrics-for-all-schedulers: each
    rank's scheduler series carry `dp_rank` (metrics_collector.py, `labels["dp_rank"]`); the
    tokenizer's counters do not. Each rank is (queued, decode tokens)."""
    samples = [Sample("sglang:prompt_tokens_total", dict(LABELS), prompt)]
    for rank, (queued, decode) in enumerate(ranks):
        labels = {**LABELS, "tp_rank": str(rank * 2), "dp_rank": str(rank)}
        samples += [
            Sample("sglang:num_running_reqs", dict(labels), 1.0 if queued else 0.0),
            Sample("sglang:num_queue_reqs", dict(labels), queued),
            Sample("sglang:realtime_tokens_total", {**labels, "mode": "decode"}, decode),
        ]
    return samples


def test_one_dp_rank_flat_with_work_is_a_stall_while_the_others_serve() -> None:
    """sglang #32949: one DP rank wedged, the others kept serving (so the engine's totals kept
    moving) and the load balancer kept sending into the hole."""
    tracker = ProgressTracker(policy())
    assert SGLANG_PROGRESS.rank_label == "dp_rank"
    t, served = 0.0, 0.0
    verdicts = []
    while t <= 12.0:
        served += 10  # ranks 0 and 2 decode on; rank 1 holds 3 queued and never moves
        status = tracker.observe(dp_ranks((1, served), (3, 50), (1, served), prompt=served), t)
        verdicts.append(status.verdict)
        if status.verdict is Verdict.STALLED:
            break
        t += 1.0
    assert verdicts[-1] is Verdict.STALLED and len(verdicts) == 11  # the window, from first sight
    assert status.rank == "dp_rank=1"
    report = StallReport.from_status(status, 10.0)
    text = report.describe()
    assert text.startswith("rank dp_rank=1 (the other ranks serve): no forward progress for 10")
    assert "sglang:num_queue_reqs=3" in text and "sglang:realtime_tokens_total=50" in text


def test_dp_ranks_that_all_serve_or_idle_never_stall() -> None:
    tracker = ProgressTracker(policy())
    for step in range(30):
        # rank 0 busy and moving, rank 1 idle and flat: no rank has work waiting on frozen counters
        status = tracker.observe(dp_ranks((2, step * 5.0), (0, 40)), float(step))
        assert status.verdict is not Verdict.STALLED
    without = ProgressTracker(policy(rank_label=None))
    for step in range(30):  # without the rank label the engine is judged as one: it moves
        status = without.observe(dp_ranks((1, step * 5.0), (3, 50)), float(step))
        assert status.verdict is not Verdict.STALLED


def test_a_dp_rank_that_wedged_on_its_first_request_has_no_counters_and_still_stalls() -> None:
    """A labelled series exists only once something set it: a rank that never made a token
    shows its gauges but no counter; judged alone, that is nothing moving."""
    tracker = ProgressTracker(policy())
    verdict = None
    for step in range(12):
        samples = [
            s
            for s in dp_ranks((1, step * 5.0), (1, 0))
            if not (s.name == "sglang:realtime_tokens_total" and s.labels.get("dp_rank") == "1")
        ]
        status = tracker.observe(samples, float(step))
        verdict = status.verdict
        if verdict is Verdict.STALLED:
            break
    assert verdict is Verdict.STALLED and status.rank == "dp_rank=1"
