"""SGLang 0.5.23's multi-node facts that the core's cluster needs, handed in as values.

How its worker ranks stop (`SGLANG_WORKER_RULES`), and a status port it will not bind. The
supervisor's status server (`supervisor._cluster_status`) binds before the engine starts, so
the engine's random ports skip it; only the fixed ones SGLang derives from `--port` and
`--dist-init-addr` can collide, and they are an SGLang fact: docs/CLUSTER.md lists them with the
source of each, `tests/test_cluster.py` checks them.
"""

from __future__ import annotations

from typing import TypeGuard

from supervisor import ConfigError, WorkerRules
from supervisor.engines.sglang_stop import SCHEDULER_EXIT_S

__all__ = [
    "SGLANG_WORKER_RULES",
    "STATUS_PORT_BASE",
    "check_status_port",
    "default_status_port",
    "derived_ports",
]

#: A worker's main process logs SIGTERM and ignores it (`engine.py:Engine._launch_subprocesses`);
#: its schedulers stop on rank 0's ShutdownReq broadcast, which a worker may wait for past rank
#: 0's own drain, and then it exits 0 (`launch_server.py`, `finally`): its only exit 0.
SGLANG_WORKER_RULES = WorkerRules(
    sigterm=False, shutdown_grace=SCHEDULER_EXIT_S, exit_zero_is_stop=True
)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# 21000-21999: below the window SGLang draws its NCCL port from at random (22000-29999,
# `get_free_port_below_ephemeral`) and below Linux's ephemeral range (32768+, where bind(0),
# `get_open_port` and outgoing connections land), above the well-known ports.
STATUS_PORT_BASE = 21000
_STATUS_PORT_LAST = 21999

# SGLang 0.5.23 `server_args.py`: ZMQ_TCP_PORT_DELTA, DP_ATTENTION_HANDSHAKE_PORT_DELTA and the
# six fixed ports of `PortArgs.init_new` (NUM_DERIVED_PORTS; one more per DP rank with the Rust
# server, covered here by `rust_slots`).
_ZMQ_DELTA = 233
_HANDSHAKE_DELTA = 13
_NUM_DERIVED = 6


def derived_ports(http_port: int, dist_init_port: int, *, rust_slots: int = 32) -> dict[int, str]:
    """Every fixed port SGLang 0.5.23 derives from `--port` and `--dist-init-addr`, and why.

    Random ports (the NCCL port, ZMQ sockets bound with `bind_to_random_port`) are probed by
    bind, so a status port bound before the engine starts is skipped by them; only these fixed
    ones can collide.
    """
    for name, port in (("--port", http_port), ("--dist-init-addr port", dist_init_port)):
        if not _is_int(port) or not 1 <= port <= 65535:
            raise ConfigError(f"{name} {port!r} is not in 1-65535")
    num = _NUM_DERIVED + rust_slots
    ports: dict[int, str] = {}

    def add(first: int, count: int, why: str) -> None:
        for p in range(first, first + count):
            if 1 <= p <= 65535:
                ports.setdefault(p, why)

    add(http_port, 1, "--port (HTTP server on rank 0, dummy health server on ranks >= 1)")
    add(http_port + 1, 1, "--port + 1 (HTTP sidecar in gRPC mode)")
    add(http_port + 10000, 1, "--port + 10000 (legacy gRPC port)")
    add(http_port + _HANDSHAKE_DELTA, 1, "--port + 13 (DP-attention handshake, no dist-init)")
    # Near 65535 SGLang counts down instead of up; reserving both directions is harmless.
    add(http_port + _ZMQ_DELTA, num + 1, "--port + 233 (ZMQ ports without --dist-init-addr)")
    if http_port + _ZMQ_DELTA + num > 65535:
        add(http_port - _ZMQ_DELTA, num + 1, "--port - 233 (ZMQ ports without --dist-init-addr)")
    add(dist_init_port, 1, "the dist-init port (torch rendezvous store)")
    add(dist_init_port + _HANDSHAKE_DELTA, 1, "dist-init port + 13 (DP-attention handshake)")
    add(dist_init_port + 1, num, "the dist-init port's ZMQ block (PortArgs.init_new)")
    if dist_init_port + num > 65535:
        add(dist_init_port - num - 1, num, "the dist-init port's ZMQ block (PortArgs.init_new)")
    return ports


def default_status_port(http_port: int, dist_init_port: int) -> int:
    """The first port from 21000 that SGLang does not derive; the same on every rank."""
    taken = derived_ports(http_port, dist_init_port)
    for port in range(STATUS_PORT_BASE, _STATUS_PORT_LAST + 1):
        if port not in taken:
            return port
    raise ConfigError(  # pragma: no cover - SGLang derives far fewer than 1000 ports
        f"no free status port in {STATUS_PORT_BASE}-{_STATUS_PORT_LAST}; pass one explicitly"
    )


def check_status_port(status_port: int, http_port: int, dist_init_port: int) -> None:
    """Raise ConfigError if `status_port` is one SGLang will bind itself."""
    why = derived_ports(http_port, dist_init_port).get(status_port)
    if why is not None:
        raise ConfigError(
            f"status port {status_port} collides with SGLang's {why}; "
            f"use {default_status_port(http_port, dist_init_port)}"
        )
