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
import dataclasses
import functools
import os
import secrets
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from supervisor._cli import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_STARTUP,
    config_from_args,
    read_api_key,
    read_warmup_file,
    supervise,
)
from supervisor._config import LaunchSpec, WarmupPayload
from supervisor._errors import ConfigError
from supervisor._flags import count, env_name, index, port, seconds, text
from supervisor._logs import Redactor
from supervisor._run_flags import add_progress_flags, add_snapshot_flags, rehearsal_pause_from_args
from supervisor.deploy.dummy_weights import DUMMY_WEIGHTS_BANNER, with_dummy_weights
from supervisor.deploy.profile_command import add_profile_command
from supervisor.deploy.ranks import NodeLaunch, for_node, parse_peers
from supervisor.engines.preflight import PreflightReport, run_preflight
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_causes import CAUSE_HINTS, classify_crash
from supervisor.engines.sglang_keys import fresh_admin_key, key_file
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_release import PHASE_MARKERS, READY_LINE
from supervisor.engines.sglang_timings import TIMING_READERS
from supervisor.profiles import Profile, get_profile, profile_names
from supervisor.profiles.files import load_profile_file

__all__ = ["add_commands"]

FAKE_ENGINE = [sys.executable, "-m", "supervisor.testing.fake_sglang"]
FAKE_COMPILE = [*FAKE_ENGINE, "--fake-mode", "compile"]


def _add_profile_flags(p: argparse.ArgumentParser, *, default_profile: str | None) -> None:
    _add_profile_choice(p, default_profile=default_profile)
    p.add_argument(
        "--model-path", type=text, default=None, help="override the profile's weights directory"
    )
    p.add_argument("--served-model-name", type=text, default=None)
    p.add_argument("--dg-cache-dir", type=text, default=None, help="override SGLANG_DG_CACHE_DIR")
    p.add_argument(
        "--engine-command",
        type=text,
        default=None,
        help="run this instead of `python3 -m sglang.launch_server` (same flags follow)",
    )
    p.add_argument("--fake", action="store_true", help="run the built-in fake SGLang server")
    _add_fake_arg(p)
    p.add_argument(
        "--sglang-python", type=text, default=None, help="a Python with SGLang, for the parse check"
    )
    p.add_argument(
        "--dummy-weights",
        action="store_true",
        help="--load-format dummy: random weights, no weights preflight, warmups only warn",
    )
    nodes = p.add_argument_group("multi-node profiles (one command per node)")
    nodes.add_argument("--node-rank", type=index, default=None, help="this node's rank, from 0")
    nodes.add_argument(
        "--dist-init-addr", type=text, default=None, metavar="HOST:PORT", help="rank 0's address"
    )
    nodes.add_argument(
        "--cluster-peers",
        dest="node_peers",  # not run's `cluster_peers`: here the profile says how many ranks
        type=text,
        default=None,
        metavar="HOST:PORT,...",
        help="every rank's supervisor status address, in rank order (default: all on rank 0's "
        "host, ports from 21000 up by rank)",
    )


def _add_profile_choice(p: argparse.ArgumentParser, *, default_profile: str | None) -> None:
    """--profile NAME or --profile-file PATH, one of them (or the default name)."""
    which = p.add_mutually_exclusive_group(required=default_profile is None)
    which.add_argument(
        "--profile",
        default=default_profile,
        choices=profile_names(),
        help="a built-in model profile"
        + (f" (default {default_profile})" if default_profile else ""),
    )
    which.add_argument(
        "--profile-file",
        type=text,
        default=None,
        metavar="PATH.toml",
        help="a profile in a TOML file (start from `profile show NAME`)",
    )


def chosen_profile(args: argparse.Namespace) -> Profile:
    """The profile the command line names: a file's when --profile-file is given."""
    path = getattr(args, "profile_file", None)
    return load_profile_file(path) if path else get_profile(args.profile)


def _add_fake_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fake-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to the fake server (e.g. --fake-arg=--fake-load-time=5)",
    )


def _add_demo_flags(
    demo: argparse.ArgumentParser, add_supervision_flags: Callable[..., None]
) -> None:
    """Only what a local demo needs; every other setting keeps its `serve` default."""
    everything = argparse.ArgumentParser(add_help=False)
    _add_profile_flags(everything, default_profile="glm-5.1-fp8")
    add_supervision_flags(everything, port_required=False)
    demo.set_defaults(**vars(everything.parse_args([])))
    demo.add_argument("--port", type=port(), default=None, help="default 8000")
    _add_profile_choice(demo, default_profile="glm-5.1-fp8")
    demo.add_argument(
        "--api-key-env",
        type=env_name,
        default=None,
        metavar="NAME",
        help="take the API key from this variable (default: a random key, printed once)",
    )
    demo.add_argument(
        "--warmup",
        type=text,
        default=None,
        metavar="FILE.json",
        help="payloads to send on top of the profile's warmup set",
    )
    demo.add_argument(
        "--metrics-port",
        type=port(zero=True),
        default=None,
        help="serve the supervisor's own Prometheus metrics on this port",
    )
    demo.add_argument(
        "--stop-timeout",
        type=seconds(zero=True),
        help="seconds to drain after SIGTERM before SIGKILL",
    )
    _add_fake_arg(demo)


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
    _add_profile_flags(serve, default_profile=None)
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
    serve.set_defaults(handler=_serve)

    demo = parser(
        "demo",
        "the GLM-5.1 profile on the fake engine, on localhost",
        "Run a profile (GLM-5.1 by default) on the built-in fake SGLang engine on 127.0.0.1, "
        "under the supervisor, with an API key. Ctrl-C stops it.",
        epilog=EXIT_CODES,
    )
    _add_demo_flags(demo, add_supervision_flags)
    demo.set_defaults(handler=_serve, fake=True, dry_run=False, skip_preflight=False, demo=True)

    compile_ = parser(
        "compile",
        "compile DeepGEMM kernels for a profile",
        "Compile a profile's DeepGEMM kernels into its cache, under the supervisor; skipped when "
        "the cache's marker matches this SGLang, model and TP size.",
    )
    _add_profile_flags(compile_, default_profile=None)
    compile_.add_argument("--timeout", type=count, default=3600, help="SGLang's --timeout, seconds")
    compile_.add_argument("--force", action="store_true", help="compile even if the marker matches")
    compile_.set_defaults(handler=_compile)

    preflight = parser(
        "preflight",
        "check weights, argv, port, GPUs and cache",
        "Check in seconds what would fail a fifteen-minute cold start: the argv against SGLang's "
        "parser, the weights, the port, the GPUs and the DeepGEMM cache. Exit 2 if any fails.",
    )
    _add_profile_flags(preflight, default_profile=None)
    preflight.add_argument("--marker", action="store_true", help="also require the compile marker")
    preflight.set_defaults(handler=_preflight)

    add_profile_command(parser)


def _resolve(args: argparse.Namespace) -> tuple[Profile, SGLangLaunch, list[str] | None]:
    profile, node, engine = _resolve_node(args)
    return profile, node.launch, engine


def _resolve_node(args: argparse.Namespace) -> tuple[Profile, NodeLaunch, list[str] | None]:
    """The profile, this node's launch and cluster place, and the engine command to run."""
    profile = chosen_profile(args)
    fake = bool(args.fake)
    launch = profile.launch.with_overrides(
        model_path=args.model_path,
        served_model_name=args.served_model_name,
        dg_cache_dir=args.dg_cache_dir,
        port=getattr(args, "port", None),
        host="127.0.0.1" if fake or args.engine_command else None,
    )
    if args.engine_command:
        try:
            engine: list[str] | None = shlex.split(args.engine_command)
        except ValueError as exc:
            raise ConfigError(f"--engine-command: cannot split it ({exc})") from None
    elif fake:
        engine = [*FAKE_ENGINE, *args.fake_arg]
    else:
        engine = None
    if getattr(args, "dummy_weights", False):
        launch = with_dummy_weights(launch)
    node = for_node(
        launch,
        rank=getattr(args, "node_rank", None),
        dist_init_addr=getattr(args, "dist_init_addr", None),
        peers=parse_peers(args.node_peers) if getattr(args, "node_peers", None) else None,
    )
    return profile, node, engine


def _preflight_for(
    args: argparse.Namespace, profile: Profile, launch: SGLangLaunch, *, marker: bool = False
) -> PreflightReport:
    real = bool(not args.fake and not args.engine_command)
    return run_preflight(
        launch,
        launch.serve_argv("<api-key>"),  # the real SGLang argv, even when a fake runs
        gpu_type=profile.gpu,
        weights=real and not getattr(args, "dummy_weights", False),
        gpus=real,
        dg_cache=real and profile.uses_deepgemm,
        marker=marker,
        shm_room=real,
        parser_python=args.sglang_python,
        argv_optional=not real,
    )


def merge_warmups(
    profile: Sequence[WarmupPayload], extra: Sequence[WarmupPayload]
) -> tuple[WarmupPayload, ...]:
    """The profile's set plus `extra`; a payload of `extra` replaces the profile's of its name."""
    mine = {p.name for p in extra}
    return (*(p for p in profile if p.name not in mine), *extra)


def _serve(args: argparse.Namespace) -> int:
    demo = getattr(args, "demo", False)
    extra_warmups = read_warmup_file(args.warmup)  # a bad file is one line, before anything runs
    profile, node, engine = _resolve_node(args)
    api_key = read_api_key(args.api_key_env)
    if getattr(args, "dummy_weights", False):
        print(DUMMY_WEIGHTS_BANNER, flush=True)
        args.warmup_warn_only = True
    if demo and api_key is None:
        api_key = f"demo-{secrets.token_urlsafe(18)}"
    admin_key = _admin_key(getattr(args, "admin_api_key_env", None))
    # The keys go in a 0600 file that SGLang (and the fake) read with --config, not on the argv
    # that every user of the host sees in `ps`; another --engine-command may not know --config.
    run = functools.partial(_serve_with, args, profile, node, engine, api_key, admin_key)
    if args.engine_command:
        return run(None, demo, extra_warmups)
    with key_file(api_key, admin_key) as path:
        return run(path, demo, extra_warmups)


def _serve_with(
    args: argparse.Namespace,
    profile: Profile,
    node: NodeLaunch,
    engine: list[str] | None,
    api_key: str | None,
    admin_key: str,
    keys: Path | None,
    demo: bool,
    extra_warmups: Sequence[WarmupPayload],
) -> int:
    launch = node.launch
    argv = launch.serve_argv(api_key, engine=engine, admin_api_key=admin_key, key_file=keys)
    redact = Redactor([k for k in (api_key, admin_key) if k])
    if args.dry_run:
        print("argv:", redact(shlex.join(argv)))
        if keys is not None:
            print(f"keys: in {keys} (mode 0600, removed on exit), not on the command line")
        print("environment:")
        for key, value in sorted(launch.environment().items()):
            print(f"  {key}={value}")
        report = _preflight_for(args, profile, launch)
        print(report.render())
        if node.cluster is not None:
            spec = node.cluster
            print(f"cluster: rank {spec.rank} of {spec.size}; status peers {', '.join(spec.peers)}")
        if not report.ok:
            print("dry run: serve would stop here with exit 2 (the failed checks above)")
        return 0  # the command was built and shown: the dry run did its job
    if profile.model_builder and not args.fake:
        _build_model(profile, launch)
    if not args.skip_preflight:
        report = _preflight_for(args, profile, launch)
        for line in report.render().splitlines():
            print(f"[supervisor] {line}", flush=True)
        if not report.ok:
            return EXIT_CONFIG
    args.port = launch.port
    worker = node.cluster is not None and node.cluster.rank > 0
    config = config_from_args(
        args,
        LaunchSpec(argv=tuple(argv), env=launch.environment()),
        # a worker rank serves no API (SGLang's dummy health only): nothing to warm up there
        warmups=() if worker else merge_warmups(profile.warmups, extra_warmups),
        api_key=api_key,
        ready_line=READY_LINE,
        phase_markers=PHASE_MARKERS,
        timing_readers=TIMING_READERS,
        progress=SGLANG_PROGRESS,
        startup_timeout=profile.startup_timeout_s,
    )
    config = dataclasses.replace(config, admin_api_key=admin_key, caches=launch.caches())
    if node.cluster is not None:
        config = dataclasses.replace(config, cluster=node.cluster)
    if demo:
        base = f"http://127.0.0.1:{launch.port}/v1"
        print(
            f"[supervisor] demo: profile {profile.name} on the fake engine at {base} "
            "(Ctrl-C stops it)",
            flush=True,
        )
        if not args.api_key_env:
            # The one place the key is shown: every other line of output is redacted. The
            # export is a line of its own, quoted, so it pastes into a shell as it is.
            print("[supervisor] demo: the API key of this run, shown once; paste:", flush=True)
            print(
                f"export OPENAI_BASE_URL={shlex.quote(base)} "
                f"OPENAI_API_KEY={shlex.quote(api_key or '')}",
                flush=True,
            )
    rehearsal = rehearsal_pause_from_args(args)
    if rehearsal is not None and not profile.snapshot_capable:
        raise ConfigError(
            f"--snapshot-rehearsal: profile {profile.name} is not snapshot-capable "
            f"({profile.snapshot_blocker})"
        )
    return anyio.run(
        lambda: supervise(
            config,
            metrics_port=args.metrics_port,
            classify=classify_crash,
            hints=CAUSE_HINTS,
            rehearsal_pause_s=rehearsal,
        )
    )


def _admin_key(env: str | None) -> str:
    """The operator's admin key (`--admin-api-key-env`), else a fresh one for this run."""
    if env is None:
        return fresh_admin_key()
    value = os.environ.get(env, "")
    if not value.strip():
        raise ConfigError(f"--admin-api-key-env {env}: the environment variable {env} is not set")
    return value


def _build_model(profile: Profile, launch: SGLangLaunch) -> None:
    """Make the profile's model when its directory has none (the tiny CPU model: seconds)."""
    if os.path.exists(os.path.join(launch.model_path, "config.json")):
        return
    print(f"[supervisor] building {profile.name}'s model in {launch.model_path}", flush=True)
    try:
        done = subprocess.run(
            [launch.python, profile.model_builder, launch.model_path],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"cannot build {profile.name}'s model with {launch.python}: {exc}"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(
            f"building {profile.name}'s model with {launch.python} failed: {last} "
            "(it needs SGLang's environment: run .ci/run, or set SGLANG_PYTHON)"
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
