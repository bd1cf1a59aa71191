"""The process-manager seam: what the supervisor needs from "a running server".

Shaped like anyio's `abc.Process` (pid, returncode, wait, send_signal, two byte streams) plus
what anyio lacks for a GPU server: `kill_tree`, which must reach every descendant, including
those that left the process group or the session, and the two port checks, which only the
manager can make because only it knows where the server runs (a remote manager checks there).
`LocalProcessManager` implements it on the local machine;
`supervisor.testing.InMemoryProcessManager` implements it without processes, for unit tests of
the supervisor's logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ._config import LaunchSpec

__all__ = ["ByteSource", "ChildProcess", "KillResult", "ListenerCheck", "ProcessManager"]


@runtime_checkable
class ByteSource(Protocol):
    """One output pipe: `receive` returns the next chunk or raises `anyio.EndOfStream`."""

    async def receive(self, max_bytes: int = 65536) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class KillResult:
    """What a tree kill did: how many processes it signalled and which ones outlived it."""

    killed: int
    survivors: tuple[int, ...] = ()


@dataclass(frozen=True)
class ListenerCheck:
    """Who holds the socket that answers on the server's port.

    `ours`: a process of the server's tree; `foreign`: another process (`detail` names it), such
    as a stale server; `unknown`: it cannot be told here (`detail` says why).
    """

    verdict: Literal["ours", "foreign", "unknown"]
    detail: str = ""


@runtime_checkable
class ChildProcess(Protocol):
    """A started server: the main process and, behind it, its whole tree."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdout(self) -> ByteSource: ...

    @property
    def stderr(self) -> ByteSource: ...

    async def wait(self) -> int:
        """Wait for the main process to exit and return its status (negative: a signal)."""
        ...

    def send_signal(self, signum: int) -> None:
        """Signal the main process only (SGLang drains on SIGTERM to its main pid)."""
        ...

    def tree(self) -> tuple[int, ...]:
        """Pids of every live process of the tree, the main one included."""
        ...

    async def kill_tree(self, timeout: float) -> KillResult:
        """SIGKILL every process of the tree, reap what is ours, wait at most `timeout` s."""
        ...

    def check_listener(self, host: str, port: int) -> ListenerCheck:
        """Say whether the socket listening on `port` belongs to this tree."""
        ...

    async def aclose(self) -> None:
        """Leave nothing behind: kill the tree if it runs, reap, close the pipes."""
        ...


class ProcessManager(Protocol):
    """Starts servers; the only way the supervisor gets a `ChildProcess`."""

    def port_conflict(self, host: str, port: int) -> str | None:
        """Why a server could not listen on `host:port` now (a stale server?), or None."""
        ...

    async def start(self, spec: LaunchSpec) -> ChildProcess: ...
