"""The cold-start timeline: when each phase began, from our own steps and the child's log lines.

The supervisor marks its own phases (spawn, port_open, healthy, serving). An engine adds
markers: a phase name and a substring of the log line that starts it (SGLang's `Load weight
begin`, ...). A marker that ends in `(s):` announces `name=seconds` pairs (SGLang's `Engine
startup timings (s): load_weight=12.3, ...`): those numbers join the timeline as `engine.<name>`.
Cold starts of a 700 GB model are long and expensive; this is how an operator sees where the
minutes went.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence

from ._redact import Needle

__all__ = ["Timeline"]

_PAIR = re.compile(r"\b([a-z_][a-z0-9_]*)=([0-9]+(?:\.[0-9]+)?)\b")


class Timeline:
    def __init__(
        self,
        markers: Sequence[tuple[str, str]] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._markers = tuple((phase, Needle(needle)) for phase, needle in markers)
        self._clock = clock
        self._t0 = clock()
        self._marks: dict[str, float] = {"spawn": 0.0}
        self.engine: dict[str, float] = {}

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
            if not needle.text.endswith("(s):"):
                continue
            at = text.find(needle.text)
            end = text.find("\n", at)
            line = text[at + len(needle.text) : end if end >= 0 else len(text)]
            for key, value in _PAIR.findall(line):
                self.engine.setdefault(key, float(value))

    @property
    def marks(self) -> dict[str, float]:
        """Seconds since spawn at which each phase was first reached, in time order."""
        return dict(sorted(self._marks.items(), key=lambda kv: kv[1]))

    def durations(self) -> dict[str, float]:
        """How long each phase lasted (until the next one), plus the engine's own numbers."""
        marks = list(self.marks.items())
        out: dict[str, float] = {}
        for (name, start), (_, end) in itertools.pairwise(marks):
            out[name] = end - start
        if marks:
            out["total"] = marks[-1][1]
        for key, value in self.engine.items():
            out[f"engine.{key}"] = value
        return out

    def summary(self) -> str:
        parts = [f"{name}={seconds:.2f}s" for name, seconds in self.durations().items()]
        return "startup timeline: " + " ".join(parts)
