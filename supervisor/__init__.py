"""sglang-supervisor: own an SGLang server's process tree, from spawn to reap.

The front door holds what running a server takes: the `Supervisor`, its config and policies,
what it reports, and its one exception tree. The parts for implementers (process managers, the
state machine's table, log plumbing, engine traits) are in `supervisor.lowlevel`, the command
line's parts in `supervisor.cli`. The core is framework-neutral and never imports `modal` or
`sglang`; the SGLang edge lives in `supervisor.engines`, model settings in
`supervisor.profiles`, and test doubles in `supervisor.testing`.
"""

from __future__ import annotations

from ._cluster import ClusterSpec, WorkerRules
from ._config import (
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    LogPolicy,
    StopPolicy,
    SupervisorConfig,
    WarmupPayload,
    WarmupPolicy,
)
from ._errors import (
    ChildExited,
    ConfigError,
    ForeignListener,
    HealthTimeout,
    IllegalTransition,
    PortInUse,
    RankFailed,
    ServerDied,
    StartupError,
    StoppedBeforeServing,
    SupervisorError,
    WarmupFailed,
    describe_returncode,
)
from ._logs import LoggingSink, LogSink, StreamSink
from ._memory import MemoryPolicy
from ._metrics import SupervisorMetrics, serve_metrics
from ._progress import ProgressPolicy
from ._progress_tracker import StallReport
from ._rehearsal import rehearse_snapshot
from ._report import CrashReport
from ._snapshot import SnapshotError, SnapshotPolicy, SnapshotTiming
from ._states import Event, State, Transition
from ._supervisor import Outcome, OutcomeKind, Supervisor, force_exit
from ._warmup import WarmupResult

__all__ = [
    "ChildExited",
    "ClusterSpec",
    "ConfigError",
    "CrashReport",
    "Event",
    "ForeignListener",
    "HealthPolicy",
    "HealthTimeout",
    "IllegalTransition",
    "LaunchSpec",
    "LivenessPolicy",
    "LogPolicy",
    "LogSink",
    "LoggingSink",
    "MemoryPolicy",
    "Outcome",
    "OutcomeKind",
    "PortInUse",
    "ProgressPolicy",
    "RankFailed",
    "ServerDied",
    "SnapshotError",
    "SnapshotPolicy",
    "SnapshotTiming",
    "StallReport",
    "StartupError",
    "State",
    "StopPolicy",
    "StoppedBeforeServing",
    "StreamSink",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorError",
    "SupervisorMetrics",
    "Transition",
    "WarmupFailed",
    "WarmupPayload",
    "WarmupPolicy",
    "WarmupResult",
    "WorkerRules",
    "describe_returncode",
    "force_exit",
    "rehearse_snapshot",
    "serve_metrics",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("supervisor._"):
        try:
            _obj.__module__ = "supervisor"
        except (AttributeError, TypeError):
            pass
del _name, _obj
