"""Client setup: point the OpenAI SDK at the deployment and check that the model is there."""

from _common import MODEL, make_client

client = make_client()
models = [m.id for m in client.models.list()]
print(f"base_url: {client.base_url}")
print(f"models: {', '.join(models)}")
print(f"using: {MODEL} ({'available' if MODEL in models else 'NOT served here'})")
