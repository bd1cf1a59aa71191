"""The cluster's wire: each supervisor serves `GET /status` on a side port and polls its peers'.

The server is one route on `_http_server.serve_http`, not a web framework: it must stay up
whatever connects to it (a port scanner, a stuck client, garbage), so every connection gets a
slot out of a fixed number (one more is answered 503), a deadline and a request-size cap, and no
client can raise into the caller. The client side polls each peer one request at a time through
`_http_client.request` (a hard deadline, a body cap) and hands the answers to the pure
`PeerTracker`.
The HTTP client must not use proxies from the environment (`trust_env=False`): peers are on the
cluster's private network.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
import httpx

from ._cluster import ClusterSpec
from ._cluster_peers import ClusterStatus, FailureKind, PeerFailure, PeerTracker, PeerView
from ._errors import ConfigError
from ._http_client import RequestFailed, request
from ._http_server import Request, Response, serve_http

__all__ = [
    "MAX_STATUS_BYTES",
    "StatusUnavailable",
    "fetch_status",
    "serve_status",
    "wait_peer_state",
    "watch_peers",
]

MAX_STATUS_BYTES = 16384  # a status document is ~200 bytes; anything larger is not a peer

ChangeHook = Callable[[PeerView], None]


# ----------------------------------------------------------------------------- server
def _json(status: int, body: bytes) -> Response:
    return Response(status, body, "application/json", (("Cache-Control", "no-store"),))


def _route(request: Request, get_status: Callable[[], ClusterStatus]) -> Response:
    if request.path != "/status":
        return _json(404, b'{"error":"not found; try GET /status"}')
    if request.method != "GET":
        return _json(405, b'{"error":"GET only"}')
    return _json(200, get_status().to_json())


async def serve_status(
    get_status: Callable[[], ClusterStatus],
    port: int,
    host: str | None = None,
    *,
    max_connections: int = 32,
    read_timeout: float = 2.0,
    max_request_bytes: int = 4096,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `GET /status` (the JSON of `get_status()`) until cancelled; reports the bound port.

    `host=None` listens on every interface, IPv6 and IPv4 (Modal's cluster addresses are IPv6).
    The bounds are `_http_server`'s: at most `max_connections` at once (one more is answered 503
    and closed), `read_timeout` seconds per connection in all, `max_request_bytes` of request
    head. A port already taken raises `ConfigError`.
    """
    try:
        await serve_http(
            lambda request: _route(request, get_status),
            port,
            host,
            name="cluster status server",
            max_connections=max_connections,
            deadline=read_timeout,
            max_header_bytes=max_request_bytes,
            max_body_bytes=max_request_bytes,
            task_status=task_status,
        )
    except OSError as exc:
        where = f"{host}:{port}" if host else f"port {port}"
        raise ConfigError(
            f"cannot serve the cluster status on {where}: {exc.strerror or exc}"
        ) from None


# ----------------------------------------------------------------------------- client
class StatusUnavailable(Exception):
    """One poll of a peer got no usable status; the message is one line that says why."""


async def fetch_status(
    client: httpx.AsyncClient, address: str, *, timeout: float, max_bytes: int = MAX_STATUS_BYTES
) -> ClusterStatus:
    """One `GET /status` under a hard deadline (a slow drip included) and a body cap."""
    try:
        answer = await request(
            client, "GET", f"http://{address}/status", deadline=timeout, max_body_bytes=max_bytes
        )
    except RequestFailed as exc:
        raise StatusUnavailable(str(exc)) from None
    if answer.status != 200:
        raise StatusUnavailable(f"HTTP {answer.status}")
    try:
        return ClusterStatus.from_json(answer.body)
    except ValueError as exc:
        raise StatusUnavailable(f"invalid status: {exc}") from None


async def _poll(
    client: httpx.AsyncClient,
    spec: ClusterSpec,
    tracker: PeerTracker,
    rank: int,
    on_change: ChangeHook | None,
) -> tuple[PeerFailure | None, ClusterStatus | None]:
    """One poll of `rank`, fed to the tracker; tells `on_change` when the peer's view changed."""
    before = tracker.view(rank)
    status: ClusterStatus | None = None
    try:
        status = await fetch_status(client, spec.peers[rank], timeout=spec.request_timeout)
    except StatusUnavailable as exc:
        failure = tracker.unreachable(rank, str(exc), anyio.current_time())
    else:
        failure = tracker.observe(rank, status, anyio.current_time())
    after = tracker.view(rank)
    if on_change is not None and (after.state, after.reachable) != (before.state, before.reachable):
        on_change(after)
    return failure, status


async def watch_peers(
    client: httpx.AsyncClient, spec: ClusterSpec, *, on_change: ChangeHook | None = None
) -> PeerFailure:
    """Poll every peer until one fails; return why (see `PeerTracker` for the rules).

    Each peer is polled by its own task, one request at a time, every `spec.poll_interval`; a
    peer's hang costs at most `spec.request_timeout` per poll and delays no other peer.
    """
    tracker = PeerTracker(spec, anyio.current_time())
    found: list[PeerFailure] = []

    async with anyio.create_task_group() as tg:

        async def poll_forever(rank: int) -> None:
            while True:
                started = anyio.current_time()
                failure, _ = await _poll(client, spec, tracker, rank, on_change)
                if failure is not None:
                    found.append(failure)
                    tg.cancel_scope.cancel()
                    return
                await anyio.sleep(max(0.0, started + spec.poll_interval - anyio.current_time()))

        for rank in spec.peer_ranks:
            tg.start_soon(poll_forever, rank)
    return found[0]


async def wait_peer_state(
    client: httpx.AsyncClient,
    spec: ClusterSpec,
    rank: int,
    state: str,
    *,
    timeout: float,
    on_change: ChangeHook | None = None,
) -> ClusterStatus | PeerFailure:
    """Poll one peer until it reports `state`; return that status, or the failure that came first.

    A worker waits for rank 0 to be `serving` this way. Besides the tracker's verdicts (the peer
    died, restarted, stopped, vanished or never joined), the peer not reaching `state` within
    `timeout` seconds is a failure of kind NOT_READY.
    """
    if rank not in spec.peer_ranks:
        raise ValueError(f"rank {rank} is not a peer of rank {spec.rank}")
    tracker = PeerTracker(spec, anyio.current_time(), ranks=[rank])
    deadline = anyio.current_time() + timeout
    while anyio.current_time() < deadline:
        started = anyio.current_time()
        failure, status = await _poll(client, spec, tracker, rank, on_change)
        if failure is not None:
            return failure
        if status is not None and status.state == state:
            return status
        await anyio.sleep(
            max(0.0, min(started + spec.poll_interval, deadline) - anyio.current_time())
        )
    seen = tracker.view(rank).state
    return PeerFailure(
        FailureKind.NOT_READY,
        rank,
        (rank, spec.rank),
        f"rank {rank} was not {state} within {timeout:g} s (last state: {seen or 'never seen'})",
    )
