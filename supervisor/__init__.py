"""sglang-supervisor: own an SGLang server's process tree, from spawn to reap.

The core is framework-neutral and never imports `modal` or `sglang`; the SGLang edge lives in
`supervisor.engines`, model settings in `supervisor.profiles`, and test doubles in
`supervisor.testing`.
"""

from __future__ import annotations

from ._cluster import ClusterSpec, WorkerRules
from ._cluster_peers import ClusterStatus, FailureKind, PeerFailure
from ._config import (
    EXPECTATIONS,
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
from ._health import ProbeResult
from ._local import LocalChild, LocalProcessManager
from ._logs import LoggingSink, LogSink, LogTail, Redactor, StreamSink
from ._metrics import SupervisorMetrics, serve_metrics
from ._process import ByteSource, ChildProcess, KillResult, ListenerCheck, ProcessManager
from ._progress import ProgressPolicy, Selector, StallReport, Verdict
from ._rehearsal import rehearse_snapshot
from ._report import CrashReport
from ._snapshot import SnapshotError, SnapshotPolicy, SnapshotTiming, freeze_tree
from ._states import TRANSITIONS, Event, State, StateMachine, Transition
from ._supervisor import Outcome, OutcomeKind, Supervisor, force_exit
from ._timeline import Timeline
from ._warmup import WarmupResult

__all__ = [
    "EXPECTATIONS",
    "TRANSITIONS",
    "ByteSource",
    "ChildExited",
    "ChildProcess",
    "ClusterSpec",
    "ClusterStatus",
    "ConfigError",
    "CrashReport",
    "Event",
    "FailureKind",
    "ForeignListener",
    "HealthPolicy",
    "HealthTimeout",
    "IllegalTransition",
    "KillResult",
    "LaunchSpec",
    "ListenerCheck",
    "LivenessPolicy",
    "LocalChild",
    "LocalProcessManager",
    "LogPolicy",
    "LogSink",
    "LogTail",
    "LoggingSink",
    "Outcome",
    "OutcomeKind",
    "PeerFailure",
    "PortInUse",
    "ProbeResult",
    "ProcessManager",
    "ProgressPolicy",
    "RankFailed",
    "Redactor",
    "Selector",
    "ServerDied",
    "SnapshotError",
    "SnapshotPolicy",
    "SnapshotTiming",
    "StallReport",
    "StartupError",
    "State",
    "StateMachine",
    "StopPolicy",
    "StoppedBeforeServing",
    "StreamSink",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorError",
    "SupervisorMetrics",
    "Timeline",
    "Transition",
    "Verdict",
    "WarmupFailed",
    "WarmupPayload",
    "WarmupPolicy",
    "WarmupResult",
    "WorkerRules",
    "describe_returncode",
    "force_exit",
    "freeze_tree",
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
