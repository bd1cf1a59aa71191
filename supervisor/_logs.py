"""Pump the child's output to a sink, keep a bounded tail for the crash report, and hide secrets.

The reader works in chunks, not lines: it reads up to 256 KiB and splits it at its last b"\n"
(never part of a multi-byte UTF-8 character): the whole lines before it are decoded in place and
handed on as one block, the partial line after it waits for the next chunk. Bad UTF-8 becomes
U+FFFD, never an error. A flood of short lines therefore costs a handful of C-speed passes per
256 KiB and no per-line Python: redaction and the observers first ask `memchr`-cheap questions,
the tail splits only the last N lines of a block, and a block that needed no change is written
as the bytes that came. The pipe is drained as fast as the child fills it: a full pipe would
block SGLang's scheduler.

Every buffer has a cap. A line longer than `max_line_bytes` (1 MiB by default: SGLang's longest
line, `server_args=`, passes whole) is passed on in pieces of about that size, each ending in a
newline; a tail entry holds at most 8 KiB of its line and says how much it cut.

Secrets (`_redact`): redaction runs on whole lines; a giant line is redacted before it is cut,
and the cut keeps the longest secret's length (and any `api_key`-like word of the last 4 KiB)
for the next piece, so a secret that straddles two pieces is still caught.

The supervisor's own lines cannot be forged: they start with `[supervisor] `, and the child's
output never contains `[supervisor]` anywhere, because the pump rewrites it to `[~supervisor]`.
So a reader that trusts lines starting with (or even containing) `[supervisor]` reads only ours,
whatever the child prints, on any line separator; the child's other lines pass byte for byte.
"""

from __future__ import annotations

import codecs
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TextIO

import anyio

from ._process import ByteSource
from ._redact import Needle, Redactor

__all__ = [
    "FORGED_MARK",
    "LogSink",
    "LogTail",
    "LoggingSink",
    "Redactor",
    "StreamSink",
    "clip",
    "one_line",
    "pump",
    "unforge",
]

SUPERVISOR_MARK = "[supervisor]"
FORGED_MARK = "[~supervisor]"  # what a child's `[supervisor]` becomes
TAIL_LINE_CHARS = 8 << 10  # the most a tail entry keeps of its line
_UTF8 = ("utf-8", "utf8")

_FORGED = Needle(SUPERVISOR_MARK)


#: Every character `str.splitlines()` ends a line at (log viewers split on most of them too).
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in LINE_BREAKS})
_ESCAPE_BREAKS_BUT_NL = str.maketrans({c: repr(c)[1:-1] for c in LINE_BREAKS if c != "\n"})


def one_line(text: str) -> str:
    """`text` with every line break shown escaped (`\\r`, `\\u2028`, ...): it stays one line.

    For the child's text quoted inside one of our lines (the crash report's tail, a startup
    failure's tail): a tqdm bar's `\\r` must not start a line of our output with the child's text.
    """
    return text.translate(_ESCAPE_BREAKS)


def unforge(text: str) -> str:
    """Rewrite `[supervisor]` so that no child text can pass for one of our lines."""
    return text.replace(SUPERVISOR_MARK, FORGED_MARK) if _FORGED.found(text) else text


def clip(line: str, limit: int = TAIL_LINE_CHARS) -> str:
    """`line` cut to `limit` characters, saying how many bytes it lost."""
    if len(line) <= limit:
        return line
    lost = len(line[limit:].encode("utf-8", "replace"))
    return f"{line[:limit]}…[{lost} bytes cut]"


# ----------------------------------------------------------------------------- tail and sinks
class LogTail:
    """The last N lines of the child's output, both streams interleaved, redacted and clipped."""

    def __init__(self, maxlen: int, *, max_line_chars: int = TAIL_LINE_CHARS) -> None:
        self._maxlen = maxlen
        self._max_line_chars = max_line_chars
        self._lines: deque[str] = deque(maxlen=maxlen)

    def feed(self, block: str) -> None:
        """Keep the last lines of `block` (whole lines, each ending in a newline)."""
        n = self._maxlen
        # Split only the end of a big block: a window that usually holds n lines, else all of it.
        window = 160 * (n + 2)
        parts = block[-window:].rsplit("\n", n + 1) if len(block) > window else []
        if len(parts) < n + 2:
            parts = block.rsplit("\n", n + 1)
        if parts and parts[-1] == "":
            parts.pop()
        if len(parts) > n:
            del parts[0]
        cap = self._max_line_chars
        if parts and max(map(len, parts)) > cap:
            parts = [clip(p, cap) for p in parts]
        self._lines.extend(parts)

    def lines(self, n: int | None = None) -> list[str]:
        items = list(self._lines)
        return items if n is None else items[-n:]


class LogSink(Protocol):
    """Where output goes: the child's lines (a block of whole lines) and the supervisor's own."""

    def child(self, stream: str, text: str) -> None: ...

    def supervisor(self, line: str) -> None: ...


class StreamSink:
    """Write everything to a text stream (default: this process's stdout).

    `child_raw` is the pump's fast path: lines that decoded cleanly and needed no redaction are
    written as the bytes that came, straight to the stream's binary buffer.

    The child's lines pass as they are (SGLang's own format; the pump has already rewritten any
    `[supervisor]` in them). Every line of ours starts with `[supervisor] `, a message of several
    lines included, so `grep '^\\[supervisor\\]'` finds ours and only ours.

    A reader that goes away (`... | head -2`) must not take a serving replica down: the first
    `BrokenPipeError` points the stream's descriptor at /dev/null (so no later write, nor the
    interpreter's last flush, fails again) and output is dropped from then on. The child's pipes
    are still drained; only the copy to the gone reader stops.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.broken = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _lost_reader(self, out: TextIO) -> None:
        self.broken = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, out.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass  # not a file (a StringIO): dropping writes is enough

    def _write(self, text: str) -> None:
        if self.broken:
            return
        out = self.stream
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:
            self._lost_reader(out)

    def child(self, stream: str, text: str) -> None:
        self._write(text)

    def child_raw(self, stream: str, data: bytes | memoryview) -> None:
        """The same lines as UTF-8 bytes: written past the text layer, saving an encoding pass."""
        if self.broken:
            return
        out = self.stream
        binary = getattr(out, "buffer", None)
        if binary is None or (getattr(out, "encoding", "") or "").lower() not in _UTF8:
            self._write(str(data, "utf-8"))
            return
        try:
            out.flush()  # our own lines, written as text, go first
            binary.write(data)
            binary.flush()
        except BrokenPipeError:
            self._lost_reader(out)

    def supervisor(self, line: str) -> None:
        # Our multi-line messages continue on lines of their own, each marked; any other line
        # break (a child's `\r` quoted in a message) is shown escaped, never obeyed.
        body = unforge(line).translate(_ESCAPE_BREAKS_BUT_NL)
        body = body.replace("\n", f"\n{SUPERVISOR_MARK} ")
        self._write(f"{SUPERVISOR_MARK} {body}\n")


class LoggingSink:
    """Hand every line to `logging`: the child's at INFO on `<name>.child`, ours on `<name>`."""

    def __init__(self, logger: logging.Logger | str = "supervisor") -> None:
        self._logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._child = self._logger.getChild("child")

    def child(self, stream: str, text: str) -> None:
        for line in text.splitlines():
            self._child.info("%s", line, extra={"stream": stream})

    def supervisor(self, line: str) -> None:
        for part in unforge(line).translate(_ESCAPE_BREAKS_BUT_NL).split("\n"):
            self._logger.info("%s", part)


# ----------------------------------------------------------------------------- the pump
BlockObserver = Callable[[str], None]


RawWriter = Callable[[str, "bytes | memoryview"], None]


class _Emitter:
    """Redact, keep, write and observe one block of whole lines.

    When the block was valid UTF-8 and redaction changed nothing, a sink that offers `child_raw`
    gets the bytes as they came (no encoding pass); any other sink, and any changed block, gets
    the text.
    """

    def __init__(
        self,
        stream: str,
        sink: LogSink,
        tail: LogTail,
        redact: Redactor,
        observers: tuple[BlockObserver, ...],
    ) -> None:
        self.stream, self.sink, self.tail, self.redact = stream, sink, tail, redact
        self.observers = observers
        self.raw: RawWriter | None = getattr(sink, "child_raw", None)

    def text(self, text: str, raw: bytes | memoryview | None = None) -> None:
        clean = unforge(self.redact(text))
        self.tail.feed(clean)
        if raw is not None and clean is text and self.raw is not None:
            self.raw(self.stream, raw)
        else:
            self.sink.child(self.stream, clean)
        for observe in self.observers:
            observe(clean)

    def data(self, data: bytes | memoryview) -> None:
        """Whole lines as bytes; invalid UTF-8 becomes U+FFFD (then the text is written)."""
        try:
            self.text(str(data, "utf-8"), data)
        except UnicodeDecodeError:
            self.text(str(data, "utf-8", "replace"))

    def piece(self, pending: bytearray) -> None:
        """Pass on the front of an overlong line; leave in `pending` what the next piece needs.

        The whole buffer is redacted first, then cut where no secret can straddle the cut; what
        stays behind is the (redacted) end, plus any bytes of a character not yet complete.
        """
        text, used = codecs.utf_8_decode(pending, "replace", False)
        text = self.redact(text)
        at = self.redact.cut_point(text)
        self.text(text[:at] + "\n")
        pending[:used] = text[at:].encode("utf-8")


async def pump(
    source: ByteSource,
    *,
    stream: str,
    sink: LogSink,
    tail: LogTail,
    redact: Redactor,
    observers: Iterable[BlockObserver] = (),
    max_line_bytes: int = 1 << 20,
    chunk_bytes: int = 1 << 18,
) -> None:
    """Read `source` to its end; every complete line is redacted, kept, written and observed.

    `max_line_bytes` bounds the partial line held in memory: past it, the line is passed on in
    pieces of about that size.
    """
    emit = _Emitter(stream, sink, tail, redact, tuple(observers))
    # Lines are split on b"\n", which is never part of a multi-byte UTF-8 character, so whole
    # lines decode on their own. The middle of a chunk is decoded in place (a memoryview): the
    # only copies are the partial lines at its two ends.
    pending = bytearray()
    try:
        while True:
            try:
                chunk = await source.receive(chunk_bytes)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            last = chunk.rfind(b"\n") + 1
            if not last:
                pending += chunk
            else:
                begin = 0
                if pending:
                    begin = chunk.find(b"\n") + 1
                    pending += chunk[:begin]
                    emit.data(bytes(pending))
                    pending.clear()
                if begin < last:
                    whole = begin == 0 and last == len(chunk)
                    emit.data(chunk if whole else memoryview(chunk)[begin:last])
                pending += chunk[last:]
            while len(pending) > max_line_bytes:  # a line with no end in sight
                emit.piece(pending)
        if pending:  # the final line, even without its newline
            emit.data(bytes(pending) + b"\n")
    finally:
        with anyio.CancelScope(shield=True):
            await source.aclose()
