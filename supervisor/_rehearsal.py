"""A snapshot rehearsal: sleep, freeze the whole tree as a snapshot would, wake, and go on serving.

Modal snapshots only deployed apps, and a GPU snapshot is minutes of a real GPU; the rehearsal
runs the same supervised path anywhere: `Supervisor.sleep()` (pause, release, pool closed),
`freeze_tree` (SIGSTOP every process of the server's tree, wait, SIGCONT: its timers fire late and
uvicorn drops the keep-alive connections that went idle, as after a restore), then
`Supervisor.wake()` (resume, health, one verified generation). Each phase's time is logged. A
failed step ends the supervisor (its `run()` raises the `SnapshotError`, exit 3); a process
killed during the pause is seen at once by the exit watcher, which never pauses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._errors import SupervisorError
from ._snapshot import SnapshotTiming, freeze_tree
from ._states import State

if TYPE_CHECKING:  # the supervisor imports nothing from here; this keeps it that way
    from ._supervisor import Supervisor

__all__ = ["rehearse_snapshot", "rehearse_when_serving"]


async def rehearse_snapshot(sup: Supervisor, *, pause_s: float) -> SnapshotTiming:
    """Sleep `sup`, freeze its tree for `pause_s` seconds, wake it; return the step timings.

    `sup` must be serving and have a snapshot policy. Raises what `sleep()` or `wake()` raise
    (`SnapshotError` naming the failed step, `ChildExited` if the server died meanwhile).
    """
    started = time.perf_counter()
    sup.say(f"snapshot rehearsal: sleeping (then a {pause_s:g} s freeze, then waking)")
    await sup.sleep()
    slept = time.perf_counter()
    sup.say(f"snapshot rehearsal: asleep after {slept - started:.3f} s")
    child = sup.child
    assert child is not None  # serving, so spawned
    frozen = await freeze_tree(child.tree, pause_s)
    thawed = time.perf_counter()
    sup.say(
        f"snapshot rehearsal: {len(frozen)} process(es) stopped and continued after "
        f"{thawed - slept:.3f} s; waking"
    )
    timing = await sup.wake()
    sup.say(
        f"snapshot rehearsal: serving again after {time.perf_counter() - thawed:.3f} s "
        f"(sleep {slept - started:.3f} s, freeze {thawed - slept:.3f} s)"
    )
    return timing


async def rehearse_when_serving(sup: Supervisor, pause_s: float) -> None:
    """The CLI's rehearsal task: once `sup` is serving, rehearse once; `run` says how it ended.

    Any error here also ends `sup.run()` (a failed step kills the server and `run` raises it),
    or comes from a supervisor that ended first (stopped, died); either way the exit code is
    `run`'s to decide, so nothing is raised from this side task.
    """
    try:
        await sup.wait_for(State.SERVING)
        await rehearse_snapshot(sup, pause_s=pause_s)
    except SupervisorError as exc:
        sup.say(f"snapshot rehearsal: not completed ({type(exc).__name__})")
