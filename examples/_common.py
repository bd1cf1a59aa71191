"""What every example shares: one OpenAI client and the model name, from the environment.

The OpenAI SDK's own conventions: OPENAI_BASE_URL (e.g. https://<app>.modal.run/v1, or
http://127.0.0.1:8000/v1 for the local demo) and OPENAI_API_KEY. The model name comes from
MODEL_NAME, "glm-5.1" by default: change it here, once, for another profile.

A deployment with Modal's proxy auth on (SGLANG_SUPERVISOR_PROXY_AUTH=1) also wants a proxy auth
token on every request, in two more headers: set MODAL_KEY and MODAL_SECRET (the token's ID and
secret) and every client here sends them as `Modal-Key` and `Modal-Secret`.
"""

from __future__ import annotations

import os

from openai import OpenAI

MODEL = os.environ.get("MODEL_NAME", "glm-5.1")


def proxy_auth_headers() -> dict[str, str]:
    """Modal's proxy auth headers, when a token is configured; SGLang's Bearer key is separate."""
    key, secret = os.environ.get("MODAL_KEY"), os.environ.get("MODAL_SECRET")
    return {"Modal-Key": key, "Modal-Secret": secret} if key and secret else {}


def make_client() -> OpenAI:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        raise SystemExit(
            "set OPENAI_BASE_URL, e.g. http://127.0.0.1:8000/v1 or https://<app>.modal.run/v1"
        )
    # SGLang without --api-key accepts any key; the SDK insists on one being set.
    return OpenAI(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY") or "none",
        timeout=600,
        default_headers=proxy_auth_headers(),
    )


def server_root() -> str:
    """The base URL without /v1: where /health and /metrics live."""
    base = os.environ["OPENAI_BASE_URL"].rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base
