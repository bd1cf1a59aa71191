"""The command line: parse, own the signals, run the supervisor, map the ending to an exit code.

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

Every flag is checked where it is parsed: a zero, negative, NaN or infinite number, an empty
string or a port out of range is one line naming the flag, exit 2, never a silent default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ._cluster import WorkerRules
from ._config import (
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    LogPolicy,
    StopPolicy,
    SupervisorConfig,
    WarmupPayload,
    WarmupPolicy,
)
from ._engine import GENERIC, EngineTraits, choose_engine
from ._errors import ConfigError, PortInUse, StartupError
from ._flags import count, env_name, port, seconds, text, url_path
from ._logs import Redactor, one_line
from ._metrics import serve_metrics
from ._progress import ProgressPolicy
from ._rehearsal import rehearse_when_serving
from ._report import Classifier, unknown_cause
from ._run_flags import (
    add_cluster_flags,
    add_progress_flags,
    add_snapshot_flags,
    cluster_from_args,
    memory_from_args,
    progress_from_args,
    rehearsal_pause_from_args,
    snapshot_from_args,
)
from ._snapshot import SnapshotError, SnapshotPolicy
from ._supervisor import OutcomeKind, Supervisor
from ._timeline import TimingReader

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_DIED",
    "EXIT_STARTUP",
    "EXIT_STOPPED",
    "CommandAdder",
    "add_cluster_flags",
    "add_progress_flags",
    "add_snapshot_flags",
    "build_parser",
    "config_from_args",
    "main",
    "rehearsal_pause_from_args",
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


def _prog() -> str:
    """How the user called us, for usage lines: the console script or `python -m supervisor`."""
    return (
        "sglang-supervisor"
        if Path(sys.argv[0]).name == "sglang-supervisor"
        else ("python -m supervisor")
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _add_supervision_flags(p: argparse.ArgumentParser, *, port_required: bool) -> None:
    health, live, stop = HealthPolicy(), LivenessPolicy(), StopPolicy()
    p.add_argument(
        "--port", type=port(), required=port_required, help="the port the server listens on"
    )
    p.add_argument("--host", type=text, default=None, help="the host to probe (default 127.0.0.1)")
    p.add_argument("--health-path", type=url_path, default=None, help=f"default {health.path}")
    p.add_argument(
        "--startup-timeout",
        type=seconds(),
        default=None,
        help=f"seconds to wait for the first healthy answer (default {health.startup_timeout:g})",
    )
    p.add_argument(
        "--warmup",
        type=text,
        default=None,
        metavar="FILE.json",
        help='a JSON array of {"name", "path", "body", "expect"?} objects',
    )
    p.add_argument(
        "--warmup-warn-only",
        action="store_true",
        help="a failed warmup is a warning instead of a failed startup",
    )
    p.add_argument(
        "--api-key-env",
        type=env_name,
        default=None,
        metavar="NAME",
        help="read the API key from this environment variable (never from argv)",
    )
    p.add_argument("--liveness-interval", type=seconds(), default=live.interval)
    p.add_argument("--liveness-timeout", type=seconds(), default=live.timeout)
    p.add_argument("--liveness-failures", type=count, default=live.failures)
    p.add_argument("--no-liveness", action="store_true", help="only the main process's exit counts")
    p.add_argument(
        "--stop-timeout",
        type=seconds(zero=True),
        default=None,
        help="seconds to drain after SIGTERM before SIGKILL of the whole tree (default "
        f"{stop.stop_timeout:g}, or the engine's own drain budget)",
    )
    p.add_argument(
        "--ready-line", type=text, default=None, help="a log line that makes us probe at once"
    )
    p.add_argument("--tail-lines", type=count, default=LogPolicy().tail_lines)
    p.add_argument(
        "--metrics-port",
        type=port(zero=True),
        default=None,
        help="serve the supervisor's own Prometheus metrics on this port (0: any free port)",
    )


#: Adds subcommands to the parser; called with the subparsers and `add_supervision_flags`.
CommandAdder = Callable[[Any, Callable[..., None]], None]


def build_parser(
    extra: Sequence[CommandAdder] = (), engines: Sequence[EngineTraits] = ()
) -> argparse.ArgumentParser:
    """The `run` command, plus whatever commands the entry point composes in (`extra`).

    `engines` are the engines `run` knows (`--engine`); the core itself knows none.
    """
    parser = _Parser(
        prog=_prog(),
        description=textwrap.fill(
            "Supervise one model server (SGLang or any HTTP server): own its whole process tree, "
            "stream its logs, wait for health, warm it up, watch liveness, stop it gracefully, "
            "and exit when it dies so the platform recycles the container.",
            78,
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="supervise any command that serves HTTP",
        description="Supervise COMMAND, a server that listens on --port and answers health.",
        usage="%(prog)s --port P [options] -- COMMAND [ARG...]",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_supervision_flags(run, port_required=True)
    add_progress_flags(run)
    add_cluster_flags(run)
    add_snapshot_flags(run)
    names = ", ".join(e.name for e in engines)
    run.add_argument(
        "--engine",
        default="auto",
        choices=["auto", GENERIC.name, *(e.name for e in engines)],
        help="what the server is: its crash causes, ready line and drain come with it "
        f"(default auto: recognised from the command{'; known: ' + names if names else ''})",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, help="the server's command, after --")
    for add in extra:
        add(sub, _add_supervision_flags)
    return parser


def read_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            f"--api-key-env {env_name}: the environment variable {env_name} is not set"
        )
    return value


def read_warmup_file(path: str | Path | None) -> tuple[WarmupPayload, ...]:
    if path is None:
        return ()
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--warmup {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--warmup {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"--warmup {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--warmup {path}: not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(data, list):
        raise ConfigError(f"--warmup {path}: must be a JSON array of payload objects")
    return tuple(WarmupPayload.from_json(item) for item in data)


def config_from_args(
    args: argparse.Namespace,
    launch: LaunchSpec,
    *,
    warmups: Sequence[WarmupPayload] = (),
    api_key: str | None = None,
    ready_line: str | None = None,
    phase_markers: Sequence[tuple[str, str]] = (),
    timing_readers: Mapping[str, TimingReader] | None = None,
    progress: ProgressPolicy | None = None,
    health_path: str = "/health",
    startup_timeout: float | None = None,
    stop_timeout: float | None = None,
    worker: WorkerRules | None = None,
) -> SupervisorConfig:
    """One config from the flags; a flag given on the command line wins over a default.

    The progress, cluster and snapshot flags are read when the command has them
    (`add_progress_flags`, `add_cluster_flags`, `add_snapshot_flags`); otherwise their defaults
    hold: progress on, no cluster, no snapshot.
    """

    def given(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value  # never `or`: 0 and "" are not "not given"

    return SupervisorConfig(
        launch=launch,
        port=args.port,
        host=given(args.host, "127.0.0.1"),
        health=HealthPolicy(
            path=given(args.health_path, health_path),
            startup_timeout=given(
                args.startup_timeout, given(startup_timeout, HealthPolicy().startup_timeout)
            ),
        ),
        liveness=LivenessPolicy(
            interval=args.liveness_interval,
            timeout=args.liveness_timeout,
            failures=args.liveness_failures,
            enabled=not args.no_liveness,
        ),
        warmup=WarmupPolicy(payloads=tuple(warmups), fail_startup=not args.warmup_warn_only),
        stop=StopPolicy(
            stop_timeout=given(args.stop_timeout, given(stop_timeout, StopPolicy().stop_timeout))
        ),
        logs=LogPolicy(tail_lines=args.tail_lines),
        api_key=api_key,
        ready_line=given(args.ready_line, ready_line),
        phase_markers=tuple(phase_markers),
        timing_readers=dict(timing_readers or {}),
        progress=progress_from_args(args, progress),
        memory=memory_from_args(args),
        cluster=cluster_from_args(args, worker or WorkerRules()),
        snapshot=snapshot_from_args(args),
    )


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


def _run_command(args: argparse.Namespace, engines: Sequence[EngineTraits]) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ConfigError("no command given: put the server's command after `--`")
    engine = choose_engine(argv, engines, args.engine)
    config = config_from_args(
        args,
        LaunchSpec(argv=tuple(argv)),
        warmups=read_warmup_file(args.warmup),
        api_key=read_api_key(args.api_key_env),
        ready_line=engine.ready_line,
        phase_markers=engine.phase_markers,
        timing_readers=engine.timing_readers,
        progress=engine.progress,
        stop_timeout=engine.stop_timeout,
        worker=engine.worker,
    )
    how = "named by --engine" if args.engine != "auto" else "recognised from the command"
    if engine is GENERIC:
        how = "named by --engine" if args.engine != "auto" else "no known engine in the command"
    pause = rehearsal_pause_from_args(args)
    return anyio.run(
        lambda: supervise(
            config,
            metrics_port=args.metrics_port,
            classify=engine.classify,
            hints=engine.hints,
            rehearsal_pause_s=pause,
            announce=f"engine: {engine.name} ({how})"
            + (
                ""
                if config.progress.watches or not config.progress.enabled
                else "; no progress metrics known for it: a hang is caught by the liveness probe"
            ),
        )
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    extra: Sequence[CommandAdder] = (),
    engines: Sequence[EngineTraits] = (),
) -> int:
    """Parse `argv` and run the chosen command; returns the exit code (see the module docstring).

    `engines` are the traits of the engines `run` may recognise (the entry point's to give).
    """
    parser = build_parser(extra, engines)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = getattr(
        args, "handler", lambda a: _run_command(a, engines)
    )
    try:
        return handler(args)
    except ConfigError as exc:
        secrets = [os.environ.get(getattr(args, "api_key_env", None) or "", "")]
        print(f"{_prog()}: error: {Redactor(secrets)(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a signal before the supervisor's own handler was installed
        return EXIT_STOPPED
