"""The cluster status document, the verdict on peers, and the decisions: pure, no I/O.

`ClusterStatus` is what each rank's supervisor publishes; `StatusBoard` builds it from the live
supervisor; `PeerTracker` turns poll results into a `PeerFailure` with the clock passed in, so
every rule (a dead peer, a relayed failure keeping its original rank, a restarted peer, a silent
peer, a peer that never joined) is unit-tested without sockets or sleeps. The wire is in
`_cluster_status`; docs/CLUSTER.md explains the mechanism.
"""

from __future__ import annotations

import enum
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._cluster import ClusterSpec, _is_int

__all__ = [
    "DEAD",
    "SERVING",
    "STOPPING",
    "ClusterStatus",
    "FailureKind",
    "PeerFailure",
    "PeerTracker",
    "PeerView",
    "StatusBoard",
    "new_incarnation",
]

# The supervisor's state values that the cluster logic reads; any other string is passed through.
SERVING = "serving"
STOPPING = "stopping"
DEAD = "dead"

# Caps on what a peer may send us: a status document is ~200 bytes.
_MAX_STATE = 32
_MAX_INCARNATION = 64
_MAX_REASON = 500
_MAX_PATH = 64


def new_incarnation() -> str:
    """A random id per supervisor start, so a restarted peer is never taken for the old one."""
    return secrets.token_hex(8)


# ----------------------------------------------------------------------------- the document
@dataclass(frozen=True)
class ClusterStatus:
    """What one supervisor publishes at `GET /status`.

    `state` is the supervisor's state value; `failed_rank` is the rank whose failure this rank is
    dying of (itself, or the original rank a peer told it about), None while nothing failed;
    `path` is how that news travelled, failed rank first, this rank last.
    """

    rank: int
    state: str
    incarnation: str
    failed_rank: int | None = None
    reason: str = ""
    path: tuple[int, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "rank": self.rank,
                "state": self.state,
                "incarnation": self.incarnation,
                "failed_rank": self.failed_rank,
                "reason": self.reason[:_MAX_REASON],
                "path": list(self.path[:_MAX_PATH]),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ClusterStatus:
        """Parse and check a peer's answer; anything malformed raises ValueError (one line)."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        except RecursionError:  # "[[[[..." nested past the parser's stack: still just garbage
            raise ValueError("not JSON: nested too deep") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        rank, state, inc = obj.get("rank"), obj.get("state"), obj.get("incarnation")
        failed, reason, path = obj.get("failed_rank"), obj.get("reason", ""), obj.get("path", [])
        if not _is_int(rank) or rank < 0:
            raise ValueError(f"rank {rank!r} is not a rank")
        if not isinstance(state, str) or not 0 < len(state) <= _MAX_STATE:
            raise ValueError(f"state {str(state)[:40]!r} is not a state")
        if not isinstance(inc, str) or not 0 < len(inc) <= _MAX_INCARNATION:
            raise ValueError("incarnation is missing or too long")
        if failed is not None and (not _is_int(failed) or failed < 0):
            raise ValueError(f"failed_rank {failed!r} is not a rank")
        if not isinstance(reason, str):
            raise ValueError("reason is not a string")
        if not isinstance(path, list) or not all(_is_int(r) and r >= 0 for r in path):
            raise ValueError("path is not a list of ranks")
        reason = " ".join(reason[:_MAX_REASON].split())  # one line, whatever the peer sent
        return cls(rank, state, inc, failed, reason, tuple(path[:_MAX_PATH]))


# ----------------------------------------------------------------------------- the verdict
class FailureKind(enum.Enum):
    REPORTED = "reported"  # a peer's status names a failed rank (itself or one it heard of)
    RESTARTED = "restarted"  # a peer's incarnation changed: its engine left the collectives
    UNREACHABLE = "unreachable"  # a peer seen before has not answered for peer_timeout
    NEVER_JOINED = "never_joined"  # a peer never answered within join_timeout
    NOT_READY = "not_ready"  # a peer did not reach the awaited state in time (wait_peer_state)
    STOPPING = "stopping"  # a peer is stopping on request: stop this rank too, gracefully


@dataclass(frozen=True)
class PeerFailure:
    """Why this rank must end: which rank failed first, how we learned it, and in words.

    `path` runs from the failed rank to this one: (1, 2) when rank 2 saw rank 1 itself,
    (1, 0, 2) when rank 2 learned it from rank 0. `kind` STOPPING is not a failure but a peer
    going away on request: the caller stops gracefully instead of taking the death path.
    """

    kind: FailureKind
    failed_rank: int
    path: tuple[int, ...]
    reason: str

    @property
    def is_stop(self) -> bool:
        return self.kind is FailureKind.STOPPING

    @property
    def via(self) -> int:
        """The peer whose status (or silence) told this rank."""
        return self.path[-2] if len(self.path) >= 2 else self.failed_rank

    def describe(self) -> str:
        if len(self.path) > 2:
            route = " -> ".join(str(r) for r in self.path)
            return f"{self.reason} (learned via ranks {route})"
        return self.reason


@dataclass(frozen=True)
class PeerView:
    """What this rank last knew of a peer; `on_change` observers get one per change."""

    rank: int
    state: str | None  # last state it reported; None if never seen
    reachable: bool
    error: str | None = None  # why the last poll failed, if it did


@dataclass
class _Peer:
    state: str | None = None
    incarnation: str | None = None
    last_seen: float | None = None
    reachable: bool = False
    error: str | None = None


# ----------------------------------------------------------------------------- the decisions
class PeerTracker:
    """Turns poll results into a verdict. No I/O and no clock of its own: `now` is passed in.

    The first verdict is final (later calls return it again): a cluster that lost a rank does not
    heal, the platform replaces it whole.
    """

    def __init__(self, spec: ClusterSpec, now: float, ranks: Iterable[int] | None = None) -> None:
        self.spec = spec
        self._start = now
        self._peers = {r: _Peer() for r in (spec.peer_ranks if ranks is None else ranks)}
        self.failure: PeerFailure | None = None

    def view(self, rank: int) -> PeerView:
        p = self._peers[rank]
        return PeerView(rank, p.state, p.reachable, p.error)

    def _decide(self, failure: PeerFailure) -> PeerFailure:
        self.failure = failure
        return failure

    def observe(self, rank: int, status: ClusterStatus, now: float) -> PeerFailure | None:
        """A peer answered with `status`."""
        if self.failure is not None:
            return self.failure
        me, peer = self.spec.rank, self._peers[rank]
        if status.rank != rank:
            # Wrong peer list, or another cluster's supervisor on that address: not our peer.
            return self.unreachable(rank, f"it answered as rank {status.rank}", now)
        if status.failed_rank is not None:
            return self._decide(self._reported(rank, status))
        if status.state == DEAD:
            why = f": {status.reason}" if status.reason else ""
            return self._decide(
                PeerFailure(
                    FailureKind.REPORTED,
                    rank,
                    (rank, me),
                    f"rank {rank}'s supervisor is dead{why}",
                )
            )
        if peer.incarnation is not None and status.incarnation != peer.incarnation:
            return self._decide(
                PeerFailure(
                    FailureKind.RESTARTED,
                    rank,
                    (rank, me),
                    f"rank {rank}'s supervisor restarted (incarnation {peer.incarnation} -> "
                    f"{status.incarnation}), so its engine left the collectives",
                )
            )
        peer.state, peer.incarnation, peer.last_seen = status.state, status.incarnation, now
        peer.reachable, peer.error = True, None
        if status.state == STOPPING:
            reason = f"rank {rank} is stopping on request"
            if status.reason:
                reason += f": {status.reason}"
            return self._decide(PeerFailure(FailureKind.STOPPING, rank, (rank, me), reason))
        return None

    def _reported(self, rank: int, status: ClusterStatus) -> PeerFailure:
        me, failed = self.spec.rank, status.failed_rank
        assert failed is not None
        if failed == rank:
            what = status.reason or "a failure"
            return PeerFailure(
                FailureKind.REPORTED, rank, (rank, me), f"rank {rank}'s supervisor reported {what}"
            )
        # A relay: keep the original rank and sentence, extend the route it travelled.
        path = status.path
        if not (len(path) >= 2 and path[0] == failed and path[-1] == rank):
            path = (failed, rank)
        reason = status.reason or f"rank {failed} failed (reported by rank {rank})"
        return PeerFailure(FailureKind.REPORTED, failed, (*path[: self.spec.size], me), reason)

    def unreachable(self, rank: int, error: str, now: float) -> PeerFailure | None:
        """A poll of `rank` failed with `error` (refused, timed out, garbage...)."""
        if self.failure is not None:
            return self.failure
        peer = self._peers[rank]
        peer.reachable, peer.error = False, error
        return self._timeouts(rank, now)

    def _timeouts(self, rank: int, now: float) -> PeerFailure | None:
        peer, spec = self._peers[rank], self.spec
        if peer.reachable:
            return None
        last = f" (last error: {peer.error})" if peer.error else ""
        if peer.last_seen is not None:
            silent = now - peer.last_seen
            if silent >= spec.peer_timeout:
                return self._decide(
                    PeerFailure(
                        FailureKind.UNREACHABLE,
                        rank,
                        (rank, spec.rank),
                        f"rank {rank} unreachable for {silent:.3g} s{last}",
                    )
                )
        elif now - self._start >= spec.join_timeout:
            return self._decide(
                PeerFailure(
                    FailureKind.NEVER_JOINED,
                    rank,
                    (rank, spec.rank),
                    f"rank {rank}'s supervisor never answered at {spec.peers[rank]} within "
                    f"{spec.join_timeout:g} s{last}",
                )
            )
        return None


# ----------------------------------------------------------------------------- publishing
@dataclass
class StatusBoard:
    """What this rank publishes: its supervisor's live state, plus the failure it is dying of.

    Pass the board itself as `serve_status`'s `get_status`. The first failure recorded wins:
    once a rank is dying of rank 1's engine, a later timeout elsewhere does not rename the cause.
    """

    rank: int
    state: Callable[[], str]
    incarnation: str = field(default_factory=new_incarnation)
    clock: Callable[[], float] = time.monotonic
    failed_rank: int | None = None
    reason: str = ""
    path: tuple[int, ...] = ()
    failed_at: float | None = None

    def fail_self(self, reason: str) -> None:
        """This rank's own engine failed; `reason` reads after "rank N's supervisor reported"."""
        self._record(self.rank, reason, (self.rank,))

    def relay(self, failure: PeerFailure) -> None:
        """This rank dies of a peer's failure: publish the original rank and sentence."""
        if failure.is_stop:
            raise ValueError("a peer stopping on request is not a failure: stop this rank instead")
        self._record(failure.failed_rank, failure.reason, failure.path)

    def _record(self, failed_rank: int, reason: str, path: tuple[int, ...]) -> None:
        if self.failed_at is None:
            self.failed_rank, self.reason, self.path = failed_rank, reason, path
            self.failed_at = self.clock()

    def linger_left(self, linger: float) -> float:
        """Seconds to keep serving `dead` before exiting (0 when nothing was published)."""
        if self.failed_at is None:
            return 0.0
        return max(0.0, self.failed_at + linger - self.clock())

    def __call__(self) -> ClusterStatus:
        return ClusterStatus(
            self.rank, self.state(), self.incarnation, self.failed_rank, self.reason, self.path
        )
