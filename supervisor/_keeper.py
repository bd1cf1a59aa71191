"""The keeper: a small process between the supervisor and the server, and the tree's subreaper.

Run as `python -I -S _keeper.py CTL_FD STATUS_FD PARENT_PID -- COMMAND [ARG...]`. It imports the
standard library only (no site-packages), so it starts in tens of milliseconds with a few MB.
It exists for three promises that the supervisor's own process cannot keep:

- **Everything it adopts is the server's.** It is a child subreaper with nothing but the server
  below it, so a daemon that double-forks, calls `setsid()` and clears its environment still
  comes back to it. The supervisor's process is not made a subreaper, so in a host process the
  orphans of other code never come to the library.
- **The server dies with its supervisor.** When the control pipe reaches end of file (the
  supervisor exited, crashed or was SIGKILLed) or its parent changes, it SIGKILLs every process
  below it, reaps them and leaves. A pipe and a parent check do not depend on which thread spawned
  it, unlike PR_SET_PDEATHSIG (used here only as a prompt wake-up).
- **Reaping is complete and steals nothing.** Every zombie below it is its own child, so a blanket
  `waitpid(-1)` is right here, and only here.

Where the kernel refuses PR_SET_CHILD_SUBREAPER (gVisor's older releases: `prctl` fails, and an
orphan goes to the sandbox's init instead of us), the keeper holds the tree in a PID namespace of
its own instead: it unshares CLONE_NEWPID and forks an inner keeper, pid 1 of the new namespace,
which runs everything below. Every orphan of the tree then comes to the inner keeper (the init of
its namespace), which reaps it, and when the inner keeper dies the kernel kills every process in
the namespace, so even a daemon that double-forked and called `setsid()` cannot outlive it. The
inner keeper announces itself (`keeper PID`, its pid as /proc names it) before `spawned`; the
outer one only waits for it. Without CAP_SYS_ADMIN neither works, and the promise ends there:
such a daemon escapes (docs/DESIGN.md, "gVisor").

Protocol, one line each on STATUS_FD: optionally `keeper PID` (an inner keeper, above), then
`spawned PID` (pids as the supervisor's /proc names them), or `error ERRNO MESSAGE` and exit; later
`exited RC` once the main process is reaped (RC as `Popen.returncode`: negative for a signal).
Nothing is ever written on CTL_FD; its end of file means "kill everything below you and leave".
The keeper ignores SIGTERM, SIGINT and SIGHUP (a signal to a process group must not orphan the
tree); the supervisor ends it by closing the control pipe, or with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_CLONE_NEWPID = 0x20000000
#: `1`: hold the tree in a PID namespace even where the subreaper works (tests; a kernel that
#: accepts PR_SET_CHILD_SUBREAPER without honouring it).
PIDNS_ENV = "SGLANG_SUPERVISOR_PID_NAMESPACE"
_TICK_S = 1.0  # the parent check's period; the control pipe and signals wake us sooner
_KILL_DEADLINE_S = 10.0  # a process stuck in uninterruptible sleep is left after this


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program's libc, no ldconfig call
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _unshare_pid_namespace() -> bool:
    """Make our next child pid 1 of a new PID namespace (needs CAP_SYS_ADMIN)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.unshare(_CLONE_NEWPID) == 0)
    except (OSError, AttributeError):
        return False


def _proc_pid() -> int:
    """Our pid as /proc names it: /proc is mounted for the outer namespace, getpid() is ours."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _below(me: int) -> list[tuple[int, bool]]:
    """(pid, is_zombie) of every process below `me`, found through /proc parent links."""
    parents: dict[int, list[tuple[int, bool]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        try:
            parents.setdefault(int(fields[1]), []).append((int(name), fields[0] in ("Z", "X")))
        except (IndexError, ValueError):
            continue
    found: list[tuple[int, bool]] = []
    stack = [me]
    while stack:
        for pid, zombie in parents.get(stack.pop(), ()):
            found.append((pid, zombie))
            stack.append(pid)
    return found


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
        return int(raw[raw.rfind(")") + 2 :].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class Keeper:
    def __init__(self, ctl: int, status: int, parent: int) -> None:
        self.ctl, self.status, self.parent = ctl, status, parent
        self.me = os.getpid()
        self.main_pid = 0  # as waitpid names it (inside the namespace, when there is one)
        self.main_reported = False
        self.proc = os.path.isdir("/proc/self")
        self.inner = False  # pid 1 of a PID namespace of our own

    def say(self, line: str) -> None:
        try:
            os.write(self.status, (line + "\n").encode())
        except OSError:
            pass  # the supervisor is gone; the control pipe will say so

    def orphaned(self) -> bool:
        # An inner keeper's parent is outside its namespace (getppid() is 0 there): its
        # PDEATHSIG (SIGKILL) and the control pipe stand for this check.
        return not self.inner and os.getppid() != self.parent

    def enter_namespace(self) -> bool:
        """Fork the inner keeper into the new namespace. True in it; False in the outer keeper,
        once the inner one has ended (the outer only waits: it holds nothing else)."""
        try:
            inner = os.fork()
        except OSError:
            return True  # no namespace after all: go on as a plain keeper
        if inner == 0:
            self.inner = True
            self.me = _proc_pid()
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            self.say(f"keeper {self.me}")
            return True
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the supervisor's pipes end with the tree, not with us
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        while True:
            try:
                os.waitpid(inner, 0)
                return False
            except ChildProcessError:
                return False
            except InterruptedError:
                continue

    def _pid_of_child(self, inner_pid: int) -> int:
        """A child's pid as /proc (the supervisor's view) names it; ours differs in a namespace."""
        if not self.inner:
            return inner_pid
        for _ in range(200):
            kids = [pid for pid, _zombie in _below(self.me) if _ppid(pid) == self.me]
            if kids:
                return kids[0]
            time.sleep(0.005)
        return inner_pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main_pid and not self.main_reported:
                self.main_reported = True
                self.say(f"exited {os.waitstatus_to_exitcode(status)}")

    def kill_all(self) -> None:
        deadline = time.monotonic() + _KILL_DEADLINE_S
        if self.inner:
            # Pids inside the namespace are not /proc's: kill(-1) from its init reaches every
            # other process of the namespace, however it left the tree.
            while time.monotonic() < deadline:
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    pass
                self.reap()
                try:  # any child left? (looked at, not reaped)
                    os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    return  # nothing left in the namespace
                time.sleep(0.01)
            return
        while time.monotonic() < deadline:
            self.reap()
            if self.proc:
                alive = [pid for pid, zombie in _below(self.me) if not zombie]
            else:  # no /proc: the main process's session is the best we can reach
                alive = [] if self.main_reported else [-self.main_pid]
            if not alive:
                break
            for pid in alive:
                try:
                    if pid < 0:
                        os.killpg(-pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
        self.reap()

    def spawn(self, argv: list[str]) -> bool:
        try:
            # The main process gets its own session: its pid is the session id that marks the
            # tree, and a signal to its group (SGLang kills its own group) never reaches us.
            child = subprocess.Popen(argv, start_new_session=True, close_fds=True)
        except OSError as exc:
            message = (exc.strerror or str(exc)).replace("\n", " ")
            self.say(f"error {exc.errno or 0} {message}")
            return False
        self.main_pid = child.pid
        # Our waitpid(-1) reaps it; a returncode keeps Popen from ever waiting on it too.
        child.returncode = 0
        seen_as = self._pid_of_child(child.pid)
        # Let go of the server's output pipes: the supervisor learns that the tree is done
        # writing when the last writer closes them, and the keeper writes nothing there.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.say(f"spawned {seen_as}")
        return True

    def run(self, argv: list[str]) -> None:
        forced = os.environ.get(PIDNS_ENV) == "1"
        subreaper = not forced and _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        if not subreaper and self.proc and _unshare_pid_namespace():
            if not self.enter_namespace():
                return  # the outer keeper: the inner one and its whole namespace are gone
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)

        def nothing(signum: int, frame: object) -> None:
            return None

        # Handlers, not SIG_IGN: a handler is reset by exec, so the server starts with defaults.
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, nothing)
        if self.inner:
            pass  # the namespace's init: every orphan comes to us without asking
        else:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGHUP)  # a prompt wake-up; the parent check decides
        if self.orphaned() or not self.spawn(argv):
            return
        poller = select.poll()
        poller.register(self.ctl, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.register(wake_r, select.POLLIN)
        while True:
            events = poller.poll(_TICK_S * 1000)
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            self.reap()
            if any(fd == self.ctl for fd, _ in events):
                try:
                    if not os.read(self.ctl, 512):
                        return  # end of file: the supervisor is done, or dead
                except OSError:
                    return
            if self.orphaned():
                return


def main(args: list[str]) -> None:
    ctl, status, parent = int(args[0]), int(args[1]), int(args[2])
    argv = args[4:] if args[3:4] == ["--"] else args[3:]
    keeper = Keeper(ctl, status, parent)
    try:
        keeper.run(argv)
    finally:
        keeper.kill_all()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
