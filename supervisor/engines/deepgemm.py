"""The DeepGEMM compile step, supervised: `python -m sglang.compile_deep_gemm` done right.

SGLang's compile script starts a whole server, polls it, sends one request and prints a success
line. Left alone it has two hazards (reference: sglang-0.5.23-cli.md): it never notices that its
server child died (it polls until its own timeout, an hour by default), and with `--api-key` its
unauthenticated poll gets 401 forever. Here the argv carries no key, the log is streamed and
read: the success line ends the step, a crash line or the loss of the server child fails it at
once, and a deadline bounds it. Success writes a marker (SGLang version, model, tensor
parallelism, time) so the next run can skip the work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from supervisor._config import LaunchSpec
from supervisor._local import LocalProcessManager
from supervisor._logs import LogSink, LogTail, Redactor, StreamSink, pump
from supervisor._process import ByteSource, ChildProcess, ProcessManager
from supervisor.engines.preflight import marker_matches, write_marker
from supervisor.engines.sglang import COMPILE_SUCCESS_LINE, SGLangLaunch, classify_crash

__all__ = ["CompileResult", "compile_deepgemm"]

_LOST_CHILD_GRACE_S = 5.0  # the server child may be restarting between phases
_CRASH_SETTLE_S = 1.0


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
        if classify_crash(text.splitlines()) != "unknown" and not failed.is_set():
            reason = "crashed"  # the cause is named from the whole tail once the logs are drained
            failed.set()

    async def watch_tree() -> None:
        nonlocal reason
        seen_server, lost_since = False, None
        while True:
            await anyio.sleep(tree_poll_s)
            size = len(child.tree())
            if size > 1:
                seen_server, lost_since = True, None
            elif seen_server and not succeeded.is_set():
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > _LOST_CHILD_GRACE_S:
                    reason = reason or "the compile server's child processes died"
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
            returncode = await _until_done(child, succeeded, failed, timeout_s, watch_tree)
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
    watch_tree: object,
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
            tg.start_soon(watch_tree)  # type: ignore[arg-type]
    if succeeded.is_set() and returncode is None:
        # The script sleeps 10 s, then kills its server and exits 0; give it that, bounded.
        with anyio.move_on_after(30):
            returncode = await child.wait()
    return returncode
