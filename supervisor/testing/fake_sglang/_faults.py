"""The faults the fake can play (`--fake-fault NAME`, repeatable) and the texts they print.

Each fault imitates a failure seen in the field, with SGLang's and PyTorch's own words, so the
supervisor's crash classification is tested on real texts:

- crash-loading: a scheduler dies while loading; `RuntimeError: Rank 0 scheduler died during
  initialization` (srt/entrypoints/engine.py:_scheduler_died_error), exit code 1;
- sigkill-loading: the server process is SIGKILLed while loading, without a word (the OOM
  killer); in compile mode its script keeps polling, as the real one does;
- crash-after-serving: scheduler rank 0 hits an exception and SIGQUITs the server, whose
  running-phase handler logs `SIGQUIT received. ... It usually means one child failed.` and
  SIGKILLs its tree, itself included (exit by signal 9);
- hang: every request hangs, port open; health-503: never leaves `Starting`;
- ignore-sigterm: the server and its schedulers ignore SIGTERM;
- slow-warmup: SGLang's own warmup takes 20 times `--fake-warmup-time`;
- warmup-error: `Initialization failed. warmup error: ...`, then SIGKILL of the whole tree;
- log-flood: a burst of decode-batch lines; escape: the last scheduler leaves the session and
  the parent chain (sglang #23627) and survives its server.
"""

from __future__ import annotations

import sys
import time

from ._logs import log

FAULTS = (
    "crash-loading",
    "sigkill-loading",
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

# What scheduler rank 0 logs (one record, srt/managers/scheduler.py:run_scheduler_process) before
# it SIGQUITs the server, whose running-phase handler then logs its own line and kills the tree.
CRASH_AFTER_SERVING_LINES = (
    "Scheduler hit an exception: Traceback (most recent call last):",
    '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/managers/scheduler.py", '
    "line 6367, in run_scheduler_process",
    "    scheduler.run_event_loop()",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
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
