"""The serving phase: watch a serving server until it dies, stalls, is stopped or is put to sleep.

Two watchdogs race inside the phase's own race (the exit watcher, a stop and, on a cluster, the
peers stay ahead of them): the sparse liveness probe and the progress watch of the engine's own
metrics (`_progress_watch`). Whichever gives up first ends the phase: a spent liveness budget is
`unhealthy`, a stall is `unhealthy` with reason `stalled`; both take the death path (tree killed
at once, crash report, death handler, exit 1).

Sleep and wake (docs/SNAPSHOTS.md) happen here too, because they interrupt serving: a sleep
request wins the race (that is what pauses liveness and progress: their tasks are cancelled),
then `sleeping` (pause generation, release memory), `asleep` (HTTP pool closed: the only state a
snapshot may be taken in), `waking` (new pool, resume, health, one verified generation) and back
to `serving` with a fresh serving clock and fresh watchdogs. The exit watcher and the log pumps
never pause. A failed step is a `SnapshotError`, and a death while sleeping, asleep or waking a
`ChildExited`: both are startup errors (exit 3), since the server never proved it serves again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import anyio

from ._endings import Outcome
from ._errors import ConfigError, IllegalTransition, ServerDied, SupervisorError
from ._health import ProbeResult, watch_liveness
from ._memory import MemoryReport, watch_memory
from ._process import ChildProcess
from ._progress import StallReport, Verdict
from ._progress_watch import Scrape, watch_progress
from ._snapshot import SnapshotError, SnapshotTiming
from ._snapshot_http import release_memory, resume_and_verify
from ._startup import Startup
from ._states import Event, State
from ._tasks import Race

__all__ = ["Serving"]

Watchdog = Callable[[], Awaitable["ProbeResult | StallReport | MemoryReport"]]


class Serving(Startup):
    """The serving phase of `Supervisor`, with `sleep()` and `wake()` (see the module doc)."""

    _state_changed: anyio.Event
    _sleep_requested: anyio.Event
    _wake_requested: anyio.Event
    _done: anyio.Event
    snapshot_timing: SnapshotTiming
    failure: SupervisorError | None
    _verdict: Verdict | None
    _scrapes_failing: bool
    _progress_off_said: bool

    # ----------------------------------------------------------------- public
    async def sleep(self) -> SnapshotTiming:
        """serving -> sleeping -> asleep: ready for a memory snapshot; returns the step timings.

        Liveness and progress pause, generation is paused, GPU memory released, and the HTTP pool
        closed; the exit watcher and the log pumps keep running. Needs `config.snapshot`. If a
        step fails, the server is killed, `run()` raises the `SnapshotError` and so does this.
        """
        if self.config.snapshot is None:
            raise ConfigError("sleep() needs a snapshot policy: set SupervisorConfig.snapshot")
        if self.config.cluster is not None:
            raise ConfigError(
                "sleep() on a multi-node cluster is not supported: a GPU snapshot of a cluster "
                "is not something the platform offers (docs/SNAPSHOTS.md, section 5)"
            )
        if self.machine.state is not State.SERVING:
            raise IllegalTransition(
                f"can't sleep in state {self.machine.state.value!r}; serving only"
            )
        self._sleep_requested.set()
        await self._until(State.ASLEEP, "sleep")
        return self.snapshot_timing

    async def wake(self) -> SnapshotTiming:
        """asleep -> waking -> serving: resume, wait for health, verify one generation.

        Every deadline starts after the restore. If a step fails, the server is killed and
        `run()` raises the `SnapshotError` (exit 3), as does this.
        """
        if self.machine.state is not State.ASLEEP:
            raise IllegalTransition(
                f"can't wake in state {self.machine.state.value!r}; asleep only"
            )
        self._wake_requested.set()
        await self._until(State.SERVING, "wake")
        return self.snapshot_timing

    async def _until(self, target: State, what: str) -> None:
        """Wait for `target`; if the supervisor ends instead, raise why once `run` is done."""
        while self.machine.state is not target:
            if self.machine.state in (State.STOPPING, State.DEAD):
                await self._done.wait()  # bounded: the stop and kill timeouts bound `run`
                if self.failure is not None:
                    raise self.failure
                if self.report is not None:
                    raise ServerDied(self.report.summary(), report=self.report)
                raise SnapshotError(f"{what}: the server was stopped on request first", step=what)
            await self._state_changed.wait()

    # ----------------------------------------------------------------- serving
    async def _serve(self, child: ChildProcess) -> Outcome:
        """serving, until a death, a stall, a stop or a peer's failure; sleeps when asked."""
        while True:
            kind, found = await self._race(
                lambda: self._watchdogs(child), sleep=self._sleep_requested
            )
            if kind is Race.SLEEP:
                ended = await self._sleep_and_wake(child)
                if ended is not None:
                    return ended
                continue
            if kind is not Race.DONE:
                return await self._lost_race(child, kind)
            if isinstance(found, StallReport):
                detail = found.describe()
                self.machine.fire(Event.UNHEALTHY, f"stalled: {detail}")
                return await self._death(child, "stalled", detail)
            if isinstance(found, MemoryReport):
                return await self._planned_recycle(child, "memory", found.describe())
            assert found is not None
            failures = self.config.liveness.failures
            detail = f"{failures} liveness probes failed in a row, last: {found.describe()}"
            self.machine.fire(Event.UNHEALTHY, detail)
            return await self._death(child, "unhealthy", detail)

    async def _watchdogs(self, child: ChildProcess) -> ProbeResult | StallReport | MemoryReport:
        """Liveness, progress and memory side by side; the first to give up is the answer."""
        cfg = self.config
        client = self._slot.client  # taken now: a client from before a sleep is closed

        async def memory() -> MemoryReport:
            try:
                return await watch_memory(
                    child.tree, cfg.memory, say=self.say, on_sample=self.metrics.on_memory
                )
            except Exception as exc:  # an add-on's bug must not take a healthy server down
                self.say(f"memory watch failed ({type(exc).__name__}: {exc}); it is off")
                await anyio.sleep_forever()
                raise  # pragma: no cover - sleep_forever does not return

        async def liveness() -> ProbeResult:
            if not cfg.liveness.enabled:
                await anyio.sleep_forever()
            return await watch_liveness(
                client,
                cfg.base_url + cfg.health.path,
                cfg.liveness,
                on_probe=lambda r: self._on_probe("liveness", r),
            )

        async def progress() -> StallReport:
            # Sleeps forever by itself when disabled, or once the metrics proved absent.
            url = cfg.base_url + cfg.progress.path
            try:
                return await watch_progress(
                    client,
                    url,
                    cfg.progress,
                    on_scrape=self._on_scrape,
                    api_key=cfg.api_key,  # the canary goes the clients' way, with their key
                    on_canary=lambda line: self.say(f"progress: {line}"),
                )
            except Exception as exc:  # an add-on's bug must not take a healthy server down
                self.say(
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

    def _on_scrape(self, scrape: Scrape) -> None:
        """Feed the metrics; one line per verdict change, per run of failures, and on absence."""
        status = scrape.status
        measured = status is not None and status.verdict is not Verdict.NO_METRICS
        self.metrics.on_progress(
            verdict=None if scrape.verdict is None else scrape.verdict.value,
            waiting=status.work if status is not None and measured else None,
            last_change_unix=scrape.last_progress_unix,
            failed=scrape.error is not None,
        )
        if scrape.gave_up:
            if not self._progress_off_said:
                self._progress_off_said = True
                remains = "the liveness probe" if self.config.liveness.enabled else "the exit watch"
                self.say(
                    f"no engine metrics at {self.config.progress.path}: hang detection by "
                    f"progress is off; {remains} remains"
                )
            return
        if status is None:
            if not self._scrapes_failing:
                self._scrapes_failing = True
                self.say(f"progress scrape failed: {scrape.error} (said once per run of failures)")
            return
        self._scrapes_failing = False
        verdict, previous = status.verdict, self._verdict
        if verdict is previous or (verdict is Verdict.NO_METRICS and previous is None):
            return  # one line per change; absence from the start is said once, on giving up
        self._verdict = verdict
        change = verdict.value if previous is None else f"{previous.value} -> {verdict.value}"
        if verdict in (Verdict.OK, Verdict.STALLED):
            change += f" ({status.work:g} waiting, counters still for {status.frozen_for_s:.1f} s)"
        self.say(f"progress: {change}")

    # ----------------------------------------------------------------- sleep and wake
    async def _sleep_and_wake(self, child: ChildProcess) -> Outcome | None:
        """sleeping -> asleep -> (wake requested) -> waking -> serving; None when serving again."""
        cfg, policy = self.config, self.config.snapshot
        assert policy is not None  # sleep() refuses without one
        timing = SnapshotTiming()
        self.snapshot_timing = timing
        self._sleep_requested = anyio.Event()
        self.machine.fire(Event.SLEEP, "liveness and progress paused")
        kind, error = await self._race(
            lambda: _attempt(
                release_memory(
                    self._slot.client,
                    cfg.base_url,
                    policy,
                    cfg.api_key,
                    timing=timing,
                    admin_api_key=cfg.admin_api_key,
                )
            )
        )
        if kind is not Race.DONE:
            return await self._lost_race(child, kind)
        if error is not None:
            await self._snapshot_failed(child, error)
        await self._slot.retire()  # no socket goes into the snapshot
        timing.mark_asleep()
        self.machine.fire(Event.SLEPT, timing.summary())

        kind, _ = await self._race(self._wake_requested.wait)
        if kind is not Race.DONE:
            return await self._lost_race(child, kind)
        self._wake_requested = anyio.Event()
        timing.mark_awake()  # first thing after the restore: nothing before it is trusted
        self.machine.fire(Event.WAKE, f"asleep for {timing.asleep_s or 0.0:.3f} s")
        await self._slot.renew()
        kind, error = await self._race(
            lambda: _attempt(
                resume_and_verify(
                    self._slot.client,
                    cfg.base_url,
                    policy,
                    cfg.api_key,
                    timing=timing,
                    admin_api_key=cfg.admin_api_key,
                )
            )
        )
        if kind is not Race.DONE:
            return await self._lost_race(child, kind)
        if error is not None:
            await self._snapshot_failed(child, error)
        self.metrics.on_snapshot_steps(timing.steps)
        self.say(timing.summary())
        self.machine.fire(Event.WOKEN, "resumed, healthy, and a generation verified")
        self._serving_since = time.monotonic()  # never across the sleep
        return None

    async def _snapshot_failed(self, child: ChildProcess, error: SnapshotError) -> NoReturn:
        self.machine.fire(Event.FAILED, str(error))
        await self._kill(child)
        tail = self.tail.lines()
        raise error.with_tail(tail, self._classify(tail))


async def _attempt(call: Awaitable[None]) -> SnapshotError | None:
    """Run one sleep or wake call; its `SnapshotError` comes back as a value, not through the
    race's task group (which would wrap it in a group)."""
    try:
        await call
    except SnapshotError as exc:
        return exc
    return None
