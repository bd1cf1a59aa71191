"""A fake SGLang 0.5.23 server: a real process that starts, answers, logs, spawns and dies like one.

Run it as `python -m supervisor.testing.fake_sglang [SGLang flags] [--fake-* flags]`. It accepts the
SGLang flags that matter here (`--port`, `--api-key`, `--tp-size`, `--reasoning-parser`, ...) and
ignores the rest, so a profile's real SGLang argv runs on it unchanged. What it imitates, from
`shared/reference/sglang-0.5.23-behaviour.md`:

- the port stays closed while "weights load" (connection refused), then `/health` answers 503 with
  an empty body during SGLang's own warmup, then 200 after `/health` takes `--fake-health-time`;
- SGLang's log format on stderr, the `server_args=` line with the API key in clear, the phase
  lines and the ready line `The server is fired up and ready to roll!`;
- scheduler child processes (one per TP rank) in the same process group, which set
  PR_SET_PDEATHSIG=SIGKILL and so die with their parent;
- SIGTERM to the main pid: before the first request, plain death by SIGTERM; after it, a drain
  that logs like SGLang's, then exit 0;
- the OpenAI API: chat completions with `reasoning_content`, `tool_calls`, JSON mode and SSE
  streaming ending in `[DONE]`, legacy completions, `/v1/models`, `/generate`, `/metrics`, and the
  API key rules (401 `{"error": "Unauthorized"}`, `/health*`, `/ready`, `/metrics` exempt).

Faults (`--fake-fault NAME`, repeatable): crash-loading, crash-after-serving, hang, health-503,
ignore-sigterm, slow-warmup, warmup-error, log-flood, escape (a scheduler that leaves the session
and survives its parent). Stdlib only, so it runs anywhere Python does, GPU machines included.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READY_LINE = "The server is fired up and ready to roll!"
FAULTS = (
    "crash-loading",
    "crash-after-serving",
    "hang",
    "health-503",
    "ignore-sigterm",
    "slow-warmup",
    "warmup-error",
    "log-flood",
    "escape",
)
_PR_SET_PDEATHSIG = 1

_log_lock = threading.Lock()


def log(message: str, rank: int | None = None) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    tag = f" TP{rank}" if rank is not None else ""
    with _log_lock:
        sys.stderr.write(f"[{stamp}{tag}] {message}\n")
        sys.stderr.flush()


def _prctl_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
            for line in args.fake_crash_log or [
                "Traceback (most recent call last):",
                '  File "sglang/srt/entrypoints/engine.py", line 2023, in _wait_for_scheduler_ready',
                "RuntimeError: Rank 0 scheduler died during initialization (exit code: -9). If exit "
                "code is -9 (SIGKILL), a common cause is the OS OOM killer. Run `dmesg -T | grep -i "
                "oom` to check.",
            ]:
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
        server = ThreadingHTTPServer((args.host, args.port), _handler_for(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        log(f"INFO:     Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
        warmup = args.fake_warmup_time * (20 if "slow-warmup" in self.faults else 1)
        if not args.skip_server_warmup:
            time.sleep(warmup)
            if "warmup-error" in self.faults:
                log(
                    "Initialization failed. warmup error: Traceback (most recent call last):\n"
                    "RuntimeError: CUDA error: an illegal memory access was encountered"
                )
                self.sigkill_tree()
        if "health-503" not in self.faults:
            self.status = "Up"
            log(f"fake: status Up at epoch={time.time():.6f}")
        log(READY_LINE)
        self.after_ready()

    def compile(self) -> None:
        """`sglang.compile_deep_gemm`: load, one request, the success line, exit 0.

        With `crash-loading` its server dies but the script itself keeps polling until its
        timeout, as the real one does: the supervisor must notice on its own.
        """
        args = self.args
        log("Compile DeepGEMM kernels. It may take a long time and timeout maybe raised")
        self.spawn_schedulers()
        log("Load weight begin. avail mem=78.50 GB")
        if "crash-loading" in self.faults:
            time.sleep(args.fake_load_time / 2)
            log("Scheduler hit an exception: Traceback (most recent call last):")
            log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB.")
            self.kill_children()
            time.sleep(args.timeout)
            log("TimeoutError: DeepGEMM Kernels compilation timeout.")
            self.die(1)
        time.sleep(args.fake_load_time)
        log(
            "Load weight end. elapsed=1.00 s, type=GlmMoeDsaForCausalLM, avail mem=12.30 GB, mem usage=66.20 GB."
        )
        time.sleep(args.fake_warmup_time)
        log("DeepGEMM Kernels compilation finished successfully.")
        time.sleep(0.3)  # the real script sleeps 10 s, then kills its server
        self.kill_children()
        self.die(0)

    def after_ready(self) -> None:
        args = self.args
        if "log-flood" in self.faults:
            self.flood(args.fake_flood_lines)
        if "crash-after-serving" in self.faults:
            time.sleep(args.fake_crash_after)
            for line in args.fake_crash_log or [
                "Scheduler hit an exception: Traceback (most recent call last):",
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
                "Received sigquit from a child process. It usually means the child failed.",
            ]:
                log(line)
            self.sigkill_tree()
        if "hang" in self.faults:
            time.sleep(args.fake_crash_after)
            log("fake: hanging with the port open")
            self.hung.set()
        while True:
            time.sleep(3600)

    def flood(self, lines: int) -> None:
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


# --------------------------------------------------------------------------- chat logic
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tool_arguments(tool: dict[str, Any], prompt: str) -> dict[str, Any]:
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    words = re.findall(r"\b[A-Z][a-zA-Z]+\b", prompt)
    guess = words[-1] if words else "example"
    out: dict[str, Any] = {}
    for name in params.get("required") or list(props)[:1]:
        spec = props.get(name) or {}
        if spec.get("enum"):
            out[name] = spec["enum"][0]
        elif spec.get("type") in ("integer", "number"):
            out[name] = 1
        elif spec.get("type") == "boolean":
            out[name] = True
        else:
            out[name] = guess
    return out


def chat_answer(server: FakeSGLang, body: dict[str, Any]) -> dict[str, Any]:
    """Decide what the model 'says': reasoning, content and tool calls, like SGLang's parsers."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    prompt = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
    user = _text_of(last.get("content")) if isinstance(last, dict) else ""
    kwargs = body.get("chat_template_kwargs") or {}
    thinking = (
        bool(server.args.reasoning_parser) and kwargs.get("enable_thinking", True) is not False
    )
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice", "auto")
    answer: dict[str, Any] = {
        "reasoning": None,
        "content": "",
        "tool_calls": None,
        "prompt": prompt,
    }
    if thinking:
        answer["reasoning"] = f"The user asks: {user[:60]}. Let me think step by step."
    if isinstance(last, dict) and last.get("role") == "tool":
        answer["content"] = (
            f"Based on the tool result {_text_of(last.get('content'))}, here is the answer."
        )
    elif tools and tool_choice != "none":
        tool = tools[0]
        name = (tool.get("function") or {}).get("name", "tool")
        call_id = "call_" + uuid.uuid4().hex[:24]
        args = json.dumps(_tool_arguments(tool, user))
        answer["tool_calls"] = [
            {
                "id": call_id,
                "index": 0,
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
        ]
    elif (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        if "planet" in user.lower():
            data: Any = {
                "planets": [
                    {"name": "Mercury", "diameter_km": 4879},
                    {"name": "Venus", "diameter_km": 12104},
                    {"name": "Earth", "diameter_km": 12742},
                ]
            }
        else:
            data = {"answer": f"fake answer to: {user[:60]}"}
        answer["content"] = json.dumps(data)
    else:
        answer["content"] = f"This is a fake answer to: {user[:80]}"
    return answer


def _handler_for(server: FakeSGLang) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "uvicorn"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def access(self, status: int) -> None:
            phrase = {
                200: "OK",
                400: "Bad Request",
                401: "Unauthorized",
                404: "Not Found",
                503: "Service Unavailable",
            }
            log(
                f"INFO:     {self.client_address[0]}:{self.client_address[1]} - "
                f'"{self.command} {self.path} HTTP/1.1" {status} {phrase.get(status, "")}'
            )

        # -------------------------------------------------------------- plumbing
        def send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.access(status)

        def send_empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.access(status)

        def send_error_json(self, status: int, message: str) -> None:
            self.send_json(
                status,
                {
                    "object": "error",
                    "message": message,
                    "type": "BadRequestError",
                    "param": None,
                    "code": status,
                },
            )

        def authorized(self) -> bool:
            path = self.path.split("?", 1)[0]
            if not server.api_key or path.startswith(("/health", "/ready", "/metrics")):
                return True
            return self.headers.get("Authorization", "") == f"Bearer {server.api_key}"

        def read_body(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self.send_error_json(400, "Invalid JSON body")
                return None
            if not isinstance(body, dict):
                self.send_error_json(400, "Body must be a JSON object")
                return None
            return body

        def hang_if_hung(self) -> None:
            if server.hung.is_set():
                time.sleep(10**6)

        # -------------------------------------------------------------- routes
        def do_GET(self) -> None:
            self.hang_if_hung()
            path = self.path.split("?", 1)[0]
            if not self.authorized():
                self.send_json(401, {"error": "Unauthorized"})
                return
            if path in ("/health", "/health_generate"):
                if server.status != "Up":
                    self.send_empty(503)
                    return
                time.sleep(server.args.fake_health_time)
                self.send_empty(200 if server.status == "Up" else 503)
            elif path in ("/ready", "/ping"):
                self.send_empty(200 if server.status == "Up" else 503)
            elif path == "/v1/models":
                self.send_json(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": server.model,
                                "object": "model",
                                "created": int(server.started),
                                "owned_by": "sglang",
                                "root": server.args.model_path,
                                "parent": None,
                                "max_model_len": server.args.context_length,
                            }
                        ],
                    },
                )
            elif path == "/model_info":
                self.send_json(
                    200,
                    {
                        "model_path": server.args.model_path,
                        "served_model_name": server.model,
                        "tokenizer_path": server.args.model_path,
                        "is_generation": True,
                        "weight_version": "default",
                        "reasoning_parser": server.args.reasoning_parser,
                        "tool_call_parser": server.args.tool_call_parser,
                        "model_type": "fake",
                        "architectures": ["FakeForCausalLM"],
                    },
                )
            elif path == "/server_info":
                self.send_json(
                    200,
                    {
                        "port": server.args.port,
                        "tp_size": server.args.tp_size,
                        "served_model_name": server.model,
                        "version": "0.5.23",
                    },
                )
            elif path == "/metrics":
                self.send_metrics()
            else:
                self.send_json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            self.hang_if_hung()
            if not self.authorized():
                self.send_json(401, {"error": "Unauthorized"})
                return
            path = self.path.split("?", 1)[0]
            body = self.read_body()
            if body is None:
                return
            with server.lock:
                server.in_flight += 1
            try:
                time.sleep(server.args.fake_gen_time)
                if path == "/v1/chat/completions":
                    self.chat(body)
                elif path == "/v1/completions":
                    self.completion(body)
                elif path == "/generate":
                    text = " Paris."
                    self.send_json(
                        200,
                        {
                            "text": text,
                            "meta_info": {
                                "id": uuid.uuid4().hex,
                                "finish_reason": {"type": "length"},
                            },
                        },
                    )
                elif path in (
                    "/pause_generation",
                    "/continue_generation",
                    "/abort_request",
                    "/freeze_gc",
                ):
                    self.send_json(200, {"success": True})
                else:
                    self.send_json(404, {"detail": "Not Found"})
            finally:
                with server.lock:
                    server.in_flight -= 1
                    server.requests_served += 1

        def send_metrics(self) -> None:
            labels = f'model_name="{server.model}",engine_type="unified",tp_rank="0"'
            c = server.counters
            text = "".join(
                [
                    "# HELP sglang:num_running_reqs The number of running requests.\n",
                    "# TYPE sglang:num_running_reqs gauge\n",
                    f"sglang:num_running_reqs{{{labels}}} {float(server.in_flight)}\n",
                    "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.\n",
                    "# TYPE sglang:num_queue_reqs gauge\n",
                    f"sglang:num_queue_reqs{{{labels}}} 0.0\n",
                    "# HELP sglang:gen_throughput The generation throughput (token/s).\n",
                    "# TYPE sglang:gen_throughput gauge\n",
                    f"sglang:gen_throughput{{{labels}}} 95.23\n",
                    "# HELP sglang:prompt_tokens_total Number of prefill tokens processed.\n",
                    "# TYPE sglang:prompt_tokens_total counter\n",
                    f"sglang:prompt_tokens_total{{{labels}}} {float(c['prompt_tokens'])}\n",
                    "# HELP sglang:generation_tokens_total Number of generation tokens processed.\n",
                    "# TYPE sglang:generation_tokens_total counter\n",
                    f"sglang:generation_tokens_total{{{labels}}} {float(c['generation_tokens'])}\n",
                    "# HELP sglang:num_requests_total Number of requests processed.\n",
                    "# TYPE sglang:num_requests_total counter\n",
                    f"sglang:num_requests_total{{{labels}}} {float(c['requests'])}\n",
                ]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            self.access(200)

        def chat(self, body: dict[str, Any]) -> None:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self.send_error_json(400, "messages must be a non-empty list")
                return
            answer = chat_answer(server, body)
            model = body.get("model") or server.model
            rid = uuid.uuid4().hex
            created = int(time.time())
            finish = "tool_calls" if answer["tool_calls"] else "stop"
            usage = server.usage(answer["prompt"], (answer["reasoning"] or "") + answer["content"])
            if body.get("stream"):
                self.stream_chat(rid, created, model, answer, finish, usage, body)
                return
            message: dict[str, Any] = {
                "role": "assistant",
                "content": answer["content"],
                "reasoning_content": answer["reasoning"],
            }
            if answer["tool_calls"]:
                message["tool_calls"] = answer["tool_calls"]
            self.send_json(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": finish,
                            "matched_stop": None,
                        }
                    ],
                    "usage": usage,
                },
            )

        def start_sse(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def event(self, payload: Any) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def stream_chat(
            self,
            rid: str,
            created: int,
            model: str,
            answer: dict[str, Any],
            finish: str,
            usage: dict[str, int],
            body: dict[str, Any],
        ) -> None:
            self.start_sse()

            def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
                return {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ],
                }

            self.event(chunk({"role": "assistant", "content": ""}))
            for piece in re.findall(r"\S+\s*", answer["reasoning"] or ""):
                self.event(chunk({"reasoning_content": piece}))
            for piece in re.findall(r"\S+\s*", answer["content"] or ""):
                self.event(chunk({"content": piece}))
            for call in answer["tool_calls"] or []:
                fn = call["function"]
                self.event(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": fn["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                args = fn["arguments"]
                for i in range(0, len(args), 8):
                    self.event(
                        chunk(
                            {
                                "tool_calls": [
                                    {"index": 0, "function": {"arguments": args[i : i + 8]}}
                                ]
                            }
                        )
                    )
            self.event(chunk({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                self.event(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            self.event("[DONE]")
            self.access(200)

        def completion(self, body: dict[str, Any]) -> None:
            prompt = body.get("prompt")
            if not isinstance(prompt, (str, list)) or not prompt:
                self.send_error_json(400, "prompt must be a non-empty string")
                return
            text = f" and this is a fake continuation of: {str(prompt)[:60]}"
            model = body.get("model") or server.model
            rid = uuid.uuid4().hex
            created = int(time.time())
            usage = server.usage(str(prompt), text)
            if body.get("stream"):
                self.start_sse()

                def chunk(piece: str, finish: str | None) -> dict[str, Any]:
                    choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
                    return {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "choices": [choice],
                    }

                for piece in re.findall(r"\S+\s*|\s+", text):
                    self.event(chunk(piece, None))
                self.event(chunk("", "stop"))
                self.event("[DONE]")
                self.access(200)
                return
            self.send_json(
                200,
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "text": text,
                            "logprobs": None,
                            "finish_reason": "stop",
                            "matched_stop": None,
                        }
                    ],
                    "usage": usage,
                },
            )

    return Handler


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake-sglang", description="A fake SGLang server for tests.")
    p.add_argument("--model-path", "--model", default="fake/model")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--api-key", default=None)
    p.add_argument("--tp-size", "--tensor-parallel-size", "--tp", type=int, default=1)
    p.add_argument("--reasoning-parser", default=None)
    p.add_argument("--tool-call-parser", default=None)
    p.add_argument("--max-prefill-tokens", type=int, default=16384)
    p.add_argument("--context-length", type=int, default=65536)
    p.add_argument("--watchdog-timeout", type=float, default=300)
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--skip-server-warmup", action="store_true")
    p.add_argument("--fake-load-time", type=float, default=1.0, help="seconds with the port closed")
    p.add_argument(
        "--fake-warmup-time", type=float, default=0.5, help="seconds of 503 after binding"
    )
    p.add_argument("--fake-health-time", type=float, default=0.05, help="seconds /health takes")
    p.add_argument("--fake-gen-time", type=float, default=0.0, help="seconds each generation takes")
    p.add_argument("--fake-fault", action="append", choices=FAULTS, default=[])
    p.add_argument("--fake-crash-after", type=float, default=1.0, help="seconds after ready")
    p.add_argument(
        "--fake-crash-log", action="append", default=None, help="lines logged before a crash"
    )
    p.add_argument("--fake-flood-lines", type=int, default=300_000)
    p.add_argument("--fake-long-line", type=int, default=0, help="pad server_args= by N bytes")
    p.add_argument("--fake-gpu-mem-gib", type=float, default=0.0, help="GPU memory per scheduler")
    p.add_argument(
        "--fake-grandchildren", action="store_true", help="each scheduler forks one more"
    )
    p.add_argument("--fake-api-key-env", default=None, help="read the API key from this variable")
    p.add_argument(
        "--fake-mode",
        choices=("serve", "compile"),
        default="serve",
        help="compile: behave like `python -m sglang.compile_deep_gemm`",
    )
    p.add_argument("--timeout", type=int, default=3600, help="compile mode: SGLang's --timeout")
    return p


def main(argv: list[str] | None = None) -> None:
    args, unknown = build_parser().parse_known_args(argv)
    args.unknown = unknown
    server = FakeSGLang(args)
    if args.fake_mode == "compile":
        server.compile()
    else:
        server.run()


if __name__ == "__main__":
    main()
