"""How SGLang 0.5.23 dies, read from the tail of its log: the crash causes and what to do.

The table is ordered: the first cause whose text is in an error line wins, and a sick GPU's
texts come first because SGLang's generic lines (`Subprocess ... crashed`, the SIGQUIT) always
follow them in the tail. Each text is SGLang's, PyTorch's, CUDA's, NVML's or NCCL's own words,
with its source next to it; tests/test_fidelity.py checks SGLang's against the installed source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

__all__ = ["CAUSE_HINTS", "CRASH_CAUSES", "classify_crash", "is_error_line"]


# --------------------------------------------------------------------------- crash causes
#: (cause, patterns) in priority order: the first cause with a pattern on an error line of the
#: tail wins. The texts are SGLang's and PyTorch's own; where SGLang prints them:
#: - scheduler-killed-during-init: srt/entrypoints/engine.py:_scheduler_died_error
#: - watchdog-timeout: srt/utils/watchdog.py:WatchdogRaw._watchdog_once
#: - warmup-failed: srt/entrypoints/http_server.py:_execute_server_warmup
#: - scheduler-exception: srt/managers/scheduler.py:run_scheduler_process
#: - subprocess-crashed: srt/utils/watchdog.py:SubprocessWatchdog._check_processes (a child
#:   died with no Python traceback: a signal, a C++ abort, the OOM killer)
#: - child-failed: the SIGQUIT that every child failure ends in, launch phase
#:   (srt/entrypoints/engine.py: launch_phase_sigquit_handler) or running phase
#:   (srt/managers/tokenizer_manager.py: SignalHandler.running_phase_sigquit_handler)
CRASH_CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A sick GPU first: its error outranks every generic line that follows it in the tail
    # (SGLang's "Subprocess ... crashed", the SIGQUIT, an OOM while tearing down). Texts as a real
    # H200 printed them (benchmarks/gpu/RESULTS-fault-texts-H200.txt: torch's AcceleratorError,
    # cupy's CUDA_ERROR_ILLEGAL_ADDRESS) and as CUDA, NVML and NCCL name them
    # (cudaGetErrorString, nvmlErrorString, ncclGetErrorString).
    (
        "gpu-illegal-memory-access",
        (
            "an illegal memory access was encountered",
            "CUDA_ERROR_ILLEGAL_ADDRESS",
            "cudaErrorIllegalAddress",
        ),
    ),
    (
        "gpu-ecc-error",
        (
            "uncorrectable ECC error encountered",
            "CUDA_ERROR_ECC_UNCORRECTABLE",
            "cudaErrorECCUncorrectable",
        ),
    ),
    ("gpu-requires-reset", ("GPU requires reset", "NVML_ERROR_RESET_REQUIRED", "GPU is lost")),
    ("nccl-unhandled-cuda-error", ("ncclUnhandledCudaError", "unhandled cuda error")),
    # The capture at startup runs out of memory: a configuration error, not a sick GPU
    # (srt/model_executor/runner/decode_cuda_graph_runner.py, prefill_cuda_graph_runner.py).
    (
        "cuda-graph-capture-failed",
        ("Capture cuda graph failed", "Capture prefill CUDA graph failed"),
    ),
    (
        "cuda-out-of-memory",
        ("CUDA out of memory", "torch.OutOfMemoryError", "CUDA error: out of memory"),
    ),
    (
        "nccl-error",
        (
            "NCCL error",
            "ncclInternalError",
            "ncclUnhandledCudaError",
            "ncclSystemError",
            "ProcessGroupNCCL",
        ),
    ),
    ("address-in-use", ("Address already in use", "[Errno 98]")),
    (
        "missing-weights",
        (
            "does not appear to have a file named",
            "No such file or directory: '",
            "Can't load the configuration",
            "safetensors_rust.SafetensorError",
            "is not a local folder and is not a valid model identifier",
        ),
    ),
    ("scheduler-killed-during-init", ("scheduler died during initialization (exit code: -9)",)),
    ("watchdog-timeout", ("watchdog timeout (",)),
    ("warmup-failed", ("Initialization failed. warmup error",)),
    ("scheduler-exception", ("Scheduler hit an exception",)),
    ("subprocess-crashed", ("Triggering SIGQUIT for cleanup",)),
    (
        "child-failed",
        (
            "Received sigquit from a child process. It usually means the child failed.",
            "It usually means one child failed.",
        ),
    ),
)

#: What an operator does about each cause (used by the crash report and the runbook).
CAUSE_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "gpu-illegal-memory-access": "a kernel or the GPU faulted; the GPU's state is undefined "
        "now: recycle onto another GPU, never restart in place; if it repeats on new hosts, it "
        "is a kernel bug (sglang #26987): pin the image that worked",
        "gpu-ecc-error": "the GPU's memory is failing: the replica needs another host; report "
        "the GPU (nvidia-smi -q -d ECC) to the platform",
        "gpu-requires-reset": "NVML says the GPU must be reset: only a new host helps",
        "nccl-unhandled-cuda-error": "a CUDA error under NCCL (often a sick GPU or NVLink): "
        "recycle onto another host; NCCL_DEBUG=INFO names the rank",
        "cuda-graph-capture-failed": "a configuration error: CUDA-graph capture ran out of "
        "memory at startup; lower --mem-fraction-static or --cuda-graph-max-bs-decode",
        "cuda-out-of-memory": "lower --mem-fraction-static or --max-running-requests",
        "nccl-error": "a GPU or NVLink fault: let the platform recycle the container",
        "address-in-use": "a stale server holds the port; the preflight port check finds it",
        "missing-weights": "the weights volume is incomplete: run download_model again",
        "scheduler-killed-during-init": "the OS OOM killer: the container needs more host memory",
        "watchdog-timeout": "a batch hung longer than --watchdog-timeout: GPU or kernel hang",
        "warmup-failed": "SGLang's own warmup failed; raise SGLANG_WARMUP_TIMEOUT for DeepGEMM",
        "scheduler-exception": "read the traceback in the tail above",
        "subprocess-crashed": "a scheduler died without a traceback (its exit code names the "
        "signal: -9 OOM killer, -6 abort, -11 segfault): recycle; if it repeats, check the host",
        "child-failed": "a child process failed: its traceback, if any, is in the tail above",
        "unknown": "read the tail above",
    }
)

# A warning mentions NCCL or CUDA all the time without anything being wrong: PyTorch's c10
# warnings (`[W1102 10:00:00.1 ProcessGroupNCCL.cpp:4715] Warning: ...`, with a `[rank0]:`
# prefix under torchrun), Python's warnings (`UserWarning: ...`), logging's `WARNING`.
_WARNING_LINE = re.compile(
    r"(?:^|\]:?)\[W(?:\d{4}| )|\bWarning:|\w+Warning\b|\bWARNING\b|warnings\.warn\(",
)
# What an error line says somewhere: an exception name, a traceback, a failure, a crash, a
# signal, a timeout, c10's `[E1102 ...]` lines, errno texts.
_ERROR_WORDS = re.compile(
    r"error|exception|traceback|fail|crash|killed|timeout|timed out|sigquit|abort|fatal|"
    r"terminat|out of memory|already in use|no such file|does not appear|not a valid|"
    r"can't load|(?:^|\]:?)\[E(?:\d{4}| )",
    re.IGNORECASE,
)


def is_error_line(line: str) -> bool:
    """Whether a log line reports an error, not a warning that merely names NCCL or CUDA."""
    return not _WARNING_LINE.search(line) and bool(_ERROR_WORDS.search(line))


def classify_crash(lines: Sequence[str]) -> str:
    """Name the cause of a crash from the last lines of SGLang's log, or "unknown".

    Only error lines count (`is_error_line`), so a warning that mentions NCCL names no cause.
    """
    text = "\n".join(line for line in lines if is_error_line(line))
    for cause, patterns in CRASH_CAUSES:
        if any(p in text for p in patterns):
            return cause
    return "unknown"
