"""A process manager without processes, for unit tests of the supervisor's decisions.

The test holds the `InMemoryChild` and plays the server: it writes output, makes it exit, and
sees which signals the supervisor sent. Behaviour as a whole is proven against the fake server
process; this is for the logic in between (state changes, stop policy, death handling).
"""

from __future__ import annotations

import signal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from supervisor import LaunchSpec
from supervisor.lowlevel import ByteSource, ChildProcess, KillResult, ListenerCheck

__all__ = ["InMemoryChild", "InMemoryProcessManager"]


class _MemorySource:
    def __init__(self, receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._receive = receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()


class InMemoryChild:
    """A scripted child: `write()` output, `exit()` it; `signals` records what it was sent.

    `exit_on` maps a signal to the status it exits with when sent (SIGTERM → -15 by default);
    leave SIGTERM out to play a server that ignores it. `listener` is what `check_listener`
    answers: set it to a "foreign" `ListenerCheck` to play a stale server on the port.
    """

    def __init__(self, spec: LaunchSpec, pid: int, exit_on: dict[int, int] | None = None) -> None:
        self.spec = spec
        self._pid = pid
        self._returncode: int | None = None
        self._exited = anyio.Event()
        self.signals: list[int] = []
        self.tree_killed = 0
        self.listener = ListenerCheck("ours")
        sigterm = int(signal.SIGTERM)
        self.exit_on: dict[int, int] = {sigterm: -sigterm} if exit_on is None else exit_on
        self._out: dict[str, MemoryObjectSendStream[bytes]] = {}
        self._src: dict[str, ByteSource] = {}
        for name in ("stdout", "stderr"):
            send, receive = anyio.create_memory_object_stream[bytes](1000)
            self._out[name] = send
            self._src[name] = _MemorySource(receive)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdout(self) -> ByteSource:
        return self._src["stdout"]

    @property
    def stderr(self) -> ByteSource:
        return self._src["stderr"]

    def write(self, data: bytes, stream: str = "stderr") -> None:
        self._out[stream].send_nowait(data)

    def exit(self, returncode: int) -> None:
        if self._returncode is None:
            self._returncode = returncode
            for send in self._out.values():
                send.close()
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum in self.exit_on:
            self.exit(self.exit_on[signum])

    def tree(self) -> tuple[int, ...]:
        return () if self._returncode is not None else (self._pid,)

    async def kill_tree(self, timeout: float) -> KillResult:
        self.tree_killed += 1
        alive = self._returncode is None
        self.exit(-signal.SIGKILL)
        return KillResult(killed=1 if alive else 0)

    def check_listener(self, host: str, port: int) -> ListenerCheck:
        return self.listener

    async def aclose(self) -> None:
        if self._returncode is None:
            await self.kill_tree(1.0)


class InMemoryProcessManager:
    """Hands out `InMemoryChild`ren; `children` keeps them for the test to drive.

    `port_in_use`, when set, is the reason `port_conflict` gives: the supervisor then refuses to
    start, as it does when a stale server holds the port.
    """

    def __init__(
        self, exit_on: dict[int, int] | None = None, *, port_in_use: str | None = None
    ) -> None:
        self.children: list[InMemoryChild] = []
        self._exit_on = exit_on
        self.port_in_use = port_in_use

    def port_conflict(self, host: str, port: int) -> str | None:
        return self.port_in_use

    async def start(self, spec: LaunchSpec) -> ChildProcess:
        child = InMemoryChild(spec, pid=10_000 + len(self.children), exit_on=self._exit_on)
        self.children.append(child)
        return child
