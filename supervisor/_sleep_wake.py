"""Sleep and wake (docs/SNAPSHOTS.md): they interrupt serving, so the serving phase hands over.

`serving -> sleeping` (pause generation, release memory) `-> asleep` (HTTP pool closed: the only
state a snapshot may be taken in) `-> waking` (new pool, resume, health, one verified generation)
`-> serving`, with a fresh serving clock and fresh watchdogs. The exit watcher and the log pumps
never pause. A failed step is a `SnapshotError`, and a death while sleeping, asleep or waking a
`ChildExited`: both are startup errors (exit 3), since the server never proved it serves again.

`request_sleep` and `request_wake` are what `Supervisor.sleep()` and `wake()` do: they set the
request the running phase races against, and wait for the state it leads to.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import NoReturn

import anyio

from ._endings import Outcome, kill
from ._errors import ConfigError, IllegalTransition, ServerDied
from ._process import ChildProcess
from ._racing import lost_race, phase_race
from ._run import Run
from ._snapshot import SnapshotError, SnapshotTiming
from ._snapshot_http import release_memory, resume_and_verify
from ._states import Event, State
from ._tasks import Race

__all__ = ["request_sleep", "request_wake", "sleep_and_wake"]


async def request_sleep(run: Run) -> SnapshotTiming:
    """serving -> sleeping -> asleep; see `Supervisor.sleep`."""
    if run.config.snapshot is None:
        raise ConfigError("sleep() needs a snapshot policy: set SupervisorConfig.snapshot")
    if run.config.cluster is not None:
        raise ConfigError(
            "sleep() on a multi-node cluster is not supported: a GPU snapshot of a cluster "
            "is not something the platform offers (docs/SNAPSHOTS.md, section 5)"
        )
    if run.machine.state is not State.SERVING:
        raise IllegalTransition(f"can't sleep in state {run.machine.state.value!r}; serving only")
    run.sleep_requested.set()
    await _until(run, State.ASLEEP, "sleep")
    return run.snapshot_timing


async def request_wake(run: Run) -> SnapshotTiming:
    """asleep -> waking -> serving; see `Supervisor.wake`."""
    if run.machine.state is not State.ASLEEP:
        raise IllegalTransition(f"can't wake in state {run.machine.state.value!r}; asleep only")
    run.wake_requested.set()
    await _until(run, State.SERVING, "wake")
    return run.snapshot_timing


async def _until(run: Run, target: State, what: str) -> None:
    """Wait for `target`; if the supervisor ends instead, raise why once `run` is done."""
    while run.machine.state is not target:
        if run.machine.state in (State.STOPPING, State.DEAD):
            await run.done.wait()  # bounded: the stop and kill timeouts bound `run`
            if run.failure is not None:
                raise run.failure
            if run.report is not None:
                raise ServerDied(run.report.summary(), report=run.report)
            raise SnapshotError(f"{what}: the server was stopped on request first", step=what)
        await run.state_changed()


async def sleep_and_wake(run: Run, child: ChildProcess) -> Outcome | None:
    """sleeping -> asleep -> (wake requested) -> waking -> serving; None when serving again."""
    cfg, policy = run.config, run.config.snapshot
    assert policy is not None  # request_sleep refuses without one
    timing = SnapshotTiming()
    run.snapshot_timing = timing
    run.sleep_requested = anyio.Event()
    run.machine.fire(Event.SLEEP, "liveness and progress paused")
    kind, error = await phase_race(
        run,
        lambda: _attempt(
            release_memory(
                run.slot.client,
                cfg.base_url,
                policy,
                cfg.api_key,
                timing=timing,
                admin_api_key=cfg.admin_api_key,
            )
        ),
    )
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    if error is not None:
        await _failed(run, child, error)
    await run.slot.retire()  # no socket goes into the snapshot
    timing.mark_asleep()
    run.machine.fire(Event.SLEPT, timing.summary())

    kind, _ = await phase_race(run, run.wake_requested.wait)
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    run.wake_requested = anyio.Event()
    timing.mark_awake()  # first thing after the restore: nothing before it is trusted
    run.machine.fire(Event.WAKE, f"asleep for {timing.asleep_s or 0.0:.3f} s")
    await run.slot.renew()
    kind, error = await phase_race(
        run,
        lambda: _attempt(
            resume_and_verify(
                run.slot.client,
                cfg.base_url,
                policy,
                cfg.api_key,
                timing=timing,
                admin_api_key=cfg.admin_api_key,
            )
        ),
    )
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    if error is not None:
        await _failed(run, child, error)
    run.metrics.on_snapshot_steps(timing.steps)
    run.say(timing.summary())
    run.machine.fire(Event.WOKEN, "resumed, healthy, and a generation verified")
    run.serving_since = time.monotonic()  # never across the sleep
    return None


async def _failed(run: Run, child: ChildProcess, error: SnapshotError) -> NoReturn:
    run.machine.fire(Event.FAILED, str(error))
    await kill(run, child)
    tail = run.tail.lines()
    raise error.with_tail(tail, run.classify(tail))


async def _attempt(call: Awaitable[None]) -> SnapshotError | None:
    """Run one sleep or wake call; its `SnapshotError` comes back as a value, not through the
    race's task group (which would wrap it in a group)."""
    try:
        await call
    except SnapshotError as exc:
        return exc
    return None
