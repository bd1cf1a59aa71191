"""SGLang 0.5.23's own timings, and `--fake-time-scale`, which shrinks them for fast tests.

By default (scale 1) the fake waits exactly as long as SGLang does, so a supervisor tested on it
meets SGLang's real bounds. Only these timings scale; the `--fake-*` durations (load, warmup,
generation) are taken as given.
"""

from __future__ import annotations

from dataclasses import dataclass

# srt/managers/tokenizer_manager.py, TokenizerManager.sigterm_watchdog: the SIGTERM flag is looked
# at every 5 s; then in-flight requests are counted every 5 s; then ShutdownReq and
# _SCHEDULER_EXIT_TIMEOUT_SECS (15 s) for the schedulers to release GPU memory and exit.
SIGTERM_NOTICE_S = 5.0
DRAIN_POLL_S = 5.0
SCHEDULER_EXIT_S = 15.0
# srt/entrypoints/http_server.py, health_generate: one generation, watched in 1 s steps, for at
# most HEALTH_CHECK_TIMEOUT (20 s, SGLANG_HEALTH_CHECK_TIMEOUT).
HEALTH_STEP_S = 1.0
# srt/utils/watchdog.py, SubprocessWatchdog: polls its children every 1 s.
SUBPROCESS_WATCHDOG_S = 1.0
# sglang/compile_deep_gemm.py: polls its server every 10 s; sleeps 10 s "for safety" after success.
COMPILE_POLL_S = 10.0
COMPILE_SETTLE_S = 10.0
# srt/entrypoints/http_server.py: HEALTH_CHECK_TIMEOUT = int(os.getenv("SGLANG_HEALTH_CHECK_TIMEOUT", 20)):
# a /health whose generation brings no output within it answers 503.
HEALTH_CHECK_TIMEOUT_S = 20.0
# srt/managers/scheduler_components/metrics_reporter.py: _SCHEDULER_TIME_ACCOUNTING_INTERVAL_NS,
# how often the scheduler loop adds to its idle/CPU-seconds counters (the heartbeat).
SCHEDULER_TIME_ACCOUNTING_S = 1.0
# srt/managers/tokenizer_manager.py:pause_generation: abort mode looks again every 1 s until no
# request holds the model-update lock.
PAUSE_ABORT_POLL_S = 1.0
# srt/environ.py: SGLANG_REQUEST_STATE_WAIT_TIMEOUT (4 s): how often a request waiting for the
# scheduler looks whether its client left (tokenizer_manager.py: _stream_one_response).
REQUEST_STATE_WAIT_S = 4.0
# Not SGLang's: how long a fake scheduler takes to "release its GPU memory" after ShutdownReq.
RELEASE_S = 0.5


@dataclass(frozen=True)
class Timings:
    """SGLang's timings multiplied by one scale factor (1.0: SGLang's own)."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"--fake-time-scale must be > 0, got {self.scale}")

    @property
    def sigterm_notice(self) -> float:
        return SIGTERM_NOTICE_S * self.scale

    @property
    def drain_poll(self) -> float:
        return DRAIN_POLL_S * self.scale

    @property
    def scheduler_exit(self) -> float:
        return SCHEDULER_EXIT_S * self.scale

    @property
    def health_step(self) -> float:
        return HEALTH_STEP_S * self.scale

    @property
    def subprocess_watchdog(self) -> float:
        return SUBPROCESS_WATCHDOG_S * self.scale

    @property
    def compile_poll(self) -> float:
        return COMPILE_POLL_S * self.scale

    @property
    def compile_settle(self) -> float:
        return COMPILE_SETTLE_S * self.scale

    @property
    def release(self) -> float:
        return RELEASE_S * self.scale

    @property
    def health_check_timeout(self) -> float:
        return HEALTH_CHECK_TIMEOUT_S * self.scale

    @property
    def scheduler_time_accounting(self) -> float:
        return SCHEDULER_TIME_ACCOUNTING_S * self.scale

    @property
    def pause_abort_poll(self) -> float:
        return PAUSE_ABORT_POLL_S * self.scale

    @property
    def request_state_wait(self) -> float:
        return REQUEST_STATE_WAIT_S * self.scale
