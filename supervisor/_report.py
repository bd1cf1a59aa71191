"""The crash report: one block of text that says how the server died, written exactly once.

It is bounded whatever the server printed: at most `lines` lines of the tail, each clipped to
`line_chars`, and at most `max_chars` for the lines together (older lines go first). A 50 MB line
without a newline before a crash must not become a 50 MB report in the platform's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._errors import describe_returncode
from ._logs import clip, one_line

__all__ = ["REASONS", "Classifier", "CrashReport", "unknown_cause"]

#: Reads the log tail and names a cause ("cuda-oom", "nccl", ...) or "unknown".
Classifier = Callable[[Sequence[str]], str]


def unknown_cause(lines: Sequence[str]) -> str:
    return "unknown"


#: The reasons a report can give, and what each means.
REASONS = {
    "exited": "the main process exited",
    "unhealthy": "the liveness budget was spent (or, on a cluster worker, a scheduler vanished)",
    "stalled": "work waited while the engine's progress counters stood still (hang detection)",
    "peer": "another rank of the cluster failed; `failed_rank` names it",
    "memory": "the tree's memory passed the high mark: a planned recycle, the engine drained first",
}


@dataclass(frozen=True)
class CrashReport:
    """Why the server died: how it ended, a cause read from its log, and its last lines.

    `failed_rank` is set on a multi-node cluster: the rank whose failure ended this one (this
    rank itself when its own engine died), so every rank's report names the same culprit.
    """

    reason: str  # one of REASONS
    returncode: int | None
    cause: str
    served_s: float
    detail: str = ""
    tail: tuple[str, ...] = field(default_factory=tuple)
    failed_rank: int | None = None
    #: What an operator does about the cause, from the engine's hints ("" when it has none).
    hint: str = ""

    @property
    def how(self) -> str:
        if self.reason == "unhealthy":
            return f"stopped answering ({self.detail})" if self.detail else "stopped answering"
        if self.reason == "stalled":
            return f"stalled ({self.detail})" if self.detail else "stalled"
        if self.reason == "memory":
            return f"recycled for memory ({self.detail})" if self.detail else "recycled for memory"
        if self.reason == "peer":
            return f"a peer failed ({self.detail})" if self.detail else "a peer failed"
        return f"exited with {describe_returncode(self.returncode)}"

    def summary(self) -> str:
        rank = "" if self.failed_rank is None else f"; rank {self.failed_rank} failed"
        return (
            f"server died after serving for {self.served_s:.1f} s: {self.how}; "
            f"cause={self.cause}{rank}"
        )

    def render(self, lines: int = 50, *, line_chars: int = 2048, max_chars: int = 32768) -> str:
        shown: list[str] = []
        used = 0
        for line in reversed(self.tail[-lines:] if lines > 0 else ()):
            line = clip(line, line_chars)
            used += len(line) + 5
            if used > max_chars:
                break
            shown.append(line)
        shown.reverse()
        out = [
            "=" * 72,
            "CRASH REPORT",
            self.summary(),
            *([f"what to do: {self.hint}"] if self.hint else []),
            f"last {len(shown)} log lines:",
            *(f"  | {one_line(line)}" for line in shown),
            "=" * 72,
        ]
        return "\n".join(out)
