"""What a sick GPU makes SGLang print, for `--fake-gpu-fault NAME` (with crash-after-serving, or
crash-loading for a failure at startup): the failing scheduler's record, as 0.5.23 logs it.

Where the text comes from, per fault:
- illegal-memory-access: printed by torch 2.11 on a real H200 (benchmarks/gpu/
  RESULTS-fault-texts-H200.txt), wrapped in SGLang's `Scheduler hit an exception:` record
  (srt/managers/scheduler.py run_scheduler_process).
- cuda-oom: the same H200 run's `torch.OutOfMemoryError` text.
- ecc, requires-reset, nccl-cuda: source-read, not seen on a GPU: CUDA's cudaGetErrorString
  (cudaErrorECCUncorrectable), NVML's nvmlErrorString (NVML_ERROR_RESET_REQUIRED, as pynvml
  raises it), NCCL's ncclGetErrorString (ncclUnhandledCudaError, as torch's ProcessGroupNCCL
  raises it).
- graph-capture-oom: srt/model_executor/runner/decode_cuda_graph_runner.py, `Capture cuda graph
  failed: {e}` and CUDA_GRAPH_CAPTURE_FAILED_MSG (runner_backend_utils/__init__.py), raised
  while the scheduler initialises.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["GPU_FAULTS"]

_SITE = "<fake-sglang>/site-packages"
_RECORD = (
    "Scheduler hit an exception: Traceback (most recent call last):",
    f'  File "{_SITE}/sglang/srt/managers/scheduler.py", line 6367, in run_scheduler_process',
    "    scheduler.run_event_loop()",
)

GPU_FAULTS: Mapping[str, tuple[str, ...]] = {
    "illegal-memory-access": (
        *_RECORD,
        f'  File "{_SITE}/torch/cuda/__init__.py", line 1162, in synchronize',
        "    return torch._C._cuda_synchronize()",
        "torch.AcceleratorError: CUDA error: an illegal memory access was encountered",
        "Search for `cudaErrorIllegalAddress' in https://docs.nvidia.com/cuda/cuda-runtime-api/"
        "group__CUDART__TYPES.html for more information.",
        "CUDA kernel errors might be asynchronously reported at some other API call, so the "
        "stacktrace below might be incorrect.",
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
    ),
    "cuda-oom": (
        *_RECORD,
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
        "total capacity of 139.80 GiB of which 1.29 GiB is free.",
    ),
    "ecc": (
        *_RECORD,
        "torch.AcceleratorError: CUDA error: uncorrectable ECC error encountered",
    ),
    "requires-reset": (
        *_RECORD,
        "pynvml.NVMLError_ResetRequired: GPU requires reset",
    ),
    "nccl-cuda": (
        *_RECORD,
        "torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
        "ProcessGroupNCCL.cpp:3356, unhandled cuda error (run with NCCL_DEBUG=INFO for details), "
        "NCCL version 2.27.5",
        "ncclUnhandledCudaError: Call to CUDA function failed.",
    ),
    "graph-capture-oom": (
        # raised inside Scheduler(): run_scheduler_process's record wraps it
        "Scheduler hit an exception: Traceback (most recent call last):",
        f'  File "{_SITE}/sglang/srt/model_executor/runner/decode_cuda_graph_runner.py", line 603',
        "Exception: Capture cuda graph failed: CUDA out of memory. Tried to allocate 1.50 GiB.",
        "Possible solutions:",
        "1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)",
        "2. set --cuda-graph-max-bs-decode to a smaller value (e.g., 16)",
    ),
}
