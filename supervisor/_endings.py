"""How a supervised server ends: a startup failure, a requested stop, a death, or a cancellation.

Every ending leaves the same thing behind, a dead tree and the state `dead`, and each is bounded:
SIGTERM to the main pid, at most the stop timeout to drain (cut short by `stop(now=True)`), then
SIGKILL to every process of the tree and at most the kill timeout for it to vanish. Kept apart
from `_supervisor` so that the lifecycle reads as the happy path and this as the exits from it.

On a multi-node cluster two endings differ. A worker rank (>= 1) is not sent SIGTERM, which
SGLang's workers ignore: its engine exits on rank 0's shutdown broadcast, so the drain waits for
that, up to rank 0's own drain plus SGLang's 15 s scheduler grace. And a death lingers: the
rank keeps publishing its failure for `ClusterSpec.linger` seconds before the death handler runs,
so every peer reads which rank failed instead of finding a closed port later.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import anyio

from ._cluster_peers import StatusBoard
from ._config import SupervisorConfig
from ._errors import ChildExited, HealthTimeout, describe_returncode
from ._health import ProbeResult
from ._logs import LogTail
from ._metrics import SupervisorMetrics
from ._process import ChildProcess
from ._report import Classifier, CrashReport
from ._states import Event, State, StateMachine

__all__ = ["DeathHandler", "Endings", "Outcome", "OutcomeKind", "force_exit"]

DeathHandler = Callable[[CrashReport], None]

_DRAIN_LOGS_S = 2.0  # after the tree is dead, how long the pumps get to flush what was written
#: SGLang's `_SCHEDULER_EXIT_TIMEOUT_SECS`: after its drain, rank 0 grants the schedulers of every
#: rank this long to exit on the ShutdownReq. A worker waits rank 0's stop timeout plus this.
WORKER_SHUTDOWN_GRACE_S = 15.0


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


class Endings:
    """The endings of `Supervisor`, as a base class: they share its state and nothing else."""

    config: SupervisorConfig
    machine: StateMachine
    metrics: SupervisorMetrics
    tail: LogTail
    report: CrashReport | None
    _classify: Classifier
    _hints: dict[str, str]
    _on_death: DeathHandler | None
    _exited: anyio.Event
    _stop_now: anyio.Event
    _pumps_done: anyio.Event
    _returncode: int | None
    _serving_since: float | None
    _last_probe: ProbeResult | None
    _board: StatusBoard | None
    _status_served: bool

    def say(self, line: str) -> None:
        raise NotImplementedError

    @property
    def is_worker(self) -> bool:
        """A rank >= 1 of a cluster: no HTTP server of its own, and deaf to SIGTERM (SGLang)."""
        return self.config.cluster is not None and self.config.cluster.rank > 0

    @property
    def stop_bound(self) -> float:
        """The longest a stop can take from the moment it is asked, with a margin: the drain (a
        worker's own, longer one included), the SIGKILL and reap, and on a cluster the linger.
        A caller that waits longer than this is waiting on a bug, not on the server."""
        policy = self.config.stop
        bound = policy.stop_timeout + policy.kill_timeout + 10.0
        if self.is_worker:
            bound += WORKER_SHUTDOWN_GRACE_S
        if self.config.cluster is not None:
            bound += self.config.cluster.linger
        return bound

    async def _linger(self) -> None:
        """On a cluster, keep publishing this rank's failure until every peer had time to read it.

        The status server runs in the supervisor's outer task group, which outlives the tree.
        """
        spec, board = self.config.cluster, self._board
        if spec is None or board is None or not self._status_served:
            return
        left = board.linger_left(spec.linger)
        if left > 0:
            self.say(
                f"cluster: publishing rank {board.failed_rank}'s failure for {left:.1f} s more "
                "so that every peer reads it"
            )
            await anyio.sleep(left)

    async def _kill(self, child: ChildProcess) -> None:
        """SIGKILL whatever is left of the tree, then let the pumps flush its last words."""
        result = await child.kill_tree(self.config.stop.kill_timeout)
        if result.survivors:
            self.say(f"warning: processes survived SIGKILL: {list(result.survivors)}")
        with anyio.move_on_after(_DRAIN_LOGS_S):
            await self._pumps_done.wait()

    async def _startup_exit(self, child: ChildProcess) -> NoReturn:
        """The main process exited before serving, or while sleeping or waking: a failed start.

        A server that dies around a snapshot never proved it serves again after it (in Modal's
        flow all of it runs inside `@modal.enter`, before the replica takes a request): exit 3.
        """
        state = self.machine.state
        phase = "starting" if state in (State.STARTING, State.WARM) else state.value
        self.machine.fire(Event.EXITED, describe_returncode(self._returncode))
        await self._kill(child)
        tail = self.tail.lines()
        cause = self._classify(tail)
        hint = self._hints.get(cause)
        raise ChildExited(
            f"the server exited while {phase}, with {describe_returncode(self._returncode)}"
            f" (cause: {cause}{'; ' + hint if hint else ''}); "
            f"last line: {tail[-1] if tail else '(no output)'}",
            returncode=self._returncode,
            tail=tail,
            cause=cause,
        )

    async def _health_timeout(self, child: ChildProcess) -> NoReturn:
        health = self.config.health
        self.machine.fire(Event.FAILED, f"no healthy answer within {health.startup_timeout:g} s")
        await self._kill(child)
        last = self._last_probe.describe() if self._last_probe else "no probe finished"
        raise HealthTimeout(
            f"{health.path} did not answer 200 within {health.startup_timeout:g} s "
            f"(last probe: {last})",
            tail=self.tail.lines(),
            cause=self._classify(self.tail.lines()),
        )

    async def _drain(self, child: ChildProcess, exited: Callable[[], Awaitable[object]]) -> None:
        """SIGTERM to the main pid; wait for its exit, the stop timeout, or `stop(now=True)`."""
        policy = self.config.stop
        bound = policy.stop_timeout
        if self.is_worker:
            # SGLang's worker only logs a SIGTERM; its schedulers stop on rank 0's broadcast.
            bound += WORKER_SHUTDOWN_GRACE_S
            self.say(
                f"waiting up to {bound:g} s for pid={child.pid} to exit on rank 0's shutdown "
                "broadcast (a worker rank ignores SIGTERM)"
            )
        else:
            self.say(f"sending SIGTERM to pid={child.pid}; draining up to {bound:g} s")
            child.send_signal(signal.SIGTERM)
        with anyio.move_on_after(bound):
            async with anyio.create_task_group() as tg:

                async def until(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until, exited)
                tg.start_soon(until, self._stop_now.wait)
        if child.returncode is None and not self._exited.is_set():
            if self._stop_now.is_set():
                self.say(f"pid={child.pid}: the drain was cut short; SIGKILL")
            else:
                self.say(f"pid={child.pid} still running after {bound:g} s; SIGKILL")

    async def _graceful_stop(self, child: ChildProcess) -> Outcome:
        self.machine.fire(Event.STOP)
        with anyio.CancelScope(shield=True):
            if not self._exited.is_set():
                await self._drain(child, self._exited.wait)
            await self._kill(child)
        if self.machine.allows(Event.STOPPED):
            self.machine.fire(Event.STOPPED, describe_returncode(child.returncode))
        return Outcome(OutcomeKind.STOPPED, child.returncode)

    async def _planned_recycle(self, child: ChildProcess, reason: str, detail: str) -> Outcome:
        """A server that still serves but must go (its memory): drain it as a stop would, so
        what it holds is answered, then end as a death does (report, exit 1, the platform
        replaces the container). 0.5.23 keeps taking requests while it drains (only /health
        and /ready answer 503: `tokenizer_manager.py:is_healthy`), so the drain is bounded by
        the stop timeout, as every stop is."""
        self.say(f"planned recycle: {detail}")
        self.machine.fire(Event.STOP, f"planned recycle ({reason})")
        with anyio.CancelScope(shield=True):
            if not self._exited.is_set():
                await self._drain(child, self._exited.wait)
            await self._kill(child)
        for event in (Event.STOPPED, Event.EXITED):
            if self.machine.allows(event):
                self.machine.fire(event, describe_returncode(child.returncode))
                break
        return await self._report_death(child, reason, detail, cause=f"{reason}-high")

    async def _death(self, child: ChildProcess, reason: str, detail: str) -> Outcome:
        """Kill the tree at once (no drain: a dead or hung server has nothing to finish), write
        the one crash report, linger on a cluster, then call the death handler."""
        with anyio.CancelScope(shield=True):
            await self._kill(child)
        return await self._report_death(child, reason, detail)

    async def _report_death(
        self, child: ChildProcess, reason: str, detail: str, *, cause: str | None = None
    ) -> Outcome:
        served = time.monotonic() - (self._serving_since or time.monotonic())
        tail = tuple(self.tail.lines())
        cause = cause or self._classify(tail)
        if cause == "unknown" and reason in ("stalled", "peer"):
            cause = reason  # the log says nothing (a hang, a lost peer): say what we know
        report = CrashReport(
            reason=reason,
            returncode=child.returncode,
            cause=cause,
            served_s=served,
            detail=detail,
            tail=tail,
            failed_rank=self._board.failed_rank if self._board is not None else None,
            hint=self._hints.get(cause, ""),
        )
        self.report = report
        self.metrics.on_death(report.cause)
        for line in report.render().splitlines():
            self.say(line)
        await self._linger()
        if self._on_death is not None:
            self._on_death(report)
        return Outcome(OutcomeKind.DIED, child.returncode, report)

    async def _finish(self, child: ChildProcess) -> None:
        """Whatever ended the lifecycle, leave a dead tree and a dead state behind."""
        if self.machine.state is State.DEAD:
            return
        if self.machine.state is State.STOPPING or self._exited.is_set():
            await self._kill(child)
        else:
            # Cancelled or crashed mid-flight: stop as gracefully as the policy allows.
            if self.machine.allows(Event.STOP):
                self.machine.fire(Event.STOP, "supervisor cancelled")
            # The exit watcher may itself have been cancelled: wait on the child directly.
            await self._drain(child, child.wait)
            await self._kill(child)
        for event in (Event.STOPPED, Event.EXITED):
            if self.machine.allows(event):
                self.machine.fire(event, describe_returncode(child.returncode))
                break
