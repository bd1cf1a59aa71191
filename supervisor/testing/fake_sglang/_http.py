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

from ._logs import log
from ._openai import OpenAIRoutes

if TYPE_CHECKING:
    from ._server import FakeSGLang


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
        path = self.path.split("?", 1)[0]
        if not self.fake.api_key or path.startswith(("/health", "/ready", "/metrics")):
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.fake.api_key}"

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
        if path in ("/health", "/health_generate"):
            if self.fake.status != "Up":
                self.send_empty(503)
                return
            time.sleep(self.fake.args.fake_health_time)
            self.send_empty(200 if self.fake.status == "Up" else 503)
        elif path in ("/ready", "/ping"):
            self.send_empty(200 if self.fake.status == "Up" else 503)
        elif path == "/v1/models":
            self.send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.fake.model,
                            "object": "model",
                            "created": int(self.fake.started),
                            "owned_by": "sglang",
                            "root": self.fake.args.model_path,
                            "parent": None,
                            "max_model_len": self.fake.args.context_length,
                        }
                    ],
                },
            )
        elif path == "/model_info":
            self.send_json(
                200,
                {
                    "model_path": self.fake.args.model_path,
                    "served_model_name": self.fake.model,
                    "tokenizer_path": self.fake.args.model_path,
                    "is_generation": True,
                    "weight_version": "default",
                    "reasoning_parser": self.fake.args.reasoning_parser,
                    "tool_call_parser": self.fake.args.tool_call_parser,
                    "model_type": "fake",
                    "architectures": ["FakeForCausalLM"],
                },
            )
        elif path == "/server_info":
            self.send_json(
                200,
                {
                    "port": self.fake.args.port,
                    "tp_size": self.fake.args.tp_size,
                    "served_model_name": self.fake.model,
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
        with self.fake.lock:
            self.fake.in_flight += 1
        try:
            time.sleep(self.fake.args.fake_gen_time)
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
            with self.fake.lock:
                self.fake.in_flight -= 1
                self.fake.requests_served += 1

    def send_metrics(self) -> None:
        labels = f'model_name="{self.fake.model}",engine_type="unified",tp_rank="0"'
        c = self.fake.counters
        text = "".join(
            [
                "# HELP sglang:num_running_reqs The number of running requests.\n",
                "# TYPE sglang:num_running_reqs gauge\n",
                f"sglang:num_running_reqs{{{labels}}} {float(self.fake.in_flight)}\n",
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
