"""One run's state, in one object: what every phase of the lifecycle reads and writes.

The phases are functions over a `Run` (`_startup.start_up`, `_serving.serve`, `_endings.drain`,
`_endings.finish`, ...) rather than methods of a class ladder, so one phase reads top to bottom in
one file, and the state it touches is declared here, once, with its owner. `Supervisor` builds
the run, spawns the tree and calls the phases; nothing else creates one.

A cluster adds a collaborator, `Run.cluster` (the `ClusterRole` below, built by `_membership`
only when the config names a cluster): it adds one contender to every race and has the first
word when the engine exits. A single-node run leaves it None and never imports cluster code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import anyio
import httpx

from ._caches import CacheCount
from ._config import SupervisorConfig
from ._health import Nudge, ProbeResult
from ._logs import LogTail
from ._metrics import SupervisorMetrics
from ._report import Classifier, CrashReport
from ._snapshot import ClientSlot, SnapshotTiming, fresh_client
from ._states import StateMachine, Transition
from ._tasks import Race
from ._timeline import Timeline
from ._warmup import WarmupResult

if TYPE_CHECKING:
    from ._endings import Outcome
    from ._errors import SupervisorError
    from ._process import ChildProcess

__all__ = ["ClusterRole", "DeathHandler", "Run"]

DeathHandler = Callable[[CrashReport], None]


class ClusterRole(Protocol):
    """What a run asks of its cluster membership (`_membership.Membership` implements it)."""

    @property
    def failed_rank(self) -> int | None:
        """The rank this cluster's first failure names, once one is known."""

    def contenders(self) -> list[tuple[anyio.Event, Race]]:
        """Events that end any phase's race, with the kind each stands for."""

    async def on_peer(self, child: ChildProcess) -> Outcome:
        """A phase lost its race to a peer: end with the cluster (or raise `RankFailed`)."""

    async def on_engine_exit(self, child: ChildProcess) -> Outcome | None:
        """The engine exited: the cluster's ending if it has one (a broadcast stop, a peer's
        earlier failure), else None for the plain handling."""

    async def linger(self) -> None:
        """Keep publishing this rank's failure until the peers had time to read it."""


class Run:
    """The per-run state of one `Supervisor`: set up here, changed only by the phases."""

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        metrics: SupervisorMetrics,
        say: Callable[[str], None],
        classify: Classifier,
        hints: Mapping[str, str],
        on_death: DeathHandler | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.say = say
        self.classify = classify
        self.hints = dict(hints)
        self.on_death = on_death
        self.tail = LogTail(config.logs.tail_lines)
        self.timeline = Timeline(
            config.phase_markers, readers=config.timing_readers, lead=config.lead_phases
        )
        self.machine = StateMachine()
        self.machine.observe(self._announce)
        self.machine.observe(metrics.on_transition)
        # Phases take the client from the slot when they start; a sleep closes it, a wake renews.
        self.slot = ClientSlot(lambda: fresh_client(transport))
        self.nudge = Nudge()  # the ready line cuts the health wait's backoff short
        self.cluster: ClusterRole | None = None
        # events: set once, by their one owner
        self.exited = anyio.Event()  # the exit watcher
        self.stop_requested = anyio.Event()  # Supervisor.stop
        self.stop_now = anyio.Event()  # Supervisor.stop(now=True)
        self.pumps_done = anyio.Event()  # the log pumps, at end of file
        self.done = anyio.Event()  # Supervisor.run, on its way out
        self.sleep_requested = anyio.Event()  # renewed by each sleep
        self.wake_requested = anyio.Event()  # renewed by each wake
        self._state_changed = anyio.Event()
        # findings
        self.returncode: int | None = None
        self.last_probe: ProbeResult | None = None
        self.serving_since: float | None = None
        self.serving_announced = False
        self.warmup_results: list[WarmupResult] = []
        self.caches_before: dict[str, CacheCount | None] = {}
        #: The caches this start added to (the cache report's misses): worth persisting.
        self.caches_missed: tuple[str, ...] = ()
        self.snapshot_timing = SnapshotTiming()
        self.report: CrashReport | None = None
        #: The error `Supervisor.run` raised, once it has: what `sleep()` and `wake()` raise too.
        self.failure: SupervisorError | None = None

    @property
    def is_worker(self) -> bool:
        """A rank >= 1 of a cluster: no HTTP server of its own, and deaf to SIGTERM (SGLang)."""
        return self.config.cluster is not None and self.config.cluster.rank > 0

    def served_s(self) -> float:
        """Seconds serving since the last `serving` (never across a sleep)."""
        return time.monotonic() - (self.serving_since or time.monotonic())

    async def state_changed(self) -> None:
        """Return at the next transition."""
        await self._state_changed.wait()

    def _announce(self, t: Transition) -> None:
        note = f" ({t.note})" if t.note else ""
        self.say(f"state={t.new.value} from={t.old.value} event={t.event.value}{note}")
        changed, self._state_changed = self._state_changed, anyio.Event()
        changed.set()
