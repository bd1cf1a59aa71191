"""Pump the child's output to a sink, keep a tail for the crash report, and hide secrets.

The reader works in chunks, not lines: it reads up to 256 KiB, hands every complete line of the
chunk on as one block, and keeps the partial last line for the next chunk. So a multi-megabyte
line is fine (no `readline` limit to trip), a flood of short lines costs one write per chunk, and
the pipe is drained as fast as the child fills it: a full pipe would block SGLang's scheduler.
Bytes that are not UTF-8 become U+FFFD; they are never fatal. Redaction runs on whole lines, so
a secret split across two reads is still caught.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TextIO

import anyio

from ._process import ByteSource

__all__ = [
    "LogSink",
    "LogTail",
    "LoggingSink",
    "Redactor",
    "StreamSink",
    "pump",
]

REDACTED = "***"

# Secrets that SGLang and friends print without being asked: the server_args line carries
# api_key='...' in clear text, and an argv or a header may carry a bearer token. Each pattern
# comes with literal words that must be present for it to match: a cheap `in` test (memchr
# speed) skips the regex on the blocks that cannot hold a secret, which is nearly all of them.
_GENERIC: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    (("api_key",), re.compile(r"""(\b(?:admin_)?api_key\s*=\s*['"])(?!None\b)([^'"]+)(['"])""")),
    (("-api-key",), re.compile(r"""(--(?:admin-)?api-key(?:=|\s+))(?!-)(\S+)()""")),
    (("earer", "EARER"), re.compile(r"""(\bAuthorization:?\s*['"]?Bearer\s+)([^\s'"]+)()""", re.I)),
    (
        ("TOKEN=", "API_KEY="),
        re.compile(r"""(\b(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN|API_KEY)=)(\S+)()"""),
    ),
    (("hf_",), re.compile(r"""()\b(hf_[A-Za-z0-9]{16,})()""")),
]


def _mask(m: re.Match[str]) -> str:
    return f"{m.group(1)}{REDACTED}{m.group(3)}"


class Redactor:
    """Replace known secrets and secret-shaped values by `***` in any text the supervisor writes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for words, pattern in _GENERIC:
            if any(w in text for w in words):
                text = pattern.sub(_mask, text)
        return text


class LogTail:
    """The last N lines of the child's output, both streams interleaved, already redacted."""

    def __init__(self, maxlen: int) -> None:
        self._lines: deque[str] = deque(maxlen=maxlen)
        self.lines_total = 0
        self.bytes_total = 0

    def extend(self, lines: list[str], nbytes: int) -> None:
        self._lines.extend(lines)
        self.lines_total += len(lines)
        self.bytes_total += nbytes

    def lines(self, n: int | None = None) -> list[str]:
        items = list(self._lines)
        return items if n is None else items[-n:]


class LogSink(Protocol):
    """Where output goes: the child's lines (a block of whole lines) and the supervisor's own."""

    def child(self, stream: str, text: str) -> None: ...

    def supervisor(self, line: str) -> None: ...


class StreamSink:
    """Write everything to a text stream (default: this process's stdout), child lines verbatim.

    The child's lines keep SGLang's own format; the supervisor's lines start with `[supervisor]`
    so that `grep` separates them.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def child(self, stream: str, text: str) -> None:
        out = self.stream
        out.write(text)
        out.flush()

    def supervisor(self, line: str) -> None:
        out = self.stream
        out.write(f"[supervisor] {line}\n")
        out.flush()


class LoggingSink:
    """Hand every line to `logging`: the child's at INFO on `<name>.child`, ours on `<name>`."""

    def __init__(self, logger: logging.Logger | str = "supervisor") -> None:
        self._logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._child = self._logger.getChild("child")

    def child(self, stream: str, text: str) -> None:
        for line in text.splitlines():
            self._child.info("%s", line, extra={"stream": stream})

    def supervisor(self, line: str) -> None:
        self._logger.info("%s", line)


BlockObserver = Callable[[str], None]


async def pump(
    source: ByteSource,
    *,
    stream: str,
    sink: LogSink,
    tail: LogTail,
    redact: Redactor,
    observers: Iterable[BlockObserver] = (),
    max_line_bytes: int = 8 << 20,
    chunk_bytes: int = 1 << 18,
) -> None:
    """Read `source` to its end; every complete line is redacted, kept, written and observed."""
    observers = tuple(observers)

    def emit(raw: bytes) -> None:
        text = redact(raw.decode("utf-8", "replace"))
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        tail.extend(lines, len(raw))
        sink.child(stream, text)
        for observe in observers:
            observe(text)

    buf = bytearray()
    try:
        while True:
            try:
                chunk = await source.receive(chunk_bytes)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            buf += chunk
            cut = buf.rfind(b"\n")
            if cut >= 0:
                block = bytes(buf[: cut + 1])
                del buf[: cut + 1]
                emit(block)
            if len(buf) > max_line_bytes:  # a line with no end in sight: pass it on in pieces
                emit(bytes(buf) + b"\n")
                buf.clear()
        if buf:  # the final line, even without its newline
            emit(bytes(buf) + b"\n")
    finally:
        with anyio.CancelScope(shield=True):
            await source.aclose()
