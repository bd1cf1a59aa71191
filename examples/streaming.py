"""Streaming: tokens arrive as they are generated (server-sent events ending in [DONE])."""

from _common import MODEL, make_client

client = make_client()
stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Write a haiku about GPUs."}],
    stream=True,
)
chunks = 0
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        chunks += 1
        print(chunk.choices[0].delta.content, end="", flush=True)
print(f"\n[{chunks} content chunks]")
