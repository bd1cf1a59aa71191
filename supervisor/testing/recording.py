"""A log sink that keeps everything in memory: what tests and benchmarks read back.

One class instead of a copy in every test file: `lines` holds the server's lines and the
supervisor's own in arrival order (the supervisor's unprefixed, as `say` gave them), `said` only
the supervisor's, and `text` the whole output as the default sink would write it, with the
supervisor's lines marked `[supervisor] `. Unbounded on purpose: a test's output is small, and a
test that must bound memory uses the real sinks.
"""

from __future__ import annotations

__all__ = ["RecordingSink"]


class RecordingSink:
    """A `supervisor.LogSink` for tests: records, never writes."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.said: list[str] = []
        self.text = ""

    def child(self, stream: str, text: str) -> None:
        self.text += text
        self.lines.extend(text.splitlines())

    def supervisor(self, line: str) -> None:
        self.said.append(line)
        self.lines.append(line)
        self.text += f"[supervisor] {line}\n"
