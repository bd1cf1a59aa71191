"""The profile-based subcommands: `serve`, `demo`, `compile` and `preflight`, all by profile.

A profile is a built-in one (`--profile NAME`) or a TOML file (`--profile-file PATH`, see
`supervisor.profiles.files`); `profile show NAME` prints a built-in one as such a file.

`--fake` (or `--engine-command`) swaps `python3 -m sglang.launch_server` for another program that
takes the same flags, such as the built-in fake server, so a whole deployment runs on a laptop.
Even then the preflight checks the real SGLang argv with SGLang's parser where one is available.

`--warmup FILE` adds its payloads to the profile's set (a payload with the name of one of the
profile's replaces it): the profile's set is what the model needs to be warm, the file is what
your traffic needs on top. `demo` takes only the flags a local demo needs, and always runs with
an API key: `--api-key-env`'s when given, else a random one printed once (with the exports that
the examples read) and redacted from everything else, so the examples' "401 without the key"
really is a 401.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

import anyio

from supervisor import ConfigError
from supervisor.cli import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_STARTUP,
    add_progress_flags,
    add_snapshot_flags,
    count,
    env_name,
)
from supervisor.deploy.profile_command import add_profile_command
from supervisor.deploy.profile_flags import (
    FAKE_COMPILE,
    add_demo_flags,
    add_profile_flags,
    resolve,
)
from supervisor.deploy.serve_command import preflight_for, serve_profile
from supervisor.engines.preflight import run_preflight

__all__ = ["add_commands"]


def add_commands(sub: Any, add_supervision_flags: Callable[..., None]) -> None:
    def parser(name: str, summary: str, description: str, **kwargs: Any) -> Any:
        return sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, 78),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    serve = parser(
        "serve",
        "serve a model profile under the supervisor",
        "Serve a model profile (SGLang, or --fake / --engine-command) under the supervisor: "
        "preflight, then run, warm up and watch it until stopped or dead. --warmup adds "
        "payloads to the profile's warmup set.",
        epilog=EXIT_CODES,
    )
    add_profile_flags(serve, default_profile=None)
    add_supervision_flags(serve, port_required=False)
    add_progress_flags(serve)
    add_snapshot_flags(serve)
    serve.add_argument(
        "--admin-api-key-env",
        type=env_name,
        default=None,
        metavar="NAME",
        help="read SGLang's admin key from this variable (default: a random key for this run, "
        "known to the supervisor only: no client key opens an admin route)",
    )
    serve.add_argument(
        "--dry-run",
        action="store_true",
        help="print argv, env and the preflight, then exit 0 (a failed preflight is shown, "
        "not an error; exit 2 only when the command itself cannot be built)",
    )
    serve.add_argument("--skip-preflight", action="store_true")
    serve.set_defaults(handler=serve_profile)

    demo = parser(
        "demo",
        "the GLM-5.1 profile on the fake engine, on localhost",
        "Run a profile (GLM-5.1 by default) on the built-in fake SGLang engine on 127.0.0.1, "
        "under the supervisor, with an API key. Ctrl-C stops it.",
        epilog=EXIT_CODES,
    )
    add_demo_flags(demo, add_supervision_flags)
    demo.set_defaults(
        handler=serve_profile, fake=True, dry_run=False, skip_preflight=False, demo=True
    )

    compile_ = parser(
        "compile",
        "compile DeepGEMM kernels for a profile",
        "Compile a profile's DeepGEMM kernels into its cache, under the supervisor; skipped when "
        "the cache's marker matches this SGLang, model and TP size.",
    )
    add_profile_flags(compile_, default_profile=None)
    compile_.add_argument("--timeout", type=count, default=3600, help="SGLang's --timeout, seconds")
    compile_.add_argument("--force", action="store_true", help="compile even if the marker matches")
    compile_.set_defaults(handler=_compile)

    preflight = parser(
        "preflight",
        "check weights, argv, port, GPUs and cache",
        "Check in seconds what would fail a fifteen-minute cold start: the argv against SGLang's "
        "parser, the weights, the port, the GPUs and the DeepGEMM cache. Exit 2 if any fails.",
    )
    add_profile_flags(preflight, default_profile=None)
    preflight.add_argument("--marker", action="store_true", help="also require the compile marker")
    preflight.set_defaults(handler=_preflight)

    add_profile_command(parser)


def _compile(args: argparse.Namespace) -> int:
    from supervisor.engines.deepgemm import compile_deepgemm

    profile, launch, engine = resolve(args)
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
    profile, launch, _ = resolve(args)
    report = preflight_for(args, profile, launch, marker=args.marker)
    print(report.render())
    return 0 if report.ok else EXIT_CONFIG
