"""`profile list`, `profile show NAME` and `profile check PATH`: profiles as files.

`show` prints a built-in profile as the TOML file `--profile-file` reads, so a new model starts
from a working deployment rather than a blank page; `check` loads a file with every rule a
built-in profile obeys (exit 2 and one line if it breaks one) and prints what it would deploy.
SGLang's parser is the preflight's job: `preflight --profile-file PATH` runs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from supervisor.cli import text
from supervisor.profiles import get_profile, profile_names
from supervisor.profiles.files import dump_profile, load_profile_file

__all__ = ["add_profile_command"]


def add_profile_command(parser: Callable[..., Any]) -> None:
    profile = parser(
        "profile",
        "list, show or check model profiles (TOML files)",
        "Built-in profiles as TOML files: `show NAME > mine.toml`, edit it, `check mine.toml`, "
        "then serve, preflight, compile or deploy it with --profile-file mine.toml.",
    )
    verbs = profile.add_subparsers(dest="profile_verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="the built-in profiles, one a line")
    listing.set_defaults(handler=_list)
    show = verbs.add_parser("show", help="print a built-in profile as a TOML file")
    show.add_argument("name", choices=profile_names(), metavar="NAME")
    show.set_defaults(handler=_show)
    check = verbs.add_parser("check", help="load a profile file with every rule; exit 2 if bad")
    check.add_argument("path", type=text, metavar="PATH.toml")
    check.set_defaults(handler=_check)


def _list(args: argparse.Namespace) -> int:
    for name in profile_names():
        print(f"{name:24} {get_profile(name).description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(dump_profile(get_profile(args.name)), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    p = load_profile_file(args.path)  # ConfigError: one line, exit 2 (the CLI's seam)
    tp = p.launch.tp_size
    print(
        f"{args.path}: profile {p.name} ok: {p.hf_repo} on {p.nnodes} x {p.gpu_count} {p.gpu} "
        f"(tp {tp}), {len(p.warmups)} warmups, snapshot "
        + ("capable" if p.snapshot_capable else f"not capable ({p.snapshot_blocker})")
    )
    return 0
