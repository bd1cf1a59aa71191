"""The fake's scheduler processes, SGLang's subprocess watchdog, and its `kill_process_tree`.

Schedulers are real processes, one per TP rank, in the server's process group, with
PR_SET_PDEATHSIG=SIGKILL, like `sglang::scheduler_TPn` (srt/managers/scheduler.py). Each takes
commands on its stdin, standing in for SGLang's ZMQ messages: `shutdown` (ShutdownReq: release
the memory, exit 0), `crash <json lines>` (an exception in the scheduler loop: log the
traceback, SIGQUIT the parent, exactly as `run_scheduler_process` does) and `exit <code> <json
line>` (a C++ `exit()` inside the process, e.g. torch_memory_saver's: a line on stderr, no
traceback, no SIGQUIT; only the subprocess watchdog notices). Each scheduler's records carry its
`_logs.scheduler_prefix` (none at TP 1, ` TPn` above it, ` DPd TPn` with DP attention), as
`configure_scheduler_process` builds it. Ranks are global: on node R of a multi-node run the
first local scheduler is `TP{R * tp_size / nnodes}`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from ._logs import kill_tree_line, log, scheduler_prefix, subprocess_crashed_line

SCHEDULER_CODE = r"""
import json, os, signal, sys, time, subprocess
rank = int(sys.argv[1]); escape = sys.argv[2] == "1"; ignore = sys.argv[3] == "1"
gpu_gib = float(sys.argv[4]); grandchild = sys.argv[5] == "1"; release = float(sys.argv[6])
parent = int(sys.argv[7]); prefix = sys.argv[8]
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if escape:
    # Leave the session, then the parent chain (a double fork): reparented like the schedulers
    # of sglang #23627, with no PDEATHSIG, so it outlives its parent and escapes its tree kill.
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
else:
    import ctypes, ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(0)
hold = None
if gpu_gib > 0:
    import torch
    n = torch.cuda.device_count()
    dev = torch.device("cuda", rank % max(n, 1))
    hold = torch.empty(int(gpu_gib * (1 << 30)), dtype=torch.uint8, device=dev)
    hold.fill_(1); torch.cuda.synchronize(dev)
if grandchild:
    code = "import signal,time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore else "") + "time.sleep(10**6)"
    subprocess.Popen([sys.executable, "-c", code])
print(f"sglang::scheduler{prefix.replace(' ', '_')} pid={os.getpid()} ready", flush=True)
for line in sys.stdin:
    command, _, rest = line.strip().partition(" ")
    if command == "shutdown":
        time.sleep(release)  # releasing GPU memory
        del hold
        sys.exit(0)
    if command == "crash":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = json.loads(rest)
        print(f"[{stamp}{prefix}] " + "\n".join(lines), file=sys.stderr, flush=True)
        os.kill(parent, signal.SIGQUIT)
        sys.exit(0)
    if command == "exit":
        code, _, text = rest.partition(" ")
        print(json.loads(text), file=sys.stderr, flush=True)
        os._exit(int(code))
while True:  # stdin closed: the parent is gone; an escaped scheduler lives on
    time.sleep(3600)
"""


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` by parent links (psutil's `children(recursive=True)`)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if fields and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def kill_process_tree(
    parent_pid: int, include_parent: bool = True, *, announce: bool = True
) -> None:
    """srt/utils/common.py:kill_process_tree: SIGKILL the descendants, then the parent itself.

    It logs each call at INFO, which shows wherever SGLang set up its logging (not in the
    compile script's own process: `announce=False`).
    """
    if announce:
        log(kill_tree_line(parent_pid, include_parent, os.getpid()))
    for pid in descendants(parent_pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if include_parent:
        sys.stderr.flush()
        os.kill(parent_pid, signal.SIGKILL)


class Schedulers:
    """One scheduler process per TP rank, and the commands SGLang sends them."""

    def __init__(
        self,
        tp_size: int,
        *,
        escape_last: bool,
        ignore_sigterm: bool,
        gpu_mem_gib: float,
        grandchildren: bool,
        release_s: float,
        first_rank: int = 0,
        prefixes: Sequence[str] = (),
    ) -> None:
        """`prefixes`: each rank's log prefix (`_logs.scheduler_prefix`); none given, the
        rule for these ranks alone without DP attention."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.first_rank = first_rank
        for index in range(tp_size):
            rank = first_rank + index
            argv = [
                sys.executable,
                "-c",
                SCHEDULER_CODE,
                str(rank),
                "1" if escape_last and index == tp_size - 1 else "0",
                "1" if ignore_sigterm else "0",
                str(gpu_mem_gib),
                "1" if grandchildren else "0",
                str(release_s),
                str(os.getpid()),
                prefixes[index] if prefixes else scheduler_prefix(rank, tp_size),
            ]
            self.procs.append(
                subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=sys.stderr.fileno())
            )

    def _send(self, proc: subprocess.Popen[bytes], command: str) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(command.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def shutdown(self) -> None:
        """ShutdownReq to every rank (srt/managers/scheduler.py: release resources, exit)."""
        for proc in self.procs:
            self._send(proc, "shutdown")

    def crash(self, lines: Sequence[str]) -> None:
        """Make rank 0 hit an exception: it logs `lines` and SIGQUITs this process."""
        self._send(self.procs[0], "crash " + json.dumps(list(lines)))

    def exit(self, code: int, line: str) -> None:
        """Make rank 0 print `line` and exit with `code` at once, like a C++ `exit()`."""
        self._send(self.procs[0], f"exit {code} {json.dumps(line)}")

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def dead(self) -> list[tuple[int, int]]:
        """(rank, exit code) of every scheduler that died (a non-zero exit; the `escape`
        fault's first process exits 0 at once, its fork living on)."""
        return [
            (self.first_rank + i, code)
            for i, p in enumerate(self.procs)
            if (code := p.poll()) is not None and code != 0
        ]

    def kill(self) -> None:
        for proc in self.procs:
            try:
                proc.kill()
            except ProcessLookupError:
                pass


class SubprocessWatchdog:
    """srt/utils/watchdog.py:SubprocessWatchdog: a child that exits non-zero means SIGQUIT.

    A scheduler that dies without a Python traceback (SIGKILL by the OOM killer, a C++ abort)
    is seen here within one interval; the SIGQUIT then runs the server's own handler.
    """

    def __init__(
        self, schedulers: Schedulers, interval: float, on_crash: Callable[[], None]
    ) -> None:
        self._schedulers = schedulers
        self._interval = interval
        self._on_crash = on_crash
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="subprocess-watchdog")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for index, proc in enumerate(self._schedulers.procs):  # engine.py: scheduler_{i}
                code = proc.poll()
                if code is None or code == 0:
                    continue
                if self._stop.is_set():
                    return
                log(subprocess_crashed_line(f"scheduler_{index}", proc.pid, code))
                self._on_crash()
                return
