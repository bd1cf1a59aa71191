"""A synchronous face for the asyncio supervisor, for hosts whose hooks must not be async.

Modal refuses an async `@modal.web_server` method, so the supervisor runs on an event loop in a
thread of its own: anyio's blocking portal, which owns that thread and joins it on close (the
portal works only as a context manager, so nothing is left running by accident). `start()`
returns once the server is serving or raises the `StartupError` that stopped it.

A stop wins at any moment: `stop()` from another thread while `start()` is still waiting makes
`start()` raise `StoppedBeforeServing` (a `StartupError`) once the tree is dead, and a `stop()`
that comes before `start()` makes `start()` raise it without spawning anything.

`sleep()` and `wake()` put a serving server to sleep around a memory snapshot and back (Modal's
`@modal.enter(snap=True)` and `@modal.enter(snap=False)`): each blocks until done and raises the
error that ended it (`SnapshotError`, a `StartupError`: the supervisor has then killed the tree).
The loop's thread is idle while asleep: it waits for the wake, with no socket open.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import Any

import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._config import SupervisorConfig
from ._errors import StoppedBeforeServing
from ._snapshot import SnapshotTiming
from ._states import State
from ._supervisor import Outcome, OutcomeKind, Supervisor

__all__ = ["BlockingSupervisor"]


class BlockingSupervisor:
    """`Supervisor` for synchronous callers: `start()`, `stop()`, `wait()`, or use it as `with`.

    Every method may be called from any thread; one object runs one server once.
    """

    def __init__(self, config: SupervisorConfig, **supervisor_kwargs: Any) -> None:
        self.config = config
        self._kwargs = supervisor_kwargs
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._future: Future[Outcome] | None = None
        self._finished = threading.Event()
        self._started = False
        self._stop_asked = False
        self.supervisor: Supervisor | None = None

    @property
    def state(self) -> State:
        if self.supervisor is not None:
            return self.supervisor.state
        return State.DEAD if self._stop_asked else State.STARTING

    def start(self) -> Supervisor:
        """Block until the server is serving; raise `StartupError` (and clean up) if it never is."""
        with self._lock:
            if self._started:
                raise RuntimeError("already started; a BlockingSupervisor runs once")
            self._started = True
            if self._stop_asked:
                self._finished.set()
                raise StoppedBeforeServing("stopped on request before the server was started")
            stack = contextlib.ExitStack()
            portal = stack.enter_context(start_blocking_portal(backend="asyncio"))
            self._stack, self._portal = stack, portal
            try:
                self.supervisor = portal.call(lambda: Supervisor(self.config, **self._kwargs))
            except BaseException:
                self._finished.set()
                self.close()
                raise
        try:
            self._future, _ = portal.start_task(self._run, name="supervisor")
        except BaseException:
            self.close()
            raise
        return self.supervisor

    async def _run(self, *, task_status: anyio.abc.TaskStatus[Supervisor]) -> Outcome:
        assert self.supervisor is not None
        try:
            with self._lock:
                if self._stop_asked:  # a stop() that came while the supervisor was being made
                    self.supervisor.stop()
            return await self.supervisor.run(task_status=task_status)
        finally:
            self._finished.set()

    def sleep(self) -> SnapshotTiming:
        """serving -> asleep (see `Supervisor.sleep`); blocks until asleep, or raises why not."""
        return self._portal_call("sleep")

    def wake(self) -> SnapshotTiming:
        """asleep -> serving (see `Supervisor.wake`); blocks until serving, or raises why not."""
        return self._portal_call("wake")

    def _portal_call(self, name: str) -> SnapshotTiming:
        # Bounded by the snapshot policy's deadlines, each taken when its step starts.
        with self._lock:
            portal, sup = self._portal, self.supervisor
        if portal is None or sup is None:
            raise RuntimeError(f"{name}() needs a started supervisor: call start() first")
        method = sup.sleep if name == "sleep" else sup.wake
        return portal.call(method)

    def stop(self, timeout: float | None = None) -> Outcome | None:
        """Stop gracefully (SIGTERM, drain, SIGKILL) and wait for the tree to be gone.

        Returns how it ended, or None if it never started. From another thread while `start()`
        waits, this wins: `start()` raises `StoppedBeforeServing` and this returns once the tree
        is dead.
        """
        with self._lock:
            self._stop_asked = True
            portal, sup = self._portal, self.supervisor
        if portal is None or sup is None:
            return None
        if not self._finished.is_set():
            with contextlib.suppress(RuntimeError):  # the portal closed meanwhile: it is over
                portal.call(sup.stop)
        try:
            bound = sup.stop_bound if timeout is None else timeout
            if not self._finished.wait(bound):
                raise TimeoutError("the supervisor did not finish stopping in time")
            return sup.outcome or Outcome(OutcomeKind.STOPPED, None)
        finally:
            self.close()

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the server is dead and return how it ended; with no timeout, for as long
        as it serves (a serving server is not late), else raise `TimeoutError`."""
        if self._future is None:
            raise RuntimeError("not started")
        return self._future.result(timeout=timeout)

    def close(self) -> None:
        """Leave the portal: cancels anything still running there and joins its thread."""
        with self._lock:
            stack, self._stack, self._portal = self._stack, None, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> BlockingSupervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
