"""The start of a server: wait for its health path, check whose socket answers, warm it up.

`starting --healthy--> warm --warmed--> serving`. Each phase runs in `phase_race`, so the main
process's exit, a stop request or (on a cluster) a peer's failure ends it at once. A cluster
worker (rank >= 1) shares the health wait: its `/health` is SGLang's dummy, which starts only
once its schedulers joined the rendezvous and loaded; it then waits for rank 0 instead of warming
up (`_worker`). Every phase takes the HTTP client from the slot when it starts, never one kept
from before a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._caches import describe_caches, snapshot_caches
from ._endings import Outcome, health_timeout, kill
from ._errors import ForeignListener, WarmupFailed
from ._health import ProbeResult, wait_healthy
from ._process import ChildProcess
from ._racing import lost_race, phase_race
from ._run import Run
from ._states import Event
from ._tasks import Race
from ._warmup import WarmupResult, run_warmups

__all__ = ["on_probe", "reach_serving", "report_caches", "start_up", "wait_until_healthy"]


async def start_up(run: Run, child: ChildProcess, announce: Callable[[], None]) -> Outcome | None:
    """starting, then warm: None once serving (after `announce`), else how it ended (or the
    error it raised)."""
    ended = await wait_until_healthy(run, child, "")
    if ended is not None:
        return ended
    cfg = run.config
    if cfg.warmup.payloads:

        def on_warmup(result: WarmupResult) -> None:
            run.metrics.on_warmup(result.name, result.ok, result.latency_s)
            run.timeline.span(f"warmup.{result.name}", result.latency_s)
            run.say(result.describe())

        kind, results = await phase_race(
            run,
            lambda: run_warmups(
                run.slot.client,
                cfg.base_url,
                cfg.warmup.payloads,
                api_key=cfg.api_key,
                on_result=on_warmup,
            ),
        )
        if kind is not Race.DONE:
            return await lost_race(run, child, kind)
        run.warmup_results = list(results or [])
        failed = [r for r in run.warmup_results if not r.ok]
        if failed and cfg.warmup.fail_startup:
            run.machine.fire(Event.FAILED, f"{len(failed)} warmup(s) failed")
            await kill(run, child)
            raise WarmupFailed(
                "warmup failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed),
                results=run.warmup_results,
                tail=run.tail.lines(),
            )
        for r in failed:
            run.say(f"warning: warmup {r.name!r} failed but warmup failures are warnings")
    await report_caches(run)
    reach_serving(run, announce, "")
    return None


async def wait_until_healthy(run: Run, child: ChildProcess, why: str) -> Outcome | None:
    """starting: wait for 200 on the health path; None once `warm`, else how it ended."""
    cfg = run.config
    kind, healthy = await phase_race(
        run,
        lambda: wait_healthy(
            run.slot.client,
            cfg.base_url + cfg.health.path,
            cfg.health,
            nudge=run.nudge,
            on_probe=lambda r: on_probe(run, "startup", r),
        ),
    )
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    if healthy is None:
        await health_timeout(run, child)
    await _check_listener(run, child)
    run.timeline.mark("healthy")
    run.machine.fire(Event.HEALTHY, f"{cfg.health.path} answered in {healthy.latency_s:.3f} s{why}")
    return None


async def report_caches(run: Run) -> None:
    """Each cache before the spawn and now: a hit, or what the start compiled into it."""
    caches = run.config.caches
    if not caches:
        return
    after = await snapshot_caches(caches)
    for moment, counts in (("before", run.caches_before), ("serving", after)):
        for name, found in counts.items():
            if found is not None:
                run.metrics.on_cache(name, moment, found.files, found.bytes)
    line, missed = describe_caches(run.caches_before, after)
    run.caches_missed = tuple(missed)
    run.say(line)
    for name in sorted(set(missed) & run.config.expect_warm_caches):
        run.say(
            f"warning: cache {name} was expected warm but this start added to it: "
            "its key or contents do not match this deployment"
        )


def reach_serving(run: Run, announce: Callable[[], None], note: str) -> None:
    """warm -> serving: the timeline's summary, a fresh serving clock, and the caller told."""
    run.timeline.mark("serving")
    run.metrics.on_phases(run.timeline.durations())
    run.say(run.timeline.summary())
    run.machine.fire(Event.WARMED, note)
    run.serving_since = time.monotonic()
    run.serving_announced = True
    announce()


async def _check_listener(run: Run, child: ChildProcess) -> None:
    """A 200 proves that something answers, not that it is ours: check whose socket it is."""
    check = child.check_listener(run.config.host, run.config.port)
    if check.verdict == "foreign":
        run.machine.fire(Event.FAILED, check.detail)
        await kill(run, child)
        raise ForeignListener(
            f"{run.config.health.path} answered, but {check.detail} (a stale server?): "
            "stop it or choose another port",
            tail=run.tail.lines(),
        )
    if check.verdict == "unknown":
        run.say(f"note: cannot tell whose socket answers ({check.detail}); trusting it")


def on_probe(run: Run, kind: str, result: ProbeResult) -> None:
    previous, run.last_probe = run.last_probe, result
    run.metrics.on_probe(kind, result.ok, result.latency_s)
    if kind == "startup" and (previous is None or previous.describe() != result.describe()):
        # One line per change (refused -> 503 -> 200), not one per probe.
        run.say(f"health probe: {result.describe()}")
    if result.error != "connection refused":
        run.timeline.mark("port_open")
    if kind == "liveness" and not result.ok:
        run.say(f"liveness probe failed: {result.describe()}")
