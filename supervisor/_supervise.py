"""One supervisor under this process's signals, and its ending as an exit code.

Exit codes are the contract a platform acts on (`EXIT_CODES` says them in --help):
  0  stopped on request (on a cluster: any rank stopped on request)
  1  the server died, stalled or stopped answering after serving (on a cluster: any rank did)
  2  usage or configuration, a taken port included (nothing was started)
  3  startup failed (exited early, timed out, warmup failed, a stale server answered, a rank
     failed before serving, or a sleep/wake around a snapshot failed)

Only this module installs signal handlers (they work only in the main thread); the library never
does. Signals are a stream that one task reads: the first SIGTERM or SIGINT is `stop()` (drain,
then kill), a second one `stop(now=True)` (kill now); each is acknowledged, and once the
supervisor is done a late one is ignored, so the exit code always says how the server ended.
`_cli` parses the flags into a config; the deployment room's `serve` calls `supervise` too.
"""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Mapping

import anyio
import anyio.abc

from ._config import SupervisorConfig
from ._errors import ConfigError, PortInUse, StartupError
from ._logs import one_line
from ._metrics import serve_metrics
from ._rehearsal import rehearse_when_serving
from ._report import Classifier, unknown_cause
from ._snapshot import SnapshotError, SnapshotPolicy
from ._supervisor import OutcomeKind, Supervisor

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_DIED",
    "EXIT_STARTUP",
    "EXIT_STOPPED",
    "supervise",
]

EXIT_STOPPED, EXIT_DIED, EXIT_CONFIG, EXIT_STARTUP = 0, 1, 2, 3
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: The epilog of every supervising command's --help.
EXIT_CODES = """exit codes:
  0  stopped on request (SIGTERM/SIGINT; a second one skips the drain), or a peer rank was
     stopped on request
  1  the server died, stalled or stopped answering after serving, or a peer rank died: recycle
  2  usage or configuration error, or a port is already taken (one line says what to fix)
  3  startup failed: exited early, health timed out, a warmup failed, a stale server answered,
     a rank failed before serving, or a sleep/wake around a snapshot failed"""
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def supervise(
    config: SupervisorConfig,
    *,
    metrics_port: int | None = None,
    classify: Classifier = unknown_cause,
    hints: Mapping[str, str] | None = None,
    rehearsal_pause_s: float | None = None,
    announce: str | None = None,
) -> int:
    """Run one supervisor under this process's signals; return the exit code.

    `announce` is said once the settings are known good, just before the server starts.

    Owns SIGINT and SIGTERM for good: once the supervisor is done they stay ignored, so a late
    signal cannot turn a clean ending into a death by signal. Meant for a process's main thread.
    `rehearsal_pause_s` runs one snapshot rehearsal right after `serving` (sleep, the tree
    frozen that long, wake, `rehearse_snapshot`), then goes on serving; it needs a server with
    the memory endpoints (SGLang's `--enable-memory-saver`) and uses `SnapshotPolicy()` when
    the config has none. A failed wake ends the supervisor: exit 3, with the cause.
    """
    if metrics_port is not None and metrics_port == config.port:
        raise ConfigError(
            f"--metrics-port {metrics_port} is the server's own port: its health probe would "
            "reach the supervisor's metrics instead of the server; choose another"
        )
    if metrics_port is not None and config.cluster and metrics_port == config.cluster.status_port:
        raise ConfigError(f"--metrics-port {metrics_port} is this rank's cluster status port")
    if rehearsal_pause_s is not None:
        if not (math.isfinite(rehearsal_pause_s) and rehearsal_pause_s > 0):
            raise ConfigError(f"--snapshot-pause must be > 0 seconds, got {rehearsal_pause_s!r}")
        if config.cluster is not None:
            raise ConfigError("--snapshot-rehearsal is for one node, not a rank of a cluster")
        if config.snapshot is None:
            config = dataclasses.replace(config, snapshot=SnapshotPolicy())
    sup = Supervisor(config, classify=classify, hints=hints)
    code = EXIT_STOPPED
    config_error: ConfigError | None = None
    async with anyio.create_task_group() as tg:

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            try:
                with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
                    try:
                        task_status.started()
                        seen = 0
                        async for signum in signals:
                            seen += 1
                            name = signal.Signals(signum).name
                            if seen == 1:
                                sup.say(f"received {name}: stopping")
                                sup.stop()
                            else:
                                sup.say(f"received {name} again: skipping the drain, killing now")
                                sup.stop(now=True)
                    finally:
                        # Closing the receiver restores the default action (death by signal):
                        # hold the signals back until they are ignored instead.
                        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            finally:
                for signum in _STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

        # Listen before spawning: a SIGTERM in between must stop the child, not orphan it.
        await tg.start(on_signals)
        if rehearsal_pause_s is not None:
            tg.start_soon(rehearse_when_serving, sup, rehearsal_pause_s)
        try:
            if metrics_port is not None:
                try:
                    bound = await tg.start(_serve_metrics, sup, metrics_port)
                except OSError as exc:
                    raise PortInUse(
                        f"--metrics-port {metrics_port}: cannot listen ({exc.strerror or exc})"
                    ) from None
                sup.say(f"supervisor metrics on http://127.0.0.1:{bound}/metrics")
            if announce:
                sup.say(announce)
            outcome = await sup.run()
            code = EXIT_DIED if outcome.kind is OutcomeKind.DIED else EXIT_STOPPED
        except StartupError as exc:
            what = "sleep/wake failed" if isinstance(exc, SnapshotError) else "startup failed"
            sup.say(f"{what}: {exc}")
            if exc.tail:
                sup.say("last lines of the server's log:")
                for line in exc.tail[-20:]:
                    sup.say(f"  | {one_line(line)}")
            code = EXIT_STARTUP
        except ConfigError as exc:
            config_error = exc  # re-raised outside the group, so it is not wrapped
        tg.cancel_scope.cancel()
    if config_error is not None:
        raise config_error
    return code


async def _serve_metrics(
    sup: Supervisor, port: int, *, task_status: anyio.abc.TaskStatus[int]
) -> None:
    await serve_metrics(sup.metrics.registry, port, on_error=sup.say, task_status=task_status)
