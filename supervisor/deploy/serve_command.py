"""`serve` and `demo`: a profile under the supervisor, from the command line, until it stops.

Split from `commands` (which wires the subcommands) because serving is the one command with a
life of its own: the keys (a 0600 file, never the argv), the dry run, the model build, the
preflight, the config handed to the core and the demo's one printing of its key. `compile` and
`preflight` share only its preflight (`preflight_for`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import secrets
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import anyio

from supervisor import ConfigError, LaunchSpec, WarmupPayload
from supervisor.cli import (
    EXIT_CONFIG,
    config_from_args,
    read_api_key,
    read_warmup_file,
    rehearsal_pause_from_args,
    supervise,
)
from supervisor.deploy.dummy_weights import DUMMY_WEIGHTS_BANNER
from supervisor.deploy.profile_flags import resolve_node
from supervisor.deploy.ranks import NodeLaunch
from supervisor.engines.preflight import PreflightReport, run_preflight
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_causes import CAUSE_HINTS, classify_crash
from supervisor.engines.sglang_keys import fresh_admin_key, key_file
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_release import PHASE_MARKERS, READY_LINE
from supervisor.engines.sglang_timings import TIMING_READERS
from supervisor.lowlevel import LeadPhases, Redactor
from supervisor.profiles import Profile

__all__ = ["merge_warmups", "preflight_for", "serve_profile"]


def preflight_for(
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


def serve_profile(args: argparse.Namespace) -> int:
    demo = getattr(args, "demo", False)
    extra_warmups = read_warmup_file(args.warmup)  # a bad file is one line, before anything runs
    profile, node, engine = resolve_node(args)
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
        report = preflight_for(args, profile, launch)
        print(report.render())
        if node.cluster is not None:
            spec = node.cluster
            print(f"cluster: rank {spec.rank} of {spec.size}; status peers {', '.join(spec.peers)}")
        if not report.ok:
            print("dry run: serve would stop here with exit 2 (the failed checks above)")
        return 0  # the command was built and shown: the dry run did its job
    lead = LeadPhases()
    if profile.model_builder and not args.fake and not _has_model(launch):
        with lead.phase("model_build"):  # only a build is a phase; finding the model is not
            _build_model(profile, launch)
    if not args.skip_preflight:
        with lead.phase("preflight"):
            report = preflight_for(args, profile, launch)
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
    config = dataclasses.replace(
        config, admin_api_key=admin_key, caches=launch.caches(), lead_phases=tuple(lead.phases)
    )
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


def _has_model(launch: SGLangLaunch) -> bool:
    return os.path.exists(os.path.join(launch.model_path, "config.json"))


def _build_model(profile: Profile, launch: SGLangLaunch) -> None:
    """Make the profile's model in a directory that has none (the tiny CPU model: seconds)."""
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
