"""Legacy text completions on /v1/completions."""

from _common import MODEL, make_client

client = make_client()
response = client.completions.create(
    model=MODEL, prompt="The capital city of France is", max_tokens=16
)
print(response.choices[0].text)
print(f"[finish_reason={response.choices[0].finish_reason}]")
