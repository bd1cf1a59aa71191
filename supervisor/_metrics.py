"""Prometheus metrics of the supervisor itself, on a registry the library user can mount.

The collectors are fed by the supervisor's events (state changes, probes, warmups, log blocks,
deaths, progress scrapes, peers' states, snapshot steps); nothing here polls. `serve_metrics`
exposes a registry over HTTP (`_http_server.serve_http`) from a task in the caller's task group,
not from prometheus-client's daemon thread, so it stops with its owner; its connections are
bounded in number, size and time, so no client can take the supervisor down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import Enum as EnumMetric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ._http_server import Request, Response, serve_http
from ._memory import MemorySample
from ._progress import Verdict
from ._states import State, Transition

__all__ = ["SupervisorMetrics", "serve_metrics"]

_PROBE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)


class SupervisorMetrics:
    """Every collector of one supervisor; `registry` is what an app mounts or serves."""

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "supervisor"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.state = EnumMetric(
            "state",
            "Current state of the supervised server.",
            namespace=ns,
            registry=r,
            states=[s.value for s in State],
        )
        self.transitions = Counter(
            "transitions",
            "State transitions.",
            ["from_state", "to_state", "event"],
            namespace=ns,
            registry=r,
        )
        self.phase_seconds = Gauge(
            "startup_phase_seconds",
            "Duration of each startup phase of the last start.",
            ["phase"],
            namespace=ns,
            registry=r,
        )
        self.memory_bytes = Gauge(
            "tree_memory_bytes",
            "The server tree's memory (PSS of every process plus /dev/shm), last sample.",
            namespace=ns,
            registry=r,
        )
        self.memory_shm_bytes = Gauge(
            "tree_shm_bytes", "What /dev/shm holds, last sample.", namespace=ns, registry=r
        )
        self.open_fds = Gauge(
            "tree_open_fds", "Open fds of the server tree, last sample.", namespace=ns, registry=r
        )
        self.gpu_memory_bytes = Gauge(
            "gpu_memory_bytes",
            "GPU memory held by the server tree's processes, per GPU (NVML), last sample.",
            ["gpu"],
            namespace=ns,
            registry=r,
        )
        self.gpu_memory_used_bytes = Gauge(
            "gpu_memory_used_bytes",
            "GPU memory used on each GPU by anyone (NVML), last sample.",
            ["gpu"],
            namespace=ns,
            registry=r,
        )
        self.cache_files = Gauge(
            "cache_files",
            "Files in each compiled-artifact cache, before the spawn and once serving.",
            ["cache", "moment"],
            namespace=ns,
            registry=r,
        )
        self.cache_bytes = Gauge(
            "cache_bytes",
            "Bytes in each compiled-artifact cache, before the spawn and once serving.",
            ["cache", "moment"],
            namespace=ns,
            registry=r,
        )
        self.warmup_latency = Gauge(
            "warmup_latency_seconds",
            "Latency of each warmup payload of the last start.",
            ["payload"],
            namespace=ns,
            registry=r,
        )
        self.warmup_results = Counter(
            "warmup_results",
            "Warmup verdicts.",
            ["payload", "verdict"],
            namespace=ns,
            registry=r,
        )
        self.probe_latency = Histogram(
            "health_probe_latency_seconds",
            "Health probe latency.",
            ["kind"],
            namespace=ns,
            registry=r,
            buckets=_PROBE_BUCKETS,
        )
        self.probe_failures = Counter(
            "health_probe_failures",
            "Health probes that did not answer 200.",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.deaths = Counter(
            "deaths",
            "Deaths of the server after serving, by cause.",
            ["cause"],
            namespace=ns,
            registry=r,
        )
        self.log_lines = Counter(
            "log_lines",
            "Lines forwarded from the child.",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.log_bytes = Counter(
            "log_bytes",
            "Bytes forwarded from the child.",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.progress_verdict = EnumMetric(
            "progress_verdict",
            "Verdict of the last successful progress scrape of the engine's own metrics.",
            namespace=ns,
            registry=r,
            states=[v.value for v in Verdict],
        )
        self.progress_last_change = Gauge(
            "progress_last_change_timestamp_seconds",
            "Unix time at which a progress counter of the engine was last seen to move.",
            namespace=ns,
            registry=r,
        )
        self.progress_waiting = Gauge(
            "progress_waiting_work",
            "Requests waiting on the engine at the last successful progress scrape.",
            namespace=ns,
            registry=r,
        )
        self.progress_scrape_failures = Counter(
            "progress_scrape_failures",
            "Progress scrapes that got no usable answer.",
            namespace=ns,
            registry=r,
        )
        self.peer_up = Gauge(
            "cluster_peer_up",
            "1 while a peer rank's supervisor answers its status, 0 when it does not.",
            ["rank"],
            namespace=ns,
            registry=r,
        )
        self.snapshot_step_seconds = Gauge(
            "snapshot_step_seconds",
            "Duration of each step of the last sleep and wake (pause, release, resume, ...).",
            ["step"],
            namespace=ns,
            registry=r,
        )
        self.state.state(State.STARTING.value)
        self.progress_verdict.state(Verdict.NO_METRICS.value)  # nothing read yet

    def on_transition(self, t: Transition) -> None:
        self.state.state(t.new.value)
        self.transitions.labels(t.old.value, t.new.value, t.event.value).inc()

    def on_probe(self, kind: str, ok: bool, latency_s: float) -> None:
        self.probe_latency.labels(kind).observe(latency_s)
        if not ok:
            self.probe_failures.labels(kind).inc()

    def on_warmup(self, name: str, ok: bool, latency_s: float) -> None:
        self.warmup_latency.labels(name).set(latency_s)
        self.warmup_results.labels(name, "ok" if ok else "failed").inc()

    def on_phases(self, durations: Mapping[str, float]) -> None:
        for phase, seconds in durations.items():
            self.phase_seconds.labels(phase).set(seconds)

    def on_memory(self, sample: MemorySample) -> None:
        if sample.total or sample.fds:  # a GPU-only sample (no host mark) leaves these alone
            self.memory_bytes.set(sample.total)
            self.memory_shm_bytes.set(sample.shm)
            self.open_fds.set(sample.fds)
        if sample.gpu is not None:
            for index, held, used in sample.gpu.per_gpu:
                self.gpu_memory_bytes.labels(str(index)).set(held)
                self.gpu_memory_used_bytes.labels(str(index)).set(used)

    def on_cache(self, cache: str, moment: str, files: int, nbytes: int) -> None:
        self.cache_files.labels(cache, moment).set(files)
        self.cache_bytes.labels(cache, moment).set(nbytes)

    def on_log(self, stream: str, lines: int, nbytes: int) -> None:
        self.log_lines.labels(stream).inc(lines)
        self.log_bytes.labels(stream).inc(nbytes)

    def on_death(self, cause: str) -> None:
        self.deaths.labels(cause).inc()

    def on_progress(
        self,
        verdict: str | None,
        waiting: float | None,
        last_change_unix: float | None,
        failed: bool,
    ) -> None:
        """One progress scrape: its verdict and waiting work (when it succeeded), or a failure."""
        if verdict is not None:
            self.progress_verdict.state(verdict)
        if waiting is not None:
            self.progress_waiting.set(waiting)
        if last_change_unix is not None:
            self.progress_last_change.set(last_change_unix)
        if failed:
            self.progress_scrape_failures.inc()

    def on_peer(self, rank: int, up: bool) -> None:
        self.peer_up.labels(str(rank)).set(1 if up else 0)

    def on_snapshot_steps(self, steps: Mapping[str, float]) -> None:
        for step, seconds in steps.items():
            self.snapshot_step_seconds.labels(step).set(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    *,
    max_connections: int = 32,
    connection_timeout: float = 5.0,
    on_error: Callable[[str], None] | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `registry` at any path over plain HTTP until cancelled; reports the bound port.

    The endpoint must never take the server down, whatever its clients do; the bounds are
    `_http_server`'s: at most `max_connections` at once (one more is answered 503 and closed),
    `connection_timeout` seconds per connection in all, and errors (a handler that raises,
    `accept()` out of descriptors, shedding) are contained and reported once per kind through
    `on_error`. Only a failure to listen at all is raised (`OSError`), before
    `task_status.started`.
    """

    def exposition(request: Request) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    await serve_http(
        exposition,
        port,
        host,
        name="metrics endpoint",
        max_connections=max_connections,
        deadline=connection_timeout,
        on_error=on_error,
        task_status=task_status,
    )
