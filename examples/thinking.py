"""Thinking on (the default) and off.

With thinking on, the chain of thought arrives in `reasoning_content`, never mixed into `content`.
With thinking off (chat_template_kwargs.enable_thinking=false) the answer is direct and
`reasoning_content` is empty, which saves tokens.
"""

from _common import MODEL, make_client

client = make_client()

on = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Solve x^2 + 5x + 6 = 0"}],
)
print("Thinking:", getattr(on.choices[0].message, "reasoning_content", None))
print("Answer:", on.choices[0].message.content)

off = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "What is 2+2?"}],
    extra_body={"chat_template_kwargs": {"enable_thinking": False}},
)
print("Thinking (off):", getattr(off.choices[0].message, "reasoning_content", None))
print("Answer (off):", off.choices[0].message.content)
