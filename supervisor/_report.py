"""The crash report: one block of text that says how the server died, written exactly once.

It is bounded whatever the server printed: at most `lines` lines of the tail, each clipped to
`line_chars`, and at most `max_chars` for the lines together (older lines go first). A 50 MB line
without a newline before a crash must not become a 50 MB report in the platform's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._errors import describe_returncode
from ._logs import clip

__all__ = ["Classifier", "CrashReport", "unknown_cause"]

#: Reads the log tail and names a cause ("cuda-oom", "nccl", ...) or "unknown".
Classifier = Callable[[Sequence[str]], str]


def unknown_cause(lines: Sequence[str]) -> str:
    return "unknown"


@dataclass(frozen=True)
class CrashReport:
    """Why the server died: how it ended, a cause read from its log, and its last lines."""

    reason: str  # "exited" or "unhealthy"
    returncode: int | None
    cause: str
    served_s: float
    detail: str = ""
    tail: tuple[str, ...] = field(default_factory=tuple)

    @property
    def how(self) -> str:
        if self.reason == "unhealthy":
            return f"stopped answering ({self.detail})" if self.detail else "stopped answering"
        return f"exited with {describe_returncode(self.returncode)}"

    def summary(self) -> str:
        return (
            f"server died after serving for {self.served_s:.1f} s: {self.how}; cause={self.cause}"
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
            f"last {len(shown)} log lines:",
            *(f"  | {line}" for line in shown),
            "=" * 72,
        ]
        return "\n".join(out)
