"""How a supervised server ends: a startup failure, a requested stop, a death, or a cancellation.

Every ending leaves the same thing behind, a dead tree and the state `dead`, and each is bounded:
SIGTERM to the main pid, at most the stop timeout to drain (cut short by `stop(now=True)`), then
SIGKILL to every process of the tree and at most the kill timeout for it to vanish. Kept apart
from `_supervisor` so that the lifecycle reads as the happy path and this as the exits from it.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ._config import SupervisorConfig
from ._errors import ChildExited, describe_returncode
from ._logs import LogTail
from ._metrics import SupervisorMetrics
from ._process import ChildProcess
from ._report import Classifier, CrashReport
from ._states import Event, State, StateMachine

__all__ = ["DeathHandler", "Endings", "Outcome", "OutcomeKind", "force_exit"]

DeathHandler = Callable[[CrashReport], None]

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


class Endings:
    """The endings of `Supervisor`, as a base class: they share its state and nothing else."""

    config: SupervisorConfig
    machine: StateMachine
    metrics: SupervisorMetrics
    tail: LogTail
    report: CrashReport | None
    _classify: Classifier
    _on_death: DeathHandler | None
    _exited: anyio.Event
    _stop_now: anyio.Event
    _pumps_done: anyio.Event
    _returncode: int | None
    _serving_since: float | None

    def say(self, line: str) -> None:
        raise NotImplementedError

    async def _kill(self, child: ChildProcess) -> None:
        """SIGKILL whatever is left of the tree, then let the pumps flush its last words."""
        result = await child.kill_tree(self.config.stop.kill_timeout)
        if result.survivors:
            self.say(f"warning: processes survived SIGKILL: {list(result.survivors)}")
        with anyio.move_on_after(_DRAIN_LOGS_S):
            await self._pumps_done.wait()

    async def _startup_exit(self, child: ChildProcess) -> None:
        self.machine.fire(Event.EXITED, describe_returncode(self._returncode))
        await self._kill(child)
        tail = self.tail.lines()
        cause = self._classify(tail)
        raise ChildExited(
            f"the server exited while starting, with {describe_returncode(self._returncode)}"
            f" (cause: {cause}); last line: {tail[-1] if tail else '(no output)'}",
            returncode=self._returncode,
            tail=tail,
            cause=cause,
        )

    async def _drain(self, child: ChildProcess, exited: Callable[[], Awaitable[object]]) -> None:
        """SIGTERM to the main pid; wait for its exit, the stop timeout, or `stop(now=True)`."""
        policy = self.config.stop
        self.say(f"sending SIGTERM to pid={child.pid}; draining up to {policy.stop_timeout:g} s")
        child.send_signal(signal.SIGTERM)
        with anyio.move_on_after(policy.stop_timeout):
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
                self.say(f"pid={child.pid} still running after {policy.stop_timeout:g} s; SIGKILL")

    async def _graceful_stop(self, child: ChildProcess) -> Outcome:
        self.machine.fire(Event.STOP)
        with anyio.CancelScope(shield=True):
            if not self._exited.is_set():
                await self._drain(child, self._exited.wait)
            await self._kill(child)
        if self.machine.allows(Event.STOPPED):
            self.machine.fire(Event.STOPPED, describe_returncode(child.returncode))
        return Outcome(OutcomeKind.STOPPED, child.returncode)

    async def _death(self, child: ChildProcess, reason: str, detail: str) -> Outcome:
        with anyio.CancelScope(shield=True):
            await self._kill(child)
        served = time.monotonic() - (self._serving_since or time.monotonic())
        tail = tuple(self.tail.lines())
        report = CrashReport(
            reason=reason,
            returncode=child.returncode,
            cause=self._classify(tail),
            served_s=served,
            detail=detail,
            tail=tail,
        )
        self.report = report
        self.metrics.on_death(report.cause)
        for line in report.render().splitlines():
            self.say(line)
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
