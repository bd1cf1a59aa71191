"""One supervisor per rank of a multi-node SGLang (issue #11), wired: real processes, the fake ranks.

Two `run` supervisors, rank 0 and rank 1, each over a fake rank (`--nnodes 2 --node-rank R
--dist-init-addr 127.0.0.1:D`), each serving its status on its own port and polling the other's.
Both reach `serving`; a SIGKILLed worker engine ends the worker's supervisor at once and rank 0's
soon after, both reports naming rank 1; a SIGTERM to rank 0's supervisor stops both with exit 0
and leaves no process. The in-memory tests at the end check the decisions without processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from supervisor import (
    ClusterSpec,
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    OutcomeKind,
    RankFailed,
    State,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
    WorkerRules,
)
from supervisor._cluster_peers import ClusterStatus
from supervisor._cluster_status import serve_status
from supervisor.engines.sglang_cluster import SGLANG_WORKER_RULES
from supervisor.testing import InMemoryProcessManager, free_port
from supervisor.testing.recording import RecordingSink
from tests._watch import Watched
from tests.conftest import cli, fake_argv

FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]


class Ranks:
    """Two supervised fake ranks; `head` is rank 0, `worker` rank 1."""

    def __init__(self, *extra: str, tp_size: int = 2) -> None:
        self.ports = [free_port(), free_port()]
        self.status = [free_port(), free_port()]
        dist = free_port()
        peers = ",".join(f"127.0.0.1:{p}" for p in self.status)
        self.watched: list[Watched] = []
        for rank in (0, 1):
            fake = fake_argv(
                self.ports[rank],
                *FAST,
                "--tp-size",
                str(tp_size),
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--dist-init-addr",
                f"127.0.0.1:{dist}",
                "--fake-dist-timeout",
                "60",
            )
            args = [
                "run",
                "--port",
                str(self.ports[rank]),
                "--cluster-rank",
                str(rank),
                "--cluster-peers",
                peers,
                "--peer-poll-interval",
                "0.5",
                "--stop-timeout",
                "10",
                *extra,
                "--",
                *fake,
            ]
            self.watched.append(Watched(cli(*args)))

    @property
    def head(self) -> Watched:
        return self.watched[0]

    @property
    def worker(self) -> Watched:
        return self.watched[1]

    def status_of(self, rank: int) -> dict[str, Any]:
        r = httpx.get(f"http://127.0.0.1:{self.status[rank]}/status", timeout=5)
        return dict(json.loads(r.content))


@contextlib.contextmanager
def two_ranks(*extra: str, tp_size: int = 2) -> Iterator[Ranks]:
    ranks = Ranks(*extra, tp_size=tp_size)
    try:
        with ranks.head, ranks.worker:
            yield ranks
    finally:
        for w in ranks.watched:
            if w.popen.poll() is None:
                w.popen.kill()
                w.popen.wait(10)


def report_line(w: Watched) -> str:
    return next(line for line in w.output().splitlines() if "server died after serving" in line)


@pytest.mark.process
@pytest.mark.parametrize("victim", [1, 0], ids=["worker-engine-killed", "rank-0-engine-killed"])
def test_both_ranks_serve_and_a_dead_engine_ends_both_naming_its_rank(victim: int) -> None:
    """The rank whose engine is SIGKILLed exits 1 within 5 s (its linger included), the other
    within 30 s, and both reports name the victim: when rank 0 dies the worker's engine dies
    moments later, and its supervisor must not then blame itself."""
    with two_ranks() as ranks:
        ranks.head.wait_for("] state=serving from=", 60)
        ranks.worker.wait_for("] state=serving from=", 60)
        assert ranks.status_of(0)["state"] == ranks.status_of(1)["state"] == "serving"
        trees = [w.tree() for w in ranks.watched]
        assert "event=warmed (rank 0 is serving)" in ranks.worker.output()
        ranks.head.wait_for("peer rank=1 state=serving", 10)  # one line per peer change
        dying, other = ranks.watched[victim], ranks.watched[1 - victim]
        engine = int(dying.output().split("spawned pid=")[1].split()[0])
        killed = time.monotonic()
        os.kill(engine, signal.SIGKILL)
        rc, exited = dying.wait_exit(20)
        assert rc == 1, dying.output()
        assert exited - killed < 5.0, f"the victim's supervisor took {exited - killed:.1f} s"
        rc, exited = other.wait_exit(40)
        assert rc == 1, other.output()
        assert exited - killed < 30.0
        dying_report, other_report = report_line(dying), report_line(other)
        assert f"rank {victim} failed" in dying_report and "signal SIGKILL" in dying_report
        assert f"rank {victim} failed" in other_report and "a peer failed (" in other_report
        reported = f"rank {victim}'s supervisor reported its engine died: signal SIGKILL"
        assert reported in other_report
        for w, tree in zip(ranks.watched, trees, strict=True):
            assert len(tree) >= 2 and w.alive(tree) == []
            assert w.output().count("CRASH REPORT") == 1


@pytest.mark.process
def test_a_worker_scheduler_killed_alone_is_seen_by_the_tree_watch() -> None:
    """SGLang's worker joins its schedulers in order and never notices the second one dying;
    the supervisor's watch of the children seen at serving does."""
    with two_ranks(tp_size=4) as ranks:
        ranks.head.wait_for("] state=serving from=", 60)
        ranks.worker.wait_for("] state=serving from=", 60)
        ranks.worker.wait_for("watching this rank's tree", 10)
        out = ranks.worker.output()
        listed = out.split("and its children (")[1].split(")")[0]
        schedulers = sorted(int(p) for p in listed.split(", "))
        assert len(schedulers) == 2, out
        os.kill(schedulers[-1], signal.SIGKILL)
        rc, _ = ranks.worker.wait_exit(20)
        assert rc == 1, ranks.worker.output()
        rc, _ = ranks.head.wait_exit(40)
        assert rc == 1, ranks.head.output()
        worker_report = report_line(ranks.worker)
        assert f"pid {schedulers[-1]}, a child of the engine's main process" in worker_report
        assert "rank 1 failed" in worker_report and "rank 1 failed" in report_line(ranks.head)


@pytest.mark.process
@pytest.mark.parametrize("signalled", [0, 1], ids=["sigterm-to-rank-0", "sigterm-to-worker"])
def test_sigterm_to_either_supervisor_stops_both_with_exit_0(signalled: int) -> None:
    """Rank 0 drains and broadcasts the shutdown; a worker stopped first is seen `stopping` by
    rank 0, which then stops the cluster the same way. No SIGTERM reaches a worker's engine."""
    with two_ranks() as ranks:
        ranks.head.wait_for("] state=serving from=", 60)
        ranks.worker.wait_for("] state=serving from=", 60)
        trees = [w.tree() for w in ranks.watched]
        ranks.watched[signalled].signal(signal.SIGTERM)
        for w in ranks.watched:
            rc, _ = w.wait_exit(40)
            assert rc == 0, w.output()
        for w, tree in zip(ranks.watched, trees, strict=True):
            assert w.alive(tree) == []
            assert "CRASH REPORT" not in w.output()
            assert "] state=stopping from=" in w.output()
        worker = ranks.worker.output()
        assert "sending SIGTERM" not in worker
        if signalled == 1:
            assert "a worker rank ignores SIGTERM" in worker
            assert "rank 1 is stopping on request; stopping this rank too" in ranks.head.output()
        assert "exit code 0" in worker  # its engine ended on the broadcast, not by SIGKILL


@pytest.mark.process
def test_cluster_flags_are_checked_in_one_line() -> None:
    a, b = free_port(), free_port()
    cases = (
        (["--cluster-rank", "0"], "--cluster-rank and --cluster-peers go together"),
        (["--cluster-rank", "2", "--cluster-peers", f"h:{a},h:{b}"], "outside the 2 ranks"),
        (["--cluster-rank", "0", "--cluster-peers", f"h:{a}"], "at least two"),
        (["--cluster-rank", "0", "--cluster-peers", f"h:{a},nope"], "--cluster-peers: 'nope'"),
        (["--cluster-rank", "-1", "--cluster-peers", f"h:{a},h:{b}"], "must be >= 0"),
        (["--peer-timeout", "3"], "--peer-timeout needs --cluster-rank and --cluster-peers"),
        (["--cluster-rank", "0", "--cluster-peers", f"h:{a},h:{a}"], "share the status address"),
    )
    for flags, needle in cases:
        done = cli("run", "--port", str(free_port()), *flags, "--", "true")
        out, _ = done.communicate(timeout=30)
        assert done.returncode == 2, (flags, out)
        assert needle in out and len(out.strip().splitlines()) == 1, (flags, out)


@pytest.mark.process
def test_a_taken_status_port_is_exit_2_and_nothing_is_spawned() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        mine = taken.getsockname()[1]
        peers = f"127.0.0.1:{mine},127.0.0.1:{free_port()}"
        done = cli(
            "run", "--port", str(free_port()), "--cluster-rank", "0", "--cluster-peers", peers,
            "--", *fake_argv(free_port()),
        )  # fmt: skip
        out, _ = done.communicate(timeout=30)
    assert done.returncode == 2, out
    assert "cannot serve the cluster status" in out
    assert "spawned" not in out


# ============================================================================ in memory
FAST_HEALTH = HealthPolicy(startup_timeout=5, initial_backoff=0.01, max_backoff=0.02, jitter=0)


def spec_for(rank: int, status: list[int], **timing: Any) -> ClusterSpec:
    return ClusterSpec(
        rank=rank,
        size=len(status),
        peers=tuple(f"127.0.0.1:{p}" for p in status),
        status_port=status[rank],
        worker=SGLANG_WORKER_RULES,  # the in-memory engine plays SGLang's workers
        **{"poll_interval": 0.1, "request_timeout": 0.5, "peer_timeout": 2.0, **timing},
    )


def member(
    spec: ClusterSpec, answers: int = 200, **overrides: Any
) -> tuple[Supervisor, RecordingSink, InMemoryProcessManager]:
    """A supervisor of rank `spec.rank` over an in-memory child whose health answers `answers`."""
    manager, sink = InMemoryProcessManager(), RecordingSink()
    overrides.setdefault("health", FAST_HEALTH)
    cfg = SupervisorConfig(
        launch=LaunchSpec(argv=("server",)),
        port=8000,
        liveness=LivenessPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
        cluster=spec,
        **overrides,
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path == "/metrics" else answers)

    transport = httpx.MockTransport(answer)
    return Supervisor(cfg, manager=manager, sink=sink, transport=transport), sink, manager


class Peer:
    """A peer's status document that the test edits while serving it."""

    def __init__(self, rank: int, state: str = "serving") -> None:
        self.status = ClusterStatus(rank, state, "cafe0001")

    def __call__(self) -> ClusterStatus:
        return self.status


@pytest.mark.anyio
async def test_a_peer_that_publishes_a_failure_ends_this_rank_with_its_rank() -> None:
    status = [free_port(), free_port(), free_port()]
    peers = {1: Peer(1), 2: Peer(2)}
    sup, sink, _ = member(spec_for(0, status))
    async with anyio.create_task_group() as tg:
        for rank, peer in peers.items():
            await tg.start(serve_status, peer, status[rank])
        await tg.start(sup.run)
        with anyio.fail_after(10):
            while "peer rank=2 state=serving" not in sink.lines:
                await anyio.sleep(0.02)
        # rank 2 heard from rank 1 that rank 1 died: rank 0 must name rank 1, via rank 2
        peers[2].status = ClusterStatus(2, "dead", "cafe0001", 1, "its engine died", (1, 2))
        with anyio.fail_after(10):
            while sup.state is not State.DEAD:
                await anyio.sleep(0.02)
        published = sup._member.board() if sup._member else None
        await sup._run.done.wait()
        tg.cancel_scope.cancel()
    assert sup.report is not None and sup.report.failed_rank == 1
    assert sup.report.reason == "peer" and sup.report.cause == "peer"
    assert "(learned via ranks 1 -> 2 -> 0)" in sup.report.detail
    assert published is not None and (published.failed_rank, published.path) == (1, (1, 2, 0))


@pytest.mark.anyio
async def test_a_peer_failure_before_serving_is_rank_failed() -> None:
    status = [free_port(), free_port()]
    # rank 1 never answers: with a short join timeout that is a failed start naming rank 1
    sup, _, manager = member(
        spec_for(0, status, join_timeout=2.0), answers=503, health=HealthPolicy("/health", 30)
    )
    with anyio.fail_after(15), pytest.raises(RankFailed) as info:
        await sup.run()
    assert info.value.failed_rank == 1
    assert "never answered" in str(info.value)
    assert manager.children[0].tree_killed >= 1


@pytest.mark.anyio
async def test_a_stopped_rank_keeps_saying_stopping_after_it_is_dead() -> None:
    status = [free_port(), free_port()]
    peer = Peer(1)
    sup, _, _ = member(spec_for(0, status))
    async with anyio.create_task_group() as tg:
        await tg.start(serve_status, peer, status[1])
        await tg.start(sup.run)
        sup.stop()
        with anyio.fail_after(10):
            while sup.state is not State.DEAD:
                await anyio.sleep(0.02)
        assert sup._member is not None
        assert sup._member.board().state == "stopping" and sup._member.board().failed_rank is None
        await sup._run.done.wait()
        tg.cancel_scope.cancel()
    assert sup.outcome is not None and sup.outcome.kind is OutcomeKind.STOPPED


@pytest.mark.anyio
async def test_a_worker_serves_after_rank_0_and_stops_without_sigterm() -> None:
    """warm on its own health, serving once rank 0 serves; a stop waits for the broadcast
    (here: the engine exiting 0) and never sends SIGTERM, which SGLang's worker ignores."""
    status = [free_port(), free_port()]
    head = Peer(0, state="warm")
    sup, sink, manager = member(spec_for(1, status))
    async with anyio.create_task_group() as tg:
        await tg.start(serve_status, head, status[0])
        tg.start_soon(sup.run)
        with anyio.fail_after(10):
            while sup.state is not State.WARM:
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
        assert sup.state is State.WARM  # rank 0 is only warm: not serving yet
        head.status = ClusterStatus(0, "serving", "cafe0001")
        with anyio.fail_after(10):
            await sup.wait_for(State.SERVING)
        sup.stop()
        await anyio.sleep(0.5)  # longer than the stop timeout: a worker waits for the broadcast
        child = manager.children[0]
        assert sup.state is State.STOPPING and child.signals == []
        child.exit(0)  # rank 0's ShutdownReq reached the worker's schedulers
        with anyio.fail_after(10):
            await sup._run.done.wait()
        tg.cancel_scope.cancel()
    assert sup.outcome is not None and sup.outcome.kind is OutcomeKind.STOPPED
    assert any("a worker rank ignores SIGTERM" in line for line in sink.lines)


@pytest.mark.anyio
async def test_a_worker_of_an_engine_without_worker_rules_is_stopped_like_rank_0() -> None:
    """The core assumes nothing of a worker rank: without the engine's `WorkerRules` a stop is
    SIGTERM and the stop timeout, as on rank 0 (SGLang's rules come from its engine room)."""
    status = [free_port(), free_port()]
    head = Peer(0)
    spec = dataclasses.replace(spec_for(1, status), worker=WorkerRules())
    sup, sink, manager = member(spec)
    assert sup.stop_bound == pytest.approx(0.3 + 1 + 10.0 + spec.linger)
    async with anyio.create_task_group() as tg:
        await tg.start(serve_status, head, status[0])
        tg.start_soon(sup.run)
        with anyio.fail_after(10):
            await sup.wait_for(State.SERVING)
        sup.stop()
        with anyio.fail_after(10):
            await sup._run.done.wait()
        tg.cancel_scope.cancel()
    assert manager.children[0].signals[:1] == [signal.SIGTERM]
    assert not any("ignores SIGTERM" in line for line in sink.lines)
