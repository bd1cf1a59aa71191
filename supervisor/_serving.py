"""The serving phase: watch a serving server until it dies, stalls, is stopped or is put to sleep.

Three watchdogs race inside the phase's own race (the exit watcher, a stop and, on a cluster, the
peers stay ahead of them): the sparse liveness probe, the progress watch of the engine's own
metrics (`_progress_watch`) and the memory watch (`_memory`). Whichever gives up first ends the
phase: a spent liveness budget is `unhealthy`, a stall is `unhealthy` with reason `stalled`; both
take the death path (tree killed at once, crash report, death handler, exit 1). Memory past its
mark is a planned recycle: drained like a stop, reported like a death.

A sleep request wins the race too (that is what pauses the watchdogs: their tasks are
cancelled); `_sleep_wake` takes it from there and hands back a serving server, or its ending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ._endings import Outcome, death, planned_recycle
from ._health import ProbeResult, watch_liveness
from ._memory import MemoryReport, watch_memory
from ._process import ChildProcess
from ._progress import Verdict
from ._progress_tracker import StallReport
from ._progress_watch import Scrape, watch_progress
from ._racing import lost_race, phase_race
from ._run import Run
from ._sleep_wake import sleep_and_wake
from ._startup import on_probe
from ._states import Event
from ._tasks import Race

__all__ = ["serve"]

Watchdog = Callable[[], Awaitable["ProbeResult | StallReport | MemoryReport"]]


async def serve(run: Run, child: ChildProcess) -> Outcome:
    """serving, until a death, a stall, a stop or a peer's failure; sleeps when asked."""
    scrapes = _ScrapeLog(run)
    while True:
        kind, found = await phase_race(
            run, lambda: _watchdogs(run, child, scrapes), sleep=run.sleep_requested
        )
        if kind is Race.SLEEP:
            ended = await sleep_and_wake(run, child)
            if ended is not None:
                return ended
            continue
        if kind is not Race.DONE:
            return await lost_race(run, child, kind)
        if isinstance(found, StallReport):
            detail = found.describe()
            run.machine.fire(Event.UNHEALTHY, f"stalled: {detail}")
            return await death(run, child, "stalled", detail)
        if isinstance(found, MemoryReport):
            return await planned_recycle(run, child, "memory", found.describe())
        assert found is not None
        failures = run.config.liveness.failures
        detail = f"{failures} liveness probes failed in a row, last: {found.describe()}"
        run.machine.fire(Event.UNHEALTHY, detail)
        return await death(run, child, "unhealthy", detail)


async def _watchdogs(
    run: Run, child: ChildProcess, scrapes: _ScrapeLog
) -> ProbeResult | StallReport | MemoryReport:
    """Liveness, progress and memory side by side; the first to give up is the answer."""
    cfg = run.config
    client = run.slot.client  # taken now: a client from before a sleep is closed

    async def memory() -> MemoryReport:
        try:
            return await watch_memory(
                child.tree, cfg.memory, say=run.say, on_sample=run.metrics.on_memory
            )
        except Exception as exc:  # an add-on's bug must not take a healthy server down
            run.say(f"memory watch failed ({type(exc).__name__}: {exc}); it is off")
            await anyio.sleep_forever()
            raise  # pragma: no cover - sleep_forever does not return

    async def liveness() -> ProbeResult:
        if not cfg.liveness.enabled:
            await anyio.sleep_forever()
        return await watch_liveness(
            client,
            cfg.base_url + cfg.health.path,
            cfg.liveness,
            on_probe=lambda r: on_probe(run, "liveness", r),
        )

    async def progress() -> StallReport:
        # Sleeps forever by itself when disabled, or once the metrics proved absent.
        url = cfg.base_url + cfg.progress.path
        try:
            return await watch_progress(
                client,
                url,
                cfg.progress,
                on_scrape=scrapes.on_scrape,
                api_key=cfg.api_key,  # the canary goes the clients' way, with their key
                on_canary=lambda line: run.say(f"progress: {line}"),
            )
        except Exception as exc:  # an add-on's bug must not take a healthy server down
            run.say(
                f"progress watch failed ({type(exc).__name__}: {exc}); hang detection by "
                "progress is off; the liveness probe remains"
            )
            await anyio.sleep_forever()
            raise  # pragma: no cover - sleep_forever does not return

    found: list[ProbeResult | StallReport | MemoryReport] = []
    async with anyio.create_task_group() as tg:

        async def first(fn: Watchdog) -> None:
            found.append(await fn())
            tg.cancel_scope.cancel()

        tg.start_soon(first, liveness)
        tg.start_soon(first, progress)
        tg.start_soon(first, memory)
    return found[0]


class _ScrapeLog:
    """What the progress scrapes say, turned into metrics and into one line per change (a
    verdict change, a run of failures, the metrics' absence), across sleeps."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._verdict: Verdict | None = None
        self._failing = False
        self._off_said = False

    def on_scrape(self, scrape: Scrape) -> None:
        run, status = self._run, scrape.status
        measured = status is not None and status.verdict is not Verdict.NO_METRICS
        run.metrics.on_progress(
            verdict=None if scrape.verdict is None else scrape.verdict.value,
            waiting=status.work if status is not None and measured else None,
            last_change_unix=scrape.last_progress_unix,
            failed=scrape.error is not None,
        )
        if scrape.gave_up:
            if not self._off_said:
                self._off_said = True
                remains = "the liveness probe" if run.config.liveness.enabled else "the exit watch"
                run.say(
                    f"no engine metrics at {run.config.progress.path}: hang detection by "
                    f"progress is off; {remains} remains"
                )
            return
        if status is None:
            if not self._failing:
                self._failing = True
                run.say(f"progress scrape failed: {scrape.error} (said once per run of failures)")
            return
        self._failing = False
        verdict, previous = status.verdict, self._verdict
        if verdict is previous or (verdict is Verdict.NO_METRICS and previous is None):
            return  # one line per change; absence from the start is said once, on giving up
        self._verdict = verdict
        change = verdict.value if previous is None else f"{previous.value} -> {verdict.value}"
        if verdict in (Verdict.OK, Verdict.STALLED):
            change += f" ({status.work:g} waiting, counters still for {status.frozen_for_s:.1f} s)"
        run.say(f"progress: {change}")
