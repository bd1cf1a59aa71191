"""A worker rank's life (rank >= 1 of a multi-node cluster): no HTTP server, so other signs of life.

SGLang's ranks >= 1 run schedulers only, behind a dummy health server that answers 200 whatever
the schedulers do (docs/CLUSTER.md). So a worker's supervisor:

- `starting -> warm` when its own health path answers 200: the dummy starts only once this
  rank's schedulers passed the rendezvous and loaded; no warmups (a worker serves nothing);
- `warm -> serving` when rank 0's supervisor reports `serving`, which implies every rank joined
  and took part in forward passes;
- while serving, watches its own tree: the main process's exit (the pidfd, as everywhere) and the
  main process's children seen at `serving` (polled each second), because SGLang's worker joins
  its schedulers in order and never notices a later one SIGKILLed; plus the peers. No HTTP probe
  (the dummy always says yes) and no progress watch (a worker has no metrics of its own worth
  reading; rank 0's progress counters stop when any rank stops);
- stops without SIGTERM, which SGLang's worker ignores: it waits for rank 0's shutdown broadcast
  (`_endings.drain`), and an engine exit with code 0 is that broadcast arriving
  (`Membership.on_engine_exit`).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ._cluster_peers import SERVING, PeerFailure
from ._cluster_status import wait_peer_state
from ._endings import Outcome, death
from ._membership import Membership
from ._process import ChildProcess
from ._proctree import proc_info
from ._racing import lost_race, phase_race
from ._run import Run
from ._snapshot import fresh_client
from ._startup import reach_serving, report_caches, wait_until_healthy
from ._states import Event
from ._tasks import Race

__all__ = ["watch_children", "worker_lifecycle"]

_CHILD_POLL_S = 1.0


async def worker_lifecycle(
    run: Run, member: Membership, child: ChildProcess, announce: Callable[[], None]
) -> Outcome:
    """A worker rank from spawn to its ending (see the module doc)."""
    spec, cfg = member.spec, run.config
    assert spec.rank > 0
    ended = await wait_until_healthy(run, child, " (this rank's schedulers joined and loaded)")
    if ended is not None:
        return ended
    bound = cfg.health.startup_timeout
    run.say(f"cluster: waiting up to {bound:g} s for rank 0 to be serving")

    async def rank0_serving() -> object:
        async with fresh_client() as client:
            return await wait_peer_state(client, spec, 0, SERVING, timeout=bound)

    kind, answer = await phase_race(run, rank0_serving)
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    if isinstance(answer, PeerFailure):
        return await member.peer_ending(child, answer)
    await report_caches(run)
    reach_serving(run, announce, "rank 0 is serving")

    members = children_of(child)
    listed = ", ".join(str(p) for p in sorted(members)) or "none seen"
    run.say(
        f"watching this rank's tree: main pid={child.pid} and its children ({listed}); "
        "no HTTP liveness (a worker's /health is SGLang's dummy)"
    )
    kind, gone = await phase_race(run, lambda: watch_children(members))
    if kind is not Race.DONE:
        return await lost_race(run, child, kind)
    assert gone is not None
    run.machine.fire(Event.UNHEALTHY, gone)
    return await death(run, child, "unhealthy", gone)


def children_of(child: ChildProcess) -> dict[int, int]:
    """The main process's live children now, pid -> start time (so a reused pid is not them)."""
    found: dict[int, int] = {}
    for pid in child.tree():
        info = proc_info(pid)
        if info is not None and info.ppid == child.pid and not info.zombie:
            found[pid] = info.starttime
    return found


async def watch_children(members: dict[int, int], interval: float = _CHILD_POLL_S) -> str:
    """Return, within `interval`, once one of `members` (pid -> start time) is gone or a zombie.

    With no members (no /proc, or a main process without children) it waits forever: the main
    process's exit, watched elsewhere, is then the only sign.
    """
    if not members:
        await anyio.sleep_forever()
    while True:
        await anyio.sleep(interval)
        for pid, start in members.items():
            info = proc_info(pid)
            if info is None or info.zombie or info.starttime != start:
                how = "exited" if info is not None and info.zombie else "gone"
                return (
                    f"pid {pid}, a child of the engine's main process seen at serving "
                    f"(a scheduler), is {how}"
                )
