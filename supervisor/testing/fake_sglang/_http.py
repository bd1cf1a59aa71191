"""HTTP routing and the API-key rules of SGLang 0.5.23's server (`srt/entrypoints/http_server.py`).

The status codes the supervisor depends on: 503 with an empty body while starting, `/health`
and the rest answering once up, 401 `{"error": "Unauthorized"}` without the right key except on
the exempt probe paths (`srt/utils/auth.py: decide_request_auth`, with its `ADMIN_OPTIONAL`
level for the control endpoints). `/metrics` exists only with `--enable-metrics`, and then
every request is counted in `sglang:http_requests_active` from arrival to its last byte
(`srt/observability/http_request_metrics.py: track_http_status_code`). The OpenAI answers come
from `_openai`, `/generate` from `_generate`, the control endpoints from `_memory`.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._engine import Aborted, Disconnected, Engine
from ._generate import native_generate
from ._logs import HEALTH_DURING_SHUTDOWN_LINE, health_failed_line, log
from ._memory import CONTROL_PATHS, GET_ALLOWED, Memory, control
from ._openai import chat, completion

if TYPE_CHECKING:
    from ._server import FakeSGLang


_MEDIA_ERROR = {
    "loc": ["header", "content-type"],
    "msg": "Unsupported Media Type: Only 'application/json' is allowed",
    "type": "value_error",
}
#: The 400 that 0.5.23's validation handler makes of `validate_json_request`'s error (seen on the
#: running engine: `openai_api/...` error shape, the pydantic-style text and the list repr).
UNSUPPORTED_MEDIA = f"1 validation error:\n  {_MEDIA_ERROR!r} [{_MEDIA_ERROR!r}]"
GENERATE_PATHS = ("/v1/chat/completions", "/v1/completions", "/generate")
# http_server.py routes marked @auth_level(AuthLevel.ADMIN_OPTIONAL) that the fake serves
#: Every route 0.5.23 registers with `@auth_level(AuthLevel.ADMIN_OPTIONAL)` at module level
#: (srt/entrypoints/http_server.py; `tests/test_real_engine.py` checks this copy against the
#: installed source): with an admin key set, only it opens them. Those the fake does not
#: implement answer 404 once the key is right.
ADMIN_OPTIONAL_ROUTES = (
    "/set_internal_state", "/flush_cache", "/add_external_corpus", "/remove_external_corpus",
    "/list_external_corpora", "/hicache/storage-backend/clear", "/hicache/storage-backend",
    "/start_profile", "/stop_profile", "/set_trace_level", "/freeze_gc",
    "/start_expert_distribution_record", "/stop_expert_distribution_record",
    "/dump_expert_distribution_record", "/update_weights_from_disk",
    "/init_weights_send_group_for_remote_instance", "/send_weights_to_remote_instance",
    "/get_remote_instance_transfer_engine_info", "/remote_instance_transfer_engine_info",
    "/init_weights_update_group", "/destroy_weights_update_group", "/update_weights_from_tensor",
    "/begin_weight_update", "/end_weight_update", "/update_weights_from_distributed",
    "/update_weights_from_ipc", "/update_weight_version", "/get_weights_by_name",
    "/release_memory_occupation", "/resume_memory_occupation", "/weights_checker", "/slow_down",
    "/pd_role_switch", "/load_lora_adapter", "/load_lora_adapter_from_tensors",
    "/unload_lora_adapter", "/configure_logging", "/abort_request", "/pause_generation",
    "/continue_generation",
)  # fmt: skip
ADMIN_OPTIONAL = (*CONTROL_PATHS, *ADMIN_OPTIONAL_ROUTES)
PHRASES = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FakeHTTPServer(ThreadingHTTPServer):
    """The fake's HTTP server: its handlers reach the fake they answer for through it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeSGLang) -> None:
        self.fake = fake
        super().__init__(address, Handler)


def endpoint_of(path: str) -> str:
    """`_get_fastapi_request_path`: the matched route's path, else the raw path."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{model:path}"
    return path


class Handler(BaseHTTPRequestHandler):
    """One request; the routes (`_generate`, `_openai`, `_memory`) answer through it."""

    server: FakeHTTPServer

    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""

    @property
    def fake(self) -> FakeSGLang:
        return self.server.fake

    @property
    def engine(self) -> Engine:
        return self.fake.engine

    @property
    def memory(self) -> Memory:
        return self.fake.memory

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def access(self, status: int) -> None:
        log(
            f"INFO:     {self.client_address[0]}:{self.client_address[1]} - "
            f'"{self.command} {self.path} HTTP/1.1" {status} {PHRASES.get(status, "")}'
        )

    # -------------------------------------------------------------- plumbing
    # The access line is logged before the answer leaves, as uvicorn logs it at the response's
    # start: a client that acts on the answer (SGLang's own warmup, then its ready line) can
    # never print before it.
    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.access(status)
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.access(status)
        self.end_headers()

    def json_media_type(self) -> bool:
        """http_server.py:validate_json_request, a dependency of every OpenAI POST route."""
        content_type = (self.headers.get("Content-Type") or "").lower()
        return content_type.split(";", 1)[0].strip() == "application/json"

    def send_error_json(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        error = {"object": "error", "message": message, "type": kind, "param": None}
        self.send_json(status, {**error, "code": status})

    def start_sse(self) -> None:
        """The status line and headers of a stream, and uvicorn's access line with them."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.access(200)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def event(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def authorized(self, path: str) -> bool:
        """srt/utils/auth.py:decide_request_auth: probe paths are exempt; `ADMIN_OPTIONAL` paths
        want the admin key when one is set (the API key is then refused), else the API key;
        the scheme is matched case-insensitively (`bearer`), the token exactly."""
        if self.command == "OPTIONS" or path.startswith(("/health", "/ready", "/metrics")):
            return True
        fake = self.fake
        key = fake.api_key
        if path in ADMIN_OPTIONAL and fake.admin_api_key:
            key = fake.admin_api_key
        if not key:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token == key

    def read_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def client_gone(self) -> bool:
        """Starlette's `request.is_disconnected()`: the peer closed its side."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def hang_if_hung(self) -> None:
        if self.fake.hung.is_set():
            time.sleep(10**6)

    # -------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        """Every request, counted in `sglang:http_requests_active` until its last byte."""
        self.hang_if_hung()
        path = self.path.split("?", 1)[0]
        counted = bool(self.fake.args.enable_metrics)
        endpoint, method = endpoint_of(path), self.command
        if counted:
            self.fake.metrics.http_begin(endpoint, method)
        try:
            if not self.authorized(path):
                self.send_json(401, {"error": "Unauthorized"})
            elif self.command == "GET":
                self.get(path)
            else:
                self.post(path)
        except (BrokenPipeError, ConnectionResetError, Disconnected):
            self.close_connection = True  # the client left; SGLang aborts its request too
        finally:
            if counted:
                self.fake.metrics.http_end(endpoint, method)

    def get(self, path: str) -> None:
        fake = self.fake
        if path in ("/health", "/health_generate"):
            self.health()
        elif path == "/ready":  # is_ready(): healthy and not paused
            self.send_empty(200 if fake.is_healthy() and not self.engine.is_pause else 503)
        elif path == "/ping":  # is_healthy()
            self.send_empty(200 if fake.is_healthy() else 503)
        elif path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [self.model_card(fake.model)]})
        elif path.startswith("/v1/models/"):
            model = path[len("/v1/models/") :]
            if model == fake.model:
                self.send_json(200, self.model_card(model))
            else:
                error = {
                    "message": f"The model '{model}' does not exist",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
                self.send_json(404, {"error": error})
        elif path == "/model_info":
            self.send_json(200, self.model_info())
        elif path == "/server_info":
            self.send_json(
                200,
                {**fake.server_args(), "api_key": None, "version": "0.5.23", "frontend": "python"},
            )
        elif path == "/metrics" and fake.args.enable_metrics:
            self.send_metrics()
        elif path in GET_ALLOWED:  # api_route(GET, POST), and the body is required
            control(self, path, self.read_raw())
        else:
            self.send_json(404, {"detail": "Not Found"})

    def post(self, path: str) -> None:
        raw = self.read_raw()
        if path in CONTROL_PATHS:
            control(self, path, raw)
            return
        if path not in (*GENERATE_PATHS, "/freeze_gc", "/abort_request"):
            self.send_json(404, {"detail": "Not Found"})
            return
        if path.startswith("/v1/") and not self.json_media_type():
            self.send_error_json(400, UNSUPPORTED_MEDIA, "Bad Request")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self.send_error_json(400, "Invalid JSON body")
            return
        if not isinstance(body, dict):
            self.send_error_json(400, "Body must be a JSON object")
        elif path in ("/freeze_gc", "/abort_request"):
            self.send_json(200, {"success": True})
        elif path == "/v1/chat/completions":
            chat(self, body)
        elif path == "/v1/completions":
            completion(self, body)
        else:
            native_generate(self, body)

    # -------------------------------------------------------------- health
    def health(self) -> None:
        """srt/entrypoints/http_server.py:health_generate: 503 while starting or shutting down,
        else a one-token generation, watched in 1 s steps: 200 as soon as any output arrived
        after it started, else 503 after `HEALTH_CHECK_TIMEOUT` (20 s) with SGLang's error line
        and the server marked `UnHealthy` (so `/ready` and `/ping` say 503 until a later pass)."""
        fake, engine = self.fake, self.engine
        if fake.gracefully_exit.is_set():
            log(HEALTH_DURING_SHUTDOWN_LINE)
            self.send_empty(503)
            return
        if fake.status == "Starting" or self.memory.unhealthy:
            self.send_empty(503)
            return
        fake.enter_running_phase()
        timeout = fake.health_check_timeout
        tic, tic_wall = time.monotonic(), time.time()
        gen = engine.enter(1, False, health=True)

        def generate() -> None:
            try:
                engine.admit(gen, pause_timeout=timeout)
                engine.token(gen)
            except Aborted:
                pass
            finally:
                engine.finish(gen)

        threading.Thread(target=generate, daemon=True, name="health-generate").start()
        while True:
            time.sleep(fake.health_time)
            if engine.last_receive > tic:
                engine.forget(gen)
                fake.status = "Up"
                self.send_empty(200)
                return
            if time.monotonic() - tic >= timeout:
                break
        last = tic_wall - (tic - engine.last_receive) if engine.last_receive else 0.0
        log(health_failed_line(timeout, tic_wall, last))
        engine.forget(gen)
        fake.status = "UnHealthy"
        self.send_empty(503)

    def model_card(self, model: str) -> dict[str, Any]:
        """http_server.py:available_models: `root` is the served name, not the path."""
        return {
            "id": model,
            "object": "model",
            "created": int(self.fake.started),
            "owned_by": "sglang",
            "root": model,
            "parent": None,
            "max_model_len": self.fake.args.context_length,
        }

    def model_info(self) -> dict[str, Any]:
        """http_server.py:model_info, for the model actually served."""
        fake = self.fake
        return {
            "model_path": fake.args.model_path,
            "served_model_name": fake.model,
            "tokenizer_path": fake.args.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "load_format": "auto",
            "reasoning_parser": fake.args.reasoning_parser,
            "tool_call_parser": fake.args.tool_call_parser,
            "disaggregation_mode": "null",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": fake.model_type,
            "architectures": [fake.architecture],
        }

    def send_metrics(self) -> None:
        """prometheus_client's exposition; never compressed (the fake ignores Accept-Encoding)."""
        text = self.fake.metrics.render()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.access(200)
        self.end_headers()
        self.wfile.write(text)
