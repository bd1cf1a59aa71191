"""A synchronous face for the asyncio supervisor, for hosts whose hooks must not be async.

Modal refuses an async `@modal.web_server` method, so the supervisor runs on an event loop in a
thread of its own: anyio's blocking portal, which owns that thread and joins it on close (the
portal works only as a context manager, so nothing is left running by accident). `start()`
returns once the server is serving or raises the `StartupError` that stopped it.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._config import SupervisorConfig
from ._states import State
from ._supervisor import Outcome, Supervisor

__all__ = ["BlockingSupervisor"]


class BlockingSupervisor:
    """`Supervisor` for synchronous callers: `start()`, `stop()`, `wait()`, or use it as `with`."""

    def __init__(self, config: SupervisorConfig, **supervisor_kwargs: Any) -> None:
        self.config = config
        self._kwargs = supervisor_kwargs
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._future: Future[Outcome] | None = None
        self.supervisor: Supervisor | None = None

    @property
    def state(self) -> State:
        return self.supervisor.state if self.supervisor is not None else State.STARTING

    def start(self) -> Supervisor:
        """Block until the server is serving; raise `StartupError` (and clean up) if it never is."""
        if self._stack is not None:
            raise RuntimeError("already started")
        stack = contextlib.ExitStack()
        portal = stack.enter_context(start_blocking_portal(backend="asyncio"))
        self._stack, self._portal = stack, portal
        try:
            self.supervisor = portal.call(lambda: Supervisor(self.config, **self._kwargs))
            self._future, _ = portal.start_task(self.supervisor.run, name="supervisor")
        except BaseException:
            self.close()
            raise
        return self.supervisor

    def stop(self, timeout: float | None = None) -> Outcome | None:
        """Stop gracefully (SIGTERM, drain, SIGKILL) and wait for the tree to be gone."""
        if self._portal is None or self.supervisor is None or self._future is None:
            return None
        if not self._future.done():
            self._portal.call(self.supervisor.stop)
        try:
            return self.wait(timeout)
        finally:
            self.close()

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the server is dead and return how it ended."""
        if self._future is None:
            raise RuntimeError("not started")
        if timeout is None:
            stop = self.config.stop
            timeout = stop.stop_timeout + stop.kill_timeout + 10.0
        return self._future.result(timeout=timeout)

    def close(self) -> None:
        """Leave the portal: cancels anything still running there and joins its thread."""
        stack, self._stack, self._portal = self._stack, None, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> BlockingSupervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
