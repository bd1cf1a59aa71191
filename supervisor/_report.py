"""The crash report: one block of text that says how the server died, written exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._errors import describe_returncode

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

    def render(self, lines: int = 50) -> str:
        shown = self.tail[-lines:]
        out = [
            "=" * 72,
            "CRASH REPORT",
            self.summary(),
            f"last {len(shown)} log lines:",
            *(f"  | {line}" for line in shown),
            "=" * 72,
        ]
        return "\n".join(out)
