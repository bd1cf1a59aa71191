"""The command line: parse, own the signals, run the supervisor, map the ending to an exit code.

Exit codes are the contract a platform acts on:
  0  stopped on request          1  the server died or stopped answering after serving
  2  usage or configuration      3  startup failed (exited early, timed out, warmup failed)

Only this module installs signal handlers (they work only in the main thread); the library never
does. Signals are a stream that one task reads and turns into `Supervisor.stop()`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

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
from ._errors import ConfigError, StartupError
from ._logs import Redactor
from ._metrics import serve_metrics
from ._report import Classifier, unknown_cause
from ._supervisor import OutcomeKind, Supervisor

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DIED",
    "EXIT_STARTUP",
    "EXIT_STOPPED",
    "CommandAdder",
    "build_parser",
    "main",
]

EXIT_STOPPED, EXIT_DIED, EXIT_CONFIG, EXIT_STARTUP = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _add_supervision_flags(p: argparse.ArgumentParser, *, port_required: bool) -> None:
    health, live, stop = HealthPolicy(), LivenessPolicy(), StopPolicy()
    p.add_argument(
        "--port", type=int, required=port_required, help="the port the server listens on"
    )
    p.add_argument("--host", default=None, help="the host to probe (default 127.0.0.1)")
    p.add_argument("--health-path", default=None, help=f"default {health.path}")
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=None,
        help=f"seconds to wait for the first healthy answer (default {health.startup_timeout:g})",
    )
    p.add_argument(
        "--warmup",
        type=Path,
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
        default=None,
        metavar="NAME",
        help="read the API key from this environment variable (never from argv)",
    )
    p.add_argument("--liveness-interval", type=float, default=live.interval)
    p.add_argument("--liveness-timeout", type=float, default=live.timeout)
    p.add_argument("--liveness-failures", type=int, default=live.failures)
    p.add_argument("--no-liveness", action="store_true", help="only the main process's exit counts")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=stop.stop_timeout,
        help="seconds to drain after SIGTERM before SIGKILL of the whole tree",
    )
    p.add_argument("--ready-line", default=None, help="a log line that makes us probe at once")
    p.add_argument("--tail-lines", type=int, default=LogPolicy().tail_lines)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve the supervisor's own Prometheus metrics on this port",
    )


#: Adds subcommands to the parser; called with the subparsers and `add_supervision_flags`.
CommandAdder = Callable[[Any, Callable[..., None]], None]


def build_parser(extra: Sequence[CommandAdder] = ()) -> argparse.ArgumentParser:
    """The `run` command, plus whatever commands the entry point composes in (`extra`)."""
    parser = _Parser(
        prog="sglang-supervisor",
        description="Supervise a model server: logs, health, warmup, liveness, graceful stop.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="supervise any command that serves HTTP",
        usage="%(prog)s --port P [options] -- COMMAND [ARG...]",
    )
    _add_supervision_flags(run, port_required=True)
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


def read_warmup_file(path: Path | None) -> tuple[WarmupPayload, ...]:
    if path is None:
        return ()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--warmup {path}: no such file") from None
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
    health_path: str = "/health",
    startup_timeout: float | None = None,
) -> SupervisorConfig:
    """One config from the flags; a flag given on the command line wins over a default."""
    defaults = HealthPolicy()
    return SupervisorConfig(
        launch=launch,
        port=args.port,
        host=args.host or "127.0.0.1",
        health=HealthPolicy(
            path=args.health_path or health_path,
            startup_timeout=args.startup_timeout or startup_timeout or defaults.startup_timeout,
        ),
        liveness=LivenessPolicy(
            interval=args.liveness_interval,
            timeout=args.liveness_timeout,
            failures=args.liveness_failures,
            enabled=not args.no_liveness,
        ),
        warmup=WarmupPolicy(payloads=tuple(warmups), fail_startup=not args.warmup_warn_only),
        stop=StopPolicy(stop_timeout=args.stop_timeout),
        logs=LogPolicy(tail_lines=args.tail_lines),
        api_key=api_key,
        ready_line=args.ready_line or ready_line,
        phase_markers=tuple(phase_markers),
    )


async def supervise(
    config: SupervisorConfig,
    *,
    metrics_port: int | None = None,
    classify: Classifier = unknown_cause,
) -> int:
    """Run one supervisor under this process's signals; return the exit code."""
    sup = Supervisor(config, classify=classify)
    code = EXIT_STOPPED
    config_error: ConfigError | None = None
    async with anyio.create_task_group() as tg:

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    sup.say(f"received {signal.Signals(signum).name}: stopping")
                    sup.stop()

        # Listen before spawning: a SIGTERM in between must stop the child, not orphan it.
        await tg.start(on_signals)
        if metrics_port is not None:
            bound = await tg.start(serve_metrics, sup.metrics.registry, metrics_port)
            sup.say(f"supervisor metrics on http://127.0.0.1:{bound}/metrics")
        try:
            outcome = await sup.run()
            code = EXIT_DIED if outcome.kind is OutcomeKind.DIED else EXIT_STOPPED
        except StartupError as exc:
            sup.say(f"startup failed: {exc}")
            if exc.tail:
                sup.say("last lines of the server's log:")
                for line in exc.tail[-20:]:
                    sup.say(f"  | {line}")
            code = EXIT_STARTUP
        except ConfigError as exc:
            config_error = exc  # re-raised outside the group, so it is not wrapped
        tg.cancel_scope.cancel()
    if config_error is not None:
        raise config_error
    return code


def _run_command(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ConfigError("no command given: put the server's command after `--`")
    config = config_from_args(
        args,
        LaunchSpec(argv=tuple(argv)),
        warmups=read_warmup_file(args.warmup),
        api_key=read_api_key(args.api_key_env),
    )
    return anyio.run(lambda: supervise(config, metrics_port=args.metrics_port))


def main(argv: Sequence[str] | None = None, *, extra: Sequence[CommandAdder] = ()) -> int:
    """Parse `argv` and run the chosen command; returns the exit code (see the module docstring)."""
    parser = build_parser(extra)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", _run_command)
    try:
        return handler(args)
    except ConfigError as exc:
        secrets = [os.environ.get(getattr(args, "api_key_env", None) or "", "")]
        print(f"sglang-supervisor: error: {Redactor(secrets)(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a signal before the supervisor's own handler was installed
        return EXIT_STOPPED
