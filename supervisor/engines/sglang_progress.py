"""SGLang 0.5.23's metrics that say whether it progresses: the selectors of its progress watch.

The core's `ProgressPolicy` names no engine's metrics; these come to it through the engine seam
(`EngineTraits.progress`, `SGLangLaunch.supervisor_config`). docs/PROGRESS.md has the
file:function behind each name, and tests/test_real_engine.py checks every one is in the real
engine's `/metrics`.
"""

from __future__ import annotations

from supervisor import ProgressPolicy
from supervisor.lowlevel import Canary, Selector

__all__ = [
    "SGLANG_CANARY",
    "SGLANG_GENERATION_ENDPOINTS",
    "SGLANG_HEARTBEAT_COUNTERS",
    "SGLANG_PROGRESS",
    "SGLANG_PROGRESS_COUNTERS",
    "SGLANG_REQUEST_GAUGES",
    "SGLANG_WORK_GAUGES",
]

# SGLang 0.5.23 (docs/PROGRESS.md has the file:function behind each name).
# Requests the scheduler holds: both gauges are written by SchedulerMetricsCollector.log_stats on
# each prefill batch, every --decode-log-interval decode batches and when the scheduler idles.
SGLANG_WORK_GAUGES: tuple[Selector, ...] = (
    Selector("sglang:num_running_reqs", {"priority": ("",)}),
    Selector("sglang:num_queue_reqs", {"priority": ("",)}),
)
# Counters that move only when the engine does work: realtime tokens on every prefill and decode
# batch (scheduler), prompt/generation tokens when a request finishes (tokenizer), and GPU busy
# seconds where SGLANG_ENABLE_METRICS_DEVICE_TIMER is set (absent otherwise, which is fine).
SGLANG_PROGRESS_COUNTERS: tuple[Selector, ...] = (
    Selector("sglang:realtime_tokens_total"),
    Selector("sglang:prompt_tokens_total"),
    Selector("sglang:generation_tokens_total"),
    Selector("sglang:forward_execution_seconds_total"),
)
# The routes whose requests reach the scheduler (entrypoints/http_server.py); probes, /metrics,
# admin and weight-update routes are left out on purpose.
SGLANG_GENERATION_ENDPOINTS: tuple[str, ...] = (
    "/generate",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/score",
    "/v1/classify",
    "/encode",
    "/classify",
)
# Requests in flight at the HTTP front end, streams included (the middleware decrements only when
# the whole response has been sent).
SGLANG_REQUEST_GAUGES: tuple[Selector, ...] = (
    Selector("sglang:http_requests_active", {"endpoint": SGLANG_GENERATION_ENDPOINTS}),
)
# The scheduler loop's heartbeat: every rank adds to these at most once a second whenever its loop
# turns (idle, busy or paused); a loop stuck in a forward pass or a collective adds nothing.
SGLANG_HEARTBEAT_COUNTERS: tuple[Selector, ...] = (
    Selector("sglang:scheduler_process_cpu_seconds_total"),
    Selector("sglang:scheduler_idle_seconds_total"),
)


SGLANG_CANARY = Canary(
    "/generate", {"text": "1", "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
)

#: The progress watch for SGLang: these selectors, the core's default timings (which suit
#: SGLang 0.5.23 on the profiles' hardware: docs/PROGRESS.md).
SGLANG_PROGRESS = ProgressPolicy(
    work_gauges=SGLANG_WORK_GAUGES,
    progress_counters=SGLANG_PROGRESS_COUNTERS,
    request_gauges=SGLANG_REQUEST_GAUGES,
    heartbeat_counters=SGLANG_HEARTBEAT_COUNTERS,
    # Under DP attention (with --enable-metrics-for-all-schedulers) every rank's scheduler
    # series carry dp_rank (metrics_collector.py: labels["dp_rank"]): each rank is judged too.
    rank_label="dp_rank",
    # One greedy token through SGLang's own /generate (no model name needed, every model has
    # it): what a request that nobody answers (a stopped detokenizer, sglang #33858) never gets.
    canary=SGLANG_CANARY,
)
