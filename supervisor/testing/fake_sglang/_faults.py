"""The faults the fake can play (`--fake-fault NAME`, repeatable) and the texts they print.

Each fault imitates a failure seen in the field, with SGLang's and PyTorch's own words, so the
supervisor's crash classification is tested on real texts.
"""

from __future__ import annotations

import sys
import time

from ._logs import log

FAULTS = (
    "crash-loading",
    "crash-after-serving",
    "hang",
    "health-503",
    "ignore-sigterm",
    "slow-warmup",
    "warmup-error",
    "log-flood",
    "escape",
)

CRASH_LOADING_LINES = (
    "Traceback (most recent call last):",
    '  File "sglang/srt/entrypoints/engine.py", line 2023, in _wait_for_scheduler_ready',
    "RuntimeError: Rank 0 scheduler died during initialization (exit code: -9). If exit "
    "code is -9 (SIGKILL), a common cause is the OS OOM killer. Run `dmesg -T | grep -i "
    "oom` to check.",
)

CRASH_AFTER_SERVING_LINES = (
    "Scheduler hit an exception: Traceback (most recent call last):",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
    "Received sigquit from a child process. It usually means the child failed.",
)

WARMUP_ERROR_TEXT = (
    "Initialization failed. warmup error: Traceback (most recent call last):\n"
    "RuntimeError: CUDA error: an illegal memory access was encountered"
)


def flood(lines: int) -> None:
    """Write `lines` decode-batch lines as fast as the pipe takes them, then report the timing."""
    line = (
        b"Decode batch, #running-req: 1, #token: 40, token usage: 0.00, cuda graph: True, "
        b"gen throughput (token/s): 95.23, #queue-req: 0\n"
    )
    out = sys.stderr.buffer
    start = time.perf_counter()
    worst = 0.0
    for _ in range(lines):
        t = time.perf_counter()
        out.write(line)
        out.flush()
        worst = max(worst, time.perf_counter() - t)
    took = time.perf_counter() - start
    log(f"fake: flood done lines={lines} seconds={took:.4f} max_write_ms={worst * 1000:.3f}")
