"""The `Supervisor`: owns one server's process tree from spawn to reap and drives its state machine.

Every task it starts lives in its task group: two log pumps, the exit watcher, and whichever phase
is running (health wait, warmup, liveness watch). Each phase races the child's exit and a stop
request, so a crash is noticed the moment the main process exits (a pidfd, no polling) and a stop
interrupts any wait. Whatever way `run` ends (return, exception, cancellation) the tree is killed
and reaped before it returns: no process outlives its supervisor.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._config import SupervisorConfig
from ._endings import DeathHandler, Endings, Outcome, OutcomeKind, force_exit
from ._errors import (
    ForeignListener,
    HealthTimeout,
    PortInUse,
    ServerDied,
    StartupError,
    StoppedBeforeServing,
    SupervisorError,
    WarmupFailed,
    describe_returncode,
)
from ._health import Nudge, ProbeResult, wait_healthy, watch_liveness
from ._local import LocalProcessManager
from ._logs import LogSink, LogTail, Redactor, StreamSink, pump
from ._metrics import SupervisorMetrics
from ._process import ByteSource, ChildProcess, ProcessManager
from ._report import Classifier, CrashReport, unknown_cause
from ._states import Event, State, StateMachine, Transition
from ._tasks import Race, race, single_error
from ._timeline import Timeline
from ._warmup import WarmupResult, run_warmups

__all__ = ["Outcome", "OutcomeKind", "Supervisor", "force_exit"]

T = TypeVar("T")


class Supervisor(Endings):
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        self._manager = manager if manager is not None else LocalProcessManager()
        self._sink = sink if sink is not None else StreamSink()
        self._on_death = on_death
        self._classify = classify
        self._transport = transport
        self.redact = Redactor(config.secrets)
        self.tail = LogTail(config.logs.tail_lines)
        self.timeline = Timeline(config.phase_markers)
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
        self._returncode: int | None = None
        self._nudge = Nudge()
        self._last_probe: ProbeResult | None = None
        self._serving_since: float | None = None
        self._ran = False
        self._serving_announced = False
        self.outcome: Outcome | None = None
        self._entered: Any = None

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
        Raises `PortInUse`, before spawning anything, if something already listens on the port.
        """
        if self._ran:
            raise RuntimeError("a Supervisor runs once; create a new one to start again")
        self._ran = True
        cfg = self.config
        conflict = self._manager.port_conflict(cfg.host, cfg.port)
        if conflict is not None:
            self.machine.fire(Event.FAILED, conflict)
            raise PortInUse(f"{conflict} (a stale server?): stop it or choose another port")
        argv = " ".join(shlex.quote(a) for a in cfg.launch.argv)
        self.say(f"starting {cfg.name}: {argv}")
        child = await self._manager.start(cfg.launch)
        self.child = child
        self.say(f"spawned pid={child.pid}")
        outcome: Outcome | None = None
        failure: SupervisorError | None = None
        try:
            async with httpx.AsyncClient(transport=self._transport, trust_env=False) as client:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pumps, child)
                    tg.start_soon(self._watch_exit, child)
                    try:
                        outcome = await self._lifecycle(client, child, task_status)
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
        self.outcome = outcome
        if not self._serving_announced and task_status is not anyio.TASK_STATUS_IGNORED:
            # The caller waits for `serving`, which will never come: tell it why, plainly.
            raise StoppedBeforeServing(
                f"stopped on request before serving ({describe_returncode(outcome.returncode)})",
                returncode=outcome.returncode,
                tail=self.tail.lines(),
            )
        return outcome

    async def _lifecycle(
        self,
        client: httpx.AsyncClient,
        child: ChildProcess,
        task_status: anyio.abc.TaskStatus[Supervisor],
    ) -> Outcome:
        cfg = self.config
        # starting: wait for 200 on the health path, racing the exit and a stop.
        kind, healthy = await self._race(
            lambda: wait_healthy(
                client,
                cfg.base_url + cfg.health.path,
                cfg.health,
                nudge=self._nudge,
                on_probe=lambda r: self._on_probe("startup", r),
            )
        )
        if kind is Race.EXITED:
            await self._startup_exit(child)
        if kind is Race.STOP:
            return await self._graceful_stop(child)
        if healthy is None:
            self.machine.fire(
                Event.FAILED, f"no healthy answer within {cfg.health.startup_timeout:g} s"
            )
            await self._kill(child)
            last = self._last_probe.describe() if self._last_probe else "no probe finished"
            raise HealthTimeout(
                f"{cfg.health.path} did not answer 200 within {cfg.health.startup_timeout:g} s "
                f"(last probe: {last})",
                tail=self.tail.lines(),
                cause=self._classify(self.tail.lines()),
            )
        await self._check_listener(child)
        self.timeline.mark("healthy")
        self.machine.fire(Event.HEALTHY, f"{cfg.health.path} answered in {healthy.latency_s:.3f} s")

        # warm: every payload at once.
        if cfg.warmup.payloads:
            kind, results = await self._race(
                lambda: run_warmups(
                    client,
                    cfg.base_url,
                    cfg.warmup.payloads,
                    api_key=cfg.api_key,
                    on_result=self._on_warmup,
                )
            )
            if kind is Race.EXITED:
                await self._startup_exit(child)
            if kind is Race.STOP:
                return await self._graceful_stop(child)
            self.warmup_results = list(results or [])
            failed = [r for r in self.warmup_results if not r.ok]
            if failed and cfg.warmup.fail_startup:
                self.machine.fire(Event.FAILED, f"{len(failed)} warmup(s) failed")
                await self._kill(child)
                raise WarmupFailed(
                    "warmup failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed),
                    results=self.warmup_results,
                    tail=self.tail.lines(),
                )
            for r in failed:
                self.say(f"warning: warmup {r.name!r} failed but warmup failures are warnings")
        self.timeline.mark("serving")
        self.metrics.on_phases(self.timeline.durations())
        self.say(self.timeline.summary())
        self.machine.fire(Event.WARMED)
        self._serving_since = time.monotonic()
        self._serving_announced = True
        task_status.started(self)

        # serving: sparse liveness probes, racing the exit and a stop.
        async def liveness() -> ProbeResult:
            if not cfg.liveness.enabled:
                await anyio.sleep_forever()
            return await watch_liveness(
                client,
                cfg.base_url + cfg.health.path,
                cfg.liveness,
                on_probe=lambda r: self._on_probe("liveness", r),
            )

        kind, failure = await self._race(liveness)
        if kind is Race.STOP:
            return await self._graceful_stop(child)
        if kind is Race.EXITED:
            self.machine.fire(Event.EXITED, describe_returncode(self._returncode))
            return await self._death(child, "exited", "")
        assert failure is not None
        detail = (
            f"{cfg.liveness.failures} liveness probes failed in a row, last: {failure.describe()}"
        )
        self.machine.fire(Event.UNHEALTHY, detail)
        return await self._death(child, "unhealthy", detail)

    async def _check_listener(self, child: ChildProcess) -> None:
        """A 200 proves that something answers, not that it is ours: check whose socket it is."""
        check = child.check_listener(self.config.host, self.config.port)
        if check.verdict == "foreign":
            self.machine.fire(Event.FAILED, check.detail)
            await self._kill(child)
            raise ForeignListener(
                f"{self.config.health.path} answered, but {check.detail} (a stale server?): "
                "stop it or choose another port",
                tail=self.tail.lines(),
            )
        if check.verdict == "unknown":
            self.say(f"note: cannot tell whose socket answers ({check.detail}); trusting it")

    async def _race(self, fn: Callable[[], Awaitable[T]]) -> tuple[Race, T | None]:
        """Run `fn` until it returns, the main process exits, or a stop is requested."""
        return await race(fn, exited=self._exited, stop=self._stop_requested)

    # ----------------------------------------------------------------- tasks
    async def _pumps(self, child: ChildProcess) -> None:
        def counter(stream: str) -> Callable[[str], None]:
            def count(text: str) -> None:
                self.metrics.on_log(stream, text.count("\n"), len(text))

            return count

        observers: list[Callable[[str], None]] = [self.timeline.observe]
        ready = self.config.ready_line
        if ready:

            def on_ready(text: str) -> None:
                if ready in text:
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

    # ----------------------------------------------------------------- hooks
    def _on_probe(self, kind: str, result: ProbeResult) -> None:
        previous, self._last_probe = self._last_probe, result
        self.metrics.on_probe(kind, result.ok, result.latency_s)
        if kind == "startup" and (previous is None or previous.describe() != result.describe()):
            # One line per change (refused -> 503 -> 200), not one per probe.
            self.say(f"health probe: {result.describe()}")
        if result.error != "connection refused":
            self.timeline.mark("port_open")
        if kind == "liveness" and not result.ok:
            self.say(f"liveness probe failed: {result.describe()}")

    def _on_warmup(self, result: WarmupResult) -> None:
        self.metrics.on_warmup(result.name, result.ok, result.latency_s)
        self.say(result.describe())

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
