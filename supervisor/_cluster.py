"""A multi-node cluster, one supervisor per SGLang rank: where the ranks are and how they watch.

SGLang's ranks >= 1 cannot speak for themselves: their `/health` is a dummy that always answers
200, they ignore SIGTERM, and a lost rank leaves the others blocked in a collective with no error
and no log line. So every rank's supervisor publishes a small status document on a side port and
polls its peers'; when any rank's engine dies, every supervisor learns it within seconds and ends
its container, and the platform replaces the cluster whole. docs/CLUSTER.md tells the story.

Three modules, one job each: this one holds the settings (`ClusterSpec`, validated on creation)
(a status port clear of the ports SGLang derives is the engine room's to choose:
`engines/sglang_ports.py`); `_cluster_peers` the status document and the decisions, without I/O;
`_cluster_status` the wire (server, polls).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ._errors import ConfigError

__all__ = ["ClusterSpec", "WorkerRules", "format_address", "parse_address"]


# ----------------------------------------------------------------------------- addresses
def parse_address(address: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 in brackets, as SGLang's `--dist-init-addr`); ValueError if not."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 address needs brackets and a port: [fd00::1]:21000")
        ipaddress.IPv6Address(host)  # raises ValueError
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError("expected host:port (IPv6 in brackets: [fd00::1]:21000)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not in 1-65535")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """`host:port`, bracketing an IPv6 literal (Modal's `container_ips()` are IPv6 by default)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"cluster {name} must be a positive number of seconds, got {value!r}")


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class WorkerRules:
    """How the engine's worker ranks (>= 1) stop: a fact of the engine, handed in by its room.

    The defaults assume nothing: a worker is stopped by SIGTERM like rank 0, and an exit is an
    exit. SGLang's (`engines/sglang_traits.SGLANG_WORKER_RULES`) differ on all three counts.
    """

    #: Whether a worker's main process stops on SIGTERM (SGLang's only logs it).
    sigterm: bool = True
    #: Seconds a worker waits past its own stop timeout for rank 0's shutdown broadcast.
    shutdown_grace: float = 0.0
    #: Whether a worker's engine exiting with code 0 means the cluster is stopping.
    exit_zero_is_stop: bool = False


@dataclass(frozen=True)
class ClusterSpec:
    """Where this rank stands in the cluster and how it watches the others (validated on creation).

    `peers` holds the status address of every rank, index = rank, this rank's included (the same
    list on every rank). Defaults, argued in docs/CLUSTER.md: a poll a second; a peer seen before
    and silent for `peer_timeout` (10 s) is lost; a peer never seen within `join_timeout` (600 s,
    the spread between ranks reaching their supervisor: downloads and compiles run before it) is
    a startup failure; one poll waits at most `request_timeout` (2 s).
    """

    rank: int
    size: int
    peers: tuple[str, ...]
    status_port: int
    poll_interval: float = 1.0
    peer_timeout: float = 10.0
    join_timeout: float = 600.0
    request_timeout: float = 2.0
    worker: WorkerRules = field(default_factory=WorkerRules)

    def __post_init__(self) -> None:
        object.__setattr__(self, "peers", tuple(self.peers))
        if not _is_int(self.size) or self.size < 2:
            raise ConfigError(
                f"a cluster needs at least 2 ranks, got size={self.size!r}; "
                "one node runs the plain supervisor"
            )
        if not _is_int(self.rank) or not 0 <= self.rank < self.size:
            raise ConfigError(
                f"rank {self.rank!r} is outside a cluster of {self.size} (ranks 0-{self.size - 1})"
            )
        if len(self.peers) != self.size:
            raise ConfigError(
                f"peers lists {len(self.peers)} addresses for a cluster of {self.size}; "
                "give one host:port per rank, in rank order"
            )
        seen: dict[tuple[str, int], int] = {}
        for rank, address in enumerate(self.peers):
            try:
                parsed = parse_address(str(address))
            except ValueError as exc:
                raise ConfigError(f"peer {rank} address {address!r} is invalid: {exc}") from None
            if parsed in seen:
                raise ConfigError(
                    f"ranks {seen[parsed]} and {rank} share the status address {address}; "
                    "every rank needs its own"
                )
            seen[parsed] = rank
        own_port = parse_address(self.peers[self.rank])[1]
        if self.status_port != own_port:
            raise ConfigError(
                f"status_port {self.status_port!r} differs from this rank's peer address "
                f"{self.peers[self.rank]}; peers poll the port listed in peers[{self.rank}]"
            )
        if not isinstance(self.worker, WorkerRules):
            raise ConfigError(f"cluster worker must be WorkerRules, got {self.worker!r}")
        grace = self.worker.shutdown_grace
        if not isinstance(grace, (int, float)) or not math.isfinite(grace) or grace < 0:
            raise ConfigError(f"worker shutdown_grace must be >= 0 seconds, got {grace!r}")
        for name in ("poll_interval", "peer_timeout", "join_timeout", "request_timeout"):
            _positive(name, getattr(self, name))
        if self.request_timeout >= self.peer_timeout:
            raise ConfigError(
                f"cluster request_timeout ({self.request_timeout:g} s) must be shorter than "
                f"peer_timeout ({self.peer_timeout:g} s): one slow poll must not decide a death"
            )
        if self.peer_timeout < 2 * self.poll_interval:
            raise ConfigError(
                f"cluster peer_timeout ({self.peer_timeout:g} s) must cover at least two polls "
                f"(poll_interval {self.poll_interval:g} s)"
            )
        if self.join_timeout < self.peer_timeout:
            raise ConfigError(
                f"cluster join_timeout ({self.join_timeout:g} s) must be at least "
                f"peer_timeout ({self.peer_timeout:g} s)"
            )

    @classmethod
    def from_hosts(
        cls, rank: int, hosts: Sequence[str], status_port: int, **timing: Any
    ) -> ClusterSpec:
        """Build the spec from one host per rank (say, Modal's `Cluster.container_ips()`)."""
        return cls(
            rank=rank,
            size=len(hosts),
            peers=tuple(format_address(h, status_port) for h in hosts),
            status_port=status_port,
            **timing,
        )

    @property
    def peer_ranks(self) -> tuple[int, ...]:
        """Every rank but this one: the ones this supervisor watches."""
        return tuple(r for r in range(self.size) if r != self.rank)

    @property
    def linger(self) -> float:
        """How long a dying rank keeps publishing `dead` before its container exits.

        Long enough for every peer to finish one poll that started after the failure was
        published (one interval for the poll to start, plus one request's deadline, which an
        answer from a supervisor's own event loop meets in milliseconds), so the peers learn the
        original failed rank and its reason instead of finding a closed port 10 s later. Kept
        this short so that the failed rank's container is gone within 5 s of its engine's death.
        """
        return self.poll_interval + self.request_timeout
