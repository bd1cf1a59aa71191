"""Pump the child's output to a sink, keep a bounded tail for the crash report, and hide secrets.

The reader works in chunks, not lines: it reads up to 256 KiB, decodes it (incrementally, so a
character split across reads survives; bad UTF-8 becomes U+FFFD, never an error) and hands every
complete line of the chunk on as one block, keeping the partial last line for the next chunk. A
flood of short lines therefore costs a handful of C-speed passes per 256 KiB, never per-line
Python: redaction and the observers first ask cheap questions (is every character of the needle
present? `in` on one character is a `memchr`) and the tail splits only the last N lines of a
block. The pipe is drained as fast as the child fills it: a full pipe would block SGLang's
scheduler.

Every buffer has a cap. A line longer than `max_line_bytes` (1 MiB by default: SGLang's longest
line, `server_args=`, passes whole) is passed on in pieces of about that size, each ending in a
newline; a tail entry holds at most 8 KiB of its line and says how much it cut.

Secrets: the declared ones are replaced in every escaped form that a log can show (raw, `repr`
with either quote, JSON, `shlex.quote`, URL-encoded), and secret-shaped values are masked even with
escaped quotes inside (`api_key="Zq9'Xw\\\\Rt7"`). Redaction runs on whole lines; a giant line is
redacted before it is cut, and the cut keeps the longest secret's length (and any `api_key`-like
word of the last 4 KiB) for the next piece, so a secret that straddles two pieces is still caught.

The supervisor's own lines cannot be forged: they start with `[supervisor] `, and the child's
output never contains `[supervisor]` anywhere, because the pump rewrites it to `[~supervisor]`.
So a reader that trusts lines starting with (or even containing) `[supervisor]` reads only ours,
whatever the child prints, on any line separator; the child's other lines pass byte for byte.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import shlex
import sys
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TextIO

import anyio

from ._process import ByteSource

__all__ = [
    "FORGED_MARK",
    "LogSink",
    "LogTail",
    "LoggingSink",
    "Redactor",
    "StreamSink",
    "clip",
    "pump",
    "unforge",
]

REDACTED = "***"
SUPERVISOR_MARK = "[supervisor]"
FORGED_MARK = "[~supervisor]"  # what a child's `[supervisor]` becomes
TAIL_LINE_CHARS = 8 << 10  # the most a tail entry keeps of its line
_CUT_WINDOW = 4096  # a piece is never cut within this many characters after an api_key-like word

# Characters by how often they appear in logs, most common first; any other is rarer still.
_BY_FREQUENCY = " etaoinsrlcdhupm0123456789.,:-/[]()gfbwykv_=TSAPICDERMNOLx'\"#qjzBFGHUWKVYXJQZ"
_RANK = {c: i for i, c in enumerate(_BY_FREQUENCY)}
_UTF8 = ("utf-8", "utf8")


class Needle:
    """A literal, looked for cheaply: its rarest characters one by one (`memchr`), then itself.

    A 256 KiB block of decode lines has no `_`, `=`, `z` or `y`, so almost every question about a
    secret-shaped word is answered by one `memchr` that finds nothing.
    """

    __slots__ = ("gates", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        rarest = sorted(set(text), key=lambda c: -_RANK.get(c, len(_RANK)))
        self.gates = tuple(rarest[:4])

    def found(self, hay: str) -> bool:
        for c in self.gates:
            if c not in hay:
                return False
        return self.text in hay


_FORGED = Needle(SUPERVISOR_MARK)


def unforge(text: str) -> str:
    """Rewrite `[supervisor]` so that no child text can pass for one of our lines."""
    return text.replace(SUPERVISOR_MARK, FORGED_MARK) if _FORGED.found(text) else text


def clip(line: str, limit: int = TAIL_LINE_CHARS) -> str:
    """`line` cut to `limit` characters, saying how many bytes it lost."""
    if len(line) <= limit:
        return line
    lost = len(line[limit:].encode("utf-8", "replace"))
    return f"{line[:limit]}…[{lost} bytes cut]"


# ----------------------------------------------------------------------------- redaction
# A quoted value, either quote, backslash escapes inside; unterminated, it runs to the end of the
# line (masking too much is safe). An unquoted value runs to a space or a delimiter.
_QUOTED = r"""(?P<q>['"])(?P<v>(?:\\.|(?!(?P=q))[^\\\n])*)(?P<e>(?P=q)?)"""
_BARE = r"""(?P<u>(?!None\b)[^\s'",;)}\]]+)"""
_SHELL_WORD = r"""(?P<w>(?!-)(?:'[^'\n]*'?|"(?:\\.|[^"\\\n])*"?|\\.|[^\s'"\\])+)"""

# Secrets that SGLang and friends print without being asked: the server_args line carries the
# api_key in clear text (as `api_key='...'` or a dict's `'api_key': '...'`), an argv may carry
# `--api-key`, a header a bearer token. Each pattern comes with literal words, one of which must
# be present: a cheap test that skips the regex on nearly every block.
_GENERIC: list[tuple[tuple[Needle, ...], re.Pattern[str]]] = [
    (
        (Needle("api_key"), Needle("API_KEY")),
        re.compile(rf"""(?P<p>api_key['"]?\s*[:=]\s*)(?:{_QUOTED}|{_BARE})""", re.I),
    ),
    (
        (Needle("-api-key"),),
        re.compile(rf"""(?P<p>--(?:admin-)?api-key(?:=|\s+|['"]\s*,\s*))(?:{_SHELL_WORD})"""),
    ),
    (
        (Needle("uthorization"), Needle("UTHORIZATION")),
        re.compile(r"""(?P<p>authorization['"]?\s*[:=]?\s*['"]?bearer\s+)(?P<u>[^\s'"]+)""", re.I),
    ),
    (
        (Needle("TOKEN="),),
        re.compile(r"""(?P<p>\b(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN)=)(?P<u>\S+)"""),
    ),
    ((Needle("hf_"),), re.compile(r"""(?P<p>)\b(?P<u>hf_[A-Za-z0-9]{16,})""")),
]
# Lower-case words after which a piece is not cut (their value may follow within the window).
_CUT_WORDS = ("api_key", "api-key", "authorization", "token=", "hf_")


def _mask(m: re.Match[str]) -> str:
    q = m.group("q") if "q" in m.re.groupindex else None
    if q:
        return f"{m.group('p')}{q}{REDACTED}{m.group('e')}"
    return f"{m.group('p')}{REDACTED}"


def _py_literal(secret: str, quote: str) -> str:
    """The inside of a Python string literal of `secret` written with `quote`."""
    out = []
    for ch in secret:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        else:
            out.append(repr(ch)[1:-1])  # \n, \x00, \u2028 as repr writes them
    return "".join(out)


def escaped_forms(secret: str) -> set[str]:
    """Every way a log line can spell `secret`: raw, Python, JSON, shell and URL escaped."""
    forms = {
        secret,
        repr(secret)[1:-1],
        _py_literal(secret, "'"),
        _py_literal(secret, '"'),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        shlex.quote(secret),
        urllib.parse.quote(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    return {f for f in forms if f}


class Redactor:
    """Replace known secrets, in every escaped form, and secret-shaped values by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {f for s in secrets if s for f in escaped_forms(s)}
        self._needles = [Needle(f) for f in sorted(forms, key=len, reverse=True)]
        #: How many trailing characters a cut must keep: the start of a secret not yet complete.
        self.overlap = max((len(f) for f in forms), default=1) - 1

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle.found(text):
                text = text.replace(needle.text, REDACTED)
        for needles, pattern in _GENERIC:
            if any(n.found(text) for n in needles):
                text = pattern.sub(_mask, text)
        return text

    def cut_point(self, text: str) -> int:
        """Where to cut already-redacted `text` so that no secret can straddle the cut.

        Keeps the last `overlap` characters (a declared secret whose end has not arrived) and
        any api_key-like word of the last 4 KiB before that (a value that may follow), but always
        passes on at least half of `text`.
        """
        end = len(text) - self.overlap
        start = max(0, end - _CUT_WINDOW)
        window = text[start:end].lower()
        hits = [i for i in (window.find(w) for w in _CUT_WORDS) if i >= 0]
        if hits:
            end = start + min(hits)
        return max(end, len(text) // 2, 1)


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

    def child_raw(self, stream: str, data: bytes | memoryview) -> None:
        """The same lines as UTF-8 bytes: written past the text layer, saving an encoding pass."""
        out = self.stream
        binary = getattr(out, "buffer", None)
        if binary is None or (getattr(out, "encoding", "") or "").lower() not in _UTF8:
            out.write(str(data, "utf-8"))
            out.flush()
            return
        out.flush()  # our own lines, written as text, go first
        binary.write(data)
        binary.flush()

    def supervisor(self, line: str) -> None:
        body = unforge(line).replace("\n", f"\n{SUPERVISOR_MARK} ")
        out = self.stream
        out.write(f"{SUPERVISOR_MARK} {body}\n")
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
