"""The engine seam: what the core may know about a server, handed in by whoever knows it.

The core supervises any HTTP server; an engine room (`supervisor.engines`) knows one engine and
describes it as `EngineTraits`, a plain value: how to read a crash from its log, the line that
says it is ready, its startup phases, how long its own drain may take, and how to recognise its
command line. Entry points pass the known traits to the CLI (`main(engines=...)`), so `run`
gives an SGLang command SGLang's crash causes and drain timings while the core itself ships no
SGLang fact. `GENERIC` is what an unrecognised command gets: nothing assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ._cluster import WorkerRules
from ._errors import ConfigError
from ._progress import ProgressPolicy
from ._report import Classifier, unknown_cause
from ._timeline import TimingReader

__all__ = ["GENERIC", "EngineTraits", "choose_engine"]


def _never(argv: Sequence[str]) -> bool:
    return False


@dataclass(frozen=True)
class EngineTraits:
    """One engine's traits. Every field has an engine-neutral default, so a trait is opt-in.

    `stop_timeout` is the drain the engine needs after SIGTERM before the tree is SIGKILLed (None:
    the core's `StopPolicy` default); `recognizes` says whether an argv starts this engine.
    """

    name: str
    classify: Classifier = unknown_cause
    #: cause -> what an operator does about it, shown in the crash report.
    hints: Mapping[str, str] = field(default_factory=dict)
    ready_line: str | None = None
    phase_markers: tuple[tuple[str, str], ...] = ()
    timing_readers: Mapping[str, TimingReader] = field(default_factory=dict)
    #: The progress watch's reading of this engine's metrics (None: it has none we know).
    progress: ProgressPolicy | None = None
    stop_timeout: float | None = None
    #: How its worker ranks stop on a multi-node cluster.
    worker: WorkerRules = field(default_factory=WorkerRules)
    recognizes: Callable[[Sequence[str]], bool] = _never


#: Any HTTP server: nothing assumed.
GENERIC = EngineTraits("generic")


def choose_engine(
    argv: Sequence[str], engines: Sequence[EngineTraits], choice: str = "auto"
) -> EngineTraits:
    """The traits for `argv`: the named engine, else the first that recognises it, else GENERIC."""
    if choice == "auto":
        return next((e for e in engines if e.recognizes(argv)), GENERIC)
    for engine in (GENERIC, *engines):
        if engine.name == choice:
            return engine
    names = ", ".join(["auto", GENERIC.name, *(e.name for e in engines)])
    raise ConfigError(f"--engine {choice}: unknown engine; choose one of {names}")
