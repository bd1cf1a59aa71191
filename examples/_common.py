"""What every example shares: one OpenAI client and the model name, from the environment.

The OpenAI SDK's own conventions: OPENAI_BASE_URL (e.g. https://<app>.modal.run/v1, or
http://127.0.0.1:8000/v1 for the local demo) and OPENAI_API_KEY. The model name comes from
MODEL_NAME, "glm-5.1" by default: change it here, once, for another profile.
"""

from __future__ import annotations

import os

from openai import OpenAI

MODEL = os.environ.get("MODEL_NAME", "glm-5.1")


def make_client() -> OpenAI:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        raise SystemExit(
            "set OPENAI_BASE_URL, e.g. http://127.0.0.1:8000/v1 or https://<app>.modal.run/v1"
        )
    # SGLang without --api-key accepts any key; the SDK insists on one being set.
    return OpenAI(
        base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "none", timeout=600
    )


def server_root() -> str:
    """The base URL without /v1: where /health and /metrics live."""
    base = os.environ["OPENAI_BASE_URL"].rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base
