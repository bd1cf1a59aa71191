"""Every phase runs as a race, and a phase that loses ends the run the same way wherever it was.

`phase_race` runs one phase (health wait, warmups, the serving watch, a sleep step) against the
main process's exit, a stop request, a sleep request where the phase takes one, and whatever the
cluster adds (a peer's failure); `lost_race` is the one place that turns each loss into an
ending: a stop drains, an exit before serving is a failed start (exit 3), an exit after serving a
death (exit 1), and on a cluster the membership has the first word (`Run.cluster`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._endings import Outcome, death, graceful_stop, startup_exit
from ._errors import describe_returncode
from ._process import ChildProcess
from ._run import Run
from ._states import Event, State
from ._tasks import Race, race

__all__ = ["lost_race", "phase_race"]

T = TypeVar("T")


async def phase_race(
    run: Run, fn: Callable[[], Awaitable[T]], *, sleep: anyio.Event | None = None
) -> tuple[Race, T | None]:
    """Run `fn` until it returns, the main process exits, a stop is requested, a peer fails
    (on a cluster) or a sleep is requested (when `sleep` is given)."""
    others: list[tuple[anyio.Event, Race]] = []
    if run.cluster is not None:
        others.extend(run.cluster.contenders())
    if sleep is not None:
        others.append((sleep, Race.SLEEP))
    return await race(fn, exited=run.exited, stop=run.stop_requested, others=others)


async def lost_race(run: Run, child: ChildProcess, kind: Race) -> Outcome:
    """A phase lost its race to the exit, a stop or a peer: end accordingly.

    Returns a stopped or died `Outcome`, or raises the `StartupError` of a start (or a sleep or
    wake) that failed.
    """
    if kind is Race.PEER:
        assert run.cluster is not None
        return await run.cluster.on_peer(child)
    if kind is Race.STOP:
        return await graceful_stop(run, child)
    assert kind is Race.EXITED, kind
    if run.cluster is not None:
        ended = await run.cluster.on_engine_exit(child)
        if ended is not None:
            return ended
    if run.machine.state is not State.SERVING:
        await startup_exit(run, child)
    run.machine.fire(Event.EXITED, describe_returncode(run.returncode))
    return await death(run, child, "exited", "")
