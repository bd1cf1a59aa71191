"""The HTTP side of sleep and wake: release before a snapshot, resume and verify after it.

Split from `_snapshot` (the policy, the error, the timing and the client slot) so each module has
one job. Every call is bounded by its own deadline, computed when it starts (never carried
across a snapshot, after which the monotonic clock may have jumped), and every answer body by a
byte cap, all through `_http_client.request`. Resume is sent at most once: SGLang's resume removes
each released tag from a set, so a second one raises in the scheduler and kills the server. A
call is retried only when the connection could not be opened, which proves the request never
arrived. The health wait after resume is the startup's own (`_health.wait_healthy`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx

from ._config import HealthPolicy
from ._health import ProbeResult, wait_healthy
from ._http_client import Answer, Failure, RequestFailed, request
from ._snapshot import SnapshotError, SnapshotPolicy, SnapshotTiming

__all__ = ["generated_text", "release_memory", "resume_and_verify"]

_SNIPPET_CHARS = 200
_CONNECT_RETRY_S = 0.25  # pause between attempts when the port refused the connection


async def _call(
    step: str,
    client: httpx.AsyncClient,
    method: str,
    base_url: str,
    path: str,
    *,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    deadline: float,
    cap: int,
) -> Answer:
    """One step's request under a deadline taken now; retried only while the port refuses.

    A refused connection proves the request never reached the server, so trying again cannot
    resume twice; anything after the connection opened (a timeout, a reset) is a failure. The
    answer is kept up to `cap` bytes (`truncated` past it): an error's snippet needs no more.
    """
    # A fresh copy each time: httpx serializes it, nothing may hold on to the policy's own.
    payload = json.loads(json.dumps(dict(body))) if body is not None else None
    refused = False
    try:
        with anyio.fail_after(deadline):
            while True:
                refused = False  # this attempt's: a hang after a refusal is blamed on the hang
                try:
                    return await request(
                        client,
                        method,
                        base_url + path,
                        json=payload,
                        headers=headers,
                        deadline=deadline,
                        max_body_bytes=cap,
                        truncate=True,
                    )
                except RequestFailed as exc:
                    if exc.kind is not Failure.CONNECT:
                        raise
                    refused = True
                await anyio.sleep(_CONNECT_RETRY_S)
    except TimeoutError:
        why = "the connection was refused" if refused else "no answer"
        raise SnapshotError(
            f"{step}: {why} from {method} {path} within {deadline:g} s", step=step
        ) from None
    except RequestFailed as exc:
        if exc.kind is Failure.TIMEOUT:
            raise SnapshotError(
                f"{step}: no answer from {method} {path} within {deadline:g} s", step=step
            ) from None
        raise SnapshotError(f"{step}: {method} {path} failed: {exc}", step=step) from None


def _require_200(step: str, method: str, path: str, answer: Answer) -> None:
    if answer.status != 200:
        snippet = answer.snippet()
        raise SnapshotError(
            f"{step}: {method} {path} answered HTTP {answer.status}: {snippet or '(empty body)'}",
            step=step,
            status=answer.status,
            snippet=snippet,
        )


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def generated_text(body: Any) -> str:
    """The text a generation produced, from SGLang's native answer or an OpenAI-style one.

    Native `/generate`: `{"text": ...}` (a list of those for a batch). Chat completions:
    `choices[0].message.content` plus `reasoning_content` (a thinking model may spend a short
    budget on reasoning alone). Completions: `choices[0].text`. Anything else yields "".
    """
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, Mapping):
        return ""
    if isinstance(body.get("text"), str):
        return str(body["text"])
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return ""
    choice = choices[0]
    message = choice.get("message")
    if isinstance(message, Mapping):
        parts = [message.get("reasoning_content"), message.get("content")]
        return "".join(p for p in parts if isinstance(p, str))
    text = choice.get("text")
    return text if isinstance(text, str) else ""


# ----------------------------------------------------------------------------- sleep
async def release_memory(
    client: httpx.AsyncClient,
    base_url: str,
    policy: SnapshotPolicy,
    api_key: str | None = None,
    *,
    admin_api_key: str | None = None,
    timing: SnapshotTiming | None = None,
) -> None:
    """Pause generation, then release GPU memory: the last calls before a snapshot.

    The caller has already stopped the liveness watch (a /health probe is a generation) and must
    close its HTTP client afterwards. SGLang asserts it is idle when the release arrives and
    kills itself if it is not; the pause (mode "abort") aborts what is in flight and holds new
    requests first. `admin_api_key` is sent instead of `api_key` when the server has one: the
    control endpoints then accept only it. Raises `SnapshotError` naming the failed step.
    """
    timing = timing if timing is not None else SnapshotTiming()
    steps: list[tuple[str, str, Mapping[str, Any]]] = []
    if policy.pause_path is not None:
        steps.append(("pause", policy.pause_path, policy.pause_body))
    steps.append(("release", policy.release_path, policy.release_body))
    await _control_steps(
        client, base_url, policy, steps, _headers(admin_api_key or api_key), timing
    )


async def _control_steps(
    client: httpx.AsyncClient,
    base_url: str,
    policy: SnapshotPolicy,
    steps: Sequence[tuple[str, str, Mapping[str, Any]]],
    headers: Mapping[str, str],
    timing: SnapshotTiming,
) -> None:
    """POST each control step in order, each under its own deadline; each must answer 200."""
    for step, path, body in steps:
        start = time.perf_counter()
        answer = await _call(
            step,
            client,
            "POST",
            base_url,
            path,
            body=body,
            headers=headers,
            deadline=policy.call_timeout,
            cap=policy.max_body_bytes,
        )
        _require_200(step, "POST", path, answer)
        timing.record(step, time.perf_counter() - start)


# ----------------------------------------------------------------------------- wake
async def _wait_health(client: httpx.AsyncClient, base_url: str, policy: SnapshotPolicy) -> None:
    """Probe the health path until it answers 200, within `health_timeout`: the startup wait
    (`_health.wait_healthy`), one probe at a time, paced by a constant `health_interval`."""
    path = policy.health_path
    health = HealthPolicy(
        path=path,
        startup_timeout=policy.health_timeout,
        probe_timeout=policy.health_probe_timeout,
        initial_backoff=policy.health_interval,
        max_backoff=policy.health_interval,
        jitter=0.0,
    )
    probes: list[ProbeResult] = []
    if await wait_healthy(client, base_url + path, health, on_probe=probes.append) is not None:
        return
    last = probes[-1] if probes else None
    raise SnapshotError(
        f"health: GET {path} did not answer 200 within {policy.health_timeout:g} s after "
        f"resume (last probe: {last.describe() if last is not None else 'no probe finished'})",
        step="health",
        status=last.status if last is not None else None,
    )


async def _verify(
    client: httpx.AsyncClient, base_url: str, policy: SnapshotPolicy, headers: Mapping[str, str]
) -> None:
    path = policy.verify_path
    answer = await _call(
        "verify",
        client,
        "POST",
        base_url,
        path,
        body=policy.verify_body,
        headers=headers,
        deadline=policy.verify_timeout,
        cap=policy.max_body_bytes,
    )
    _require_200("verify", "POST", path, answer)
    if answer.truncated:
        raise SnapshotError(
            f"verify: POST {path} answered more than {policy.max_body_bytes} bytes; "
            "a short generation never does",
            step="verify",
            status=answer.status,
            snippet=answer.snippet(),
        )
    try:
        text = generated_text(json.loads(answer.body))
    except ValueError:
        raise SnapshotError(
            f"verify: POST {path} answered 200 with a body that is not JSON: {answer.snippet()}",
            step="verify",
            status=answer.status,
            snippet=answer.snippet(),
        ) from None
    if not text.strip():
        raise SnapshotError(
            f"verify: POST {path} answered 200 but generated no text: {answer.snippet()}",
            step="verify",
            status=answer.status,
            snippet=answer.snippet(),
        )
    if policy.verify_expect is not None and policy.verify_expect not in text:
        raise SnapshotError(
            f"verify: the generation does not contain {policy.verify_expect!r} "
            f"(weights restored wrong?): {' '.join(text.split())[:_SNIPPET_CHARS]}",
            step="verify",
            status=answer.status,
            snippet=answer.snippet(),
        )


async def resume_and_verify(
    client: httpx.AsyncClient,
    base_url: str,
    policy: SnapshotPolicy,
    api_key: str | None = None,
    *,
    admin_api_key: str | None = None,
    timing: SnapshotTiming | None = None,
) -> None:
    """After a restore: resume memory, un-pause, wait for health, verify one generation.

    `client` must be new since the restore (see `ClientSlot.renew`). Every deadline starts when
    its step starts, after the restore. Resume is sent once; only a refused connection is tried
    again. Raises `SnapshotError` naming the failed step; the caller turns it into a startup
    failure with the log tail (`SnapshotError.with_tail`).
    """
    timing = timing if timing is not None else SnapshotTiming()
    steps: list[tuple[str, str, Mapping[str, Any]]] = [
        ("resume", policy.resume_path, policy.resume_body)
    ]
    if policy.continue_path is not None:
        steps.append(("continue", policy.continue_path, policy.continue_body))
    await _control_steps(
        client, base_url, policy, steps, _headers(admin_api_key or api_key), timing
    )
    start = time.perf_counter()
    await _wait_health(client, base_url, policy)
    timing.record("health", time.perf_counter() - start)
    start = time.perf_counter()
    await _verify(client, base_url, policy, _headers(api_key))
    timing.record("verify", time.perf_counter() - start)
