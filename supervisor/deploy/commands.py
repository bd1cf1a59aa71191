"""The profile-based subcommands: `serve`, `demo`, `compile` and `preflight`, all by profile.

`--fake` (or `--engine-command`) swaps `python3 -m sglang.launch_server` for another program that
takes the same flags, such as the built-in fake server, so a whole deployment runs on a laptop.
Even then the preflight checks the real SGLang argv with SGLang's parser where one is available.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

import anyio

from supervisor._cli import EXIT_CONFIG, EXIT_STARTUP, config_from_args, read_api_key, supervise
from supervisor._config import LaunchSpec
from supervisor._errors import ConfigError
from supervisor._logs import Redactor
from supervisor.engines.preflight import PreflightReport, run_preflight
from supervisor.engines.sglang import PHASE_MARKERS, READY_LINE, SGLangLaunch, classify_crash
from supervisor.profiles import Profile, get_profile, profile_names

__all__ = ["add_commands"]

FAKE_ENGINE = [sys.executable, "-m", "supervisor.testing.fake_sglang"]
FAKE_COMPILE = [*FAKE_ENGINE, "--fake-mode", "compile"]


def _add_profile_flags(p: argparse.ArgumentParser, *, default_profile: str | None) -> None:
    p.add_argument(
        "--profile",
        default=default_profile,
        required=default_profile is None,
        choices=profile_names(),
        help="the model profile",
    )
    p.add_argument("--model-path", default=None, help="override the profile's weights directory")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--dg-cache-dir", default=None, help="override SGLANG_DG_CACHE_DIR")
    p.add_argument(
        "--engine-command",
        default=None,
        help="run this instead of `python3 -m sglang.launch_server` (same flags follow)",
    )
    p.add_argument("--fake", action="store_true", help="run the built-in fake SGLang server")
    p.add_argument(
        "--fake-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to the fake server (e.g. --fake-arg=--fake-load-time=5)",
    )
    p.add_argument(
        "--sglang-python", default=None, help="a Python with SGLang, for the parse check"
    )


def add_commands(sub: Any, add_supervision_flags: Callable[..., None]) -> None:
    serve = sub.add_parser("serve", help="serve a model profile under the supervisor")
    _add_profile_flags(serve, default_profile=None)
    add_supervision_flags(serve, port_required=False)
    serve.add_argument("--dry-run", action="store_true", help="print argv, env, preflight; exit")
    serve.add_argument("--skip-preflight", action="store_true")
    serve.set_defaults(handler=_serve)

    demo = sub.add_parser("demo", help="the GLM-5.1 profile on the fake engine, on localhost")
    _add_profile_flags(demo, default_profile="glm-5.1-fp8")
    add_supervision_flags(demo, port_required=False)
    demo.set_defaults(handler=_serve, fake=True, dry_run=False, skip_preflight=False, demo=True)

    compile_ = sub.add_parser("compile", help="compile DeepGEMM kernels for a profile")
    _add_profile_flags(compile_, default_profile=None)
    compile_.add_argument("--timeout", type=int, default=3600, help="SGLang's --timeout, seconds")
    compile_.add_argument("--force", action="store_true", help="compile even if the marker matches")
    compile_.set_defaults(handler=_compile)

    preflight = sub.add_parser("preflight", help="check weights, argv, port, GPUs and cache")
    _add_profile_flags(preflight, default_profile=None)
    preflight.add_argument("--marker", action="store_true", help="also require the compile marker")
    preflight.set_defaults(handler=_preflight)


def _resolve(args: argparse.Namespace) -> tuple[Profile, SGLangLaunch, list[str] | None]:
    profile = get_profile(args.profile)
    fake = bool(args.fake)
    launch = profile.launch.with_overrides(
        model_path=args.model_path,
        served_model_name=args.served_model_name,
        dg_cache_dir=args.dg_cache_dir,
        port=getattr(args, "port", None),
        host="127.0.0.1" if fake or args.engine_command else None,
    )
    if args.engine_command:
        engine: list[str] | None = shlex.split(args.engine_command)
    elif fake:
        engine = [*FAKE_ENGINE, *args.fake_arg]
    else:
        engine = None
    return profile, launch, engine


def _preflight_for(
    args: argparse.Namespace, profile: Profile, launch: SGLangLaunch, *, marker: bool = False
) -> PreflightReport:
    real = bool(not args.fake and not args.engine_command)
    return run_preflight(
        launch,
        launch.serve_argv("<api-key>"),  # the real SGLang argv, even when a fake runs
        gpu_type=profile.gpu,
        weights=real,
        gpus=real,
        dg_cache=real and profile.uses_deepgemm,
        marker=marker,
        parser_python=args.sglang_python,
    )


def _serve(args: argparse.Namespace) -> int:
    profile, launch, engine = _resolve(args)
    api_key = read_api_key(args.api_key_env)
    argv = launch.serve_argv(api_key, engine=engine)
    redact = Redactor([api_key] if api_key else [])
    if args.dry_run:
        print("argv:", redact(shlex.join(argv)))
        print("environment:")
        for key, value in sorted(launch.environment().items()):
            print(f"  {key}={value}")
        report = _preflight_for(args, profile, launch)
        print(report.render())
        return 0 if report.ok else EXIT_CONFIG
    if not args.skip_preflight:
        report = _preflight_for(args, profile, launch)
        for line in report.render().splitlines():
            print(f"[supervisor] {line}", flush=True)
        if not report.ok:
            return EXIT_CONFIG
    args.port = launch.port
    config = config_from_args(
        args,
        LaunchSpec(argv=tuple(argv), env=launch.environment()),
        warmups=profile.warmups,
        api_key=api_key,
        ready_line=READY_LINE,
        phase_markers=PHASE_MARKERS,
        startup_timeout=profile.startup_timeout_s,
    )
    if getattr(args, "demo", False):
        print(
            f"[supervisor] demo: profile {profile.name} on the fake engine at "
            f"http://127.0.0.1:{launch.port}/v1 (Ctrl-C stops it)",
            flush=True,
        )
    return anyio.run(
        lambda: supervise(config, metrics_port=args.metrics_port, classify=classify_crash)
    )


def _compile(args: argparse.Namespace) -> int:
    from supervisor.engines.deepgemm import compile_deepgemm

    profile, launch, engine = _resolve(args)
    if not profile.uses_deepgemm:
        raise ConfigError(f"profile {profile.name} does not use DeepGEMM: nothing to compile")
    if args.fake:
        engine = [*FAKE_COMPILE, *args.fake_arg]
    if not args.fake and not args.engine_command:
        report = run_preflight(
            launch,
            launch.compile_argv(args.timeout),
            gpu_type=profile.gpu,
            port=True,
            parser_python=args.sglang_python,
        )
        print(report.render(), flush=True)
        if not report.ok:
            return EXIT_CONFIG
    result = anyio.run(
        lambda: compile_deepgemm(launch, timeout_s=args.timeout, engine=engine, force=args.force)
    )
    return 0 if result.ok else EXIT_STARTUP


def _preflight(args: argparse.Namespace) -> int:
    profile, launch, _ = _resolve(args)
    report = _preflight_for(args, profile, launch, marker=args.marker)
    print(report.render())
    return 0 if report.ok else EXIT_CONFIG
