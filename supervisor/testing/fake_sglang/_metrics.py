"""SGLang 0.5.23's Prometheus metrics, as the fake serves them at `/metrics` (`--enable-metrics`).

What a hang detector reads (docs/PROGRESS.md), with SGLang's names, types, help texts and labels:

- scheduler side (`srt/observability/metrics_collector.py: SchedulerMetricsCollector`), labels
  `model_name, engine_type, tp_rank, pp_rank, moe_ep_rank`: the gauges `sglang:num_running_reqs`,
  `sglang:num_queue_reqs`, `sglang:gen_throughput` and the counter
  `sglang:realtime_tokens_total{mode}` on the stats rank (tp_rank 0) only; the heartbeat counters
  `sglang:scheduler_process_cpu_seconds_total` and `sglang:scheduler_idle_seconds_total` on every
  rank of this node, pre-seeded at 0 and advanced about once a second by the scheduler loop
  (`metrics_reporter.py: _record_scheduler_time`);
- tokenizer side (`TokenizerMetricsCollector.observe_one_finished_request`), labels
  `model_name, engine_type, is_streaming`: `sglang:prompt_tokens_total`,
  `sglang:generation_tokens_total`, `sglang:num_requests_total`, moved when a request finishes;
- HTTP side (`srt/observability/http_request_metrics.py`): `sglang:http_requests_active` (a
  `livesum` gauge, up on arrival, down after the last byte) and `sglang:http_requests_total`.

Exposition as prometheus_client's multiprocess collector writes it (`srt/utils/common.py:
add_prometheus_middleware`): counters appear once, with `_total`, no `_created`; gauges carry no
`pid` label; a labelled series exists only once something set it. One liberty: labels are kept
in declaration order (`model_name` first), where prometheus_client sorts them; no parser cares.

`freeze()` is the stall: every scheduler and tokenizer series stands still from then on (a stuck
scheduler reports nothing, and nothing finishes), while the HTTP series stay live.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

Labels = tuple[tuple[str, str], ...]

HELP = {
    "sglang:num_running_reqs": ("gauge", "The number of running requests."),
    "sglang:num_queue_reqs": ("gauge", "The number of requests in the waiting queue."),
    "sglang:gen_throughput": ("gauge", "The generation throughput (token/s)."),
    "sglang:realtime_tokens_total": (
        "counter",
        "Total number of tokens processed (updated on each log interval). "
        "mode: prefill_compute, prefill_cache, decode.",
    ),
    "sglang:scheduler_idle_seconds_total": (
        "counter",
        "Total wall time while the scheduler has no runnable or queued work.",
    ),
    "sglang:scheduler_process_cpu_seconds_total": (
        "counter",
        "Total CPU time consumed by the scheduler process across all threads.",
    ),
    "sglang:prompt_tokens_total": ("counter", "Number of prefill tokens processed."),
    "sglang:generation_tokens_total": ("counter", "Number of generation tokens processed."),
    "sglang:num_requests_total": ("counter", "Number of requests processed."),
    "sglang:http_requests_active": ("gauge", "Number of currently active HTTP requests"),
    "sglang:http_requests_total": (
        "counter",
        "Total number of HTTP requests by endpoint and method",
    ),
}
# A busy scheduler spins on its CPU; an idle one sleeps in its receive loop (`--sleep-on-idle` or
# not, it wakes at least once a second).
BUSY_CPU_SHARE = 0.95
IDLE_CPU_SHARE = 0.02


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """prometheus_client's `floatToGoString` for the values seen here."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Metrics:
    """Every series the fake exposes, under one lock; `render()` is the `/metrics` body."""

    def __init__(
        self, model: str, tp_ranks: Sequence[int], stats_rank: bool, dp_size: int = 1
    ) -> None:
        self._lock = threading.Lock()
        self.frozen = False
        #: DP ranks whose scheduler is wedged: their series stand still (`dp-rank-stall`).
        self.wedged: set[int] = set()
        self._series: dict[str, dict[Labels, float]] = {name: {} for name in HELP}
        self._scheduler = (("model_name", model), ("engine_type", "unified"))
        self._tokenizer = (("model_name", model), ("engine_type", "unified"))
        # Under DP attention (dp_size > 1) every rank's labels carry `dp_rank`, and each DP
        # group's attention-TP rank 0 is a stats rank (metrics_collector.py:
        # is_stats_logging_rank, labels["dp_rank"]); attn_tp_size = tp / dp.
        self._attn_tp = max(1, len(tp_ranks) // dp_size) if dp_size > 1 else len(tp_ranks)
        self._dp = dp_size > 1
        self._ranks = {rank: self._rank_labels(rank) for rank in tp_ranks}
        self._stats: dict[int, Labels] = {}
        if stats_rank:
            for dp in range(dp_size):
                self._stats[dp] = self._rank_labels(tp_ranks[0] + dp * self._attn_tp)
        for labels in self._ranks.values():  # pre-seeded at 0 (SchedulerMetricsCollector)
            self._series["sglang:scheduler_idle_seconds_total"][labels] = 0.0
            self._series["sglang:scheduler_process_cpu_seconds_total"][labels] = 0.0
        for labels in self._stats.values():
            self._series["sglang:num_running_reqs"][labels] = 0.0
            self._series["sglang:num_queue_reqs"][labels] = 0.0
            self._series["sglang:gen_throughput"][labels] = 0.0

    def _rank_labels(self, rank: int) -> Labels:
        labels = (*self._scheduler, ("tp_rank", str(rank)), ("pp_rank", "0"), ("moe_ep_rank", "0"))
        return (*labels, ("dp_rank", str(rank // self._attn_tp))) if self._dp else labels

    # ------------------------------------------------------------ scheduler and tokenizer
    def freeze(self) -> None:
        with self._lock:
            self.frozen = True

    def running(self, count: int, throughput: float, dp_rank: int = 0) -> None:
        """`log_stats`: the running gauge (the fake has no waiting queue: 0 queued)."""
        with self._lock:
            labels = self._stats.get(dp_rank)
            if labels is not None and not self.frozen and dp_rank not in self.wedged:
                self._series["sglang:num_running_reqs"][labels] = float(count)
                self._series["sglang:gen_throughput"][labels] = throughput

    def realtime(self, mode: str, tokens: int, dp_rank: int = 0) -> None:
        """`increment_realtime_tokens`: zero deltas are skipped, so a mode appears on first use."""
        with self._lock:
            labels = self._stats.get(dp_rank)
            if labels is None or self.frozen or tokens <= 0 or dp_rank in self.wedged:
                return
            series = self._series["sglang:realtime_tokens_total"]
            key = (*labels, ("mode", mode))
            series[key] = series.get(key, 0.0) + tokens

    def finished(self, prompt_tokens: int, generation_tokens: int, streaming: bool) -> None:
        """`observe_one_finished_request` (a health check has `log_metrics=False`: not here)."""
        key = (*self._tokenizer, ("is_streaming", "true" if streaming else "false"))
        with self._lock:
            if self.frozen:
                return
            for name, delta in (
                ("sglang:prompt_tokens_total", prompt_tokens),
                ("sglang:generation_tokens_total", generation_tokens),
                ("sglang:num_requests_total", 1),
            ):
                self._series[name][key] = self._series[name].get(key, 0.0) + delta

    def heartbeat(self, elapsed: float, busy: bool) -> None:
        """`_record_scheduler_time` on every rank: idle wall time, and the process's CPU time."""
        with self._lock:
            if self.frozen:
                return
            for rank, labels in self._ranks.items():
                if self._dp and rank // self._attn_tp in self.wedged:
                    continue  # a loop stuck in a forward pass turns no more
                cpu = self._series["sglang:scheduler_process_cpu_seconds_total"]
                share = BUSY_CPU_SHARE if busy else IDLE_CPU_SHARE
                cpu[labels] += elapsed * share
                if not busy:
                    self._series["sglang:scheduler_idle_seconds_total"][labels] += elapsed

    # ------------------------------------------------------------ HTTP (never frozen)
    def http_begin(self, endpoint: str, method: str) -> None:
        key = (("endpoint", endpoint), ("method", method))
        with self._lock:
            active = self._series["sglang:http_requests_active"]
            active[key] = active.get(key, 0.0) + 1
            total = self._series["sglang:http_requests_total"]
            total[key] = total.get(key, 0.0) + 1

    def http_end(self, endpoint: str, method: str) -> None:
        key = (("endpoint", endpoint), ("method", method))
        with self._lock:
            self._series["sglang:http_requests_active"][key] -= 1

    # ------------------------------------------------------------ exposition
    def value(self, name: str, **labels: str) -> float:
        """Sum of the series of `name` that carry `labels` (for tests and the fake's own use)."""
        with self._lock:
            return sum(
                v
                for key, v in self._series[name].items()
                if all(dict(key).get(k) == want for k, want in labels.items())
            )

    def render(self) -> bytes:
        with self._lock:
            snapshot = {name: dict(series) for name, series in self._series.items()}
        lines: list[str] = []
        for name in sorted(snapshot):
            if not snapshot[name]:
                continue
            kind, text = HELP[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in snapshot[name].items():
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{inner}}} {_number(value)}")
        return ("\n".join(lines) + "\n").encode()


class SchedulerLoop:
    """The scheduler loop's turning, seen only through its heartbeat counters.

    Every accounting interval (SGLang's 1 s, time-scaled) it books the elapsed time as idle or
    busy on every rank of this node. A stall freezes the counters, which is what a loop stuck in
    a forward pass or a collective looks like from outside.
    """

    def __init__(self, metrics: Metrics, interval: float, busy: Callable[[], bool]) -> None:
        self._metrics = metrics
        self._interval = interval
        self._busy = busy
        self._thread = threading.Thread(target=self._run, daemon=True, name="scheduler-loop")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(self._interval)
            now = time.monotonic()
            self._metrics.heartbeat(now - last, self._busy())
            last = now
