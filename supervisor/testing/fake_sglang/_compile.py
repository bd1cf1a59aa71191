"""The fake `python -m sglang.compile_deep_gemm`: load, one request, the success line, exit 0.

With `crash-loading` its server dies but the script itself keeps polling until its timeout, as
the real one does: the supervisor must notice on its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._logs import log

if TYPE_CHECKING:
    from ._server import FakeSGLang


def compile_deep_gemm(server: FakeSGLang) -> None:
    args = server.args
    log("Compile DeepGEMM kernels. It may take a long time and timeout maybe raised")
    server.spawn_schedulers()
    log("Load weight begin. avail mem=78.50 GB")
    if "crash-loading" in server.faults:
        time.sleep(args.fake_load_time / 2)
        log("Scheduler hit an exception: Traceback (most recent call last):")
        log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB.")
        server.kill_children()
        time.sleep(args.timeout)
        log("TimeoutError: DeepGEMM Kernels compilation timeout.")
        server.die(1)
    time.sleep(args.fake_load_time)
    log(
        "Load weight end. elapsed=1.00 s, type=GlmMoeDsaForCausalLM, avail mem=12.30 GB, mem usage=66.20 GB."
    )
    time.sleep(args.fake_warmup_time)
    log("DeepGEMM Kernels compilation finished successfully.")
    time.sleep(0.3)  # the real script sleeps 10 s, then kills its server
    server.kill_children()
    server.die(0)
