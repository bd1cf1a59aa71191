"""The OpenAI-compatible answers: what the "model" says, and its JSON and SSE shapes.

Shapes as SGLang 0.5.23 returns them (`srt/entrypoints/openai/serving_chat.py`,
`serving_completions.py`, `protocol.py`): reasoning in `reasoning_content` before any content,
tool calls with `call_<24 hex>` ids, streaming chunks ending in `data: [DONE]`, usage when asked.
`OpenAIRoutes` is mixed into the HTTP handler (`_http.py`), which provides the plumbing.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import FakeSGLang


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


class OpenAIRoutes:
    """Chat and legacy completions; the handler it is mixed into sends the bytes."""

    fake: FakeSGLang

    def send_json(self, status: int, payload: Any) -> None:
        raise NotImplementedError

    def send_error_json(self, status: int, message: str) -> None:
        raise NotImplementedError

    def start_sse(self) -> None:
        raise NotImplementedError

    def event(self, payload: Any) -> None:
        raise NotImplementedError

    def access(self, status: int) -> None:
        raise NotImplementedError

    def send_paced(self, events: list[Any]) -> None:
        """Send a stream's events with `--fake-gen-time` spread over them, so that a stream is
        really in flight for that long (a drain must wait for its end)."""
        delay = self.fake.args.fake_gen_time / max(1, len(events))
        for payload in events:
            if delay:
                time.sleep(delay)
            self.event(payload)

    def chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self.send_error_json(400, "messages must be a non-empty list")
            return
        answer = chat_answer(self.fake, body)
        model = body.get("model") or self.fake.model
        rid = uuid.uuid4().hex
        created = int(time.time())
        finish = "tool_calls" if answer["tool_calls"] else "stop"
        usage = self.fake.usage(answer["prompt"], (answer["reasoning"] or "") + answer["content"])
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
        out: list[Any] = []
        for piece in re.findall(r"\S+\s*", answer["reasoning"] or ""):
            out.append(chunk({"reasoning_content": piece}))
        for piece in re.findall(r"\S+\s*", answer["content"] or ""):
            out.append(chunk({"content": piece}))
        for call in answer["tool_calls"] or []:
            fn = call["function"]
            out.append(
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
                out.append(
                    chunk(
                        {"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 8]}}]}
                    )
                )
        out.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        self.send_paced(out)
        self.event("[DONE]")
        self.access(200)

    def completion(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or not prompt:
            self.send_error_json(400, "prompt must be a non-empty string")
            return
        text = f" and this is a fake continuation of: {str(prompt)[:60]}"
        model = body.get("model") or self.fake.model
        rid = uuid.uuid4().hex
        created = int(time.time())
        usage = self.fake.usage(str(prompt), text)
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

            out = [chunk(piece, None) for piece in re.findall(r"\S+\s*|\s+", text)]
            self.send_paced([*out, chunk("", "stop")])
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
