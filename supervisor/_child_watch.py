"""The two tasks that never pause while a tree lives: the log pumps and the exit watcher.

They run beside every phase (sleeps included) and only set what the phases race on: the exit
watcher sets `Run.exited` the moment the main process ends (a pidfd, no polling), the pumps set
`Run.pumps_done` at end of file and fire `Run.nudge` on the engine's ready line, so the health
wait probes at once instead of at its next backoff step.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ._errors import describe_returncode
from ._logs import LogSink, Redactor, pump
from ._process import ByteSource, ChildProcess
from ._redact import Needle
from ._run import Run
from ._states import State

__all__ = ["pump_logs", "watch_exit"]


async def pump_logs(run: Run, child: ChildProcess, sink: LogSink, redact: Redactor) -> None:
    def counter(stream: str) -> Callable[[str], None]:
        def count(text: str) -> None:
            run.metrics.on_log(stream, text.count("\n"), len(text))

        return count

    observers: list[Callable[[str], None]] = [run.timeline.observe]
    ready = run.config.ready_line
    if ready:
        needle = Needle(ready)

        def on_ready(text: str) -> None:
            # Only startup waits on the ready line: once past it, skip even the cheap test
            # (a plain `in` on every block costs ~0.1 s per 150 MB of log).
            if run.machine.state is State.STARTING and needle.found(text):
                run.nudge.fire()

        observers.append(on_ready)

    async def pump_one(name: str, source: ByteSource) -> None:
        await pump(
            source,
            stream=name,
            sink=sink,
            tail=run.tail,
            redact=redact,
            observers=[*observers, counter(name)],
            max_line_bytes=run.config.logs.max_line_bytes,
        )

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_one, "stdout", child.stdout)
            tg.start_soon(pump_one, "stderr", child.stderr)
    finally:
        run.pumps_done.set()


async def watch_exit(run: Run, child: ChildProcess) -> None:
    run.returncode = await child.wait()
    run.say(f"main process pid={child.pid} ended: {describe_returncode(run.returncode)}")
    run.exited.set()
