"""The local process manager: one server process tree on this machine, owned from start to reap.

Why not `anyio.open_process`: on Python 3.11 asyncio wakes `Process.wait()` only once every pipe
is closed, and an orphaned scheduler that inherited stdout keeps it open, so the death of the main
process would go unnoticed for as long as the orphan lives: exactly the failure this project
exists to catch. Here the main process is watched through a pidfd (readable the instant it exits)
and the pipes are read separately, so exit and end-of-output are independent facts.

Reaping is strictly per pid: the main process by its own pid, and escaped orphans (which the
subreaper brings to us) by theirs. A blanket `waitpid(-1)` would steal the exit statuses of
other code in this process, such as the Modal runtime's own children.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import uuid

import anyio

from ._config import LaunchSpec
from ._errors import ConfigError
from ._process import ByteSource, ChildProcess, KillResult
from ._proctree import ProcInfo, find_tree, set_child_subreaper, supports_proc

__all__ = ["TREE_TOKEN_ENV", "LocalChild", "LocalProcessManager"]

#: Environment variable carrying the tree's token to every descendant.
TREE_TOKEN_ENV = "SGLANG_SUPERVISOR_TREE"

_POLL_S = 0.02  # only where pidfds are missing (not Linux) and while waiting for SIGKILL to land
_PIDFD_BACKSTOP_S = 1.0


_F_SETPIPE_SZ = 1031  # Linux: grow a pipe's buffer
_PIPE_BYTES = 1 << 20  # the unprivileged maximum by default (/proc/sys/fs/pipe-max-size)


class _PipeReader:
    """Non-blocking reads from one pipe, awaited through the event loop (never a thread).

    The pipe is grown to 1 MiB where Linux allows, so a burst of SGLang log lines (a decode
    storm, a traceback) fits while the supervisor is busy elsewhere, instead of blocking the
    scheduler that writes it.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass  # not Linux, or a lower pipe-max-size: the default 64 KiB still works
        self._fd: int | None = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            anyio.notify_closing(fd)
            os.close(fd)


class LocalChild:
    """A running server started by `LocalProcessManager`; see `ChildProcess` for the contract."""

    def __init__(self, popen: subprocess.Popen[bytes], token: str) -> None:
        self._popen = popen
        self._token = token.encode()
        self._token_entry = f"{TREE_TOKEN_ENV}={token}".encode()
        assert popen.stdout is not None and popen.stderr is not None
        self._stdout = _PipeReader(os.dup(popen.stdout.fileno()))
        self._stderr = _PipeReader(os.dup(popen.stderr.fileno()))
        popen.stdout.close()
        popen.stderr.close()
        self._known: dict[int, int] = {}
        self._waiting = False
        self._wake = anyio.Event()
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(popen.pid)
            except OSError:
                self._pidfd = None
        self._remember(self._scan())

    def __repr__(self) -> str:
        rc = self._popen.returncode
        status = "running" if rc is None else f"exited ({rc})"
        return f"<LocalChild pid={self.pid} {status}>"

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @property
    def stdout(self) -> ByteSource:
        return self._stdout

    @property
    def stderr(self) -> ByteSource:
        return self._stderr

    async def wait(self) -> int:
        # One task waits on the pidfd (the event loop allows one reader per fd); the others
        # wait for it to finish, and one of them takes over if it is cancelled.
        while self._popen.returncode is None:
            if self._waiting:
                await self._wake.wait()
                continue
            self._waiting = True
            try:
                await self._wait_exit()
            finally:
                self._waiting = False
                wake, self._wake = self._wake, anyio.Event()
                wake.set()
        self._close_pidfd()
        return self._popen.returncode

    async def _wait_exit(self) -> None:
        while self._popen.poll() is None:  # poll() reaps exactly this pid, our own child
            if self._pidfd is not None:
                # The pidfd wakes us the instant the process exits. The periodic poll() is a
                # backstop for sandboxes (gVisor) whose pidfd support may not reach epoll.
                with anyio.move_on_after(_PIDFD_BACKSTOP_S):
                    await anyio.wait_readable(self._pidfd)
            else:
                await anyio.sleep(_POLL_S)

    def send_signal(self, signum: int) -> None:
        if self._popen.returncode is None:
            try:
                os.kill(self._popen.pid, signum)
            except ProcessLookupError:
                pass

    def _scan(self) -> dict[int, ProcInfo]:
        if not supports_proc():
            return {}
        return find_tree(
            root=self.pid,
            sid=self.pid,  # start_new_session: the session id is the main pid
            token=self._token_entry,
            known=self._known.items(),
        )

    def _remember(self, members: dict[int, ProcInfo]) -> None:
        for info in members.values():
            self._known[info.pid] = info.starttime

    def tree(self) -> tuple[int, ...]:
        members = self._scan()
        self._remember(members)
        alive = [p.pid for p in members.values() if not p.zombie]
        if not supports_proc() and self._popen.returncode is None:
            alive = [self.pid]
        return tuple(sorted(alive))

    def _reap_orphans(self, members: dict[int, ProcInfo]) -> None:
        """Reap the zombies that the subreaper made ours; never the main pid (Popen owns it)."""
        me = os.getpid()
        for info in members.values():
            if info.pid != self.pid and info.ppid == me and info.zombie:
                try:
                    os.waitpid(info.pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    async def kill_tree(self, timeout: float) -> KillResult:
        killed: set[int] = set()
        alive: list[int] = []
        with anyio.move_on_after(timeout):
            while True:
                if not supports_proc():
                    self._killpg_fallback()
                members = self._scan()
                self._remember(members)
                self._reap_orphans(members)
                self._popen.poll()
                alive = [p.pid for p in members.values() if not p.zombie]
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
                await anyio.sleep(_POLL_S)
        if self._popen.returncode is None:
            with anyio.move_on_after(max(timeout, 0.1)):
                await self.wait()
        return KillResult(killed=len(killed), survivors=tuple(sorted(alive)))

    def _killpg_fallback(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            anyio.notify_closing(fd)
            os.close(fd)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.tree() or self._popen.returncode is None:
                await self.kill_tree(5.0)
            await self._stdout.aclose()
            await self._stderr.aclose()
            self._close_pidfd()


class LocalProcessManager:
    """Starts each server in its own session, tagged so that its whole tree can be found.

    Creating the manager makes this process a child subreaper (Linux), so a scheduler orphaned
    by SGLang's main process comes back to us to be killed and reaped, not to PID 1.
    """

    def __init__(self, *, subreaper: bool = True) -> None:
        self.subreaper = set_child_subreaper() if subreaper else False

    async def start(self, spec: LaunchSpec) -> ChildProcess:
        token = uuid.uuid4().hex
        env = dict(os.environ) if spec.inherit_env else {}
        env.update(spec.env)
        env[TREE_TOKEN_ENV] = token
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            # fork+exec takes milliseconds; a thread for it would be one more owner to track.
            popen = subprocess.Popen(  # noqa: ASYNC220
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise ConfigError(f"command not found: {spec.argv[0]!r}; check the path") from None
        except PermissionError:
            raise ConfigError(f"command is not executable: {spec.argv[0]!r}") from None
        except OSError as exc:
            if exc.errno == errno.ENOENT and spec.cwd:
                raise ConfigError(f"working directory does not exist: {spec.cwd!r}") from None
            raise ConfigError(f"cannot start {spec.argv[0]!r}: {exc.strerror}") from None
        return LocalChild(popen, token)


if sys.platform == "win32":  # pragma: no cover - the design is POSIX-only
    raise ImportError("sglang-supervisor runs on POSIX systems only")
