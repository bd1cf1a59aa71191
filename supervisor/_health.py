"""Health: wait until the server answers (bounded, with backoff), then watch that it still does.

Startup polling uses tenacity with every knob set (style guide: its defaults are "retry forever
on any exception, no wait"): exponential backoff with jitter, a cap, `stop_after_delay`, a retry
predicate that only accepts "not ready yet", and `anyio`-aware sleeping that a nudge can cut
short. The nudge is how the child's ready line makes us probe at once instead of sleeping out the
backoff. A hard `move_on_after` around the whole wait makes the deadline exact even when a single
probe hangs; the probe it cancels is reported as what it was ("in flight for 3.0 s, no answer"),
so the timeout's "last probe" never names an older one.

A probe reads the status line and headers only (`_http_client.request_head`), under one total
deadline, and closes the connection without reading the body: an endless or trickling body can
neither grow the supervisor nor keep a probe (and so liveness) pending for ever. The same wait
serves the health check after a snapshot's resume (`_snapshot_http`), with a constant interval.
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
from ._http_client import RequestFailed, request_head

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
    """One GET; never raises for a network problem, which is just an unhealthy answer.

    `timeout` bounds the whole probe (connect, status line, headers); the body is never read.
    """
    start = time.perf_counter()
    try:
        answer = await request_head(client, "GET", url, deadline=timeout)
    except RequestFailed as exc:
        return ProbeResult(False, None, str(exc), time.perf_counter() - start)
    return ProbeResult(answer.status == 200, answer.status, None, time.perf_counter() - start)


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
    `on_probe` (the last one goes into the timeout's error message), including the probe that
    the deadline cut short.
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
    in_flight: float | None = None  # perf_counter() when the current probe began
    with anyio.move_on_after(policy.startup_timeout) as scope:
        try:
            async for attempt in retrying:
                with attempt:
                    remaining = max(0.05, deadline - anyio.current_time())
                    in_flight = time.perf_counter()
                    result = await probe(client, url, min(policy.probe_timeout, remaining))
                    in_flight = None
                    if on_probe is not None:
                        on_probe(result)
                    if not result.ok:
                        raise _NotReady(result)
                    return result
        except _NotReady:
            return None
    if scope.cancelled_caught and in_flight is not None and on_probe is not None:
        # The deadline cut a probe short: that probe, not the one before, is the last one.
        waited = time.perf_counter() - in_flight
        on_probe(
            ProbeResult(
                False, None, f"no answer yet; a probe was in flight for {waited:.1f} s", waited
            )
        )
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
