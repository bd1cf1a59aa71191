"""One rank of a multi-node cluster: publish this supervisor's state, watch the peers, end together.

docs/CLUSTER.md tells the mechanism; `_cluster`, `_cluster_peers` and `_cluster_status` hold the
settings, the decisions and the wire. This module is the run's collaborator on a cluster
(`Run.cluster`, built by `Supervisor` only when the config names one): it adds the peers to every
phase's race (`contenders`), ends the run when a peer fails (`on_peer`), and has the first word
when this rank's engine exits (`on_engine_exit`):

- the status server starts before the engine is spawned and runs, in the supervisor's outer task
  group, until `run` returns, through the linger of a death; it publishes the supervisor's own
  state, and a dead rank that was stopped on request keeps saying `stopping`, so that no peer
  takes a requested stop for a death;
- one watch of every peer runs from the start (so the join timeout measures real absence, and
  a peer's restart is seen across phases) and is raced by every phase; it stops once this rank is
  `stopping` or `dead`;
- this rank's own death is published (`StatusBoard.fail_self`) by an observer of the state
  machine, on the very transition to `dead`, before the tree is killed; a peer's failure is
  relayed first and then takes the same death path, without a drain (rank 0's engine would sit
  in a collective for the whole stop timeout). Before `serving` it is a `RankFailed`, exit 3;
- when this rank's engine exits, its tree is killed and then the peers are asked whether one of
  them publishes a failure: a worker's engine dies within moments of rank 0's (its gloo
  broadcast breaks), often before rank 0's own supervisor has published, and must not then name
  itself as the rank that failed first. So a worker keeps asking for up to one poll interval;
  rank 0 asks once and publishes at once (a lost worker leaves rank 0's engine blocked, not
  dead, and were both to wait for the other, both would name themselves).

Without a cluster (`config.cluster is None`) this module is never imported.
"""

from __future__ import annotations

import anyio
import anyio.abc

from ._cluster_peers import STOPPING, PeerFailure, PeerTracker, PeerView, StatusBoard
from ._cluster_status import StatusUnavailable, fetch_status, serve_status, watch_peers
from ._endings import Outcome, death, graceful_stop, kill
from ._errors import ConfigError, PortInUse, RankFailed, describe_returncode
from ._process import ChildProcess
from ._run import Run
from ._snapshot import fresh_client
from ._states import Event, State, Transition
from ._tasks import Race

__all__ = ["Membership"]

_ASK_AGAIN_S = 0.1  # after this rank's engine exited: how often the peers are asked again


class Membership:
    """This rank's membership of the cluster, as the run's collaborator (see the module doc)."""

    def __init__(self, run: Run) -> None:
        assert run.config.cluster is not None
        self._run = run
        self.spec = run.config.cluster
        self.board = StatusBoard(self.spec.rank, self._published_state)
        self._status_served = False
        self._peer_failed = anyio.Event()
        self._peer_failure: PeerFailure | None = None
        self._peer_scope = anyio.CancelScope()
        self._stopped_on_request = False
        run.machine.observe(self._on_transition)

    @property
    def failed_rank(self) -> int | None:
        return self.board.failed_rank

    # ----------------------------------------------------------------- publishing
    def _published_state(self) -> str:
        """The state peers read: ours, but a stop on request stays `stopping` once dead.

        A peer that reads a bare `dead` takes it for a death and dies of it (exit 1); a rank
        that was stopped on request must never cause that, however late the peer polls.
        """
        state = self._run.machine.state
        if state is State.DEAD and self._stopped_on_request:
            return STOPPING
        return state.value

    def _on_transition(self, t: Transition) -> None:
        if t.new is State.STOPPING:
            self._stopped_on_request = True
        if t.new in (State.STOPPING, State.DEAD):
            self._peer_scope.cancel()  # a rank that is going away watches nobody
        failed = t.event in (Event.FAILED, Event.EXITED, Event.UNHEALTHY)
        if t.new is State.DEAD and t.old is not State.STOPPING and failed:
            # First recorded wins: after `relay` (a peer's failure) this changes nothing.
            self.board.fail_self(_own_failure(t))

    async def join(self, side: anyio.abc.TaskGroup) -> None:
        """Serve this rank's status and start watching the peers, before the engine is spawned.

        `side` is the supervisor's outer task group, which outlives the tree: the status server
        keeps publishing through the linger of a death."""
        spec = self.spec
        try:
            bound = await side.start(self._serve_status)
        except ConfigError as exc:
            raise PortInUse(
                f"{exc}: stop whatever holds it or choose another status port"
            ) from None
        self._status_served = True
        peers = ", ".join(f"rank {r} at {spec.peers[r]}" for r in spec.peer_ranks)
        self._run.say(
            f"cluster: rank {spec.rank} of {spec.size}; status on port {bound} (GET /status); "
            f"watching {peers}"
        )
        side.start_soon(self._watch_peers)

    async def _serve_status(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        await serve_status(self.board, self.spec.status_port, task_status=task_status)

    async def _watch_peers(self) -> None:
        with self._peer_scope:
            async with fresh_client() as client:
                failure = await watch_peers(client, self.spec, on_change=self._on_peer_change)
            self._peer_failure = failure
            self._peer_failed.set()

    def _on_peer_change(self, view: PeerView) -> None:
        self._run.metrics.on_peer(view.rank, view.reachable)
        if view.reachable:
            self._run.say(f"peer rank={view.rank} state={view.state}")
        else:
            self._run.say(f"peer rank={view.rank} unreachable ({view.error})")

    async def linger(self) -> None:
        """Keep publishing this rank's failure until every peer had time to read it."""
        if not self._status_served:
            return
        left = self.board.linger_left(self.spec.linger)
        if left > 0:
            self._run.say(
                f"cluster: publishing rank {self.board.failed_rank}'s failure for {left:.1f} s "
                "more so that every peer reads it"
            )
            await anyio.sleep(left)

    # ----------------------------------------------------------------- racing
    def contenders(self) -> list[tuple[anyio.Event, Race]]:
        return [(self._peer_failed, Race.PEER)]

    async def on_peer(self, child: ChildProcess) -> Outcome:
        assert self._peer_failure is not None
        return await self.peer_ending(child, self._peer_failure)

    async def on_engine_exit(self, child: ChildProcess) -> Outcome | None:
        """This rank's engine exited: a broadcast stop, or a peer's failure that came first, or
        (None) this rank's own failure, for the plain handling."""
        run = self._run
        if run.is_worker and run.returncode == 0 and self.spec.worker.exit_zero_is_stop:
            # e.g. an SGLang worker exits 0 only on rank 0's ShutdownReq: the cluster is stopping.
            run.say("the engine exited 0 on rank 0's shutdown broadcast: stopping this rank")
            return await graceful_stop(run, child)
        await kill(run, child)  # the engine is gone: free the rest of the tree before asking
        earlier = await self._failed_peer()
        if earlier is None:
            return None
        run.say(
            f"cluster: this rank's engine exited ({describe_returncode(run.returncode)}) "
            f"after a peer's failure: {earlier.describe()}"
        )
        return await self.peer_ending(child, earlier)

    async def _failed_peer(self) -> PeerFailure | None:
        """A failure a peer publishes now (rank 0) or within one poll interval (a worker, asking
        every 0.1 s), else None.

        Bounded by the poll interval plus one request timeout. A peer that does not answer says
        nothing here: silence is the peer watch's business (`peer_timeout`).
        """
        spec = self.spec
        found: list[PeerFailure] = []

        async def ask(rank: int) -> None:
            try:
                status = await fetch_status(client, spec.peers[rank], timeout=spec.request_timeout)
            except StatusUnavailable:
                return
            failure = PeerTracker(spec, 0.0, ranks=[rank]).observe(rank, status, 0.0)
            if failure is not None and not failure.is_stop:
                found.append(failure)

        with anyio.move_on_after(spec.poll_interval + spec.request_timeout):
            async with fresh_client() as client:
                grace = spec.poll_interval if self._run.is_worker else 0.0
                deadline = anyio.current_time() + grace
                while not found:
                    if self._peer_failure is not None and not self._peer_failure.is_stop:
                        return self._peer_failure
                    async with anyio.create_task_group() as tg:
                        for rank in spec.peer_ranks:
                            tg.start_soon(ask, rank)
                    if found or anyio.current_time() >= deadline:
                        break
                    await anyio.sleep(_ASK_AGAIN_S)
        return min(found, key=lambda f: f.failed_rank) if found else None

    async def peer_ending(self, child: ChildProcess, failure: PeerFailure) -> Outcome:
        """A peer failed (relay it and die with it) or is stopping (stop gracefully with it)."""
        run = self._run
        if failure.is_stop:
            run.say(f"cluster: {failure.describe()}; stopping this rank too")
            return await graceful_stop(run, child)
        self.board.relay(failure)
        run.say(
            f"cluster: {failure.describe()}; killing this rank's engine without a drain "
            "(it would wait on a collective that never ends)"
        )
        note = f"rank {failure.failed_rank} failed"
        if run.machine.state is State.SERVING:
            run.machine.fire(Event.UNHEALTHY, note)
            return await death(run, child, "peer", failure.describe())
        run.machine.fire(Event.FAILED, note)
        await kill(run, child)
        raise RankFailed(
            f"{note} before this rank was serving: {failure.describe()}",
            failure=failure,
            tail=run.tail.lines(),
        )


def _own_failure(t: Transition) -> str:
    """What this rank publishes when its own engine fails; reads after "rank N's supervisor
    reported" in a peer's report."""
    if t.event is Event.EXITED:
        if t.old is State.SERVING:
            return f"its engine died: {t.note}"
        phase = "starting" if t.old in (State.STARTING, State.WARM) else t.old.value
        return f"its engine exited while {phase}: {t.note}"
    if t.event is Event.UNHEALTHY:
        return f"its engine is unhealthy: {t.note}"
    return f"its start failed: {t.note}"
