"""Health: wait until the server answers (bounded, with backoff), then watch that it still does.

Startup polling uses tenacity with every knob set (style guide: its defaults are "retry forever
on any exception, no wait"): exponential backoff with jitter, a cap, `stop_after_delay`, a retry
predicate that only accepts "not ready yet", and `anyio`-aware sleeping that a nudge can cut
short. The nudge is how the child's ready line makes us probe at once instead of sleeping out the
backoff. A hard `move_on_after` around the whole wait makes the deadline exact even when a single
probe hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from ._config import HealthPolicy, LivenessPolicy

__all__ = ["Nudge", "ProbeResult", "probe", "wait_healthy", "watch_liveness"]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None
    error: str | None
    latency_s: float

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "no answer"


ProbeHook = Callable[[ProbeResult], None]


class Nudge:
    """A wake-up that cuts one backoff sleep short; firing it twice before a sleep counts once."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def fire(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()


async def probe(client: httpx.AsyncClient, url: str, timeout: float) -> ProbeResult:
    """One GET; never raises for a network problem, which is just an unhealthy answer."""
    start = time.perf_counter()
    try:
        response = await client.get(url, timeout=timeout)
    except httpx.ConnectError:
        return ProbeResult(False, None, "connection refused", time.perf_counter() - start)
    except httpx.TimeoutException:
        return ProbeResult(
            False, None, f"no answer within {timeout:g} s", time.perf_counter() - start
        )
    except httpx.TransportError as exc:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return ProbeResult(False, None, error, time.perf_counter() - start)
    latency = time.perf_counter() - start
    return ProbeResult(response.status_code == 200, response.status_code, None, latency)


class _NotReady(Exception):
    def __init__(self, result: ProbeResult) -> None:
        super().__init__(result.describe())
        self.result = result


async def wait_healthy(
    client: httpx.AsyncClient,
    url: str,
    policy: HealthPolicy,
    *,
    nudge: Nudge | None = None,
    on_probe: ProbeHook | None = None,
) -> ProbeResult | None:
    """Return the first healthy probe, or None when `policy.startup_timeout` runs out.

    The caller races this against the child's exit, and learns every probe's result through
    `on_probe` (the last one goes into the timeout's error message).
    """
    deadline = anyio.current_time() + policy.startup_timeout
    retrying = AsyncRetrying(
        stop=stop_after_delay(policy.startup_timeout),
        wait=wait_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)
        + wait_random(0, policy.jitter),
        retry=retry_if_exception_type(_NotReady),
        sleep=nudge.sleep if nudge is not None else anyio.sleep,
        reraise=True,
    )
    with anyio.move_on_after(policy.startup_timeout):
        try:
            async for attempt in retrying:
                with attempt:
                    remaining = max(0.05, deadline - anyio.current_time())
                    result = await probe(client, url, min(policy.probe_timeout, remaining))
                    if on_probe is not None:
                        on_probe(result)
                    if not result.ok:
                        raise _NotReady(result)
                    return result
        except _NotReady:
            return None
    return None


async def watch_liveness(
    client: httpx.AsyncClient,
    url: str,
    policy: LivenessPolicy,
    *,
    on_probe: ProbeHook | None = None,
) -> ProbeResult:
    """Probe every `interval` s, one probe at a time; return the failure that spends the budget.

    Probes never overlap (a timed-out SGLang /health keeps running on the scheduler, and piling
    them up is what sglang #35884 warns about), and any success resets the count.
    """
    failures = 0
    while True:
        await anyio.sleep(policy.interval)
        result = await probe(client, url, policy.timeout)
        if on_probe is not None:
            on_probe(result)
        if result.ok:
            failures = 0
            continue
        failures += 1
        if failures >= policy.failures:
            return result
