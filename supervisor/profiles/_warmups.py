"""Warmup payload builders shared by the profiles: each exercises one path SGLang must capture."""

from __future__ import annotations

from supervisor import WarmupPayload

CHAT = "/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
_NO_THINKING = {"enable_thinking": False}

# About 10 tokens per sentence for common tokenizers (a deliberate under-estimate is fine).
_SENTENCE = "The supervisor keeps the server warm so the first customer never waits. "
TOKENS_PER_SENTENCE = 13


def long_prompt(tokens: int) -> str:
    """A prompt of roughly `tokens` tokens (estimated from a repeated sentence)."""
    return (
        _SENTENCE * max(1, tokens // TOKENS_PER_SENTENCE) + "Summarise the text above in one word."
    )


def chat(model: str, *, thinking: bool | None, max_tokens: int) -> WarmupPayload:
    """Plain chat. Thinking on must yield reasoning; off must yield content and no reasoning."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Explain quicksort in one sentence."}],
        "max_tokens": max_tokens,
    }
    if thinking is False:
        body["chat_template_kwargs"] = _NO_THINKING
        return WarmupPayload("chat-no-thinking", CHAT, body, expect=("content", "no_reasoning"))
    if thinking is True:
        return WarmupPayload("chat-thinking", CHAT, body, expect=("reasoning_content",))
    return WarmupPayload("chat", CHAT, body, expect=("content",))


def long_context(model: str, *, prompt_tokens: int, thinking_switch: bool) -> WarmupPayload:
    """A prompt long enough to be prefilled in chunks, yet within --max-prefill-tokens."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": long_prompt(prompt_tokens)}],
        "max_tokens": 16,
    }
    if thinking_switch:
        body["chat_template_kwargs"] = _NO_THINKING
    return WarmupPayload("long-context", CHAT, body, expect=("content",), timeout=600)


def tools(model: str, *, thinking_switch: bool) -> WarmupPayload:
    """Tool calling: the answer must carry `tool_calls` with JSON arguments."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "What's the weather in Tokyo?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "max_tokens": 256,
    }
    if thinking_switch:
        body["chat_template_kwargs"] = _NO_THINKING
    return WarmupPayload("tools", CHAT, body, expect=("tool_calls",))


def warmup_set(
    model: str, *, max_prefill_tokens: int, thinking_switch: bool
) -> tuple[WarmupPayload, ...]:
    """The paths a reasoning model with tools must have captured before the first customer.

    Thinking on must yield reasoning. Where `enable_thinking` switches it off, thinking off must
    yield content with no reasoning, and the long and tool prompts run without thinking (faster,
    and the tool call comes first). The long prompt is three quarters of --max-prefill-tokens.
    """
    sets = [chat(model, thinking=True, max_tokens=256)]
    if thinking_switch:
        sets.append(chat(model, thinking=False, max_tokens=64))
    sets.append(
        long_context(
            model, prompt_tokens=max_prefill_tokens * 3 // 4, thinking_switch=thinking_switch
        )
    )
    sets.append(tools(model, thinking_switch=thinking_switch))
    return tuple(sets)
