"""The fake server's lifecycle: load, bind, warm up, serve; SIGTERM, SIGQUIT and the drain.

Order and texts of srt/entrypoints/http_server.py:launch_server and engine.py: the port stays
closed while loading, `/health` answers 503 during SGLang's own warmup, whose `/generate` (sent
to itself, before the ready line) is the first generate request. That request installs the
running-phase signal handlers and starts `sigterm_watchdog` (tokenizer_manager.py:
auto_create_handle_loop), so a ready server always drains on SIGTERM: the flag is noticed within
5 s, in-flight requests are waited for (counted every 5 s), schedulers get 15 s after
ShutdownReq, the rest of the tree is killed, and the process exits 0 by itself. Before that
request SIGTERM simply kills (the default action); `--skip-server-warmup` leaves it so until the
first generation, a `/health` included.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
import uuid
from http.server import ThreadingHTTPServer
from typing import Any

from ._faults import CRASH_AFTER_SERVING_LINES, CRASH_LOADING_LINES, WARMUP_ERROR_TEXT, flood
from ._http import handler_for
from ._logs import (
    LAUNCH_SIGQUIT_LINE,
    PYTHON_M_WARNING,
    READY_LINE,
    RUNNING_SIGQUIT_LINE,
    SIGTERM_LINE,
    UVICORN_SHUTDOWN_LINES,
    drain_line,
    log,
    raw,
    server_args_line,
    stragglers_line,
)
from ._model import architecture
from ._schedulers import Schedulers, SubprocessWatchdog, kill_process_tree
from ._timings import Timings


class FakeSGLang:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.faults = set(args.fake_fault or [])
        self.api_key: str | None = args.api_key or (
            os.environ.get(args.fake_api_key_env) if args.fake_api_key_env else None
        )
        self.timings = Timings(args.fake_time_scale)
        self.status = "Starting"  # Starting -> Up (ServerStatus in tokenizer_manager.py)
        self.model = args.served_model_name or args.model_path
        self.architecture, self.model_type = architecture(
            args.model_path, args.served_model_name, args.fake_architecture
        )
        self.schedulers: Schedulers | None = None
        self.watchdog: SubprocessWatchdog | None = None
        self.http: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.rid_to_state: dict[str, float] = {}  # in-flight requests, as the drain counts them
        self.hung = threading.Event()
        self.gracefully_exit = threading.Event()
        self.running_phase = threading.Event()  # set by the first generate request
        self.started = time.time()
        self.counters = {"prompt_tokens": 0, "generation_tokens": 0, "requests": 0}

    @property
    def health_time(self) -> float:
        explicit = self.args.fake_health_time
        return self.timings.health_step if explicit is None else explicit

    # ----------------------------------------------------------------- requests
    def begin_request(self, rid: str | None = None) -> str:
        """A generate request enters (tokenizer_manager.generate_request); the first one also
        runs `auto_create_handle_loop`: running-phase handlers and the SIGTERM watchdog."""
        rid = rid or uuid.uuid4().hex
        with self.lock:
            self.rid_to_state[rid] = time.monotonic()
            first = not self.running_phase.is_set()
            self.running_phase.set()
        if first:
            threading.Thread(target=self.sigterm_watchdog, daemon=True, name="sigterm").start()
        return rid

    def end_request(self, rid: str) -> None:
        with self.lock:
            self.rid_to_state.pop(rid, None)

    def usage(self, prompt: str, completion: str) -> dict[str, int]:
        p, c = max(1, len(prompt.split())), max(1, len(completion.split()))
        with self.lock:
            self.counters["prompt_tokens"] += p
            self.counters["generation_tokens"] += c
            self.counters["requests"] += 1
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}

    # ----------------------------------------------------------------- lifecycle
    def server_args(self) -> dict[str, Any]:
        """A subset of `ServerArgs.resolved_dict()`, in its order (the real one has 546 keys)."""
        a = self.args
        resolved: dict[str, Any] = {
            "model_path": a.model_path,
            "tokenizer_path": a.model_path,
            "trust_remote_code": a.trust_remote_code,
            "context_length": a.context_length,
            "kv_cache_dtype": a.kv_cache_dtype,
            "mem_fraction_static": a.mem_fraction_static,
            "max_running_requests": a.max_running_requests,
            "max_total_tokens": a.max_total_tokens,
            "max_prefill_tokens": a.max_prefill_tokens,
            "tp_size": a.tp_size,
            "watchdog_timeout": a.watchdog_timeout,
            "host": a.host,
            "port": a.port,
            "skip_server_warmup": a.skip_server_warmup,
            "api_key": self.api_key,
            "served_model_name": self.model,
            "reasoning_parser": a.reasoning_parser,
            "tool_call_parser": a.tool_call_parser,
            "enable_metrics": a.enable_metrics,
        }
        if a.fake_long_line:
            resolved["fake_padding"] = "x" * a.fake_long_line
        return resolved

    def start(self) -> None:
        """Up to the bound port: the launch-phase logs, schedulers and weights."""
        args = self.args
        raw(PYTHON_M_WARNING)
        log(server_args_line(self.server_args()))
        ignored = [extra for extra in args.unknown if extra.startswith("--")]
        if ignored:
            log(f"fake: accepted and ignored {' '.join(ignored)}")
        self.install_signals()
        self.schedulers = Schedulers(
            args.tp_size,
            escape_last="escape" in self.faults,
            ignore_sigterm="ignore-sigterm" in self.faults,
            gpu_mem_gib=args.fake_gpu_mem_gib,
            grandchildren=args.fake_grandchildren,
            release_s=self.timings.release
            if args.fake_release_time is None
            else args.fake_release_time,
        )
        ranks = range(args.tp_size) if args.tp_size > 1 else [None]
        for rank in ranks:
            log("Load weight begin. avail mem=78.50 GB", rank)
        for line in args.fake_extra_log or ():
            log(line)
        if "crash-loading" in self.faults:
            time.sleep(args.fake_load_time / 2)
            for line in args.fake_crash_log or CRASH_LOADING_LINES:
                log(line)
            self.schedulers.kill()
            self.die(1)
        if "sigkill-loading" in self.faults:
            time.sleep(args.fake_load_time / 2)
            self.schedulers.kill()
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer: not a word
        time.sleep(args.fake_load_time)
        for rank in ranks:
            log(
                f"Load weight end. elapsed={args.fake_load_time:.2f} s, type={self.architecture}, "
                "avail mem=12.30 GB, mem usage=66.20 GB.",
                rank,
            )
        log(
            f"Engine startup timings (s): load_weight={args.fake_load_time:.2f}, "
            "kv_cache_allocation=0.10, scheduler_e2e="
            f"{args.fake_load_time + 0.2:.2f}, cuda_graph={{'decode': 0.05}}, tokenizer_e2e=0.01"
        )
        if args.fake_compile_warmup:  # lifespan's execute_warmups, before uvicorn binds
            log("Running warmup compile-deep-gemm")
            print("\nGenerate warm up request for compiling DeepGEMM...\n", flush=True)
            self.end_request(self.begin_request())
        self.watchdog = SubprocessWatchdog(
            self.schedulers, self.timings.subprocess_watchdog, self.self_sigquit
        )
        self.watchdog.start()
        self.http = ThreadingHTTPServer((args.host, args.port), handler_for(self))
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        log(f"INFO:     Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")

    def run(self) -> None:
        """`python -m sglang.launch_server`: start, SGLang's own warmup, the ready line, serve."""
        args = self.args
        self.start()
        if args.skip_server_warmup:
            self.status = "Up"
        else:
            time.sleep(args.fake_warmup_time * (20 if "slow-warmup" in self.faults else 1))
            if "warmup-error" in self.faults:
                log(WARMUP_ERROR_TEXT)
                kill_process_tree(os.getpid())
            self.self_request("GET", "/model_info")
            self.self_request(
                "POST",
                "/generate",
                {
                    "sampling_params": {"temperature": 0, "max_new_tokens": 8},
                    "text": "The capital city of France is",
                },
            )
            if "health-503" not in self.faults:
                self.status = "Up"
        if self.status == "Up":
            log(f"fake: status Up at epoch={time.time():.6f}")
        self.self_request("POST", "/freeze_gc")
        log(READY_LINE)
        self.after_ready()

    def self_request(self, method: str, path: str, body: Any = None) -> None:
        """SGLang's warmup thread talks to its own HTTP server, with its own API key."""
        url = f"http://127.0.0.1:{self.args.port}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()

    def after_ready(self) -> None:
        args = self.args
        if "log-flood" in self.faults:
            flood(args.fake_flood_lines)
        if "crash-after-serving" in self.faults:
            time.sleep(args.fake_crash_after)
            assert self.schedulers is not None
            self.schedulers.crash(args.fake_crash_log or CRASH_AFTER_SERVING_LINES)
        if "hang" in self.faults:
            time.sleep(args.fake_crash_after)
            log("fake: hanging with the port open")
            self.hung.set()
        while True:
            time.sleep(3600)

    def die(self, code: int) -> None:
        sys.stderr.flush()
        os._exit(code)

    # ----------------------------------------------------------------- signals
    def install_signals(self) -> None:
        signal.signal(signal.SIGQUIT, self.on_sigquit)
        if "ignore-sigterm" in self.faults:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, self.on_sigterm)

    def self_sigquit(self) -> None:
        os.kill(os.getpid(), signal.SIGQUIT)

    def on_sigquit(self, signum: int, frame: Any) -> None:
        """A child failed: launch-phase or running-phase handler, then the tree dies by SIGKILL."""
        if self.running_phase.is_set():
            log(RUNNING_SIGQUIT_LINE)
            if self.watchdog is not None:
                self.watchdog.stop()
        else:
            log(LAUNCH_SIGQUIT_LINE)
        kill_process_tree(os.getpid())

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if not self.running_phase.is_set():
            # No drain installed yet: SIGTERM keeps its default action.
            if self.schedulers is not None:
                self.schedulers.kill()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log(SIGTERM_LINE)
        self.gracefully_exit.set()

    def sigterm_watchdog(self) -> None:
        """tokenizer_manager.py:TokenizerManager.sigterm_watchdog, with SGLang's timings."""
        t = self.timings
        while not self.gracefully_exit.is_set():
            time.sleep(t.sigterm_notice)
        while True:
            with self.lock:
                rids = list(self.rid_to_state)
            log(drain_line(rids))
            if not rids:
                break
            time.sleep(t.drain_poll)
        if self.watchdog is not None:
            self.watchdog.stop()  # child exits are expected now, not crashes
        assert self.schedulers is not None
        self.schedulers.shutdown()
        deadline = time.monotonic() + t.scheduler_exit
        while time.monotonic() < deadline and self.schedulers.alive():
            time.sleep(0.1)
        stragglers = self.schedulers.alive()
        if stragglers:
            log(stragglers_line(t.scheduler_exit, stragglers))
        kill_process_tree(os.getpid(), include_parent=False)
        for line in UVICORN_SHUTDOWN_LINES:
            log(line.format(pid=os.getpid()))
        if self.http is not None:
            self.http.shutdown()
        kill_process_tree(os.getpid(), include_parent=False)  # launch_server.py's `finally`
        self.die(0)
