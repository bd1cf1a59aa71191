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

The engine (`_engine`), its metrics (`_metrics`) and the memory controls (`_memory`) live here
for the HTTP side to use; `--nnodes` > 1 adds the rendezvous of rank 0, and runs a worker
(`_ranks.run_worker`) for a node rank >= 1. `--fake-fault stall` stops the engine for good
`--fake-crash-after` seconds after the ready line, or once `--fake-stall-after-requests` client
generations have finished after it (so a supervisor's warmups pass first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from typing import Any

from ._engine import Generation, block_forever, engine_for, nap
from ._faults import (
    CRASH_AFTER_SERVING_LINES,
    CRASH_LOADING_LINES,
    WARMUP_ERROR_TEXT,
    flood,
    jit_kernels,
    leak_memory,
    leak_shm_segment,
    scheduler_died_lines,
    warmup_timeout,
    warmup_timeout_text,
)
from ._http import FakeHTTPServer
from ._logs import (
    PYTHON_M_WARNING,
    READY_LINE,
    STALLED_LINE,
    log,
    raw,
    scheduler_prefix,
    server_args_line,
)
from ._memory import Memory
from ._metrics import SchedulerLoop
from ._model import architecture
from ._ranks import Rendezvous, join_workers, run_worker
from ._schedulers import Schedulers, SubprocessWatchdog, kill_process_tree
from ._signals import SignalsAndDrain
from ._timings import Timings

# torch.distributed's default process-group timeout (`default_pg_timeout`, 30 minutes): the
# rendezvous bound when neither --dist-timeout nor --fake-dist-timeout says otherwise.
DEFAULT_DIST_TIMEOUT_S = 1800.0


#: When `stall` strikes after the ready line if `--fake-crash-after` is not given (seconds).
STALL_DEFAULT_S = 10.0


class FakeSGLang(SignalsAndDrain):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.faults = set(args.fake_fault or [])
        self.api_key: str | None = args.api_key or (
            os.environ.get(args.fake_api_key_env) if args.fake_api_key_env else None
        )
        self.admin_api_key: str | None = args.admin_api_key
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
        self.hung = threading.Event()
        self.gracefully_exit = threading.Event()
        self.running_phase = threading.Event()  # set by the first generate request
        self.started = time.time()
        per_node = max(1, args.tp_size // args.nnodes)
        self.local_ranks = [args.node_rank * per_node + i for i in range(per_node)]
        self.metrics, self.engine = engine_for(
            args, self.model, self.local_ranks, self.faults, self.timings, self.scheduler_crash
        )
        self.engine.on_finished = self.count_finished
        self.memory = Memory(
            self.engine,
            memory_saver=args.enable_memory_saver,
            cpu_backup=args.enable_weights_cpu_backup,
            faults=self.faults,
            release_time=args.fake_memory_release_time,
            resume_time=args.fake_resume_time,
            pause_poll=self.timings.pause_abort_poll,
            crash=self.scheduler_crash,
            scheduler_exit=self.scheduler_exit,
        )
        self.served_after_ready: int | None = None  # counting starts at the ready line
        self.rendezvous: Rendezvous | None = None

    @property
    def health_time(self) -> float:
        explicit = self.args.fake_health_time
        return self.timings.health_step if explicit is None else explicit

    @property
    def health_check_timeout(self) -> float:
        """`HEALTH_CHECK_TIMEOUT`: `SGLANG_HEALTH_CHECK_TIMEOUT` or 20 s (time-scaled)."""
        if self.args.fake_health_check_timeout is not None:
            return float(self.args.fake_health_check_timeout)
        env = os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT")
        return float(env) if env else self.timings.health_check_timeout

    @property
    def dist_timeout(self) -> float:
        a = self.args
        explicit = a.fake_dist_timeout if a.fake_dist_timeout is not None else a.dist_timeout
        return DEFAULT_DIST_TIMEOUT_S if explicit is None else float(explicit)

    def is_healthy(self) -> bool:
        """tokenizer_manager.py:is_healthy: status Up and not shutting down."""
        return self.status == "Up" and not self.gracefully_exit.is_set()

    # ----------------------------------------------------------------- requests
    def enter_running_phase(self) -> None:
        """A generate request arrives (tokenizer_manager.generate_request); the first one runs
        `auto_create_handle_loop`: running-phase handlers and the SIGTERM watchdog."""
        with self.lock:
            first = not self.running_phase.is_set()
            self.running_phase.set()
        if first:
            threading.Thread(target=self.sigterm_watchdog, daemon=True, name="sigterm").start()

    def count_finished(self, gen: Generation) -> None:
        """`--fake-stall-after-requests N`: the stall strikes once N client generations ended."""
        limit = self.args.fake_stall_after_requests
        with self.lock:
            if self.served_after_ready is None:
                return
            self.served_after_ready += 1
            due = limit is not None and self.served_after_ready >= limit
        if due and "stall" in self.faults and not self.engine.stalled:
            self.stall()
        if due and "detokenizer-stall" in self.faults and not self.engine.detokenizer_stopped:
            log("fake: detokenizer stopped")
            self.engine.stop_detokenizer()

    def stall(self) -> None:
        log(STALLED_LINE)
        self.engine.stall()

    def scheduler_crash(self, lines: Sequence[str]) -> None:
        """Scheduler rank 0 hits an exception: it logs `lines` and SIGQUITs this process."""
        assert self.schedulers is not None
        self.schedulers.crash(list(lines))

    def scheduler_exit(self, code: int, line: str) -> None:
        assert self.schedulers is not None
        self.schedulers.exit(code, line)

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
            "dist_timeout": a.dist_timeout,
            "dist_init_addr": a.dist_init_addr,
            "nnodes": a.nnodes,
            "node_rank": a.node_rank,
            "tp_size": a.tp_size,
            "watchdog_timeout": a.watchdog_timeout,
            "host": a.host,
            "port": a.port,
            "skip_server_warmup": a.skip_server_warmup,
            "api_key": self.api_key,
            "admin_api_key": self.admin_api_key,
            "served_model_name": self.model,
            "reasoning_parser": a.reasoning_parser,
            "tool_call_parser": a.tool_call_parser,
            "enable_metrics": a.enable_metrics,
            "enable_memory_saver": a.enable_memory_saver,
            "enable_weights_cpu_backup": a.enable_weights_cpu_backup,
        }
        if a.fake_long_line:
            resolved["fake_padding"] = "x" * a.fake_long_line
        return resolved

    def spawn_schedulers(self) -> Schedulers:
        args = self.args
        self.schedulers = Schedulers(
            len(self.local_ranks),
            escape_last="escape" in self.faults,
            ignore_sigterm="ignore-sigterm" in self.faults,
            gpu_mem_gib=args.fake_gpu_mem_gib,
            grandchildren=args.fake_grandchildren,
            release_s=self.timings.release
            if args.fake_release_time is None
            else args.fake_release_time,
            first_rank=self.local_ranks[0],
            prefixes=self.log_prefixes(),
        )
        return self.schedulers

    def log_prefixes(self) -> list[str]:
        """Each local scheduler's log prefix (`scheduler.py:configure_scheduler_process`):
        `""` at TP 1, ` TP{rank}` above it, ` DP{d} TP{rank}` with DP attention."""
        args = self.args
        dp = args.dp_size if args.enable_dp_attention else 1
        return [scheduler_prefix(rank, args.tp_size, dp) for rank in self.local_ranks]

    def load_weights(self) -> None:
        args = self.args
        for prefix in self.log_prefixes():
            log("Load weight begin. avail mem=78.50 GB", prefix)
        for line in args.fake_extra_log or ():
            log(line)
        assert self.schedulers is not None
        if "crash-loading" in self.faults:
            nap(args.fake_load_time / 2)
            if args.fake_crash_log:
                # The scheduler raised while loading (run_scheduler_process): its record, its
                # SIGQUIT, and the launch-phase handler kills the tree, this process included
                # (SIGKILL), as the real engine does with a truncated weights file on the CPU.
                self.scheduler_crash(args.fake_crash_log)
                block_forever()
            # A scheduler killed without a word (the OOM killer): _wait_for_scheduler_ready
            # raises, exit 1.
            for line in CRASH_LOADING_LINES:
                log(line)
            self.schedulers.kill()
            self.die(1)
        if "sigkill-loading" in self.faults:
            nap(args.fake_load_time / 2)
            self.schedulers.kill()
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer: not a word
        self.wait_loading(args.fake_load_time)
        for prefix in self.log_prefixes():
            log(
                f"Load weight end. elapsed={args.fake_load_time:.2f} s, type={self.architecture}, "
                "avail mem=12.30 GB, mem usage=66.20 GB.",
                prefix,
            )
        jit_kernels()

    def wait_loading(self, seconds: float) -> None:
        """engine.py:_wait_for_scheduler_ready: a scheduler that dies meanwhile (SIGKILLed: the
        OOM killer, or a test) is a RuntimeError naming its exit code, and exit 1."""
        assert self.schedulers is not None
        deadline = time.monotonic() + seconds
        while True:
            dead = self.schedulers.dead()
            if dead:
                rank, code = dead[0]
                for line in scheduler_died_lines(rank, code):
                    log(line)
                self.schedulers.kill()
                self.die(1)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    def start(self) -> None:
        """Up to the bound port: the launch-phase logs, schedulers, rendezvous and weights."""
        args = self.args
        raw(PYTHON_M_WARNING)
        log(server_args_line(self.server_args()))
        ignored = [extra for extra in args.unknown if extra.startswith("--")]
        if ignored:
            log(f"fake: accepted and ignored {' '.join(ignored)}")
        self.install_signals()
        if "leak-shm" in self.faults:
            self.shm_segment = leak_shm_segment()
        self.spawn_schedulers()
        if args.nnodes > 1:
            self.rendezvous = join_workers(self)
        self.load_weights()
        log(
            f"Engine startup timings (s): load_weight={args.fake_load_time:.2f}, "
            "kv_cache_allocation=0.10, scheduler_e2e="
            f"{args.fake_load_time + 0.2:.2f}, cuda_graph={{prefill=0.00, decode=0.05, "
            "target_verify=0.00, draft_prefill=0.00, draft_decode=0.00, draft_extend=0.00}, "
            "tokenizer_e2e=0.01"
        )
        if args.enable_metrics:
            interval = self.timings.scheduler_time_accounting
            SchedulerLoop(self.metrics, interval, self.engine.busy).start()
        if args.fake_compile_warmup:  # lifespan's execute_warmups, before uvicorn binds
            log("Running warmup compile-deep-gemm")
            print("\nGenerate warm up request for compiling DeepGEMM...\n", flush=True)
            self.enter_running_phase()
        assert self.schedulers is not None
        self.watchdog = SubprocessWatchdog(
            self.schedulers, self.timings.subprocess_watchdog, self.self_sigquit
        )
        self.watchdog.start()
        self.http = FakeHTTPServer((args.host, args.port), self)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        log(f"INFO:     Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")

    def run(self) -> None:
        """`python -m sglang.launch_server`: start, SGLang's own warmup, the ready line, serve."""
        args = self.args
        if args.node_rank >= 1:
            run_worker(self)
        self.start()
        if args.skip_server_warmup:
            self.status = "Up"
        else:
            # _execute_server_warmup: /model_info answers, then the warmup generation (the slow
            # part, `--fake-warmup-time`) fails, or times out after SGLANG_WARMUP_TIMEOUT
            self.self_request("GET", "/model_info")
            if "warmup-error" in self.faults:
                log(WARMUP_ERROR_TEXT)
                kill_process_tree(os.getpid())
            took = args.fake_warmup_time * (20 if "slow-warmup" in self.faults else 1)
            limit = warmup_timeout()
            if 0 < limit < took:
                nap(limit)
                log(warmup_timeout_text("127.0.0.1", args.port, limit))
                kill_process_tree(os.getpid())
            nap(took)
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
        # _freeze_gc_after_server_warmup: the admin key if set, else the API key
        key = (self.admin_api_key or self.api_key) if path == "/freeze_gc" else self.api_key
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()

    def after_ready(self) -> None:
        args = self.args
        if "log-flood" in self.faults:
            flood(args.fake_flood_lines)
        crash_after = 1.0 if args.fake_crash_after is None else args.fake_crash_after
        if "crash-after-serving" in self.faults:
            nap(crash_after)
            assert self.schedulers is not None
            self.schedulers.crash(args.fake_crash_log or CRASH_AFTER_SERVING_LINES)
        with self.lock:
            self.served_after_ready = 0
        if "memory-leak" in self.faults:
            leak_memory(args.fake_leak_mb_per_s)
        if "hang" in self.faults:
            nap(crash_after)
            log("fake: hanging with the port open")
            self.hung.set()
        if "stall" in self.faults and args.fake_stall_after_requests is None:
            # Unless told, stall late enough for a supervisor's health check and warmups to
            # finish first: the fault is a hang while serving, not a failed start.
            nap(STALL_DEFAULT_S if args.fake_crash_after is None else args.fake_crash_after)
            self.stall()
        block_forever()  # serving; the main thread wakes for signals (see SIGNAL_LOOK_S)
