"""The fake server's lifecycle: load, bind, warm up, serve; its schedulers; SIGTERM and the drain.

Imitates `srt/entrypoints/http_server.py:launch_server` and `engine.py` (startup order, port
closed while loading, 503 during SGLang's own warmup) and `tokenizer_manager.py` (signals, drain).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from ._faults import CRASH_AFTER_SERVING_LINES, CRASH_LOADING_LINES, WARMUP_ERROR_TEXT, flood
from ._http import handler_for
from ._logs import READY_LINE, log

# --------------------------------------------------------------------------- schedulers
SCHEDULER_CODE = r"""
import os, signal, sys, time, subprocess
rank = int(sys.argv[1]); escape = sys.argv[2] == "1"; ignore = sys.argv[3] == "1"
gpu_gib = float(sys.argv[4]); grandchild = sys.argv[5] == "1"
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if escape:
    os.setsid()  # leaves the group and session; no PDEATHSIG, so it outlives its parent
else:
    import ctypes, ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        sys.exit(0)
hold = None
if gpu_gib > 0:
    import torch
    n = torch.cuda.device_count()
    dev = torch.device("cuda", rank % max(n, 1))
    hold = torch.empty(int(gpu_gib * (1 << 30)), dtype=torch.uint8, device=dev)
    hold.fill_(1); torch.cuda.synchronize(dev)
if grandchild:
    code = "import signal,time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore else "") + "time.sleep(10**6)"
    subprocess.Popen([sys.executable, "-c", code])
print(f"sglang::scheduler_TP{rank} pid={os.getpid()} ready", flush=True)
while True:
    time.sleep(3600)
"""


class FakeSGLang:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.faults = set(args.fake_fault or [])
        self.api_key: str | None = args.api_key or (
            os.environ.get(args.fake_api_key_env) if args.fake_api_key_env else None
        )
        self.status = "Starting"  # Starting -> Up -> Draining
        self.model = args.served_model_name or args.model_path
        self.children: list[subprocess.Popen[bytes]] = []
        self.requests_served = 0
        self.in_flight = 0
        self.lock = threading.Lock()
        self.hung = threading.Event()
        self.started = time.time()
        self.counters = {"prompt_tokens": 0, "generation_tokens": 0, "requests": 0}

    # ----------------------------------------------------------------- lifecycle
    def spawn_schedulers(self) -> None:
        ignore = "ignore-sigterm" in self.faults
        for rank in range(self.args.tp_size):
            escape = "escape" in self.faults and rank == self.args.tp_size - 1
            argv = [
                sys.executable,
                "-c",
                SCHEDULER_CODE,
                str(rank),
                "1" if escape else "0",
                "1" if ignore else "0",
                str(self.args.fake_gpu_mem_gib),
                "1" if self.args.fake_grandchildren else "0",
            ]
            self.children.append(subprocess.Popen(argv, stdout=sys.stderr.fileno()))

    def kill_children(self) -> None:
        for child in self.children:
            try:
                child.kill()
            except ProcessLookupError:
                pass

    def die(self, code: int) -> None:
        sys.stderr.flush()
        os._exit(code)

    def sigkill_tree(self) -> None:
        """SGLang's `kill_process_tree(os.getpid())`: children first, then itself by SIGKILL."""
        self.kill_children()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def run(self) -> None:
        args = self.args
        log(
            "'python -m sglang.launch_server' is still supported, but 'sglang serve' is the "
            "recommended entrypoint."
        )
        log(
            f"server_args=ServerArgs(model_path='{args.model_path}', tokenizer_path="
            f"'{args.model_path}', host='{args.host}', port={args.port}, "
            f"tp_size={args.tp_size}, api_key={self.api_key!r}, served_model_name='{self.model}', "
            f"reasoning_parser={args.reasoning_parser!r}, tool_call_parser={args.tool_call_parser!r}, "
            f"max_prefill_tokens={args.max_prefill_tokens}, enable_metrics={args.enable_metrics}, "
            f"watchdog_timeout={args.watchdog_timeout}, " + "x" * args.fake_long_line + ")"
        )
        ignored = [extra for extra in args.unknown if extra.startswith("--")]
        if ignored:
            log(f"fake: accepted and ignored {' '.join(ignored)}")
        self.install_signals()
        self.spawn_schedulers()
        for rank in range(args.tp_size):
            log("Load weight begin. avail mem=78.50 GB", rank if args.tp_size > 1 else None)
        if "crash-loading" in self.faults:
            time.sleep(args.fake_load_time / 2)
            for line in args.fake_crash_log or CRASH_LOADING_LINES:
                log(line)
            self.kill_children()
            self.die(1)
        time.sleep(args.fake_load_time)
        for rank in range(args.tp_size):
            log(
                f"Load weight end. elapsed={args.fake_load_time:.2f} s, type=GlmMoeDsaForCausalLM, "
                "avail mem=12.30 GB, mem usage=66.20 GB.",
                rank if args.tp_size > 1 else None,
            )
        log(
            f"Engine startup timings (s): load_weight={args.fake_load_time:.2f}, "
            "kv_cache_allocation=0.10, scheduler_e2e="
            f"{args.fake_load_time + 0.2:.2f}, cuda_graph={{'decode': 0.05}}, tokenizer_e2e=0.01"
        )
        server = ThreadingHTTPServer((args.host, args.port), handler_for(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        log(f"INFO:     Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
        warmup = args.fake_warmup_time * (20 if "slow-warmup" in self.faults else 1)
        if not args.skip_server_warmup:
            time.sleep(warmup)
            if "warmup-error" in self.faults:
                log(WARMUP_ERROR_TEXT)
                self.sigkill_tree()
        if "health-503" not in self.faults:
            self.status = "Up"
            log(f"fake: status Up at epoch={time.time():.6f}")
        log(READY_LINE)
        self.after_ready()

    def after_ready(self) -> None:
        args = self.args
        if "log-flood" in self.faults:
            flood(args.fake_flood_lines)
        if "crash-after-serving" in self.faults:
            time.sleep(args.fake_crash_after)
            for line in args.fake_crash_log or CRASH_AFTER_SERVING_LINES:
                log(line)
            self.sigkill_tree()
        if "hang" in self.faults:
            time.sleep(args.fake_crash_after)
            log("fake: hanging with the port open")
            self.hung.set()
        while True:
            time.sleep(3600)

    # ----------------------------------------------------------------- signals
    def install_signals(self) -> None:
        if "ignore-sigterm" in self.faults:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            return
        signal.signal(signal.SIGTERM, self.on_sigterm)

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if self.requests_served == 0 or self.status != "Up":
            # Before the first request SGLang has no drain handler: plain death by SIGTERM.
            self.kill_children()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log("SIGTERM received. signum=None frame=None. Draining requests and shutting down...")
        self.status = "Draining"
        threading.Thread(target=self.drain, daemon=True).start()

    def drain(self) -> None:
        last = 0.0
        while True:
            with self.lock:
                remaining = self.in_flight
            if remaining == 0:
                break
            if time.monotonic() - last >= 5:
                log(
                    f"Gracefully exiting... Remaining number of requests {remaining}. Remaining requests remaining_rids=[]."
                )
                last = time.monotonic()
            time.sleep(0.05)
        self.kill_children()
        log("fake: drained; exiting")
        self.die(0)

    # ----------------------------------------------------------------- answers
    def usage(self, prompt: str, completion: str) -> dict[str, int]:
        p, c = max(1, len(prompt.split())), max(1, len(completion.split()))
        with self.lock:
            self.counters["prompt_tokens"] += p
            self.counters["generation_tokens"] += c
            self.counters["requests"] += 1
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}
