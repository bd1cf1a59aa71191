"""The OpenAI-compatible answers: what the "model" says, and its JSON and SSE shapes.

Shapes as SGLang 0.5.23 returns them (`srt/entrypoints/openai/serving_chat.py`,
`serving_completions.py`, `protocol.py`): reasoning in `reasoning_content` before any content,
tool calls with `call_<24 hex>` ids, streaming chunks ending in `data: [DONE]`, usage when asked.
Tokens are made one by one (`_generate.produce`): a stream sends one chunk per token as it is
made (the first one after the role chunk, which comes with the first output). Its status line
and headers wait for that first chunk, as `_handle_streaming_request` awaits the generator's
first chunk before it returns the `StreamingResponse` (chat and completions alike), so a stream
whose engine never produces gets no byte at all, not even the status line; an output that ends
at once (an abort, no tokens) still makes a first chunk. A plain answer comes after the last
token. `chat` and `completion` are called by the HTTP handler (`_http.py`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from ._generate import Responder, budget, pieces, produce, unhealthy, words


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


def chat_answer(reasoning_parser: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """Decide what the model 'says': reasoning, content and tool calls, like SGLang's parsers."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    prompt = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
    user = _text_of(last.get("content")) if isinstance(last, dict) else ""
    kwargs = body.get("chat_template_kwargs") or {}
    thinking = bool(reasoning_parser) and kwargs.get("enable_thinking", True) is not False
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


def chat_tokens(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as stream deltas, one per token: reasoning, content, then each tool call (its
    name, then its arguments in pieces of 8 characters)."""
    out: list[dict[str, Any]] = [
        {"reasoning_content": p} for p in pieces(answer["reasoning"] or "")
    ]
    out += [{"content": p} for p in pieces(answer["content"] or "")]
    for call in answer["tool_calls"] or []:
        fn = call["function"]
        head = {"index": 0, "id": call["id"], "type": "function"}
        out.append({"tool_calls": [{**head, "function": {"name": fn["name"], "arguments": ""}}]})
        args = fn["arguments"]
        for i in range(0, len(args), 8):
            out.append({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 8]}}]})
    return out


def assemble(made: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed message from the deltas made."""
    reasoning = "".join(d.get("reasoning_content", "") for d in made)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(d.get("content", "") for d in made),
        "reasoning_content": reasoning or None,
    }
    calls = [d["tool_calls"][0] for d in made if "tool_calls" in d]
    if calls:
        head = calls[0]
        arguments = "".join(c["function"]["arguments"] for c in calls[1:])
        function = {"name": head["function"]["name"], "arguments": arguments}
        message["tool_calls"] = [
            {"id": head["id"], "index": 0, "type": "function", "function": function}
        ]
    return message


def chat(h: Responder, body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        h.send_error_json(400, "messages must be a non-empty list")
        return
    if unhealthy(h):
        h.send_error_json(500, "fake: the engine is unhealthy", "InternalServerError")
        return
    answer = chat_answer(h.fake.args.reasoning_parser, body)
    tokens = chat_tokens(answer)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limited = budget(tokens, limit, body.get("ignore_eos"), lambda w: {"content": w})
    model = body.get("model") or h.fake.model
    rid = uuid.uuid4().hex
    created = int(time.time())

    def finish(made: list[dict[str, Any]], aborted: bool) -> str:
        if aborted:
            return "abort"
        if limited:
            return "length"
        return "tool_calls" if any("tool_calls" in d for d in made) else "stop"

    def usage(made: list[Any]) -> dict[str, Any]:
        return usage_of(words(answer["prompt"]), len(made))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    if body.get("stream"):
        started: list[bool] = []

        def first_chunk() -> None:
            """serving_chat.py: the role chunk comes with the first output, and only then does
            `_handle_streaming_request` answer: status line, headers, that chunk."""
            if not started:
                started.append(True)
                h.start_sse()
                h.event(chunk({"role": "assistant", "content": ""}))

        def emit(delta: dict[str, Any]) -> None:
            first_chunk()
            h.event(chunk(delta))

        made, aborted = produce(h, answer["prompt"], tokens, True, emit, lambda: {"content": "!"})
        first_chunk()  # an output that finishes at once (abort, no tokens) is a first output too
        h.event(chunk({}, finish(made, aborted)))
        if (body.get("stream_options") or {}).get("include_usage"):
            h.event({**chunk({}), "choices": [], "usage": usage(made)})
        h.event("[DONE]")
        return
    made, aborted = produce(h, answer["prompt"], tokens, False, None, lambda: {"content": "!"})
    choice = {
        "index": 0,
        "message": assemble(made),
        "logprobs": None,
        "finish_reason": finish(made, aborted),
        "matched_stop": None,
    }
    h.send_json(
        200,
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage(made),
            "metadata": metadata_of(len(made)),
        },
    )


def completion(h: Responder, body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)) or not prompt:
        h.send_error_json(400, "prompt must be a non-empty string")
        return
    if unhealthy(h):
        h.send_error_json(500, "fake: the engine is unhealthy", "InternalServerError")
        return
    tokens = pieces(f" and this is a fake continuation of: {str(prompt)[:60]}")
    limited = budget(tokens, body.get("max_tokens"), body.get("ignore_eos"), str)
    model = body.get("model") or h.fake.model
    rid = uuid.uuid4().hex
    created = int(time.time())

    def chunk(piece: str, finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    def finish(aborted: bool) -> str:
        return "abort" if aborted else "length" if limited else "stop"

    if body.get("stream"):
        started: list[bool] = []

        def emit(piece: str) -> None:
            if not started:  # serving_completions.py: the headers wait for the first chunk
                started.append(True)
                h.start_sse()
            h.event(chunk(piece, None))

        made, aborted = produce(h, str(prompt), tokens, True, emit)
        if not started:  # an output that finishes at once is the first chunk
            h.start_sse()
        h.event(chunk("", finish(aborted)))
        h.event("[DONE]")
        return
    made, aborted = produce(h, str(prompt), tokens, False)
    p, c = words(str(prompt)), len(made)
    choice = {
        "index": 0,
        "text": "".join(made),
        "logprobs": None,
        "finish_reason": finish(aborted),
        "matched_stop": None,
    }
    h.send_json(
        200,
        {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage_of(p, c),
            "metadata": metadata_of(c),
        },
    )


def usage_of(prompt: int, completion: int) -> dict[str, Any]:
    """0.5.23's `UsageInfo` (srt/entrypoints/openai/protocol.py), as the running engine sends it."""
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
        "reasoning_tokens": 0,
        "completion_tokens_details": None,
    }


def metadata_of(completion: int) -> dict[str, Any]:
    """The `metadata` 0.5.23 adds to a non-streamed answer (seen on the running engine)."""
    return {
        "weight_version": "default",
        "weight_versions": [{"version": "default", "start": 0, "end": completion}],
    }
