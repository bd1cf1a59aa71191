"""sglang-supervisor: own an SGLang server's process tree, from spawn to reap.

The core is framework-neutral and never imports `modal` or `sglang`; the SGLang edge lives in
`supervisor.engines`, model settings in `supervisor.profiles`, and test doubles in
`supervisor.testing`.
"""

from __future__ import annotations

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
from ._report import CrashReport
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
    "ConfigError",
    "CrashReport",
    "Event",
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
    "PortInUse",
    "ProbeResult",
    "ProcessManager",
    "Redactor",
    "ServerDied",
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
    "WarmupFailed",
    "WarmupPayload",
    "WarmupPolicy",
    "WarmupResult",
    "describe_returncode",
    "force_exit",
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
