"""The fake `python -m sglang.compile_deep_gemm`, shaped like sglang/compile_deep_gemm.py.

The real script sets the `spawn` start method and starts its server with a
`multiprocessing.Process` (`launch_server_process_and_send_one_request`), which also starts
Python's resource tracker: the script's tree is the script, the tracker and the server (with its
schedulers), and the tracker lives as long as the script. The script polls `/v1/models` every
10 s, sends one `/generate`, prints the success line, sleeps 10 s "for safety" and kills its
server's tree. It never notices that its server died: it polls until `--timeout`, then raises
TimeoutError. The fake does all of that, with real processes, so a supervisor of the compile step
is tested against the same tree and the same blind spot.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import urllib.error
import urllib.request

from ._schedulers import kill_process_tree
from ._server import FakeSGLang
from ._timings import Timings

SUCCESS_LINE = "DeepGEMM Kernels compilation finished successfully."


def serve_for_compile(args: argparse.Namespace) -> None:
    """The spawned server process: `launch_server` with the compile-deep-gemm warmup."""
    args.fake_mode = "serve"
    args.fake_compile_warmup = True
    FakeSGLang(args).run()


def _poll(base: str) -> bool:
    """One round of the real poll: GET /v1/models (no key), then the one /generate."""
    try:
        with urllib.request.urlopen(f"{base}/v1/models", timeout=30) as response:
            if response.status != 200:
                return False
    except (urllib.error.URLError, OSError):
        return False
    payload = {
        "sampling_params": {"max_new_tokens": 8, "temperature": 0},
        "input_ids": [0, 1, 2, 3],
    }
    request = urllib.request.Request(
        f"{base}/generate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            ok = response.status == 200
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"Sync request failed: {exc.read().decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError):
        return False
    if not ok:
        raise RuntimeError("Sync request failed")
    return True


def compile_deep_gemm(args: argparse.Namespace) -> None:
    timings = Timings(args.fake_time_scale)
    print("Disable CUDA Graph and Torch Compile to save time...", flush=True)
    print(
        "Begin DeepGEMM Kernels compilation...\n"
        "It may take a long time and timeout maybe raised "
        "while the compilation is still in progress.\n"
        "Just feel free to restart the command "
        "until the compilation is fully finished.\n",
        flush=True,
    )
    proc = multiprocessing.get_context("spawn").Process(target=serve_for_compile, args=(args,))
    proc.start()
    base = f"http://{args.host}:{args.port}"
    start = time.perf_counter()
    while time.perf_counter() - start < args.timeout:
        if _poll(base):
            break
        time.sleep(timings.compile_poll)
    else:
        raise TimeoutError(
            "DeepGEMM Kernels compilation timeout.\n\nFeel free and please restart the command."
        )
    print(f"\n{SUCCESS_LINE}", flush=True)
    time.sleep(timings.compile_settle)  # "Sleep for safety"
    assert proc.pid is not None
    kill_process_tree(proc.pid, announce=False)
