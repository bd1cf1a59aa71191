"""Streaming with reasoning: reasoning streams first, then the content.

On a terminal the reasoning is grey; into a pipe (no colours) each part starts on a line of its
own under a `[reasoning]` or `[content]` label, so the two never run together.
"""

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
            if not GREY:
                print(("\n" if len(order) > 1 else "") + "[reasoning]", flush=True)
        print(f"{GREY}{reasoning}{RESET}", end="", flush=True)
    if delta.content:
        if not order or order[-1] != "content":
            order.append("content")
            if not GREY:
                print(("\n" if len(order) > 1 else "") + "[content]", flush=True)
        print(delta.content, end="", flush=True)
print(f"\n[order: {' -> '.join(order)}]")
