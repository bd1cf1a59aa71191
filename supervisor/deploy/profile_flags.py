"""The profile commands' shared flags, and the profile, launch and engine they resolve to.

Split from `commands` (which wires the subcommands) because `serve`, `demo`, `compile` and
`preflight` all take the same flags and resolve them the same way: a built-in profile or a TOML
file, overrides of its launch, this node's place in a cluster, and the engine command (SGLang,
the built-in fake, or `--engine-command`). One module says how, so every command agrees.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from supervisor import ConfigError
from supervisor.cli import env_name, index, port, seconds, text
from supervisor.deploy.defaults import DEFAULT_PROFILE
from supervisor.deploy.dummy_weights import with_dummy_weights
from supervisor.deploy.ranks import NodeLaunch, for_node, parse_peers
from supervisor.engines.sglang import SGLangLaunch
from supervisor.profiles import Profile, get_profile, profile_names
from supervisor.profiles.files import load_profile_file

__all__ = [
    "FAKE_COMPILE",
    "FAKE_ENGINE",
    "add_demo_flags",
    "add_profile_flags",
    "chosen_profile",
    "resolve",
    "resolve_node",
]

FAKE_ENGINE = [sys.executable, "-m", "supervisor.testing.fake_sglang"]
FAKE_COMPILE = [*FAKE_ENGINE, "--fake-mode", "compile"]


def add_profile_flags(p: argparse.ArgumentParser, *, default_profile: str | None) -> None:
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


def add_demo_flags(
    demo: argparse.ArgumentParser, add_supervision_flags: Callable[..., None]
) -> None:
    """Only what a local demo needs; every other setting keeps its `serve` default."""
    everything = argparse.ArgumentParser(add_help=False)
    add_profile_flags(everything, default_profile=DEFAULT_PROFILE)
    add_supervision_flags(everything, port_required=False)
    demo.set_defaults(**vars(everything.parse_args([])))
    demo.add_argument("--port", type=port(), default=None, help="default 8000")
    _add_profile_choice(demo, default_profile=DEFAULT_PROFILE)
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


def resolve(args: argparse.Namespace) -> tuple[Profile, SGLangLaunch, list[str] | None]:
    profile, node, engine = resolve_node(args)
    return profile, node.launch, engine


def resolve_node(args: argparse.Namespace) -> tuple[Profile, NodeLaunch, list[str] | None]:
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
