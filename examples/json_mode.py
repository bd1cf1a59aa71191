"""JSON mode: the answer is valid JSON, ready for downstream parsing."""

import json

from _common import MODEL, make_client

client = make_client()
response = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "List 3 planets as JSON with name and diameter_km."}],
    response_format={"type": "json_object"},
)
data = json.loads(response.choices[0].message.content)
print(json.dumps(data, indent=2))
