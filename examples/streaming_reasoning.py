"""Streaming with reasoning: reasoning streams first (shown grey), then the content."""

import sys

from _common import MODEL, make_client

GREY, RESET = ("\033[90m", "\033[0m") if sys.stdout.isatty() else ("", "")

client = make_client()
order = []
for chunk in client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Prove that the square root of 2 is irrational."}],
    stream=True,
):
    if not chunk.choices:
        continue
    delta = chunk.choices[0].delta
    reasoning = getattr(delta, "reasoning_content", None)
    if reasoning:
        if not order or order[-1] != "reasoning":
            order.append("reasoning")
        print(f"{GREY}{reasoning}{RESET}", end="", flush=True)
    if delta.content:
        if not order or order[-1] != "content":
            order.append("content")
        print(delta.content, end="", flush=True)
print(f"\n[order: {' -> '.join(order)}]")
