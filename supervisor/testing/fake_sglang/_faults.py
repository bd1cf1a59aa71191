"""The faults the fake can play (`--fake-fault NAME`, repeatable) and the texts they print.

Each fault imitates a failure seen in the field, with SGLang's and PyTorch's own words, so the
supervisor's crash classification is tested on real texts:

- crash-loading: a scheduler dies while loading; `RuntimeError: Rank 0 scheduler died during
  initialization` (srt/entrypoints/engine.py:_scheduler_died_error), exit code 1; with
  `--fake-crash-log` (or `--fake-gpu-fault`) the scheduler raises instead: its `Scheduler hit an
  exception` record, its SIGQUIT, `Received sigquit from a child process. It usually means the
  child failed.` and the tree's SIGKILL, the server included (both seen on the CPU engine);
- sigkill-loading: the server process is SIGKILLed while loading, without a word (the OOM
  killer); in compile mode its script keeps polling, as the real one does;
- crash-after-serving: scheduler rank 0 hits an exception and SIGQUITs the server, whose
  running-phase handler logs `SIGQUIT received. ... It usually means one child failed.` and
  SIGKILLs its tree, itself included (exit by signal 9);
- hang: every request hangs, port open; health-503: never leaves `Starting`;
- ignore-sigterm: the server and its schedulers ignore SIGTERM;
- slow-warmup: SGLang's own warmup takes 20 times `--fake-warmup-time`;
- warmup-error: after `/model_info`, `Initialization failed. warmup error: ...`, then SIGKILL of
  the whole tree; without the fault, SGLANG_WARMUP_TIMEOUT shorter than `--fake-warmup-time`
  ends the same way, with the ReadTimeout text the real engine prints;
- log-flood: a burst of decode-batch lines; escape: the last scheduler leaves the session and
  the parent chain (sglang #23627) and survives its server;
- stall: the scheduler stops for good with the port open (`--fake-crash-after` seconds after
  the ready line, 10 by default so that a supervisor's warmups finish first, or once `--fake-stall-after-requests` client generations have finished):
  requests are taken and never progress, `/metrics` answers with frozen counters (`_engine`);
- resume-fails: `/resume_memory_occupation` answers 400 `{"error": {"message": "CUDA error: out of
  memory"}}` and the memory stays released; unhealthy-after-resume: the resume answers 200, then
  `/health` 503 and generations 500; garbage-after-resume: the resume answers 200, `/health` 200,
  and every generation answers 200 with junk (what resumed weights without a CPU backup give);
- dp-rank-stall: under DP attention (`--enable-dp-attention --dp-size N`), the last DP rank's
  scheduler hangs in the forward of the first request it gets (sglang #32949): its series stand
  still with that request running, every later request sent to it waits for ever, the other
  ranks serve and /health (sent to rank 0) stays 200;
- detokenizer-stall: once `--fake-stall-after-requests` client generations finished, the
  detokenizer stops (sglang #33858; SIGSTOP of the real one shows it on the CPU engine): the
  scheduler still finishes every request and its counters advance, nothing runs or waits, but
  no answer reaches a client, and `/health` gives up with 503 after its 20 s;
- memory-leak: after the ready line the server's host memory grows by `--fake-leak-mb-per-s`
  (default 50) for good, touched so that it is resident (sglang #28902: linear growth until
  the OOM killer);
- leak-shm: the server creates its broadcast segment `sgl_shm_mq_<pid>_<rand>` (1 MiB) as
  0.5.23 names it (srt/utils/stale_shm_cleanup.py make_shm_name), in `SGLANG_SUPERVISOR_SHM_DIR`
  (else /dev/shm), and unlinks it only on a clean exit: a SIGKILLed tree leaves it (sglang
  #40723).

Texts of the other deaths the fake plays (memory, multi-node) are here too, each with its source.
"""

from __future__ import annotations

import sys
import time

from ._logs import FAKE_SITE, log

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
    "stall",
    "resume-fails",
    "unhealthy-after-resume",
    "garbage-after-resume",
    "leak-shm",
    "detokenizer-stall",
    "memory-leak",
    "dp-rank-stall",
)


def leak_shm_segment() -> str:
    """Create the segment a SIGKILL leaves behind; a clean exit of the interpreter unlinks it."""
    import atexit
    import contextlib
    import os
    import uuid
    from pathlib import Path

    root = Path(os.environ.get("SGLANG_SUPERVISOR_SHM_DIR") or "/dev/shm")
    path = root / f"sgl_shm_mq_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with open(path, "wb") as f:
        f.truncate(1 << 20)

    def unlink() -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    atexit.register(unlink)
    return str(path)


_SITE = FAKE_SITE
_SCHEDULER_TOP = (
    "Scheduler hit an exception: Traceback (most recent call last):",
    f'  File "{_SITE}/sglang/srt/managers/scheduler.py", line 6368, in run_scheduler_process',
    "    scheduler.run_event_loop()",
)

# srt/managers/scheduler_components/weight_updater.py:release_memory_occupation, not idle
RELEASE_NOT_IDLE_LINES = (
    *_SCHEDULER_TOP,
    f'  File "{_SITE}/sglang/srt/managers/scheduler_components/weight_updater.py", line 339, '
    "in release_memory_occupation",
    "    assert self.is_fully_idle(",
    "AssertionError: release_memory_occupation should be called only when server is idle.",
)


def resume_key_error_lines(tag: str) -> tuple[str, ...]:
    """weight_updater.py:resume_memory_occupation, `self.offload_tags.remove(tag)` of a tag
    that was not released."""
    return (
        *_SCHEDULER_TOP,
        f'  File "{_SITE}/sglang/srt/managers/scheduler_components/weight_updater.py", '
        "line 390, in resume_memory_occupation",
        "    self.offload_tags.remove(tag)",
        f"KeyError: {tag!r}",
    )


def cannot_pause_line(tag: str) -> str:
    """torch_memory_saver `csrc/core.cpp: TorchMemorySaver::pause` on a region already paused:
    this on stderr (std::cerr, no timestamp), then `exit(1)` in the scheduler."""
    return (
        f"[torch_memory_saver.cpp] Cannot pause allocation that is not active. tag={tag} "
        "ptr=139872395378688 file=csrc/core.cpp func=pause line=172"
    )


# A forward pass on memory the memory saver unmapped (redai-studio/Relax#282, "Bug B").
ILLEGAL_ACCESS_LINES = (
    *_SCHEDULER_TOP,
    "torch.AcceleratorError: CUDA error: an illegal memory access was encountered",
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.",
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
)


def rendezvous_timeout_lines(seconds: float, joined: int, world: int) -> tuple[str, ...]:
    """Rank 0 (torch's TCPStore server, `waitForWorkers`) when workers never come; the scheduler
    fails in `init_process_group` (srt/distributed/parallel_state.py:
    init_distributed_environment) and SIGQUITs its server."""
    return (
        "Scheduler hit an exception: Traceback (most recent call last):",
        f'  File "{_SITE}/torch/distributed/distributed_c10d.py", line 1742, in init_process_group',
        "    store, rank, world_size = next(rendezvous_iterator)",
        f"torch.distributed.DistStoreError: Timed out after {seconds:.0f} seconds waiting for "
        f"clients. {joined}/{world} clients joined.",
    )


def connect_timeout_lines(seconds: float, host: str, port: int) -> tuple[str, ...]:
    """A worker whose rank 0 never listens (torch's TCPStore client)."""
    return (
        "Scheduler hit an exception: Traceback (most recent call last):",
        f'  File "{_SITE}/torch/distributed/rendezvous.py", line 189, in _create_c10d_store',
        "    return TCPStore(",
        "torch.distributed.DistNetworkError: The client socket has timed out after "
        f"{seconds * 1000:.0f}ms while trying to connect to ({host}, {port}).",
    )


def peer_closed_lines(host: str, port: int) -> tuple[str, ...]:
    """A worker's scheduler when rank 0 is gone: its broadcast of the next requests over the
    TP group's gloo group fails (request_receiver.py: recv_requests, srt/utils/common.py:
    broadcast_pyobj; text as in sgl-project/sglang#3685 and #26375)."""
    return (
        *_SCHEDULER_TOP,
        f'  File "{_SITE}/sglang/srt/utils/common.py", line 2715, in broadcast_pyobj',
        "    dist.broadcast(tensor_size, src=src, group=dist_group)",
        f'  File "{_SITE}/torch/distributed/distributed_c10d.py", line 2974, in broadcast',
        "    work.wait()",
        "RuntimeError: [/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:547] Connection "
        f"closed by peer [{host}]:{port}",
    )


def scheduler_died_lines(rank: int, code: int | None) -> tuple[str, ...]:
    """engine.py:_wait_for_scheduler_ready, `_scheduler_died_error`: the traceback that ends
    `launch_server` (exit 1) when a scheduler dies while loading."""
    return (
        "Traceback (most recent call last):",
        '  File "sglang/srt/entrypoints/engine.py", line 2029, in _wait_for_scheduler_ready',
        "    raise _scheduler_died_error(i, scheduler_procs[i])",
        f"RuntimeError: Rank {rank} scheduler died during initialization (exit code: {code}). "
        "If exit code is -9 (SIGKILL), a common cause is the OS OOM killer. Run `dmesg -T | "
        "grep -i oom` to check.",
    )


CRASH_LOADING_LINES = scheduler_died_lines(0, -9)

# What scheduler rank 0 logs (one record, srt/managers/scheduler.py:run_scheduler_process) before
# it SIGQUITs the server, whose running-phase handler then logs its own line and kills the tree.
CRASH_AFTER_SERVING_LINES = (
    "Scheduler hit an exception: Traceback (most recent call last):",
    f'  File "{_SITE}/sglang/srt/managers/scheduler.py", line 6367, in run_scheduler_process',
    "    scheduler.run_event_loop()",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
)

WARMUP_ERROR_TEXT = (
    "Initialization failed. warmup error: Traceback (most recent call last):\n"
    "RuntimeError: CUDA error: an illegal memory access was encountered"
)


def warmup_timeout() -> float:
    """SGLANG_WARMUP_TIMEOUT (srt/environ.py, a float, -1 by default: 600 s), read as SGLang does."""
    import os

    try:
        return float(os.environ.get("SGLANG_WARMUP_TIMEOUT", "-1"))
    except ValueError:
        return -1.0


def warmup_timeout_text(host: str, port: int, timeout: float) -> str:
    """http_server.py:_execute_server_warmup when the warmup `/generate` outlives
    SGLANG_WARMUP_TIMEOUT: `requests`' ReadTimeout in the traceback of one error record (the
    real engine on the CPU prints this with SGLANG_WARMUP_TIMEOUT=0.001; frames left out)."""
    pool = (
        f"HTTPConnectionPool(host='{host}', port={port}): Read timed out. (read timeout={timeout})"
    )
    return (
        "Initialization failed. warmup error: Traceback (most recent call last):\n"
        "TimeoutError: timed out\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\n"
        f"urllib3.exceptions.ReadTimeoutError: {pool}\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        f"requests.exceptions.ReadTimeout: {pool}\n"
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


#: How many kernels the fake "compiles" into SGLANG_CACHE_DIR on a cold start.
JIT_KERNELS = 8


def jit_kernels() -> None:
    """What a real start compiles after its weights (DeepGEMM, Triton, ...), in miniature: with
    SGLANG_CACHE_DIR set, 8 small kernel files under `fake_jit/`, written only where missing,
    so a second start of the same deployment compiles nothing (the cache report says "hit")."""
    import os
    from pathlib import Path

    root = os.environ.get("SGLANG_CACHE_DIR")
    if not root:
        return
    jit = Path(root) / "fake_jit"
    jit.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(JIT_KERNELS) if not (jit / f"kernel_{i}.cubin").exists()]
    for i in missing:
        (jit / f"kernel_{i}.cubin").write_bytes(b"\0" * 1024)
    if missing:
        log(f"fake: compiled {len(missing)} kernels into {jit}")
    else:
        log(f"fake: {JIT_KERNELS} kernels found in {jit}, nothing to compile")


def leak_memory(mb_per_s: float) -> None:
    """Grow this process's resident memory by `mb_per_s` MiB a second, for ever (a thread)."""
    import threading

    held: list[bytearray] = []

    def grow() -> None:
        while True:
            held.append(bytearray(1 << 20))  # zero-filled: every page touched, so resident
            time.sleep(1.0 / mb_per_s)

    threading.Thread(target=grow, daemon=True, name="leak").start()
