"""The command line: parse the flags, build the config, hand it to `supervise`.

The run itself, its signals and its exit codes are `_supervise`'s; this module turns flags
into a `SupervisorConfig` and picks the engine's traits for the command (`run`).

Every flag is checked where it is parsed: a zero, negative, NaN or infinite number, an empty
string or a port out of range is one line naming the flag, exit 2, never a silent default.
"""

from __future__ import annotations

import argparse
import json
import os
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
from ._errors import ConfigError
from ._flags import count, env_name, port, seconds, text, url_path
from ._logs import Redactor
from ._progress import ProgressPolicy
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
from ._supervise import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_DIED,
    EXIT_STARTUP,
    EXIT_STOPPED,
    supervise,
)
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
