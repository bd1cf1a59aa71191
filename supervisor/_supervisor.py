"""The `Supervisor`: owns one server's process tree from spawn to reap and drives its state machine.

A composition root, as uvicorn's supervisors are: it builds the run's state (`_run.Run`), the
cluster membership when the config names a cluster (`_membership`, imported only then), spawns
the tree, and calls the phases, functions over the run: `_startup.start_up`, `_serving.serve`
(with `_sleep_wake`), or a worker rank's `_worker.worker_lifecycle`; `_endings.finish` last.

Every task it starts lives in a task group: two log pumps and the exit watcher (`_child_watch`),
and whichever phase is running. Each phase races the child's exit and a stop request (and, on a
cluster, the peers: `_racing`), so a crash is noticed the moment the main process exits (a pidfd,
no polling) and a stop interrupts any wait. Whatever way `run` ends (return, exception,
cancellation) the tree is killed and reaped before it returns: no process outlives its
supervisor. On a cluster an outer task group, entered before the spawn and left last, holds the
status server and the peer watch, so a dying rank keeps publishing while it lingers.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httpx

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup
if TYPE_CHECKING:
    from ._membership import Membership

from ._caches import snapshot_caches
from ._child_watch import pump_logs, watch_exit
from ._config import SupervisorConfig
from ._endings import Outcome, OutcomeKind, finish, force_exit, stop_bound
from ._errors import (
    PortInUse,
    ServerDied,
    StartupError,
    StoppedBeforeServing,
    SupervisorError,
    describe_returncode,
)
from ._local import LocalProcessManager
from ._logs import LogSink, LogTail, Redactor, StreamSink
from ._metrics import SupervisorMetrics
from ._process import ChildProcess, ProcessManager
from ._report import Classifier, CrashReport, unknown_cause
from ._run import DeathHandler, Run
from ._serving import serve
from ._sleep_wake import request_sleep, request_wake
from ._snapshot import SnapshotTiming
from ._startup import start_up
from ._states import Event, State, Transition
from ._tasks import single_error
from ._timeline import Timeline
from ._warmup import WarmupResult

__all__ = ["Outcome", "OutcomeKind", "Supervisor", "force_exit"]


class Supervisor:
    """Start, watch and stop one server; see `run` for the lifecycle and `stop` to end it."""

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        manager: ProcessManager | None = None,
        sink: LogSink | None = None,
        metrics: SupervisorMetrics | None = None,
        on_death: DeathHandler | None = None,
        classify: Classifier = unknown_cause,
        hints: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        self.redact = Redactor(config.secrets)
        self._manager = manager if manager is not None else LocalProcessManager()
        self._sink = sink if sink is not None else StreamSink()
        self._run = Run(
            config,
            metrics=self.metrics,
            say=self.say,
            classify=classify,
            hints=hints or {},
            on_death=on_death,
            transport=transport,
        )
        self._member: Membership | None = None  # a cluster rank's membership
        if config.cluster is not None:
            from ._membership import Membership  # a single-node run never imports cluster code

            self._member = self._run.cluster = Membership(self._run)
        self.child: ChildProcess | None = None
        self.outcome: Outcome | None = None
        self._ran = False
        self._entered: Any = None

    # ----------------------------------------------------------------- observing
    @property
    def state(self) -> State:
        return self._run.machine.state

    @property
    def history(self) -> tuple[Transition, ...]:
        return self._run.machine.history

    def observe(self, observer: Callable[[Transition], None]) -> Callable[[], None]:
        """Call `observer` on every transition, after the supervisor's own; returns the undo."""
        return self._run.machine.observe(observer)

    @property
    def tail(self) -> LogTail:
        """The last lines of the server's output, redacted."""
        return self._run.tail

    @property
    def timeline(self) -> Timeline:
        return self._run.timeline

    @property
    def report(self) -> CrashReport | None:
        """The crash report, once the server died after serving."""
        return self._run.report

    @property
    def failure(self) -> SupervisorError | None:
        """The error `run` raised, once it has: what `sleep()` and `wake()` raise too."""
        return self._run.failure

    @property
    def warmup_results(self) -> list[WarmupResult]:
        return self._run.warmup_results

    @property
    def caches_missed(self) -> tuple[str, ...]:
        """The caches this start added to (the cache report's misses): worth persisting."""
        return self._run.caches_missed

    @property
    def snapshot_timing(self) -> SnapshotTiming:
        return self._run.snapshot_timing

    @property
    def is_worker(self) -> bool:
        return self._run.is_worker

    @property
    def stop_bound(self) -> float:
        """The longest a stop can take once asked (`_endings.stop_bound`)."""
        return stop_bound(self.config)

    def say(self, line: str) -> None:
        """Write one of the supervisor's own lines, redacted like everything else."""
        self._sink.supervisor(self.redact(line))

    async def wait_for(self, state: State) -> None:
        """Wait until `state` is reached; raise `StartupError` if the server dies first."""
        while self.state is not state:
            if self.state is State.DEAD:
                raise StartupError(f"the server is dead; it will never be {state.value}")
            await self._run.state_changed()

    # ----------------------------------------------------------------- controlling
    def stop(self, *, now: bool = False) -> None:
        """Ask for a stop: SIGTERM to the main pid, then SIGKILL to the tree after the stop timeout.

        A stop wins at any moment, also before `serving` (see `run` for what the caller sees).
        `now=True` skips what is left of the drain and kills the tree at once (the CLI's second
        SIGTERM or SIGINT). Safe to call any number of times, from the event loop's thread.
        """
        self._run.stop_requested.set()
        if now:
            self._run.stop_now.set()

    async def sleep(self) -> SnapshotTiming:
        """serving -> sleeping -> asleep: ready for a memory snapshot; returns the step timings.

        Liveness and progress pause, generation is paused, GPU memory released, and the HTTP pool
        closed; the exit watcher and the log pumps keep running. Needs `config.snapshot`. If a
        step fails, the server is killed, `run()` raises the `SnapshotError` and so does this.
        """
        return await request_sleep(self._run)

    async def wake(self) -> SnapshotTiming:
        """asleep -> waking -> serving: resume, wait for health, verify one generation.

        Every deadline starts after the restore. If a step fails, the server is killed and
        `run()` raises the `SnapshotError` (exit 3), as does this.
        """
        return await request_wake(self._run)

    # ----------------------------------------------------------------- lifecycle
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED
    ) -> Outcome:
        """Start the server and supervise it until it is dead.

        With `await tg.start(sup.run)` the caller resumes once the server is serving, or gets the
        `StartupError` that stopped it (`StoppedBeforeServing` if `stop()` came first). Awaited
        directly, it returns how it ended: stopped on request (before serving or after), or died
        after serving (after the crash report is written and the death handler called).
        Raises `PortInUse`, before spawning anything, if something already listens on the port
        (or, on a cluster, on this rank's status port).
        """
        if self._ran:
            raise RuntimeError("a Supervisor runs once; create a new one to start again")
        self._ran = True
        try:
            outcome = await self._outer(lambda: task_status.started(self))
        except SupervisorError as exc:
            self._run.failure = exc
            raise
        finally:
            self._run.done.set()
        self.outcome = outcome
        if not self._run.serving_announced and task_status is not anyio.TASK_STATUS_IGNORED:
            # The caller waits for `serving`, which will never come: tell it why, plainly.
            raise StoppedBeforeServing(
                f"stopped on request before serving ({describe_returncode(outcome.returncode)})",
                returncode=outcome.returncode,
                tail=self.tail.lines(),
            )
        return outcome

    async def _outer(self, announce: Callable[[], None]) -> Outcome:
        """Refuse a taken port; on a cluster, publish and watch around the whole tree's life."""
        cfg, run = self.config, self._run
        conflict = self._manager.port_conflict(cfg.host, cfg.port)
        if conflict is not None:
            run.machine.fire(Event.FAILED, conflict)
            raise PortInUse(f"{conflict} (a stale server?): stop it or choose another port")
        if self._member is None:
            return await self._supervise(announce)
        outcome: Outcome | None = None
        failure: SupervisorError | None = None
        async with anyio.create_task_group() as side:  # the cluster's status server and watch
            try:
                await self._member.join(side)
                outcome = await self._supervise(announce)
            except SupervisorError as exc:
                failure = exc  # raised below, outside the group, so it is not wrapped
                await self._member.linger()  # a startup failure on a cluster is published too
            side.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert outcome is not None
        return outcome

    async def _supervise(self, announce: Callable[[], None]) -> Outcome:
        """Spawn, run the lifecycle beside the pumps and the exit watcher, leave a dead tree."""
        cfg, run = self.config, self._run
        argv = " ".join(shlex.quote(a) for a in cfg.launch.argv)
        self.say(f"starting {cfg.name}: {argv}")
        run.caches_before = await snapshot_caches(cfg.caches)
        child = await self._manager.start(cfg.launch)
        self.child = child
        self.say(f"spawned pid={child.pid}")
        outcome: Outcome | None = None
        failure: SupervisorError | None = None
        try:
            async with run.slot, anyio.create_task_group() as tg:
                tg.start_soon(pump_logs, run, child, self._sink, self.redact)
                tg.start_soon(watch_exit, run, child)
                try:
                    outcome = await self._lifecycle(child, announce)
                except SupervisorError as exc:
                    failure = exc  # raised below, outside the group, so it is not wrapped
                finally:
                    with anyio.CancelScope(shield=True):
                        await finish(run, child)
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await child.aclose()
        if failure is not None:
            raise failure
        assert outcome is not None
        return outcome

    async def _lifecycle(self, child: ChildProcess, announce: Callable[[], None]) -> Outcome:
        if self._run.is_worker:
            from ._worker import worker_lifecycle

            assert self._member is not None
            return await worker_lifecycle(self._run, self._member, child, announce)
        ended = await start_up(self._run, child, announce)
        return ended if ended is not None else await serve(self._run, child)

    # ----------------------------------------------------------------- context manager
    async def __aenter__(self) -> Supervisor:
        """Start and return once serving; a death later cancels the body with `ServerDied`."""
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._entered = tg

        async def runner(*, task_status: anyio.abc.TaskStatus[Supervisor]) -> None:
            outcome = await self.run(task_status=task_status)
            if outcome.kind is OutcomeKind.DIED:
                raise ServerDied(
                    outcome.report.summary() if outcome.report else "died", report=outcome.report
                )

        try:
            await tg.start(runner)
        except BaseException:
            # The runner is over (its error is this one): close the group empty-handed, so the
            # caller gets the StartupError itself, not a group around it.
            self._entered = None
            await tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        """Stop, wait for the tree to be dead, and hand back the body's own error unwrapped.

        The task group is the library's business: a `ValueError` raised in the body reaches the
        caller as a `ValueError`, a death while the body ran as `ServerDied`, never as a group.
        """
        self.stop()
        tg, self._entered = self._entered, None
        exc = exc_info[1]
        own = exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            if own:  # nothing, or our own cancellation of the body (a death): the group's to judge
                return await tg.__aexit__(*exc_info)
            await tg.__aexit__(None, None, None)  # the body's error is the caller's, untouched
        except BaseExceptionGroup as group:
            single = single_error(group, prefer=ServerDied)
            if single is not None:
                raise single from None
            raise
        return None
