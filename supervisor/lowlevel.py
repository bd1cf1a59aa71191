"""The pieces under the front door, for those who build on the core: new process managers, log
sinks, engine rooms, test doubles, benchmarks.

`supervisor` (the front door) is what running a server takes; this module, like trio's
`lowlevel`, is the stable name for the parts a deployment never needs but an implementer does.
The engine rooms and the deployment code of this package import from here and from the front
door only, never from a private module (`tests/test_house.py` enforces it).
"""

from __future__ import annotations

from ._cluster import format_address, parse_address
from ._cluster_peers import ClusterStatus, FailureKind, PeerFailure
from ._config import EXPECTATIONS
from ._engine import GENERIC, EngineTraits, choose_engine
from ._health import ProbeResult
from ._local import TREE_TOKEN_ENV, LocalChild, LocalProcessManager
from ._logs import LogTail, Redactor, one_line, pump
from ._memory import parse_size
from ._process import ByteSource, ChildProcess, KillResult, ListenerCheck, ProcessManager
from ._proctree import ProcInfo, children_of, proc_info
from ._progress import Canary, Selector, Verdict
from ._snapshot import freeze_tree
from ._states import TRANSITIONS, StateMachine
from ._timeline import LeadPhases, Timeline, TimingReader
from ._warmup import run_warmups

__all__ = [
    "EXPECTATIONS",
    "GENERIC",
    "TRANSITIONS",
    "TREE_TOKEN_ENV",
    "ByteSource",
    "Canary",
    "ChildProcess",
    "ClusterStatus",
    "EngineTraits",
    "FailureKind",
    "KillResult",
    "LeadPhases",
    "ListenerCheck",
    "LocalChild",
    "LocalProcessManager",
    "LogTail",
    "PeerFailure",
    "ProbeResult",
    "ProcInfo",
    "ProcessManager",
    "Redactor",
    "Selector",
    "StateMachine",
    "Timeline",
    "TimingReader",
    "Verdict",
    "children_of",
    "choose_engine",
    "format_address",
    "freeze_tree",
    "one_line",
    "parse_address",
    "parse_size",
    "proc_info",
    "pump",
    "run_warmups",
]
