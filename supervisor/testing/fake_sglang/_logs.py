"""SGLang's log format and its exact lines, each from the 0.5.23 source file and function named.

Format `[%Y-%m-%d %H:%M:%S] message` on stderr, ` TPn` inside the brackets for a scheduler rank.
Every line goes through `log` (or `raw`, for what SGLang prints outside `logging`) under one
lock, flushed at once, so lines of concurrent threads never interleave mid-line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

_log_lock = threading.Lock()

# srt/entrypoints/http_server.py:_wait_and_warmup
READY_LINE = "The server is fired up and ready to roll!"
#: Where the fake says SGLang's files are, in warnings and tracebacks: SGLang's texts, at a place
#: that is plainly the fake's (a real path would be a made-up one on this machine).
FAKE_SITE = "<fake-sglang>/site-packages"
# sglang/launch_server.py:__main__, through `warnings.warn` (so no timestamp, on stderr)
PYTHON_M_WARNING = (
    f"{FAKE_SITE}/sglang/launch_server.py:71: UserWarning: "
    "'python -m sglang.launch_server' is still supported, but 'sglang serve' is the recommended "
    "entrypoint.\n  Example: sglang serve --model-path <model> [options]\n  warnings.warn("
)
# srt/managers/tokenizer_manager.py:SignalHandler.sigterm_handler, called by the event loop with
# no arguments (loop.add_signal_handler), hence signum=None frame=None
SIGTERM_LINE = "SIGTERM received. signum=None frame=None. Draining requests and shutting down..."
# srt/entrypoints/engine.py:launch_phase_sigquit_handler (before the first generate request)
LAUNCH_SIGQUIT_LINE = "Received sigquit from a child process. It usually means the child failed."
# srt/managers/tokenizer_manager.py:SignalHandler.running_phase_sigquit_handler (after it)
RUNNING_SIGQUIT_LINE = (
    "SIGQUIT received. signum=None, frame=None. It usually means one child failed."
)
# srt/entrypoints/http_server.py:health_generate
HEALTH_DURING_SHUTDOWN_LINE = "Health check request received during shutdown. Returning 503."
# srt/distributed/bootstrap.py:init_parallel_runtime, around the rendezvous (each rank)
INIT_PARALLEL_BEGIN_LINE = "Init parallel begin."
# the fake's own line when `--fake-fault stall` strikes (SGLang says nothing)
STALLED_LINE = "fake: scheduler stalled"
# uvicorn's own shutdown, once the drain sets `server.should_exit` (http_server.py stop hook)
UVICORN_SHUTDOWN_LINES = (
    "INFO:     Shutting down",
    "INFO:     Waiting for application shutdown.",
    "INFO:     Application shutdown complete.",
    "INFO:     Finished server process [{pid}]",
)


def log(message: str, prefix: str = "") -> None:
    """A record as `configure_logger` formats it: `[%Y-%m-%d %H:%M:%S{prefix}] message`; a
    scheduler's records carry its `scheduler_prefix`, the other processes' none."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    raw(f"[{stamp}{prefix}] {message}")


def scheduler_prefix(tp_rank: int, tp_size: int, attn_dp_size: int = 1) -> str:
    """srt/managers/scheduler.py:configure_scheduler_process: ` DP{d}` when the scheduler has a
    DP rank (the DP controller gives one; with DP attention `tp_rank // (tp_size // dp_size)`,
    `compute_dp_attention_world_info`), ` TP{t}` only when `tp_size > 1`: a single scheduler's
    records have no tag at all. (` PP`, ` ATTN_CP`, ` MOE_DP` and ` EP` come when those sizes are
    over 1; the fake runs none of those layouts.)"""
    prefix = ""
    if attn_dp_size > 1:
        prefix += f" DP{tp_rank // max(1, tp_size // attn_dp_size)}"
    if tp_size > 1:
        prefix += f" TP{tp_rank}"
    return prefix


def raw(text: str) -> None:
    """A line as printed outside `logging` (print, warnings): no timestamp."""
    with _log_lock:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def server_args_line(resolved: Mapping[str, Any]) -> str:
    """srt/entrypoints/engine.py:_launch_subprocesses logs `server_args={resolved_dict()}`: a dict.

    Its repr escapes quotes and backslashes in values (an API key included, in clear).
    """
    return f"server_args={dict(resolved)!r}"


def drain_line(rids: Iterable[str]) -> str:
    """srt/managers/tokenizer_manager.py:TokenizerManager.sigterm_watchdog, every 5 s."""
    remaining_rids = list(rids)
    return (
        f"Gracefully exiting... Remaining number of requests {len(remaining_rids)}. "
        f"Remaining requests {remaining_rids=}."
    )


def stragglers_line(seconds: float, pids: list[int]) -> str:
    """tokenizer_manager.py:sigterm_watchdog, schedulers alive after `_SCHEDULER_EXIT_TIMEOUT_SECS`."""
    return (
        f"Schedulers still alive {seconds:g}s after ShutdownReq, killing them before they "
        f"released: {pids}"
    )


def kill_tree_line(parent_pid: int, include_parent: bool, pid: int) -> str:
    """srt/utils/common.py:kill_process_tree logs each call."""
    return (
        f"kill_process_tree called: parent_pid={parent_pid}, "
        f"include_parent={include_parent}, pid={pid}"
    )


def subprocess_crashed_line(name: str, pid: int, exitcode: int) -> str:
    """srt/utils/watchdog.py:SubprocessWatchdog._check_processes."""
    return (
        f"Subprocess {name} (pid={pid}) crashed with exit code {exitcode}. "
        f"Triggering SIGQUIT for cleanup..."
    )


def health_failed_line(timeout: float, tic: float, last_receive: float) -> str:
    """srt/entrypoints/http_server.py:health_generate, when no output came within the timeout;
    `tic` and `last_receive` are wall-clock times."""
    tic_time = time.strftime("%H:%M:%S", time.localtime(tic))
    last = time.strftime("%H:%M:%S", time.localtime(last_receive))
    return (
        f"Health check failed. Server couldn't get a response from detokenizer for last "
        f"{timeout:g} seconds. tic start time: {tic_time}. last_heartbeat time: {last}"
    )


def worker_sigterm_line(node_rank: int) -> str:
    """srt/entrypoints/engine.py:Engine._launch_subprocesses, a rank >= 1's SIGTERM handler."""
    return (
        f"SIGTERM received on node_rank {node_rank}; waiting for the rank-0 ShutdownReq "
        "broadcast to stop the schedulers."
    )


def dummy_health_line(host: str, port: int) -> str:
    """srt/utils/common.py:launch_dummy_health_check_server (`NetworkAddress.to_host_port_str`)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"Dummy health check server started in background thread at {where}"


def scheduler_terminated_line(pid: int, exitcode: int | None) -> str:
    """engine.py:block_until_scheduler_exits, a rank >= 1 joining its schedulers in order."""
    return f"Scheduler or DataParallelController {pid} terminated with {exitcode}"
