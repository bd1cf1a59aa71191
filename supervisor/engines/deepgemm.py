"""The DeepGEMM compile step, supervised: `python -m sglang.compile_deep_gemm` done right.

SGLang's compile script (sglang/compile_deep_gemm.py) starts a whole server in a spawn-mode
`multiprocessing.Process`, polls it every 10 s, sends one request and prints a success line. Left
alone it has two hazards: it never notices that its server died (it polls until its own
`--timeout`, an hour by default), and with `--api-key` its unauthenticated poll gets 401
forever. Here the argv carries no key, and the log is streamed and read: the success line ends
the step, an error line that names a crash cause fails it at once (a warning that merely
mentions NCCL does not), and a deadline bounds it.

The server's silent death (the OOM killer: no line at all) is caught by watching the server
process itself. The script's tree never shrinks to one process, because the spawn start method
also starts Python's resource tracker (`from multiprocessing.resource_tracker import main`),
which lives as long as the script; so the server is the script's child that is not such a
helper, and once it is gone the step fails within a few seconds, whatever helpers stay alive.
A server that died between two polls is still seen: the script never reaps it, so it stays the
script's zombie child (a CI run once waited the script's whole hour for a server that lived
shorter than one poll on a loaded machine and was never seen alive).

Success writes a marker (SGLang version, model, tensor parallelism, time) so the next run can
skip the work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from supervisor import LaunchSpec, LogSink, StreamSink
from supervisor.engines.preflight import marker_matches, write_marker
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_causes import classify_crash
from supervisor.engines.sglang_release import COMPILE_SUCCESS_LINE
from supervisor.lowlevel import (
    ByteSource,
    ChildProcess,
    LocalProcessManager,
    LogTail,
    ProcessManager,
    ProcInfo,
    Redactor,
    children_of,
    pump,
)

__all__ = ["CompileResult", "compile_deepgemm", "server_processes"]

_LOST_SERVER_GRACE_S = 3.0  # a dead server's last lines may still be in the pipes
_CRASH_SETTLE_S = 1.0
#: What multiprocessing's helper processes run (`python -c "<this>;main(fd)"`): not the server.
_HELPER_CMDLINES = (
    b"from multiprocessing.resource_tracker import main",
    b"from multiprocessing.forkserver import main",
)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _is_helper(pid: int) -> bool:
    cmdline = _cmdline(pid)
    return any(h in cmdline for h in _HELPER_CMDLINES)


def server_processes(root: int) -> tuple[list[ProcInfo], list[int]]:
    """(the server: the root's children that are not multiprocessing helpers, zombies included;
    the live helpers' pids).

    A dead server stays the script's zombie child (the script polls over HTTP and never reaps
    it), so a server that lived shorter than one poll is still seen, and seen dead.
    """
    servers, helpers = [], []
    for info in children_of(root):
        if info.zombie:
            servers.append(info)
        elif _is_helper(info.pid):
            helpers.append(info.pid)
        else:
            servers.append(info)
    return servers, helpers


@dataclass(frozen=True)
class CompileResult:
    ok: bool
    skipped: bool
    seconds: float
    reason: str
    returncode: int | None = None
    tail: tuple[str, ...] = ()


async def compile_deepgemm(
    launch: SGLangLaunch,
    *,
    timeout_s: int = 3600,
    engine: Sequence[str] | None = None,
    sink: LogSink | None = None,
    manager: ProcessManager | None = None,
    force: bool = False,
    tree_poll_s: float = 1.0,
) -> CompileResult:
    sink = sink if sink is not None else StreamSink()
    if not force and marker_matches(launch):
        sink.supervisor("DeepGEMM kernels already compiled for this SGLang, model and TP: skipping")
        return CompileResult(True, True, 0.0, "marker matches")
    manager = manager if manager is not None else LocalProcessManager()
    argv = launch.compile_argv(timeout_s, engine=engine)
    assert "--api-key" not in argv
    sink.supervisor("compiling DeepGEMM kernels: " + " ".join(argv))
    start = time.monotonic()
    child = await manager.start(LaunchSpec(argv=tuple(argv), env=launch.environment()))
    tail = LogTail(200)
    succeeded, failed = anyio.Event(), anyio.Event()
    reason = ""

    def observe(text: str) -> None:
        nonlocal reason
        if COMPILE_SUCCESS_LINE in text:
            succeeded.set()
        # Only error lines count (classify_crash skips warnings that merely mention NCCL), and
        # only before success: the script then kills its server's tree, and SGLang's watchdog
        # may see a scheduler go first and log a "crash" of the teardown (seen under load).
        if succeeded.is_set():
            return
        if classify_crash(text.splitlines()) != "unknown" and not failed.is_set():
            reason = "crashed"  # the cause is named from the whole tail once the logs are drained
            failed.set()

    async def watch_server() -> None:
        """Fail once the server process is gone (a silent death), helpers notwithstanding."""
        nonlocal reason
        seen: dict[int, int] = {}  # server pid -> start time, so a reused pid is not mistaken
        lost_since: float | None = None
        while True:
            await anyio.sleep(tree_poll_s)
            servers, helpers = server_processes(child.pid)
            for info in servers:
                seen.setdefault(info.pid, info.starttime)
            alive = [
                info.pid
                for info in servers
                if not info.zombie and seen.get(info.pid) == info.starttime
            ]
            if alive or not seen or succeeded.is_set():
                lost_since = None
                continue
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > _LOST_SERVER_GRACE_S:
                names = ", ".join(str(p) for p in sorted(seen))
                left = f"; {len(helpers)} helper process(es) (resource tracker) still running"
                reason = reason or (
                    f"the compile server (pid {names}) died without an error line"
                    + (left if helpers else "")
                )
                failed.set()
                return

    returncode: int | None = None
    pumps_done = anyio.Event()

    async def pump_one(name: str, source: ByteSource) -> None:
        await pump(
            source, stream=name, sink=sink, tail=tail, redact=Redactor(), observers=[observe]
        )

    async def pumps() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_one, "stdout", child.stdout)
            tg.start_soon(pump_one, "stderr", child.stderr)
        pumps_done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pumps)
            returncode = await _until_done(child, succeeded, failed, timeout_s, watch_server)
            if failed.is_set() and returncode is None:
                # A crash line is the first of several (a traceback): let it finish writing.
                with anyio.move_on_after(_CRASH_SETTLE_S):
                    returncode = await child.wait()
            # Kill what is left so the pipes close, then let the pumps read the last lines.
            with anyio.CancelScope(shield=True):
                await child.kill_tree(5.0)
            with anyio.move_on_after(2):
                await pumps_done.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await child.kill_tree(5.0)
            await child.aclose()
    seconds = time.monotonic() - start
    if succeeded.is_set() and not failed.is_set():
        marker = write_marker(launch, time.time()) if launch.dg_cache_dir else None
        sink.supervisor(f"DeepGEMM compile finished in {seconds:.0f} s; marker {marker}")
        return CompileResult(True, False, seconds, "compiled", returncode, tuple(tail.lines()))
    if reason == "crashed":
        reason = f"the compile server crashed (cause: {classify_crash(tail.lines())})"
    if not reason:
        if returncode is None:
            reason = f"no success line within {timeout_s} s"
        else:
            reason = f"exited with status {returncode} before the success line"
    sink.supervisor(f"DeepGEMM compile FAILED after {seconds:.0f} s: {reason}")
    return CompileResult(False, False, seconds, reason, returncode, tuple(tail.lines()))


async def _until_done(
    child: ChildProcess,
    succeeded: anyio.Event,
    failed: anyio.Event,
    timeout_s: float,
    watch_server: object,
) -> int | None:
    """Wait for success (then the script's own exit), failure, an early exit, or the deadline."""
    returncode: int | None = None
    with anyio.move_on_after(timeout_s + 60):
        async with anyio.create_task_group() as tg:

            async def on(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            async def on_exit() -> None:
                nonlocal returncode
                returncode = await child.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on, succeeded)
            tg.start_soon(on, failed)
            tg.start_soon(on_exit)
            tg.start_soon(watch_server)  # type: ignore[arg-type]
    if succeeded.is_set() and returncode is None:
        # The script sleeps 10 s, then kills its server and exits 0; give it that, bounded.
        with anyio.move_on_after(30):
            returncode = await child.wait()
    return returncode
