"""The local process manager: one server process tree on this machine, owned from start to reap.

The server runs under a keeper (`_keeper.py`): supervisor -> keeper -> server main -> schedulers.
The keeper is the tree's child subreaper, reaps everything below it, reports the main process's
exit on a status pipe the instant it happens, and kills the whole tree when the supervisor's
control pipe closes, so the server dies with its supervisor even when that is SIGKILLed. This
process is not made a subreaper: orphans of other code in a host process never come to us.

Why not `anyio.open_process`: on Python 3.11 asyncio wakes `Process.wait()` only once every pipe
is closed, and an orphaned scheduler that inherited stdout keeps it open, so the death of the main
process would go unnoticed for as long as the orphan lives: exactly the failure this project
exists to catch. Here the exit is a line from the keeper and the pipes are read separately, so
exit and end-of-output are independent facts.

Reaping: this process reaps only the keeper, its own child, by pid (never `waitpid(-1)`, which
would steal the exit statuses of other code in this process, such as the Modal runtime's
children); the keeper reaps the rest.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio

from ._config import LaunchSpec
from ._errors import ConfigError
from ._pipes import PipeReader, StatusLines
from ._ports import check_listener, port_conflict
from ._process import ByteSource, ChildProcess, KillResult, ListenerCheck
from ._proctree import ProcInfo, find_tree, proc_info, supports_proc

__all__ = ["TREE_TOKEN_ENV", "LocalChild", "LocalProcessManager"]

#: Environment variable carrying the tree's token to every descendant.
TREE_TOKEN_ENV = "SGLANG_SUPERVISOR_TREE"

KEEPER = Path(__file__).with_name("_keeper.py")

_POLL_S = 0.02  # while waiting for SIGKILL to land, or for the keeper to leave
_FIRST_POLL_S = 0.001  # SIGKILL lands in well under a millisecond: look again soon, then back off


def _polls() -> Iterator[float]:
    """The naps between looks at something about to happen: 1, 2, 4, ... ms, then `_POLL_S`.

    A flat 20 ms nap, once in the tree kill and once for the keeper's exit, was most of the time
    from a server's death to the supervisor's exit.
    """
    delay = _FIRST_POLL_S
    while True:
        yield delay
        delay = min(delay * 2, _POLL_S)


_KEEPER_START_S = 30.0  # a Python start on a loaded machine; normally tens of milliseconds
_KEEPER_LEAVE_S = 2.0  # after the tree is dead, the keeper's own exit


class LocalChild:
    """A running server started by `LocalProcessManager`; see `ChildProcess` for the contract.

    `pid` is the server's main process; `keeper_pid` the keeper above it, which `tree()` leaves
    out (it is ours, not the server's) and `aclose()` ends. `inner_keeper` is the keeper's pid 1
    of a PID namespace where the kernel has no subreapers (gVisor), also ours.
    """

    def __init__(
        self,
        keeper: subprocess.Popen[bytes],
        pid: int,
        token: str,
        status: StatusLines,
        control: int,
        inner_keeper: int | None = None,
    ) -> None:
        self._keeper = keeper
        self.inner_keeper = inner_keeper
        self._pid = pid
        self._returncode: int | None = None
        self._status = status
        self._control: int | None = control
        self._token_entry = f"{TREE_TOKEN_ENV}={token}".encode()
        assert keeper.stdout is not None and keeper.stderr is not None
        self._stdout = PipeReader(os.dup(keeper.stdout.fileno()))
        self._stderr = PipeReader(os.dup(keeper.stderr.fileno()))
        keeper.stdout.close()
        keeper.stderr.close()
        self._known: dict[int, int] = {}
        self._waiting = False
        self._wake = anyio.Event()
        self.keeper_lost = False
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):  # signals through a pidfd can never hit a reused pid
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(pid)
        for member in (keeper.pid, *((inner_keeper,) if inner_keeper else ()), pid):
            info = proc_info(member)
            if info is not None:
                self._known[member] = info.starttime
        self._remember(self._scan())

    def __repr__(self) -> str:
        rc = self._returncode
        status = "running" if rc is None else f"exited ({rc})"
        return f"<LocalChild pid={self.pid} keeper={self.keeper_pid} {status}>"

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def keeper_pid(self) -> int:
        return self._keeper.pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdout(self) -> ByteSource:
        return self._stdout

    @property
    def stderr(self) -> ByteSource:
        return self._stderr

    async def wait(self) -> int:
        # One task reads the status pipe (the event loop allows one reader per fd); the others
        # wait for it to finish, and one of them takes over if it is cancelled.
        while self._returncode is None:
            if self._waiting:
                await self._wake.wait()
                continue
            self._waiting = True
            try:
                await self._read_status()
            finally:
                self._waiting = False
                wake, self._wake = self._wake, anyio.Event()
                wake.set()
        return self._returncode

    async def _read_status(self) -> None:
        while self._returncode is None:
            line = await self._status.readline()
            if line is None:
                await self._on_keeper_lost()
                return
            kind, _, value = line.partition(" ")
            if kind == "exited":
                self._returncode = int(value)

    async def _on_keeper_lost(self) -> None:
        """The keeper died before reporting (someone SIGKILLed it): the main's status is lost.

        Kill the main process so that what we report (SIGKILL) is at least true, and let the
        tree kill find the rest by session, token and the members seen before.
        """
        self.keeper_lost = True
        self._signal(signal.SIGKILL)
        with anyio.move_on_after(5.0):
            while (info := proc_info(self._pid)) is not None and not info.zombie:
                await anyio.sleep(_POLL_S)
        self._returncode = -signal.SIGKILL

    def _signal(self, signum: int) -> None:
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
                return
            except ProcessLookupError:
                return
            except OSError:  # a sandbox with pidfd_open but not pidfd_send_signal
                self._pidfd = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self._pid, signum)

    def send_signal(self, signum: int) -> None:
        if self._returncode is None:
            self._signal(signum)

    def _scan(self) -> dict[int, ProcInfo]:
        if not supports_proc():
            return {}
        return find_tree(
            sid=self._pid,  # the keeper starts the main process in a session of its own
            token=self._token_entry,
            known=self._known.items(),
        )

    def _remember(self, members: dict[int, ProcInfo]) -> None:
        for info in members.values():
            self._known[info.pid] = info.starttime

    def _server_pids(self, members: dict[int, ProcInfo]) -> list[int]:
        ours = (self.keeper_pid, self.inner_keeper)
        return [p.pid for p in members.values() if not p.zombie and p.pid not in ours]

    def tree(self) -> tuple[int, ...]:
        members = self._scan()
        self._remember(members)
        alive = self._server_pids(members)
        if not supports_proc() and self._returncode is None:
            alive = [self.pid]
        return tuple(sorted(alive))

    def check_listener(self, host: str, port: int) -> ListenerCheck:
        if not supports_proc():
            return ListenerCheck("unknown", "no /proc here")
        return check_listener(host, port, self.tree())

    async def kill_tree(self, timeout: float) -> KillResult:
        killed: set[int] = set()
        alive: list[int] = []
        naps = _polls()
        with anyio.move_on_after(timeout):
            while True:
                if not supports_proc():
                    self._killpg_fallback()
                members = self._scan()
                self._remember(members)
                alive = self._server_pids(members)
                if not alive:
                    break
                for pid in alive:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
                    except ProcessLookupError:
                        pass
                    except PermissionError:  # not ours after all (pid reused by another user)
                        self._known.pop(pid, None)
                await anyio.sleep(next(naps))
        if self._returncode is None:
            with anyio.move_on_after(max(timeout, 0.1)):
                await self.wait()
        return KillResult(killed=len(killed), survivors=tuple(sorted(alive)))

    def _killpg_fallback(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def _dismiss_keeper(self) -> None:
        """Close the control pipe (the keeper sweeps once more and leaves), then reap it."""
        if self._control is not None:
            fd, self._control = self._control, None
            os.close(fd)
        naps = _polls()
        with anyio.move_on_after(_KEEPER_LEAVE_S):
            while self._keeper.poll() is None:  # poll() reaps exactly the keeper, our child
                await anyio.sleep(next(naps))
        if self._keeper.poll() is None:
            self._keeper.kill()
            with anyio.move_on_after(_KEEPER_LEAVE_S):
                while self._keeper.poll() is None:
                    await anyio.sleep(_POLL_S)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.tree() or self._returncode is None:
                await self.kill_tree(5.0)
            await self._dismiss_keeper()
            await self._stdout.aclose()
            await self._stderr.aclose()
            await self._status.aclose()
            if self._pidfd is not None:
                fd, self._pidfd = self._pidfd, None
                os.close(fd)


class LocalProcessManager:
    """Starts each server under a keeper, in its own session, tagged so its tree can be found."""

    def port_conflict(self, host: str, port: int) -> str | None:
        return port_conflict(host, port)

    async def start(self, spec: LaunchSpec) -> ChildProcess:
        if not sys.executable:
            raise ConfigError("cannot start the keeper: this Python does not know its executable")
        token = uuid.uuid4().hex
        env = dict(os.environ) if spec.inherit_env else {}
        env.update(spec.env)
        env[TREE_TOKEN_ENV] = token
        env.setdefault("PYTHONUNBUFFERED", "1")
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        argv = [sys.executable, "-I", "-S", str(KEEPER), str(control_r), str(status_w)]
        try:
            # fork+exec takes milliseconds; a thread for it would be one more owner to track.
            keeper = subprocess.Popen(  # noqa: ASYNC220
                [*argv, str(os.getpid()), "--", *spec.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,  # no terminal's Ctrl-C reaches the tree directly
                close_fds=True,
                pass_fds=(control_r, status_w),
            )
        except OSError as exc:
            for fd in (control_w, status_r):
                os.close(fd)
            if spec.cwd and exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ConfigError(f"working directory does not exist: {spec.cwd!r}") from None
            raise ConfigError(f"cannot start the keeper: {exc.strerror or exc}") from None
        finally:
            os.close(control_r)
            os.close(status_w)
        status = StatusLines(status_r)
        try:
            line = None
            inner: int | None = None
            with anyio.move_on_after(_KEEPER_START_S):
                line = await status.readline()
                if line is not None and line.startswith("keeper "):
                    inner = int(line.split()[1])  # a PID namespace of its own (gVisor)
                    line = await status.readline()
            kind, _, detail = (line or "").partition(" ")
            if kind != "spawned":
                raise _spawn_error(spec, kind, detail)
        except BaseException:
            with anyio.CancelScope(shield=True):
                os.close(control_w)  # the keeper kills whatever it started, then leaves
                with anyio.move_on_after(_KEEPER_LEAVE_S):
                    while keeper.poll() is None:
                        await anyio.sleep(_POLL_S)
                if keeper.poll() is None:
                    keeper.kill()
                    keeper.wait()
                for pipe in (keeper.stdout, keeper.stderr):
                    if pipe is not None:
                        pipe.close()
                await status.aclose()
            raise
        return LocalChild(keeper, int(detail), token, status, control_w, inner)


def _spawn_error(spec: LaunchSpec, kind: str, detail: str) -> ConfigError:
    command = spec.argv[0]
    if kind != "error":
        return ConfigError(f"cannot start {command!r}: the keeper did not report a spawn")
    code, _, message = detail.partition(" ")
    number = int(code) if code.isdigit() else 0
    if number == errno.ENOENT:
        return ConfigError(f"command not found: {command!r}; check the path")
    if number == errno.EACCES:
        return ConfigError(f"command is not executable: {command!r}")
    return ConfigError(f"cannot start {command!r}: {message}")


if sys.platform == "win32":  # pragma: no cover - the design is POSIX-only
    raise ImportError("sglang-supervisor runs on POSIX systems only")
