"""How a supervised server ends: a startup failure, a requested stop, a death, or a cancellation.

Every ending leaves the same thing behind, a dead tree and the state `dead`, and each is bounded:
SIGTERM to the main pid, at most the stop timeout to drain (cut short by `stop(now=True)`), then
SIGKILL to every process of the tree and at most the kill timeout for it to vanish. Functions over
the `Run`, kept apart from the phases so that those read as the happy path and this as the exits.

On a multi-node cluster two endings differ. A worker rank (>= 1) whose engine ignores SIGTERM
(`WorkerRules.sigterm`, SGLang's) is not sent one: its engine exits on rank 0's shutdown
broadcast, so the drain waits for that, up to its stop timeout plus the engine's
`WorkerRules.shutdown_grace`. And a death lingers: the
rank keeps publishing its failure for `ClusterSpec.linger` seconds before the death handler runs
(`Run.cluster.linger`), so every peer reads which rank failed instead of finding a closed port.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import anyio

from ._config import SupervisorConfig
from ._errors import ChildExited, HealthTimeout, describe_returncode
from ._process import ChildProcess
from ._report import CrashReport
from ._run import Run
from ._states import Event, State

__all__ = [
    "Outcome",
    "OutcomeKind",
    "death",
    "drain",
    "finish",
    "force_exit",
    "graceful_stop",
    "health_timeout",
    "kill",
    "planned_recycle",
    "startup_exit",
    "stop_bound",
]

_DRAIN_LOGS_S = 2.0  # after the tree is dead, how long the pumps get to flush what was written


class OutcomeKind(enum.Enum):
    STOPPED = "stopped"  # stopped on request (CLI exit 0)
    DIED = "died"  # died or stopped answering after serving (CLI exit 1)


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    returncode: int | None
    report: CrashReport | None = None


def force_exit(code: int = 1) -> None:
    """Flush what we wrote and leave now, skipping cleanup that might hang.

    This is the exit that makes a platform recycle the container; use it as the death handler
    where the supervisor runs inside someone else's process (Modal's web server thread).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def stop_bound(config: SupervisorConfig) -> float:
    """The longest a stop can take from the moment it is asked, with a margin: the drain (a
    worker's own, longer one included), the SIGKILL and reap, and on a cluster the linger.
    A caller that waits longer than this is waiting on a bug, not on the server."""
    policy, spec = config.stop, config.cluster
    bound = policy.stop_timeout + policy.kill_timeout + 10.0
    if spec is not None:
        bound += spec.linger + (spec.worker.shutdown_grace if spec.rank > 0 else 0.0)
    return bound


async def kill(run: Run, child: ChildProcess) -> None:
    """SIGKILL whatever is left of the tree, then let the pumps flush its last words."""
    result = await child.kill_tree(run.config.stop.kill_timeout)
    if result.survivors:
        run.say(f"warning: processes survived SIGKILL: {list(result.survivors)}")
    with anyio.move_on_after(_DRAIN_LOGS_S):
        await run.pumps_done.wait()


async def startup_exit(run: Run, child: ChildProcess) -> NoReturn:
    """The main process exited before serving, or while sleeping or waking: a failed start.

    A server that dies around a snapshot never proved it serves again after it (in Modal's
    flow all of it runs inside `@modal.enter`, before the replica takes a request): exit 3.
    """
    state = run.machine.state
    phase = "starting" if state in (State.STARTING, State.WARM) else state.value
    run.machine.fire(Event.EXITED, describe_returncode(run.returncode))
    await kill(run, child)
    tail = run.tail.lines()
    cause = run.classify(tail)
    hint = run.hints.get(cause)
    raise ChildExited(
        f"the server exited while {phase}, with {describe_returncode(run.returncode)}"
        f" (cause: {cause}{'; ' + hint if hint else ''}); "
        f"last line: {tail[-1] if tail else '(no output)'}",
        returncode=run.returncode,
        tail=tail,
        cause=cause,
    )


async def health_timeout(run: Run, child: ChildProcess) -> NoReturn:
    health = run.config.health
    run.machine.fire(Event.FAILED, f"no healthy answer within {health.startup_timeout:g} s")
    await kill(run, child)
    last = run.last_probe.describe() if run.last_probe else "no probe finished"
    raise HealthTimeout(
        f"{health.path} did not answer 200 within {health.startup_timeout:g} s "
        f"(last probe: {last})",
        tail=run.tail.lines(),
        cause=run.classify(run.tail.lines()),
    )


async def drain(run: Run, child: ChildProcess, exited: Callable[[], Awaitable[object]]) -> None:
    """SIGTERM to the main pid; wait for its exit, the stop timeout, or `stop(now=True)`."""
    bound, spec = run.config.stop.stop_timeout, run.config.cluster
    if spec is not None and spec.rank > 0:
        bound += spec.worker.shutdown_grace
    if spec is not None and spec.rank > 0 and not spec.worker.sigterm:
        # e.g. SGLang's worker only logs a SIGTERM; its schedulers stop on rank 0's broadcast.
        run.say(
            f"waiting up to {bound:g} s for pid={child.pid} to exit on rank 0's shutdown "
            "broadcast (a worker rank ignores SIGTERM)"
        )
    else:
        run.say(f"sending SIGTERM to pid={child.pid}; draining up to {bound:g} s")
        child.send_signal(signal.SIGTERM)
    with anyio.move_on_after(bound):
        async with anyio.create_task_group() as tg:

            async def until(wait: Callable[[], Awaitable[object]]) -> None:
                await wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until, exited)
            tg.start_soon(until, run.stop_now.wait)
    if child.returncode is None and not run.exited.is_set():
        if run.stop_now.is_set():
            run.say(f"pid={child.pid}: the drain was cut short; SIGKILL")
        else:
            run.say(f"pid={child.pid} still running after {bound:g} s; SIGKILL")


async def graceful_stop(run: Run, child: ChildProcess) -> Outcome:
    run.machine.fire(Event.STOP)
    with anyio.CancelScope(shield=True):
        if not run.exited.is_set():
            await drain(run, child, run.exited.wait)
        await kill(run, child)
    if run.machine.allows(Event.STOPPED):
        run.machine.fire(Event.STOPPED, describe_returncode(child.returncode))
    return Outcome(OutcomeKind.STOPPED, child.returncode)


async def planned_recycle(run: Run, child: ChildProcess, reason: str, detail: str) -> Outcome:
    """A server that still serves but must go (its memory): drain it as a stop would, so
    what it holds is answered, then end as a death does (report, exit 1, the platform
    replaces the container). 0.5.23 keeps taking requests while it drains (only /health
    and /ready answer 503: `tokenizer_manager.py:is_healthy`), so the drain is bounded by
    the stop timeout, as every stop is."""
    run.say(f"planned recycle: {detail}")
    run.machine.fire(Event.STOP, f"planned recycle ({reason})")
    with anyio.CancelScope(shield=True):
        if not run.exited.is_set():
            await drain(run, child, run.exited.wait)
        await kill(run, child)
    _settle(run, child)
    return await _report_death(run, child, reason, detail, cause=f"{reason}-high")


async def death(run: Run, child: ChildProcess, reason: str, detail: str) -> Outcome:
    """Kill the tree at once (no drain: a dead or hung server has nothing to finish), write
    the one crash report, linger on a cluster, then call the death handler."""
    with anyio.CancelScope(shield=True):
        await kill(run, child)
    return await _report_death(run, child, reason, detail)


async def _report_death(
    run: Run, child: ChildProcess, reason: str, detail: str, *, cause: str | None = None
) -> Outcome:
    tail = tuple(run.tail.lines())
    cause = cause or run.classify(tail)
    if cause == "unknown" and reason in ("stalled", "peer"):
        cause = reason  # the log says nothing (a hang, a lost peer): say what we know
    report = CrashReport(
        reason=reason,
        returncode=child.returncode,
        cause=cause,
        served_s=run.served_s(),
        detail=detail,
        tail=tail,
        failed_rank=run.cluster.failed_rank if run.cluster is not None else None,
        hint=run.hints.get(cause, ""),
    )
    run.report = report
    run.metrics.on_death(report.cause)
    for line in report.render().splitlines():
        run.say(line)
    if run.cluster is not None:
        await run.cluster.linger()
    if run.on_death is not None:
        run.on_death(report)
    return Outcome(OutcomeKind.DIED, child.returncode, report)


async def finish(run: Run, child: ChildProcess) -> None:
    """Whatever ended the lifecycle, leave a dead tree and a dead state behind."""
    if run.machine.state is State.DEAD:
        return
    if run.machine.state is State.STOPPING or run.exited.is_set():
        await kill(run, child)
    else:
        # Cancelled or crashed mid-flight: stop as gracefully as the policy allows.
        if run.machine.allows(Event.STOP):
            run.machine.fire(Event.STOP, "supervisor cancelled")
        # The exit watcher may itself have been cancelled: wait on the child directly.
        await drain(run, child, child.wait)
        await kill(run, child)
    _settle(run, child)


def _settle(run: Run, child: ChildProcess) -> None:
    """`stopping` (or a state the exit left) -> `dead`, by whichever event the table allows."""
    for event in (Event.STOPPED, Event.EXITED):
        if run.machine.allows(event):
            run.machine.fire(event, describe_returncode(child.returncode))
            break
