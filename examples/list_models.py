"""List the models the endpoint serves."""

from _common import make_client

client = make_client()
for model in client.models.list():
    print(f"{model.id}\towned_by={model.owned_by}")
