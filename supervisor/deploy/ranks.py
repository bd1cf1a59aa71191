"""One node of a multi-node profile: its SGLang launch and its place in the supervisors' mesh.

A profile with `nnodes > 1` is a template: rank 0's address is only known once the cluster is up
(Modal's cluster info, or the operator's command line). `for_node` turns it into this node's
launch (`--nnodes N --node-rank R --dist-init-addr HOST:PORT`) and this node's `ClusterSpec`: the
status address of every rank's supervisor, which the peers poll so that one rank's death ends
every rank's container (docs/CLUSTER.md says why a side port and not SGLang's own health).

Status addresses: on Modal every container has its own IP, so every rank uses the same status
port (`default_status_port`, clear of every port SGLang derives). On one host (a local rehearsal
with the fake) the ranks share an IP, so rank R listens on that port + R. Platform bindings pass
the hosts explicitly; the command line takes `--cluster-peers` or assumes one host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from supervisor import ClusterSpec, ConfigError
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_cluster import SGLANG_WORKER_RULES, default_status_port
from supervisor.lowlevel import parse_address

__all__ = ["NodeLaunch", "for_node", "parse_peers"]


@dataclass(frozen=True)
class NodeLaunch:
    """This node's SGLang launch, and its supervisor's cluster spec (None on a single node)."""

    launch: SGLangLaunch
    cluster: ClusterSpec | None


def parse_peers(raw: str) -> tuple[str, ...]:
    """`HOST:PORT,HOST:PORT,...` (IPv6 in brackets), one per rank in rank order."""
    peers = tuple(p.strip() for p in raw.split(",") if p.strip())
    for peer in peers:
        try:
            parse_address(peer)
        except ValueError:
            raise ConfigError(
                f"--cluster-peers: {peer!r} is not HOST:PORT (IPv6 as [addr]:port)"
            ) from None
    return peers


def for_node(
    launch: SGLangLaunch,
    *,
    rank: int | None,
    dist_init_addr: str | None,
    hosts: Sequence[str] | None = None,
    peers: Sequence[str] | None = None,
    status_port: int | None = None,
) -> NodeLaunch:
    """This node's launch and cluster spec; a single-node launch refuses cluster settings.

    `hosts` (one per rank, Modal's container IPs) share one status port; `peers` (explicit
    status addresses) win over `hosts`; with neither, every rank is on rank 0's host.
    """
    if launch.nnodes == 1:
        if rank not in (None, 0) or peers or hosts:
            raise ConfigError(
                "this profile runs on one node: drop --node-rank, --dist-init-addr and "
                "--cluster-peers"
            )
        return NodeLaunch(launch, None)
    if rank is None or dist_init_addr is None:
        raise ConfigError(
            f"this profile runs on {launch.nnodes} nodes: give --node-rank (0..{launch.nnodes - 1})"
            " and --dist-init-addr HOST:PORT (rank 0's address)"
        )
    if not 0 <= rank < launch.nnodes:
        raise ConfigError(f"--node-rank {rank} is not in 0..{launch.nnodes - 1}")
    node = launch.for_rank(rank, dist_init_addr)
    dist_host, dist_port = parse_address(dist_init_addr)
    base = status_port if status_port is not None else default_status_port(launch.port, dist_port)
    if peers:
        addresses = tuple(peers)
    elif hosts:
        addresses = tuple(_address(h, base) for h in hosts)
    else:
        addresses = tuple(_address(dist_host, base + r) for r in range(launch.nnodes))
    if len(addresses) != launch.nnodes:
        raise ConfigError(
            f"--cluster-peers names {len(addresses)} addresses; the profile has {launch.nnodes}"
            " nodes (one status address per rank, in rank order)"
        )
    spec = ClusterSpec(
        rank=rank,
        size=launch.nnodes,
        peers=addresses,
        status_port=parse_address(addresses[rank])[1],
        worker=SGLANG_WORKER_RULES,
    )
    return NodeLaunch(node, spec)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
