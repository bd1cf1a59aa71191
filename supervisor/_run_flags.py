"""The flags of the three watchers added to `run`: hang detection, cluster membership, rehearsal.

Each group has an adder (so a deployment command can offer the same flags: `serve` calls them on
its own parser) and a builder that turns the parsed flags into the policy object of the config.
Builders read the namespace with defaults, so a command that did not add a group gets today's
behaviour (progress on with SGLang's defaults, no cluster, no snapshot). A flag is taken when
given and only then; a combination that cannot work is one `ConfigError` line naming the flags
(exit 2), never a silent default.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ._cluster import ClusterSpec, WorkerRules, parse_address
from ._errors import ConfigError
from ._flags import addresses, index, seconds
from ._memory import MemoryPolicy, parse_size
from ._progress import ProgressPolicy
from ._snapshot import SnapshotPolicy

__all__ = [
    "DEFAULT_REHEARSAL_PAUSE_S",
    "add_cluster_flags",
    "add_progress_flags",
    "add_snapshot_flags",
    "cluster_from_args",
    "memory_from_args",
    "progress_from_args",
    "rehearsal_pause_from_args",
    "snapshot_from_args",
]

#: Longer than SGLang's 5 s keep-alive, so a pool kept across the pause would be stale after it.
DEFAULT_REHEARSAL_PAUSE_S = 10.0


def _get(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


# ----------------------------------------------------------------------------- progress
def add_progress_flags(p: argparse.ArgumentParser) -> None:
    policy = ProgressPolicy()
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no hang detection by the engine's metrics (the liveness probe remains)",
    )
    p.add_argument(
        "--stall-window",
        type=seconds(),
        default=None,
        help="seconds of waiting work with no progress counter moving that make a stall "
        f"(default {policy.stall_window:g})",
    )
    p.add_argument(
        "--progress-interval",
        type=seconds(),
        default=None,
        help=f"seconds between scrapes of the engine's metrics (default {policy.interval:g})",
    )
    p.add_argument(
        "--memory-high",
        type=_size,
        default=None,
        metavar="SIZE",
        help="the tree's memory (PSS plus /dev/shm) past which the server is drained and the "
        "supervisor exits 1, before the OOM killer (e.g. 300M, 40G; default 90%% of the "
        "container's cgroup limit, off where there is none)",
    )
    p.add_argument("--no-memory-watch", action="store_true", help="no planned recycle for memory")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def memory_from_args(args: argparse.Namespace) -> MemoryPolicy:
    """`--memory-high SIZE` (else 90 % of the container's limit, if any); `--no-memory-watch`."""
    return MemoryPolicy(
        enabled=not _get(args, "no_memory_watch"), high_bytes=_get(args, "memory_high")
    )


def progress_from_args(
    args: argparse.Namespace, engine: ProgressPolicy | None = None
) -> ProgressPolicy:
    """The flags over the engine's progress watch (what it reads: `EngineTraits.progress`);
    with no engine's, a policy that reads nothing, so the watch stays off."""
    default = engine if engine is not None else ProgressPolicy()
    interval = _get(args, "progress_interval")
    window = _get(args, "stall_window")
    try:
        return dataclasses.replace(
            default,
            enabled=not _get(args, "no_progress"),
            interval=default.interval if interval is None else interval,
            # Below the interval, so the scrape grid holds (docs/PROGRESS.md).
            timeout=default.timeout if interval is None else min(default.timeout, interval),
            stall_window=default.stall_window if window is None else window,
        )
    except ConfigError as exc:
        raise ConfigError(f"--stall-window/--progress-interval: {exc}") from None


# ----------------------------------------------------------------------------- cluster
def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    spec = ClusterSpec  # defaults are read from the class, no instance needed
    p.add_argument(
        "--cluster-rank",
        type=index,
        default=None,
        metavar="R",
        help="this rank of a multi-node cluster (0 serves HTTP; >= 1 runs schedulers only)",
    )
    p.add_argument(
        "--cluster-peers",
        type=addresses,
        default=None,
        metavar="HOST:PORT,HOST:PORT",
        help="every rank's status address, in rank order; this rank serves on the port of its own",
    )
    p.add_argument(
        "--peer-timeout",
        type=seconds(),
        default=None,
        help=f"a peer seen before and silent this long is lost (default {spec.peer_timeout:g})",
    )
    p.add_argument(
        "--join-timeout",
        type=seconds(),
        default=None,
        help=f"a peer never seen within this is a failed start (default {spec.join_timeout:g})",
    )
    p.add_argument(
        "--peer-poll-interval",
        type=seconds(),
        default=None,
        help=f"seconds between polls of each peer (default {spec.poll_interval:g})",
    )


def cluster_from_args(args: argparse.Namespace, worker: WorkerRules) -> ClusterSpec | None:
    """The cluster the flags name, with the engine's worker rules (None: one node)."""
    rank, peers = _get(args, "cluster_rank"), _get(args, "cluster_peers")
    timing = {
        name: value
        for name, value in (
            ("peer_timeout", _get(args, "peer_timeout")),
            ("join_timeout", _get(args, "join_timeout")),
            ("poll_interval", _get(args, "peer_poll_interval")),
        )
        if value is not None
    }
    if rank is None and peers is None:
        if timing:
            flags = ", ".join("--" + n.replace("_", "-") for n in timing)
            raise ConfigError(f"{flags} needs --cluster-rank and --cluster-peers")
        return None
    if rank is None or peers is None:
        raise ConfigError("--cluster-rank and --cluster-peers go together: give both or neither")
    if rank >= len(peers):
        raise ConfigError(
            f"--cluster-rank {rank} is outside the {len(peers)} ranks of --cluster-peers "
            f"(ranks 0-{len(peers) - 1})"
        )
    status_port = parse_address(peers[rank])[1]
    for flag in ("port", "metrics_port"):
        if _get(args, flag) == status_port:
            raise ConfigError(
                f"--cluster-peers gives rank {rank} the status port {status_port}, which is "
                f"also --{flag.replace('_', '-')}; choose another"
            )
    try:
        return ClusterSpec(
            rank=rank,
            size=len(peers),
            peers=peers,
            status_port=status_port,
            worker=worker,
            **timing,
        )
    except ConfigError as exc:
        raise ConfigError(f"--cluster-*: {exc}") from None


# ----------------------------------------------------------------------------- snapshot
def add_snapshot_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--snapshot-rehearsal",
        action="store_true",
        help="once serving, sleep, freeze the whole tree (SIGSTOP) as a snapshot would, wake, "
        "verify a generation, and go on serving; a failed wake exits 3",
    )
    p.add_argument(
        "--snapshot-pause",
        type=seconds(),
        default=None,
        help=f"seconds the tree stays frozen (default {DEFAULT_REHEARSAL_PAUSE_S:g})",
    )
    p.add_argument(
        "--snapshot-health-timeout",
        type=seconds(),
        default=None,
        help=f"seconds to wait for health after resume (default {SnapshotPolicy.health_timeout:g})",
    )


def rehearsal_pause_from_args(args: argparse.Namespace) -> float | None:
    """The rehearsal's pause when `--snapshot-rehearsal` is given, else None."""
    pause = _get(args, "snapshot_pause")
    if not _get(args, "snapshot_rehearsal"):
        if pause is not None:
            raise ConfigError("--snapshot-pause needs --snapshot-rehearsal")
        return None
    return DEFAULT_REHEARSAL_PAUSE_S if pause is None else float(pause)


def snapshot_from_args(args: argparse.Namespace) -> SnapshotPolicy | None:
    """A policy when a rehearsal or a snapshot setting was asked for, else None."""
    health = _get(args, "snapshot_health_timeout")
    if health is None:
        return SnapshotPolicy() if _get(args, "snapshot_rehearsal") else None
    if not _get(args, "snapshot_rehearsal"):
        raise ConfigError("--snapshot-health-timeout needs --snapshot-rehearsal")
    return SnapshotPolicy(
        health_timeout=health, health_interval=min(SnapshotPolicy.health_interval, health)
    )
