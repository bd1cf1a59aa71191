"""Warmup: send every payload at once, and judge each answer by what it must contain.

Concurrency is the point: four 1-second warmups cost about one second, not four, and the paths
they exercise (chat, thinking off, long context, tools) are captured by SGLang in parallel. Each
payload has its own timeout, and a verdict says why an answer was refused, so a failed cold start
points at the path that broke.

An answer is read through `_http_client.request` under one deadline (`timeout`: connect, headers
and body together) and a byte cap (`max_answer_bytes`, 4 MiB by default): an endless or trickling
answer is a failed warmup with its reason, never a supervisor that waits or grows without end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ._config import WarmupPayload
from ._http_client import RequestFailed, request

__all__ = ["WarmupResult", "judge", "run_warmups"]


@dataclass(frozen=True)
class WarmupResult:
    name: str
    ok: bool
    status: int | None
    latency_s: float
    reason: str

    def describe(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        status = self.status if self.status is not None else "-"
        return (
            f"warmup={self.name} verdict={verdict} status={status} "
            f"latency={self.latency_s:.3f}s {self.reason}"
        )


def _first_choice(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ValueError("answer has no choices")
    return choices[0]


def judge(payload: WarmupPayload, status: int, text: str) -> tuple[bool, str]:
    """Check one answer against `payload.expect`; return (ok, reason)."""
    if status != 200:
        snippet = " ".join(text.split())[:200]
        return False, f"HTTP {status}: {snippet}"
    needs_body = [e for e in payload.expect if e != "status"]
    if not needs_body:
        return True, "HTTP 200"
    if "stream" in needs_body:
        return _judge_stream(text)
    try:
        choice = _first_choice(json.loads(text))
    except (ValueError, json.JSONDecodeError) as exc:
        return False, f"unreadable answer: {exc}"
    raw = choice.get("message")
    message: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    problems: list[str] = []
    for need in needs_body:
        if need == "content" and not str(message.get("content") or "").strip():
            problems.append("content is empty")
        elif (
            need == "reasoning_content" and not str(message.get("reasoning_content") or "").strip()
        ):
            problems.append("reasoning_content is empty")
        elif need == "no_reasoning" and str(message.get("reasoning_content") or "").strip():
            problems.append("reasoning_content is present although thinking is off")
        elif need == "text" and not str(choice.get("text") or "").strip():
            problems.append("text is empty")
        elif need == "json" and not _is_json(message.get("content")):
            problems.append("content is not JSON")
        elif need == "tool_calls":
            problems.extend(_tool_call_problems(message.get("tool_calls")))
    if problems:
        return False, "; ".join(problems)
    return True, "has " + ", ".join(needs_body)


def _is_json(value: Any) -> bool:
    try:
        json.loads(value if isinstance(value, str) else "")
    except json.JSONDecodeError:
        return False
    return True


def _judge_stream(text: str) -> tuple[bool, str]:
    """An SSE answer: every `data:` event a JSON chunk (or `[DONE]`, last), some content in them.

    SGLang ends a stream with `data: [DONE]` (srt/entrypoints/openai/serving_chat.py); a stream
    cut short by a dying server has no such end, which is what this check exists to see.
    """
    events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    if not events or events[-1] != "[DONE]":
        return False, f"stream does not end in data: [DONE] ({len(events)} events)"
    content = 0
    for event in events[:-1]:
        try:
            chunk = json.loads(event)
            choice = _first_choice(chunk)
        except (ValueError, json.JSONDecodeError) as exc:
            return False, f"unreadable stream chunk: {exc}"
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and delta.get("content"):
            content += 1
        elif choice.get("text"):
            content += 1
    if not content:
        return False, "stream carried no content"
    return True, f"streamed {content} content chunks"


def _tool_call_problems(calls: Any) -> list[str]:
    if not isinstance(calls, list) or not calls:
        return ["tool_calls is missing"]
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not function.get("name"):
            return ["a tool call has no function name"]
        try:
            json.loads(function.get("arguments") or "")
        except (TypeError, json.JSONDecodeError):
            return [f"tool call {function.get('name')!r} has arguments that are not JSON"]
    return []


ResultHook = Callable[[WarmupResult], None]


async def _one(
    client: httpx.AsyncClient,
    base_url: str,
    payload: WarmupPayload,
    headers: Mapping[str, str],
) -> WarmupResult:
    start = time.perf_counter()
    status: int | None = None
    try:
        answer = await request(
            client,
            payload.method,
            base_url + payload.path,
            json=dict(payload.body) if payload.method == "POST" else None,
            headers=headers,
            deadline=payload.timeout,
            max_body_bytes=payload.max_answer_bytes,
        )
    except RequestFailed as exc:
        ok, reason, status = False, str(exc), exc.status
    else:
        status = answer.status
        ok, reason = judge(payload, status, answer.text())
    return WarmupResult(payload.name, ok, status, time.perf_counter() - start, reason)


async def run_warmups(
    client: httpx.AsyncClient,
    base_url: str,
    payloads: Sequence[WarmupPayload],
    *,
    api_key: str | None = None,
    on_result: ResultHook | None = None,
) -> list[WarmupResult]:
    """Send all payloads concurrently; return one result per payload, in the given order."""
    headers: dict[str, str] = {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    results: dict[str, WarmupResult] = {}

    async def run(payload: WarmupPayload) -> None:
        result = await _one(client, base_url, payload, headers)
        results[payload.name] = result
        if on_result is not None:
            on_result(result)

    async with anyio.create_task_group() as tg:
        for payload in payloads:
            tg.start_soon(run, payload)
    return [results[p.name] for p in payloads]
