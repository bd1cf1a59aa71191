"""HTTP routing and the API-key rules of SGLang 0.5.23's server (`srt/entrypoints/http_server.py`).

The status codes the supervisor depends on: 503 with an empty body while starting, `/health`
and the rest answering once up, 401 `{"error": "Unauthorized"}` without the key except on the
exempt probe paths (`srt/utils/auth.py`). The OpenAI answers come from `_openai.OpenAIRoutes`.
"""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ._logs import HEALTH_DURING_SHUTDOWN_LINE, log
from ._openai import OpenAIRoutes

if TYPE_CHECKING:
    from ._server import FakeSGLang


GENERATE_PATHS = ("/v1/chat/completions", "/v1/completions", "/generate")


def handler_for(server: FakeSGLang) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one fake server."""

    class Bound(Handler):
        fake = server

    return Bound


class Handler(OpenAIRoutes, BaseHTTPRequestHandler):
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
        """srt/utils/auth.py:decide_request_auth: probe paths are exempt; the scheme is matched
        case-insensitively (`bearer`), the token exactly."""
        path = self.path.split("?", 1)[0]
        if not self.fake.api_key or path.startswith(("/health", "/ready", "/metrics")):
            return True
        if self.command == "OPTIONS":
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token == self.fake.api_key

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
        if self.fake.hung.is_set():
            time.sleep(10**6)

    # -------------------------------------------------------------- routes
    def do_GET(self) -> None:
        self.hang_if_hung()
        path = self.path.split("?", 1)[0]
        if not self.authorized():
            self.send_json(401, {"error": "Unauthorized"})
            return
        fake = self.fake
        if path in ("/health", "/health_generate"):
            self.health()
        elif path == "/ready":  # is_ready(): healthy and not paused
            self.send_empty(
                200 if fake.status == "Up" and not fake.gracefully_exit.is_set() else 503
            )
        elif path == "/ping":  # is_healthy()
            self.send_empty(
                200 if fake.status == "Up" and not fake.gracefully_exit.is_set() else 503
            )
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
        elif path == "/metrics":
            self.send_metrics()
        else:
            self.send_json(404, {"detail": "Not Found"})

    def health(self) -> None:
        """srt/entrypoints/http_server.py:health_generate: 503 while starting or shutting down,
        else a real one-token generation, watched in 1 s steps (so about 1 s when healthy)."""
        fake = self.fake
        if fake.gracefully_exit.is_set():
            log(HEALTH_DURING_SHUTDOWN_LINE)
            self.send_empty(503)
            return
        if fake.status != "Up":
            self.send_empty(503)
            return
        rid = fake.begin_request(f"HEALTH_CHECK_{uuid.uuid4().hex}")
        try:
            time.sleep(fake.health_time)
        finally:
            fake.end_request(rid)
        self.send_empty(200)

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

    def do_POST(self) -> None:
        self.hang_if_hung()
        if not self.authorized():
            self.send_json(401, {"error": "Unauthorized"})
            return
        path = self.path.split("?", 1)[0]
        body = self.read_body()
        if body is None:
            return
        if path in ("/pause_generation", "/continue_generation", "/abort_request", "/freeze_gc"):
            self.send_json(200, {"success": True})
            return
        if path not in GENERATE_PATHS:
            self.send_json(404, {"detail": "Not Found"})
            return
        rid = self.fake.begin_request()
        try:
            if not body.get("stream"):  # a stream spreads its generation time over its chunks
                time.sleep(self.fake.args.fake_gen_time)
            if path == "/v1/chat/completions":
                self.chat(body)
            elif path == "/v1/completions":
                self.completion(body)
            else:
                meta = {"id": rid, "finish_reason": {"type": "length"}}
                self.send_json(200, {"text": " Paris.", "meta_info": meta})
        finally:
            self.fake.end_request(rid)

    def send_metrics(self) -> None:
        labels = f'model_name="{self.fake.model}",engine_type="unified",tp_rank="0"'
        c = self.fake.counters
        text = "".join(
            [
                "# HELP sglang:num_running_reqs The number of running requests.\n",
                "# TYPE sglang:num_running_reqs gauge\n",
                f"sglang:num_running_reqs{{{labels}}} {float(len(self.fake.rid_to_state))}\n",
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
