"""The `Supervisor`: owns one server's process tree from spawn to reap and drives its state machine.

Every task it starts lives in a task group: two log pumps, the exit watcher, and whichever phase
is running (`_startup`: health wait and warmups; `_serving`: liveness, progress, sleep and wake;
`_worker`: a cluster worker's life). Each phase races the child's exit and a stop request (and,
on a cluster, the peers: `_membership`), so a crash is noticed the moment the main process exits
(a pidfd, no polling) and a stop interrupts any wait. Whatever way `run` ends (return,
exception, cancellation) the tree is killed and reaped before it returns: no process outlives
its supervisor. On a cluster an outer task group, entered before the spawn and left last, holds
the status server and the peer watch, so a dying rank keeps publishing while it lingers.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import httpx

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._caches import CacheCount, snapshot_caches
from ._config import SupervisorConfig
from ._endings import DeathHandler, Outcome, OutcomeKind, force_exit
from ._errors import (
    PortInUse,
    ServerDied,
    StartupError,
    StoppedBeforeServing,
    SupervisorError,
    describe_returncode,
)
from ._health import Nudge, ProbeResult
from ._local import LocalProcessManager
from ._logs import LogSink, LogTail, Redactor, StreamSink, pump
from ._metrics import SupervisorMetrics
from ._process import ByteSource, ChildProcess, ProcessManager
from ._redact import Needle
from ._report import Classifier, CrashReport, unknown_cause
from ._snapshot import ClientSlot, SnapshotTiming, fresh_client
from ._states import Event, State, StateMachine, Transition
from ._tasks import single_error
from ._timeline import Timeline
from ._warmup import WarmupResult
from ._worker import Worker

__all__ = ["Outcome", "OutcomeKind", "Supervisor", "force_exit"]


class Supervisor(Worker):
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
        self._manager = manager if manager is not None else LocalProcessManager()
        self._sink = sink if sink is not None else StreamSink()
        self._on_death = on_death
        self._classify = classify
        self._hints = dict(hints or {})
        self._transport = transport
        self.redact = Redactor(config.secrets)
        self.tail = LogTail(config.logs.tail_lines)
        self.timeline = Timeline(config.phase_markers, readers=config.timing_readers)
        self._caches_before: dict[str, CacheCount | None] = {}
        self.caches_missed: tuple[str, ...] = ()
        self.machine = StateMachine()
        self.machine.observe(self._announce)
        self.machine.observe(self.metrics.on_transition)
        self.warmup_results: list[WarmupResult] = []
        self.report: CrashReport | None = None
        self.child: ChildProcess | None = None
        self._state_changed = anyio.Event()
        self._stop_requested = anyio.Event()
        self._stop_now = anyio.Event()
        self._exited = anyio.Event()
        self._pumps_done = anyio.Event()
        self._done = anyio.Event()
        self._returncode: int | None = None
        self._nudge = Nudge()
        self._last_probe: ProbeResult | None = None
        self._serving_since: float | None = None
        self._ran = False
        self._serving_announced = False
        self.outcome: Outcome | None = None
        #: The error `run` raised, once it has: what `sleep()` and `wake()` raise too.
        self.failure: SupervisorError | None = None
        self._entered: Any = None
        # Phases take the client from the slot when they start; a sleep closes it, a wake renews.
        self._slot = ClientSlot(lambda: fresh_client(self._transport))
        self._sleep_requested = anyio.Event()
        self._wake_requested = anyio.Event()
        self.snapshot_timing = SnapshotTiming()
        self._verdict = None
        self._scrapes_failing = False
        self._progress_off_said = False
        self._init_membership()

    # ----------------------------------------------------------------- observing
    @property
    def state(self) -> State:
        return self.machine.state

    def say(self, line: str) -> None:
        """Write one of the supervisor's own lines, redacted like everything else."""
        self._sink.supervisor(self.redact(line))

    def _announce(self, t: Transition) -> None:
        note = f" ({t.note})" if t.note else ""
        self.say(f"state={t.new.value} from={t.old.value} event={t.event.value}{note}")
        changed, self._state_changed = self._state_changed, anyio.Event()
        changed.set()

    async def wait_for(self, state: State) -> None:
        """Wait until `state` is reached; raise `StartupError` if the server dies first."""
        while self.state is not state:
            if self.state is State.DEAD:
                raise StartupError(f"the server is dead; it will never be {state.value}")
            await self._state_changed.wait()

    # ----------------------------------------------------------------- controlling
    def stop(self, *, now: bool = False) -> None:
        """Ask for a stop: SIGTERM to the main pid, then SIGKILL to the tree after the stop timeout.

        A stop wins at any moment, also before `serving` (see `run` for what the caller sees).
        `now=True` skips what is left of the drain and kills the tree at once (the CLI's second
        SIGTERM or SIGINT). Safe to call any number of times, from the event loop's thread.
        """
        self._stop_requested.set()
        if now:
            self._stop_now.set()

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
            outcome = await self._run(task_status)
        except SupervisorError as exc:
            self.failure = exc
            raise
        finally:
            self._done.set()
        self.outcome = outcome
        if not self._serving_announced and task_status is not anyio.TASK_STATUS_IGNORED:
            # The caller waits for `serving`, which will never come: tell it why, plainly.
            raise StoppedBeforeServing(
                f"stopped on request before serving ({describe_returncode(outcome.returncode)})",
                returncode=outcome.returncode,
                tail=self.tail.lines(),
            )
        return outcome

    async def _run(self, task_status: anyio.abc.TaskStatus[Supervisor]) -> Outcome:
        cfg = self.config
        conflict = self._manager.port_conflict(cfg.host, cfg.port)
        if conflict is not None:
            self.machine.fire(Event.FAILED, conflict)
            raise PortInUse(f"{conflict} (a stale server?): stop it or choose another port")
        outcome: Outcome | None = None
        failure: SupervisorError | None = None
        async with anyio.create_task_group() as side:  # the cluster's status server and watch
            try:
                await self._join_cluster(side)
                outcome = await self._supervise(task_status)
            except SupervisorError as exc:
                failure = exc  # raised below, outside the group, so it is not wrapped
                await self._linger()  # a startup failure on a cluster is published too
            side.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert outcome is not None
        return outcome

    async def _supervise(self, task_status: anyio.abc.TaskStatus[Supervisor]) -> Outcome:
        """Spawn, run the lifecycle beside the pumps and the exit watcher, leave a dead tree."""
        cfg = self.config
        argv = " ".join(shlex.quote(a) for a in cfg.launch.argv)
        self.say(f"starting {cfg.name}: {argv}")
        self._caches_before = await snapshot_caches(cfg.caches)
        child = await self._manager.start(cfg.launch)
        self.child = child
        self.say(f"spawned pid={child.pid}")
        outcome: Outcome | None = None
        failure: SupervisorError | None = None
        try:
            async with self._slot, anyio.create_task_group() as tg:
                tg.start_soon(self._pumps, child)
                tg.start_soon(self._watch_exit, child)
                try:
                    if self.is_worker:
                        outcome = await self._worker_lifecycle(child, task_status)
                    else:
                        outcome = await self._start_up(child, task_status)
                        if outcome is None:
                            outcome = await self._serve(child)
                except SupervisorError as exc:
                    failure = exc  # raised below, outside the group, so it is not wrapped
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._finish(child)
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await child.aclose()
        if failure is not None:
            raise failure
        assert outcome is not None
        return outcome

    # ----------------------------------------------------------------- tasks
    async def _pumps(self, child: ChildProcess) -> None:
        def counter(stream: str) -> Callable[[str], None]:
            def count(text: str) -> None:
                self.metrics.on_log(stream, text.count("\n"), len(text))

            return count

        observers: list[Callable[[str], None]] = [self.timeline.observe]
        ready = self.config.ready_line
        if ready:
            needle = Needle(ready)

            def on_ready(text: str) -> None:
                # Only startup waits on the ready line: once past it, skip even the cheap test
                # (a plain `in` on every block costs ~0.1 s per 150 MB of log).
                if self.state is State.STARTING and needle.found(text):
                    self._nudge.fire()

            observers.append(on_ready)

        async def pump_one(name: str, source: ByteSource) -> None:
            await pump(
                source,
                stream=name,
                sink=self._sink,
                tail=self.tail,
                redact=self.redact,
                observers=[*observers, counter(name)],
                max_line_bytes=self.config.logs.max_line_bytes,
            )

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump_one, "stdout", child.stdout)
                tg.start_soon(pump_one, "stderr", child.stderr)
        finally:
            self._pumps_done.set()

    async def _watch_exit(self, child: ChildProcess) -> None:
        self._returncode = await child.wait()
        self.say(f"main process pid={child.pid} ended: {describe_returncode(self._returncode)}")
        self._exited.set()

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
