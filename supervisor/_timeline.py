"""The cold-start timeline: when each phase began, from our own steps and the child's log lines.

The supervisor marks its own phases (spawn, port_open, healthy, serving) and times each warmup
(`warmup.<name>`, spans inside the `healthy` phase). What ran before the supervisor (the
caller's volume reload, model build, preflight) comes in as lead phases, measured by the caller
and listed first, so `total` is the container's whole start, not only the part after the spawn.
An engine adds
markers: a phase name and a substring of the log line that starts it (SGLang's `Load weight
begin`, ...), and for some phases a reader: a function of the rest of that line that returns the
engine's own numbers (SGLang's `Engine startup timings (s): load_weight=12.3, ...`, with its
CUDA-graph group as `cuda_graph.decode`, ...). They join the timeline as `engine.<name>`. The
core knows no engine's format: the readers come through the engine seam. A child can print any
line, so a reader's answer is bounded (`MAX_ENGINE_NUMBERS`, names of `[a-z0-9_.]`) and a reader
that raises is ignored: a forged line costs a number, never the supervisor or a metric explosion.
Cold starts of a 700 GB model are long and expensive; this is how an operator sees where the
minutes went.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from ._redact import Needle

__all__ = [
    "MAX_ENGINE_NUMBERS",
    "MAX_SPANS",
    "LeadPhases",
    "Timeline",
    "TimingReader",
    "phase_name",
]

#: The rest of a marker's line -> the engine's numbers in it (engine-specific, from the seam).
TimingReader = Callable[[str], Mapping[str, float]]
#: At most this many engine numbers in all: each becomes a Prometheus label value.
MAX_ENGINE_NUMBERS = 48
_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
#: At most this many spans (warmups) and lead phases: a config holds them, but bounded anyway.
MAX_SPANS = 32


def phase_name(text: str) -> str:
    """`text` as a timeline name (a label value): lower case, `[a-z0-9_.]`, at most 64 long."""
    name = re.sub(r"[^a-z0-9_.]", "_", text.lower())[:64]
    return name if name[:1].isalpha() else f"p{name}"[:64]


class Timeline:
    def __init__(
        self,
        markers: Sequence[tuple[str, str]] = (),
        *,
        readers: Mapping[str, TimingReader] | None = None,
        lead: Sequence[tuple[str, float]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._markers = tuple((phase, Needle(needle)) for phase, needle in markers)
        self._readers = dict(readers or {})
        self._clock = clock
        self._t0 = clock()
        self._marks: dict[str, float] = {"spawn": 0.0}
        self.engine: dict[str, float] = {}
        self._lead: dict[str, float] = {}
        for name, seconds in lead:
            self._add(self._lead, name, seconds)
        self._spans: dict[str, float] = {}

    def span(self, name: str, seconds: float) -> None:
        """A measured stretch inside a phase (a warmup's latency): listed, not in `total`."""
        self._add(self._spans, name, seconds)

    @staticmethod
    def _add(into: dict[str, float], name: str, seconds: float) -> None:
        if len(into) < MAX_SPANS and math.isfinite(seconds) and seconds >= 0:
            into.setdefault(phase_name(name), float(seconds))

    def mark(self, phase: str) -> None:
        """Record the first time `phase` is reached; later marks of it are ignored."""
        self._marks.setdefault(phase, self._clock() - self._t0)

    def observe(self, text: str) -> None:
        """A log-block observer: `memchr`-cheap tests first, per-line work only on a hit.

        A phase already reached costs nothing, so once the server serves, a log flood pays
        nothing here.
        """
        for phase, needle in self._markers:
            if phase in self._marks or not needle.found(text):
                continue
            self.mark(phase)
            reader = self._readers.get(phase)
            if reader is None:
                continue
            at = text.find(needle.text)
            end = text.find("\n", at)
            self._read(reader, text[at + len(needle.text) : end if end >= 0 else len(text)])

    def _read(self, reader: TimingReader, rest: str) -> None:
        try:
            numbers = dict(reader(rest[:4096]))
        except Exception:  # a line the reader does not understand: no numbers, no harm
            return
        for key, value in numbers.items():
            if len(self.engine) >= MAX_ENGINE_NUMBERS:
                return
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and math.isfinite(value) and _NAME.fullmatch(key):
                self.engine.setdefault(key, float(value))

    @property
    def marks(self) -> dict[str, float]:
        """Seconds since spawn at which each phase was first reached, in time order."""
        return dict(sorted(self._marks.items(), key=lambda kv: kv[1]))

    def durations(self) -> dict[str, float]:
        """The lead phases, how long each phase lasted (until the next one), the spans, `total`
        (lead phases included), then the engine's own numbers."""
        marks = list(self.marks.items())
        out: dict[str, float] = dict(self._lead)
        for (name, start), (_, end) in itertools.pairwise(marks):
            out.setdefault(name, end - start)
        for name, seconds in self._spans.items():
            out.setdefault(name, seconds)
        if marks:
            out["total"] = sum(self._lead.values()) + marks[-1][1]
        for key, value in self.engine.items():
            out[f"engine.{key}"] = value
        return out

    def summary(self) -> str:
        parts = [f"{name}={value:.2f}{unit_of(name)}" for name, value in self.durations().items()]
        return "startup timeline: " + " ".join(parts)


def unit_of(name: str) -> str:
    """A number's unit, by the suffix its reader gave its name: `gb_per_s` is GB/s, `gb` is GB,
    anything else (a phase, `load_s`, `cuda_graph.decode`) seconds."""
    if name.endswith("gb_per_s"):
        return "GB/s"
    if name.endswith((".gb", "_gb")):
        return "GB"
    return "s"


class LeadPhases:
    """The caller's own steps before the supervisor starts, timed for `lead_phases`.

    A step that raises is still recorded (the start fails anyway, but a report made from these
    should say how long the failing step took).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.phases: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            self.phases.append((name, self._clock() - start))
