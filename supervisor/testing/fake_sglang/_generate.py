"""Generating tokens: the pace, the length, and the native `/generate` endpoint.

A fake answer is cut into tokens (a word and its trailing space, or a tool call's argument
piece); `produce` makes them one at a time through the engine (`_engine`), each
taking `--fake-token-time` seconds, and hands each to the stream as it is made. Length follows
SGLang's sampling parameters where they matter here: the fake's model stops by itself at the end
of its answer (its EOS), and with `ignore_eos` it makes exactly `max_tokens`
(`max_completion_tokens`, or the native `max_new_tokens`) tokens, cutting or continuing the
answer, finish reason `length` (`srt/sampling/sampling_params.py: ignore_eos`,
`srt/entrypoints/openai/protocol.py: to_sampling_params`).

`/generate` (`srt/entrypoints/http_server.py: generate_request`): `{"text", "output_ids",
"meta_info"}`, or with `"stream": true` SSE chunks carrying the text so far and `data: [DONE]`,
the headers sent at once (`serve_generate_request` does not wait for the first output).
A prompt about the capital of France gets `" Paris."`, so a greedy check has a known answer.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._engine import Aborted, Disconnected, Engine

if TYPE_CHECKING:
    from ._memory import Memory
    from ._server import FakeSGLang

FILLER = "and the answer goes on like this until the budget is spent".split()
JUNK = "!"  # what weights with lost contents say (token 0, over and over)
EOS_ID = 2


def pieces(text: str) -> list[str]:
    """Tokens of a text: each word with the spaces before it (they join back to the text)."""
    found: list[str] = re.findall(r"\s*\S+", text)
    tail = text[len(text.rstrip()) :]
    if found and tail:
        found[-1] += tail
    return found


def words(text: str) -> int:
    return max(1, len(text.split()))


def budget(tokens: list[Any], limit: Any, ignore_eos: Any, filler: Callable[[str], Any]) -> bool:
    """Apply `ignore_eos` with a token limit in place: exactly `limit` tokens. True if applied."""
    if not ignore_eos or not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        return False
    del tokens[limit:]
    for word in itertools.islice(itertools.cycle(FILLER), limit - len(tokens)):
        tokens.append(filler(f" {word}"))
    return True


def native_answer(text: Any) -> str:
    if isinstance(text, str) and re.search(r"capital (city )?of france", text, re.I):
        return " Paris."
    return " and this is a fake continuation."


class Responder(Protocol):
    """What a route needs of the request handler it answers through (`_http.Handler`)."""

    @property
    def fake(self) -> FakeSGLang: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def memory(self) -> Memory: ...
    def send_json(self, status: int, payload: Any) -> None: ...
    def send_error_json(self, status: int, message: str, kind: str = "BadRequestError") -> None: ...
    def start_sse(self) -> None: ...
    def event(self, payload: Any) -> None: ...
    def access(self, status: int) -> None: ...
    def client_gone(self) -> bool: ...


def produce(
    h: Responder,
    prompt: str,
    tokens: list[Any],
    streaming: bool,
    emit: Callable[[Any], None] | None = None,
    junk: Callable[[], Any] = lambda: JUNK,
) -> tuple[list[Any], bool]:
    """Make `tokens` one by one, passing each to `emit` as it exists.

    Returns (the tokens made, aborted). The request enters the drain's count on arrival,
    waits out a pause, and is booked as finished (tokenizer counters) when it ends, however
    it ends (a client gone mid-stream is an abort to SGLang too), except when its client
    left it stuck on a stalled engine (`Disconnected` goes up; nothing finishes then).
    """
    engine = h.engine
    h.fake.enter_running_phase()
    gen = engine.enter(words(prompt), streaming, gone=h.client_gone)
    made: list[Any] = []
    stuck = False
    try:
        engine.admit(gen)
        for token in tokens:
            engine.token(gen, len(tokens))
            made.append(junk() if h.memory.garbage else token)
            if emit is not None:
                emit(made[-1])
        return made, False
    except Aborted:
        return made, True
    except Disconnected:
        stuck = True
        raise
    finally:
        if not stuck:
            engine.finish(gen)


def unhealthy(h: Responder) -> bool:
    """`unhealthy-after-resume`: every generation fails with 500."""
    return h.memory.unhealthy


def native_generate(h: Responder, body: dict[str, Any]) -> None:
    params = body.get("sampling_params") or {}
    text = body.get("text")
    prompt = text if isinstance(text, str) else " ".join(map(str, body.get("input_ids") or []))
    if unhealthy(h):
        h.send_json(500, {"error": {"message": "fake: the engine is unhealthy"}})
        return
    tokens = pieces(native_answer(text))
    limited = budget(tokens, params.get("max_new_tokens"), params.get("ignore_eos"), str)
    rid = uuid.uuid4().hex
    started = time.monotonic()

    def chunk(made: list[str], finish: dict[str, Any] | None) -> dict[str, Any]:
        meta = {
            "id": rid,
            "finish_reason": finish,
            "prompt_tokens": words(prompt),
            "completion_tokens": len(made),
            "cached_tokens": 0,
            "e2e_latency": round(time.monotonic() - started, 4),
        }
        return {
            "text": "".join(made),
            "output_ids": list(range(3, 3 + len(made))),
            "meta_info": meta,
        }

    def finish_reason(made: list[str], aborted: bool) -> dict[str, Any]:
        if aborted:
            return {
                "type": "abort",
                "message": "Aborted",
                "status_code": None,
                "err_type": None,
            }
        if limited:
            return {"type": "length", "length": len(made)}
        return {"type": "stop", "matched": EOS_ID}

    if body.get("stream"):
        # http_server.py:serve_generate_request returns its StreamingResponse at once, so a
        # native stream has its status line and headers before the first output (unlike the
        # OpenAI routes, which wait for their first chunk: `_openai.py`)
        h.start_sse()
        so_far: list[str] = []

        def emit(token: str) -> None:
            so_far.append(token)
            h.event(chunk(so_far, None))

        made, aborted = produce(h, prompt, tokens, True, emit)
        h.event(chunk(made, finish_reason(made, aborted)))
        h.event("[DONE]")
        return
    made, aborted = produce(h, prompt, tokens, False)
    h.send_json(200, chunk(made, finish_reason(made, aborted)))
