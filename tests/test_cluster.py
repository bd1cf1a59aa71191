"""The multi-node cluster watch: settings, the pure tracker, and real status servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from supervisor._cluster import ClusterSpec, format_address, parse_address
from supervisor._cluster_peers import (
    ClusterStatus,
    FailureKind,
    PeerFailure,
    PeerTracker,
    PeerView,
    StatusBoard,
)
from supervisor._cluster_status import (
    StatusUnavailable,
    fetch_status,
    serve_status,
    wait_peer_state,
    watch_peers,
)
from supervisor._errors import ConfigError
from supervisor.engines.sglang_cluster import (
    STATUS_PORT_BASE,
    check_status_port,
    default_status_port,
    derived_ports,
)

ROOT = Path(__file__).resolve().parent.parent


def _children() -> set[int]:
    me, found = os.getpid(), set()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(me) and fields[0] != "Z":
            found.add(int(name))
    return found


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Narrower than conftest's: this module starts processes only as its own children.

    conftest's version counts every process tagged by any supervisor on the machine, so suites
    running side by side (other worktrees) would be blamed, and killed, for each other's.
    """
    before = _children()
    yield
    deadline = time.monotonic() + 3.0
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"test left child processes behind: {sorted(left)}"


# Small timings for the wire tests; ratios as in the defaults (a poll is 1/10 of the timeout).
FAST = {"poll_interval": 0.05, "request_timeout": 0.2, "peer_timeout": 0.6, "join_timeout": 1.2}


def spec3(rank: int = 0, **kw: float) -> ClusterSpec:
    peers = ("10.0.0.1:21000", "10.0.0.2:21000", "10.0.0.3:21000")
    return ClusterSpec(rank=rank, size=3, peers=peers, status_port=21000, **kw)


def status(rank: int, state: str = "serving", inc: str = "aaaa", **kw: object) -> ClusterStatus:
    return ClusterStatus(rank, state, inc, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- addresses, spec
def test_addresses_parse_like_sglang_dist_init_addr() -> None:
    assert parse_address("10.0.0.1:21000") == ("10.0.0.1", 21000)
    assert parse_address("rank-0.local:80") == ("rank-0.local", 80)
    assert parse_address("[fd00::1]:21000") == ("fd00::1", 21000)
    for bad in ("fd00::1:21000", "10.0.0.1", ":80", "h:0", "h:70000", "[fd00::1]", "[zz]:1", "h:x"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert format_address("fd00::1", 21000) == "[fd00::1]:21000"
    assert format_address("10.0.0.1", 21000) == "10.0.0.1:21000"


def test_spec_from_modal_style_ipv6_hosts() -> None:
    spec = ClusterSpec.from_hosts(1, ["fd00::a", "fd00::b"], 21000)
    assert spec.peers == ("[fd00::a]:21000", "[fd00::b]:21000")
    assert spec.peer_ranks == (0,) and spec.size == 2
    assert spec.linger == pytest.approx(spec.poll_interval + spec.request_timeout)
    assert spec3(rank=1).peer_ranks == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 1, "peers": ("a:1",)}, "at least 2 ranks"),
        ({"rank": 2}, "outside a cluster of 2"),
        ({"rank": True}, "outside a cluster"),
        ({"peers": ("a:1", "b:1", "c:1")}, "3 addresses for a cluster of 2"),
        ({"peers": ("a:1", "fd00::1:1")}, "peer 1 address"),
        ({"peers": ("a:1", "a:1")}, "share the status address"),
        ({"status_port": 2}, "differs from this rank's peer address"),
        ({"poll_interval": 0}, "poll_interval must be a positive"),
        ({"peer_timeout": float("inf")}, "peer_timeout must be a positive"),
        ({"request_timeout": 10.0}, "request_timeout .* must be shorter"),
        ({"poll_interval": 6.0}, "at least two polls"),
        ({"join_timeout": 5.0}, "join_timeout .* must be at least"),
    ],
)
def test_spec_rejects_with_one_line(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"rank": 0, "size": 2, "peers": ("a:1", "b:1"), "status_port": 1}
    with pytest.raises(ConfigError, match=match) as info:
        ClusterSpec(**{**base, **kwargs})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- the status port
def test_status_port_avoids_every_port_sglang_derives() -> None:
    derived = derived_ports(30000, 5000)
    for port in (30000, 30001, 40000, 30013, *range(30233, 30240), 5000, *range(5001, 5007), 5013):
        assert port in derived, port
    assert default_status_port(30000, 5000) == STATUS_PORT_BASE
    # A dist-init port just below the base pushes the default past its whole block.
    port = default_status_port(30000, STATUS_PORT_BASE - 1)
    assert port > STATUS_PORT_BASE and port not in derived_ports(30000, STATUS_PORT_BASE - 1)
    check_status_port(port, 30000, STATUS_PORT_BASE - 1)
    with pytest.raises(ConfigError, match=r"collides with SGLang's the dist-init port's ZMQ block"):
        check_status_port(5003, 30000, 5000)
    with pytest.raises(ConfigError, match=r"--port \+ 233"):
        check_status_port(30235, 30000, 5000)
    with pytest.raises(ConfigError, match="not in 1-65535"):
        derived_ports(0, 5000)
    # Near the top SGLang counts down: both directions are reserved.
    assert 65400 - 233 in derived_ports(65400, 5000)
    assert 65530 - 39 in derived_ports(30000, 65530)


def _sglang_root() -> Path | None:
    python = os.environ.get("SGLANG_PARSER_PYTHON")
    for candidate in (
        python,
        ROOT / ".venv-sglang/bin/python",
        "/work/main/.venv-sglang/bin/python",
    ):
        if candidate and Path(candidate).exists():
            out = subprocess.run(
                [
                    str(candidate),
                    "-c",
                    "import importlib.util as u; "
                    "print(u.find_spec('sglang').submodule_search_locations[0])",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode == 0:
                return Path(out.stdout.strip())
    return None


def test_port_constants_match_the_pinned_sglang_source() -> None:
    root = _sglang_root()
    if root is None:
        pytest.skip("no SGLang source here: run .ci/run, or set SGLANG_PARSER_PYTHON")
    src = (root / "srt/server_args.py").read_text()
    assert "ZMQ_TCP_PORT_DELTA = 233" in src
    assert "DP_ATTENTION_HANDSHAKE_PORT_DELTA = 13" in src
    assert "NUM_DERIVED_PORTS = 6 if not is_rust_server" in src
    assert "port_base = dist_init_port + 1" in src
    network = (root / "srt/utils/network.py").read_text()
    assert "def get_free_port_below_ephemeral(low=22000, high=29999" in network


# ----------------------------------------------------------------------------- the document
def test_status_round_trips_and_is_small() -> None:
    s = status(1, "dead", "abcd", failed_rank=1, reason="its engine died: exit code -9", path=(1,))
    data = s.to_json()
    assert ClusterStatus.from_json(data) == s and len(data) < 200


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'{"state": "serving", "incarnation": "a"}',
        b'{"rank": true, "state": "serving", "incarnation": "a"}',
        b'{"rank": -1, "state": "serving", "incarnation": "a"}',
        b'{"rank": 1, "state": "' + b"x" * 40 + b'", "incarnation": "a"}',
        b'{"rank": 1, "state": "serving"}',
        b'{"rank": 1, "state": "serving", "incarnation": "a", "failed_rank": "1"}',
        b'{"rank": 1, "state": "serving", "incarnation": "a", "path": [1, "x"]}',
        b"[" * 100_000,
    ],
)
def test_malformed_status_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        ClusterStatus.from_json(data)


def test_a_peers_reason_is_kept_to_one_short_line() -> None:
    raw = {"rank": 1, "state": "dead", "incarnation": "a", "reason": "a\nb\r\n" + "x" * 5000}
    parsed = ClusterStatus.from_json(json.dumps(raw).encode())
    assert (
        "\n" not in parsed.reason and len(parsed.reason) <= 500 and parsed.reason.startswith("a b")
    )


# ----------------------------------------------------------------------------- the tracker
def test_serving_peers_are_fine_and_visible() -> None:
    t = PeerTracker(spec3(), now=0.0)
    assert t.observe(1, status(1, "starting"), 1.0) is None
    assert t.observe(2, status(2), 1.0) is None
    assert t.view(1) == PeerView(1, "starting", True, None)
    assert t.observe(1, status(1), 500.0) is None  # seen: the join timeout no longer applies
    assert t.observe(2, status(2), 500.0) is None


def test_a_dead_peer_is_named() -> None:
    t = PeerTracker(spec3(rank=0), now=0.0)
    t.observe(1, status(1), 1.0)
    f = t.observe(1, status(1, "dead", reason="exit code 1"), 2.0)
    assert f == PeerFailure(
        FailureKind.REPORTED, 1, (1, 0), "rank 1's supervisor is dead: exit code 1"
    )


def test_a_self_reported_failure_reads_as_a_sentence() -> None:
    t = PeerTracker(spec3(rank=0), now=0.0)
    f = t.observe(1, status(1, "dead", failed_rank=1, reason="its engine died: exit code -9"), 1.0)
    assert f is not None and f.failed_rank == 1 and f.path == (1, 0)
    assert f.describe() == "rank 1's supervisor reported its engine died: exit code -9"


def test_a_relayed_failure_keeps_the_original_rank_and_route() -> None:
    # rank 1 dies; rank 0 learns it and relays; rank 2 learns it from rank 0 only.
    board1 = StatusBoard(1, lambda: "dead")
    board1.fail_self("its engine died: exit code -9")
    at0 = PeerTracker(spec3(rank=0), now=0.0)
    seen_by_0 = at0.observe(1, board1(), 1.0)
    assert seen_by_0 is not None
    board0 = StatusBoard(0, lambda: "serving")  # not yet dead: failed_rank alone is the signal
    board0.relay(seen_by_0)
    at2 = PeerTracker(spec3(rank=2), now=0.0)
    f = at2.observe(0, board0(), 1.5)
    assert f is not None and f.kind is FailureKind.REPORTED
    assert f.failed_rank == 1 and f.path == (1, 0, 2) and f.via == 0
    assert f.reason == "rank 1's supervisor reported its engine died: exit code -9"
    assert f.describe().endswith("(learned via ranks 1 -> 0 -> 2)")
    # A relay with a nonsense route still names the original rank.
    at2b = PeerTracker(spec3(rank=2), now=0.0)
    g = at2b.observe(0, status(0, failed_rank=1, reason="r", path=(7, 7)), 1.0)
    assert g is not None and g.failed_rank == 1 and g.path == (1, 0, 2)


def test_a_restarted_peer_is_a_failure() -> None:
    t = PeerTracker(spec3(rank=1), now=0.0)
    assert t.observe(0, status(0, inc="old"), 1.0) is None
    f = t.observe(0, status(0, "starting", inc="new"), 2.0)
    assert f is not None and f.kind is FailureKind.RESTARTED and f.failed_rank == 0
    assert "old -> new" in f.reason


def test_unreachable_after_seen_counts_from_the_last_answer() -> None:
    t = PeerTracker(spec3(rank=0), now=0.0)
    t.observe(1, status(1), 1.0)
    assert t.unreachable(1, "cannot connect: refused", 5.0) is None
    assert t.view(1).reachable is False and t.view(1).state == "serving"
    t.observe(1, status(1), 6.0)  # back: the clock restarts
    assert t.unreachable(1, "cannot connect: refused", 15.9) is None
    f = t.unreachable(1, "cannot connect: refused", 16.0)
    assert f is not None and f.kind is FailureKind.UNREACHABLE and f.failed_rank == 1
    assert f.reason == "rank 1 unreachable for 10 s (last error: cannot connect: refused)"


def test_a_peer_never_seen_fails_the_join() -> None:
    t = PeerTracker(spec3(rank=0), now=100.0)
    t.observe(2, status(2), 101.0)
    assert t.unreachable(1, "no answer within 2 s", 699.0) is None
    assert t.unreachable(1, "no answer within 2 s", 699.9) is None
    f = t.unreachable(1, "no answer within 2 s", 700.0)
    assert f is not None and f.kind is FailureKind.NEVER_JOINED and f.failed_rank == 1
    assert "10.0.0.2:21000 within 600 s (last error: no answer within 2 s)" in f.reason


def test_a_stopping_peer_asks_for_a_graceful_stop() -> None:
    t = PeerTracker(spec3(rank=1), now=0.0)
    f = t.observe(0, status(0, "stopping"), 1.0)
    assert f is not None and f.is_stop and f.failed_rank == 0 and f.path == (0, 1)
    with pytest.raises(ValueError, match="not a failure"):
        StatusBoard(1, lambda: "stopping").relay(f)


def test_an_answer_from_the_wrong_rank_is_not_an_answer() -> None:
    t = PeerTracker(spec3(rank=0), now=0.0)
    assert t.observe(1, status(2), 1.0) is None
    assert t.view(1) == PeerView(1, None, False, "it answered as rank 2")
    f = t.observe(1, status(2), 600.0)
    assert f is not None and f.kind is FailureKind.NEVER_JOINED and "answered as rank 2" in f.reason


def test_the_first_verdict_is_final() -> None:
    t = PeerTracker(spec3(rank=0), now=0.0)
    first = t.observe(1, status(1, "dead", failed_rank=1), 1.0)
    assert t.observe(2, status(2, "dead", failed_rank=2), 2.0) is first
    assert t.unreachable(2, "x", 1000.0) is first


def test_the_board_keeps_the_first_failure_and_times_the_linger() -> None:
    now = [10.0]
    board = StatusBoard(2, lambda: "serving", clock=lambda: now[0])
    assert board.linger_left(4.0) == 0.0 and board().failed_rank is None
    board.fail_self("its engine died: signal SIGKILL")
    board.relay(PeerFailure(FailureKind.UNREACHABLE, 0, (0, 2), "rank 0 unreachable for 10 s"))
    s = board()
    assert (s.failed_rank, s.path, s.reason) == (2, (2,), "its engine died: signal SIGKILL")
    now[0] = 13.0
    assert board.linger_left(4.0) == pytest.approx(1.0)
    now[0] = 20.0
    assert board.linger_left(4.0) == 0.0
    assert StatusBoard(0, lambda: "x").incarnation != StatusBoard(0, lambda: "x").incarnation


# ----------------------------------------------------------------------------- the wire
class Rank:
    """One fake rank: a board whose state the test sets, served by a real `serve_status`."""

    def __init__(self, rank: int) -> None:
        self.state = "starting"
        self.board = StatusBoard(rank, lambda: self.state)
        self.port = 0
        self.scope = anyio.CancelScope()  # cancel it to make the rank vanish without a word

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        with self.scope:
            await serve_status(self.board, 0, "127.0.0.1", task_status=task_status)


@asynccontextmanager
async def cluster(
    n: int, *, serve: tuple[int, ...] | None = None
) -> AsyncIterator[tuple[list[Rank], Callable[[int], ClusterSpec]]]:
    """Ranks 0..n-1 serving their status on free ports; `spec(r)` builds rank r's spec."""
    ranks = [Rank(r) for r in range(n)]
    async with anyio.create_task_group() as tg:
        for r in ranks:
            if serve is None or r.board.rank in serve:
                r.port = await tg.start(r.serve)
            else:
                r.port = _free_port()  # nobody listens there
        peers = tuple(f"127.0.0.1:{r.port}" for r in ranks)

        def spec(rank: int) -> ClusterSpec:
            return ClusterSpec(rank=rank, size=n, peers=peers, status_port=ranks[rank].port, **FAST)

        yield ranks, spec
        tg.cancel_scope.cancel()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False)


@pytest.mark.anyio
async def test_a_peer_flipping_to_dead_is_seen_by_every_rank() -> None:
    async with cluster(3) as (ranks, spec), _client() as client:
        for r in ranks:
            r.state = "serving"
        results: dict[int, PeerFailure] = {}

        async def watch(rank: int) -> None:
            results[rank] = await watch_peers(client, spec(rank))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, 0)
                tg.start_soon(watch, 2)
                await anyio.sleep(0.3)
                assert not results  # all serving: nothing to report
                ranks[1].board.fail_self("its engine died: exit code -9")
                ranks[1].state = "dead"
        for rank in (0, 2):
            f = results[rank]
            assert f.kind is FailureKind.REPORTED and f.failed_rank == 1
            assert f.reason == "rank 1's supervisor reported its engine died: exit code -9"


@pytest.mark.anyio
async def test_a_relay_over_the_wire_names_the_original_rank() -> None:
    async with cluster(3) as (ranks, spec), _client() as client:
        for r in ranks:
            r.state = "serving"
        ranks[0].board.relay(
            PeerFailure(FailureKind.UNREACHABLE, 1, (1, 0), "rank 1 unreachable for 10 s")
        )
        with anyio.fail_after(5):
            f = await watch_peers(client, spec(2))
        assert (f.failed_rank, f.path, f.reason) == (1, (1, 0, 2), "rank 1 unreachable for 10 s")


@pytest.mark.anyio
async def test_a_peer_whose_server_stops_is_lost_after_the_timeout() -> None:
    async with cluster(2) as (ranks, spec), _client() as client:
        ranks[1].state = "serving"
        views: list[PeerView] = []
        async with anyio.create_task_group() as tg:
            result: list[PeerFailure] = []

            async def watch() -> None:
                result.append(await watch_peers(client, spec(0), on_change=views.append))

            tg.start_soon(watch)
            await anyio.sleep(0.3)
            ranks[1].scope.cancel()  # its supervisor vanishes without a word
            lost_at = anyio.current_time()
            with anyio.fail_after(5):
                while not result:
                    await anyio.sleep(0.02)
        elapsed = anyio.current_time() - lost_at
        f = result[0]
        assert f.kind is FailureKind.UNREACHABLE and f.failed_rank == 1
        assert f.reason.startswith("rank 1 unreachable for ")
        assert elapsed >= FAST["peer_timeout"] / 2  # waited for the timeout, not the first miss
        assert views[0] == PeerView(1, "serving", True, None) and views[-1].reachable is False


@pytest.mark.anyio
async def test_a_peer_that_never_starts_fails_the_join() -> None:
    async with cluster(2, serve=(0,)) as (_, spec), _client() as client:
        with anyio.fail_after(5):
            f = await watch_peers(client, spec(0))
        assert f.kind is FailureKind.NEVER_JOINED and f.failed_rank == 1
        assert "connection refused" in f.reason


@pytest.mark.anyio
async def test_a_worker_waits_for_rank0_serving_or_its_failure() -> None:
    async with cluster(2) as (ranks, spec), _client() as client:
        views: list[PeerView] = []

        async def promote() -> None:
            await anyio.sleep(0.3)
            ranks[0].state = "warm"
            await anyio.sleep(0.2)
            ranks[0].state = "serving"

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(promote)
                got = await wait_peer_state(
                    client, spec(1), 0, "serving", timeout=4, on_change=views.append
                )
        assert isinstance(got, ClusterStatus) and got.state == "serving" and got.rank == 0
        assert [v.state for v in views] == ["starting", "warm", "serving"]

        ranks[0].state = "starting"
        with anyio.fail_after(5):
            late = await wait_peer_state(client, spec(1), 0, "serving", timeout=0.4)
        assert isinstance(late, PeerFailure) and late.kind is FailureKind.NOT_READY
        assert late.reason == "rank 0 was not serving within 0.4 s (last state: starting)"

        ranks[0].board.fail_self("it exited while starting: exit code 1")
        with anyio.fail_after(5):
            dead = await wait_peer_state(client, spec(1), 0, "serving", timeout=4)
        assert (
            isinstance(dead, PeerFailure)
            and dead.failed_rank == 0
            and "exited while starting" in dead.reason
        )
        with pytest.raises(ValueError, match="not a peer"):
            await wait_peer_state(client, spec(1), 1, "serving", timeout=1)


# ----------------------------------------------------------------------------- hostile clients
async def _get(port: int, raw: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(raw)
        out = b""
        with anyio.fail_after(5):
            try:
                while True:
                    out += await s.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        return out


async def _answers(port: int, within: float = 5.0) -> ClusterStatus:
    """The endpoint answers a real poll within `within` seconds (retrying while slots are busy)."""
    deadline = time.monotonic() + within
    async with _client() as client:
        while True:
            try:
                return await fetch_status(client, f"127.0.0.1:{port}", timeout=1)
            except StatusUnavailable:
                if time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_the_endpoint_routes_and_refuses_politely() -> None:
    async with cluster(2) as (ranks, _):
        port = ranks[0].port
        assert (await _get(port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 200 OK"
        )
        assert b'"state":"starting"' in await _get(port, b"GET /status?x=1 HTTP/1.0\r\n\r\n")
        assert (await _get(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 404"
        )
        assert (await _get(port, b"POST /status HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 405"
        )
        # h11 frames strictly: HTTP/1.1 without its mandatory Host header is a bad request
        assert (await _get(port, b"GET /status HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _get(port, b"\x16\x03\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _get(port, b"GET /status HTTP/1.1\r\nX: " + b"a" * 20000)).startswith(
            b"HTTP/1.1 431"
        )


@pytest.mark.anyio
async def test_idle_and_garbage_connections_do_not_take_it_down() -> None:
    board = StatusBoard(0, lambda: "serving")
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_status(
                board, 0, "127.0.0.1", max_connections=4, read_timeout=0.5, task_status=task_status
            )
        )
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(60)]
        junk = []
        for i in range(20):
            s = await anyio.connect_tcp("127.0.0.1", port)
            await s.send(os.urandom(300) + (b"\r\n\r\n" if i % 2 else b""))
            junk.append(s)
        got = await _answers(port)  # served while every hostile socket is still open
        assert got.state == "serving" and got.incarnation == board.incarnation
        for s in idle + junk:
            await s.aclose()
        assert (await _answers(port)).rank == 0
        tg.cancel_scope.cancel()


_SERVER = textwrap.dedent(
    """
    import anyio, sys
    from supervisor._cluster_peers import StatusBoard
    from supervisor._cluster_status import serve_status

    async def main():
        async with anyio.create_task_group() as tg:
            port = await tg.start(lambda task_status: serve_status(
                StatusBoard(0, lambda: "serving"), 0, "127.0.0.1",
                max_connections=8, read_timeout=1.0, task_status=task_status))
            print(port, flush=True)
    anyio.run(main)
    """
)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.anyio
async def test_descriptors_stay_bounded_under_an_idle_flood() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        await _answers(port)
        before = _fds(proc.pid)
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(200)]
        await anyio.sleep(0.5)
        during = _fds(proc.pid)
        assert during <= before + 8 + 4, (before, during)  # max_connections plus slack
        assert (await _answers(port)).state == "serving"
        for s in idle:
            await s.aclose()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.anyio
async def test_a_taken_port_is_a_one_line_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=f"cannot serve the cluster status on 127.0.0.1:{port}"
        ) as info:
            await serve_status(StatusBoard(0, lambda: "x"), port, "127.0.0.1")
        assert "\n" not in str(info.value)


@asynccontextmanager
async def raw_server(reply: Callable[[anyio.abc.SocketStream], object]) -> AsyncIterator[int]:
    """A misbehaving peer: `reply(stream)` is awaited for every connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await stream.receive()
                await reply(stream)  # type: ignore[misc]
            except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def _huge(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    for _ in range(100):
        await stream.send(b"x" * 10000)


async def _drip(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        await stream.send(b" ")
        await anyio.sleep(0.05)


async def _html(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (_huge, "longer than 16384 bytes"),
        (_drip, "no answer within 0.3 s"),
        (_html, "invalid status: not JSON"),
    ],
)
async def test_a_misbehaving_peer_is_an_unavailable_status(
    reply: Callable[..., object], match: str
) -> None:
    async with raw_server(reply) as port, _client() as client:
        started = time.monotonic()
        with pytest.raises(StatusUnavailable, match=match):
            await fetch_status(client, f"127.0.0.1:{port}", timeout=0.3)
        assert time.monotonic() - started < 3


@pytest.mark.anyio
async def test_ipv6_peers_are_served_and_polled() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    board = StatusBoard(1, lambda: "serving")
    async with anyio.create_task_group() as tg, _client() as client:
        port = await tg.start(
            lambda task_status: serve_status(board, 0, "::1", task_status=task_status)
        )
        got = await fetch_status(client, format_address("::1", port), timeout=2)
        assert got.rank == 1
        tg.cancel_scope.cancel()


def test_the_cluster_modules_stay_in_the_core() -> None:
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        BLOCKED = ("modal", "sglang", "supervisor.engines", "supervisor.profiles", "supervisor.deploy")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import supervisor._cluster, supervisor._cluster_peers, supervisor._cluster_status
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [{"port": 70000}, {"max_connections": 0}, {"read_timeout": 0}, {"max_request_bytes": 10}],
)
async def test_server_settings_are_checked(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"port": 0, **kwargs}
    with pytest.raises(ConfigError, match="cluster status server"):
        await serve_status(StatusBoard(0, lambda: "x"), host="127.0.0.1", **args)  # type: ignore[arg-type]
