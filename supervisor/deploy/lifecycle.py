"""The serving container's lifecycle that any platform binds: enter, sleep, wake, exit.

`modal_entry.py` is only the binding: it decides GPUs, volumes and secrets (from
`supervisor.deploy.settings`), and calls these; the steps before serving live next door
(`download`, `verify`). So every decision is testable without Modal, and
another platform can reuse all of it. Platform hooks come in as plain callables (a volume's
reload, the exit that recycles the container, the image's runtime check), never as platform
objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from supervisor import (
    ConfigError,
    CrashReport,
    LivenessPolicy,
    MemoryPolicy,
    SnapshotPolicy,
    StartupError,
    StopPolicy,
    Supervisor,
)
from supervisor.blocking import BlockingSupervisor
from supervisor.deploy.drain import DrainBudget
from supervisor.deploy.dummy_weights import (
    DUMMY_WEIGHTS_BANNER,
    dummy_weights_enabled,
    with_dummy_weights,
)
from supervisor.deploy.env_vars import ENV_PORT
from supervisor.deploy.ranks import NodeLaunch, for_node
from supervisor.deploy.verify import preflight_report
from supervisor.engines.preflight import PreflightReport, check_marker
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_cache import mark_served, with_keyed_cache
from supervisor.engines.sglang_causes import CAUSE_HINTS, classify_crash
from supervisor.engines.sglang_keys import fresh_admin_key, key_file
from supervisor.lowlevel import LeadPhases, one_line
from supervisor.profiles import Profile

__all__ = [
    "DIST_INIT_PORT",
    "ENV_ADMIN_API_KEY",
    "ENV_API_KEY",
    "ENV_ENGINE_COMMAND",
    "NodePlace",
    "ServerLifecycle",
    "no_runtime_problems",
]

ENV_ENGINE_COMMAND = "SGLANG_SUPERVISOR_ENGINE_COMMAND"  # run a fake instead of SGLang (tests)
ENV_API_KEY = "API_KEY"  # the variable the API-key secret provides
ENV_ADMIN_API_KEY = "ADMIN_API_KEY"  # the variable an operator's admin-key secret provides
#: The rendezvous port on rank 0 (`--dist-init-addr`): SGLang derives its fixed ports from it
#: upwards (dist port + 1 ...), clear of the supervisors' status ports from 21000.
DIST_INIT_PORT = 20000


def no_runtime_problems() -> Sequence[str]:
    """The default runtime check: nothing to compare against."""
    return ()


def startup_note(exc: StartupError, lines: int = 30) -> str:
    """The log tail of a failed start, as the note the platform prints under the exception."""
    shown = exc.tail[-lines:]
    return "\n".join([f"last {len(shown)} log lines:", *(f"  | {one_line(x)}" for x in shown)])


@dataclass
class ServerLifecycle:
    """A serving container's hooks: `enter()` returns once SGLang serves; `exit()` drains.

    `enter()` runs, in order: the runtime check (is this the image we were built for?), the
    volume reloads, the preflight, then the supervisor, and returns only once every warmup has
    answered, because a platform routes traffic as soon as its enter hook returns. A startup
    failure raises with the crash report's reason and log tail. A death after serving writes the
    crash report and calls `recycle`, which must end the process (the platform replaces the
    container). `exit()` is the graceful stop: SIGTERM to SGLang, `stop_timeout_s` to drain, then
    SIGKILL to the tree; it must fit the platform's exit grace (see `DrainBudget`).
    """

    profile: Profile
    recycle: Callable[[CrashReport], None]
    reloads: Sequence[Callable[[], None]] = ()
    #: SIGTERM -> SIGKILL. The default fits a fixed 30 s exit grace (no in-flight budget).
    stop_timeout_s: float = float(DrainBudget.derive(0).stop_timeout_s)
    #: The supervisor's health deadline; None: the profile's.
    startup_timeout_s: float | None = None
    #: The planned-recycle mark (`SGLANG_SUPERVISOR_MEMORY_HIGH`); None: 90 % of the cgroup's.
    memory_high_bytes: int | None = None
    #: Persists the cache volume after a start that compiled something (Modal: commit()).
    commit: Callable[[], None] | None = None
    #: Problems with the runtime (installed SGLang, CUDA); empty means fine. Runs first.
    runtime_check: Callable[[], Sequence[str]] = no_runtime_problems
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    #: Where this container sits in a multi-node cluster (the platform's cluster info); called
    #: once, only for a profile with nnodes > 1.
    node: Callable[[], NodePlace] | None = None
    supervisor: BlockingSupervisor | None = None
    preflight: PreflightReport | None = None
    _node: NodeLaunch | None = field(default=None, init=False, repr=False)
    #: What `enter()` timed before the supervisor (runtime check, reloads, preflight).
    _lead: tuple[tuple[str, float], ...] = field(default=(), init=False, repr=False)
    _keys: contextlib.ExitStack = field(
        default_factory=contextlib.ExitStack, init=False, repr=False
    )

    @property
    def engine(self) -> list[str] | None:
        command = self.env.get(ENV_ENGINE_COMMAND)
        return shlex.split(command) if command else None

    @property
    def dummy_weights(self) -> bool:
        return dummy_weights_enabled(self.env)

    @property
    def launch(self) -> SGLangLaunch:
        """This node's launch: overrides applied and, on a cluster, its rank and rendezvous."""
        return self.node_launch.launch

    @property
    def node_launch(self) -> NodeLaunch:
        if self._node is None:
            port = self.env.get(ENV_PORT)
            launch = self.profile.launch
            if self.engine:
                launch = launch.with_overrides(host="127.0.0.1")
            if self.dummy_weights:
                launch = with_dummy_weights(launch)
            if port:
                launch = launch.with_overrides(port=int(port))
            if launch.nnodes == 1:
                self._node = NodeLaunch(launch, None)
            else:
                if self.node is None:
                    raise ConfigError(
                        f"profile {self.profile.name} runs on {launch.nnodes} nodes: the platform "
                        "must say where this container sits (ServerLifecycle.node)"
                    )
                place = self.node()
                self._node = for_node(
                    launch,
                    rank=place.rank,
                    dist_init_addr=place.dist_init_addr,
                    hosts=place.hosts,
                    peers=place.peers,
                )
        return self._node

    def enter(self) -> Supervisor:
        """Check, reload, preflight, start; return once serving (or raise saying why not)."""
        lead = LeadPhases()
        with lead.phase("runtime_check"):
            problems = [" ".join(str(p).split()) for p in self.runtime_check()]
        if problems:
            raise ConfigError("runtime check failed: " + "; ".join(problems))
        with lead.phase("volume_reload"):
            for reload in self.reloads:
                reload()
        with lead.phase("preflight"):
            self.prepare()
        self._lead = tuple(lead.phases)
        return self.start()

    def prepare(self) -> PreflightReport:
        """The preflight; raises ConfigError with one line per failed check."""
        real = self.engine is None
        dummy = self.dummy_weights
        if dummy:
            self.log(DUMMY_WEIGHTS_BANNER)
        launch = self.launch
        report = preflight_report(
            self.profile, launch, real=real, dummy=dummy, gpus=True, port=True, marker=False
        )
        for line in report.render().splitlines():
            self.log(f"[supervisor] {line}")
        if real and self.profile.uses_deepgemm and check_marker(launch).status != "ok":
            self.log("[supervisor] warning: no DeepGEMM marker; kernels will JIT on this start")
        if not report.ok:
            raise ConfigError("preflight failed: " + "; ".join(c.line() for c in report.failures))
        self.preflight = report
        return report

    def start(self) -> Supervisor:
        """Start SGLang under the supervisor; return once serving."""
        api_key = self.env.get(ENV_API_KEY) or None
        # The operator's admin key (a Modal secret named by SGLANG_SUPERVISOR_ADMIN_KEY_SECRET),
        # else a fresh one for this container: no client key opens an admin route either way.
        admin_key = self.env.get(ENV_ADMIN_API_KEY) or fresh_admin_key()
        node = self.node_launch
        worker = node.cluster is not None and node.cluster.rank > 0
        launch, keyed, warm = with_keyed_cache(node.launch, self.profile.gpu)
        if keyed is not None:
            state = "warm" if warm else "not served from yet"
            self.log(f"[lifecycle] SGLang's cache: {keyed} ({state})")
        config = launch.supervisor_config(
            api_key=api_key,
            admin_api_key=admin_key,
            # a worker rank serves no API (SGLang's dummy health only): nothing to warm up there
            warmups=() if worker else self.profile.warmups,
            startup_timeout=self.startup_timeout_s or self.profile.startup_timeout_s,
            engine=self.engine,
            # the keys in a 0600 file (--config), not on the argv that `ps` shows every user
            key_file=self._keys.enter_context(key_file(api_key, admin_key)),
            liveness=LivenessPolicy(),
            stop=StopPolicy(stop_timeout=self.stop_timeout_s),
            # Random weights cannot call tools or think: the warmups still run (CUDA graphs,
            # every path), but their verdicts only warn.
            warmup_fail_startup=not self.dummy_weights,
        )
        config = dataclasses.replace(
            config,
            expect_warm_caches=frozenset({"sglang"}) if warm else frozenset(),
            lead_phases=self._lead,
            cluster=node.cluster,
            snapshot=SnapshotPolicy() if self.profile.snapshot_capable else None,
            memory=MemoryPolicy(high_bytes=self.memory_high_bytes),
        )
        self.supervisor = BlockingSupervisor(
            config,
            classify=classify_crash,
            hints=CAUSE_HINTS,
            on_death=lambda report: self.recycle(report),
        )
        try:
            started = self.supervisor.start()
        except StartupError as exc:
            # The platform prints this exception, notes included (modal/_traceback.py
            # print_exception), as the reason the container failed to start: make it carry the
            # report. A note, never a rebuilt exception: a subclass's own fields (a RankFailed's
            # failure, a WarmupFailed's results) must reach the caller intact.
            exc.add_note(startup_note(exc))
            raise
        served_news = keyed is not None and mark_served(keyed)
        if (started.caches_missed or served_news) and self.commit is not None:
            # What this start compiled goes to the volume now, so the next cold start reads it
            # (a Modal Volume shows other containers only what was committed), and with it the
            # mark that a start served from this key.
            what = ", ".join(started.caches_missed) or "the served mark"
            self.log(f"[lifecycle] committing the cache volume: {what}")
            self.commit()
        return started

    def sleep(self) -> None:
        """Before a memory snapshot: release SGLang's GPU memory, liveness paused."""
        if self.supervisor is None:
            raise RuntimeError("sleep() before enter()")
        self.supervisor.sleep()

    def wake(self) -> None:
        """After a restore: resume, verify health and a generation; raises if it cannot serve."""
        if self.supervisor is None:
            raise RuntimeError("wake() before enter()")
        self.supervisor.wake()

    def exit(self) -> None:
        """Drain and stop; returns once the whole tree is gone. A no-op if never started."""
        try:
            if self.supervisor is not None:
                self.supervisor.stop()
        finally:
            self._keys.close()  # the key file goes once nothing can read it any more


@dataclass(frozen=True)
class NodePlace:
    """Where a container sits in a cluster, as the platform says (Modal's cluster info).

    `hosts` has one address per rank, rank 0's first: rank 0's is the rendezvous host. `peers`
    overrides the supervisors' status addresses (one host running every rank: distinct ports).
    """

    rank: int
    hosts: tuple[str, ...]
    dist_port: int = DIST_INIT_PORT
    peers: tuple[str, ...] | None = None

    @property
    def dist_init_addr(self) -> str:
        host = self.hosts[0]
        return f"[{host}]:{self.dist_port}" if ":" in host else f"{host}:{self.dist_port}"
