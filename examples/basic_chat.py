"""Basic chat completion with a system prompt."""

from _common import MODEL, make_client

client = make_client()
response = client.chat.completions.create(
    model=MODEL,
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain quicksort."},
    ],
)
print(response.choices[0].message.content)
print(f"[finish_reason={response.choices[0].finish_reason} tokens={response.usage.total_tokens}]")
