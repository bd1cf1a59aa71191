"""sglang-supervisor: own an SGLang server's process tree, from spawn to reap.

The front door holds what running a server takes: the `Supervisor`, its config and policies,
what it reports, and its one exception tree. The parts for implementers (process managers, the
state machine's table, log plumbing, engine traits) are in `supervisor.lowlevel`, the command
line's parts in `supervisor.cli`. The core is framework-neutral and never imports `modal` or
`sglang`; the SGLang edge lives in `supervisor.engines`, model settings in
`supervisor.profiles`, and test doubles in `supervisor.testing`.

The names load on first use (PEP 562): a process that imports only a corner of the package (the
fake SGLang server, started hundreds of times by the tests, imports none of the core) does not
pay for the whole of it, about 0.4 s a start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each front-door name lives.
_HOMES = {
    "ChildExited": "._errors",
    "ClusterSpec": "._cluster",
    "ConfigError": "._errors",
    "CrashReport": "._report",
    "Event": "._states",
    "ForeignListener": "._errors",
    "HealthPolicy": "._config",
    "HealthTimeout": "._errors",
    "IllegalTransition": "._errors",
    "LaunchSpec": "._config",
    "LivenessPolicy": "._config",
    "LogPolicy": "._config",
    "LogSink": "._logs",
    "LoggingSink": "._logs",
    "MemoryPolicy": "._memory",
    "Outcome": "._supervisor",
    "OutcomeKind": "._supervisor",
    "PortInUse": "._errors",
    "ProgressPolicy": "._progress",
    "RankFailed": "._errors",
    "ServerDied": "._errors",
    "SnapshotError": "._snapshot",
    "SnapshotPolicy": "._snapshot",
    "SnapshotTiming": "._snapshot",
    "StallReport": "._progress_tracker",
    "StartupError": "._errors",
    "State": "._states",
    "StopPolicy": "._config",
    "StoppedBeforeServing": "._errors",
    "StreamSink": "._logs",
    "Supervisor": "._supervisor",
    "SupervisorConfig": "._config",
    "SupervisorError": "._errors",
    "SupervisorMetrics": "._metrics",
    "Transition": "._states",
    "WarmupFailed": "._errors",
    "WarmupPayload": "._config",
    "WarmupPolicy": "._config",
    "WarmupResult": "._warmup",
    "WorkerRules": "._cluster",
    "describe_returncode": "._errors",
    "force_exit": "._supervisor",
    "rehearse_snapshot": "._rehearsal",
    "serve_metrics": "._metrics",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    if getattr(value, "__module__", "").startswith("supervisor._"):
        try:
            value.__module__ = "supervisor"  # shown as it is imported: supervisor.Supervisor
        except (AttributeError, TypeError):
            pass
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
