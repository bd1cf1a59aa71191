"""Pipes read through the event loop: the server's output and the keeper's status lines.

Non-blocking file descriptors awaited with `anyio.wait_readable`, never a thread per pipe, so a
tree's two output pipes and its status pipe cost nothing while quiet and every read is
cancellable. Kept apart from `_local`, which decides what the lines mean.
"""

from __future__ import annotations

import fcntl
import os

import anyio

__all__ = ["PipeReader", "StatusLines"]

_MAX_STATUS_LINE = 4096  # a keeper status line is `exited -9`: anything this long is not one
_F_SETPIPE_SZ = 1031  # Linux: grow a pipe's buffer
_PIPE_BYTES = 1 << 20  # the unprivileged maximum by default (/proc/sys/fs/pipe-max-size)


class PipeReader:
    """Non-blocking reads from one pipe, awaited through the event loop (never a thread).

    The pipe is grown to 1 MiB where Linux allows, so a burst of SGLang log lines (a decode
    storm, a traceback) fits while the supervisor is busy elsewhere, instead of blocking the
    scheduler that writes it.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass  # not Linux, or a lower pipe-max-size: the default 64 KiB still works
        self._fd: int | None = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            anyio.notify_closing(fd)
            os.close(fd)


class StatusLines:
    """The keeper's status pipe, line by line; `None` once the keeper has closed it."""

    def __init__(self, fd: int) -> None:
        self._reader = PipeReader(fd)
        self._buffer = b""

    async def readline(self) -> str | None:
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_STATUS_LINE:
                # Not the keeper's protocol (its lines are a word and a number): say so as a
                # line the caller refuses, rather than buffer without end.
                line = self._buffer[:_MAX_STATUS_LINE]
                self._buffer = self._buffer[_MAX_STATUS_LINE:]
                return line.decode(errors="replace")
            try:
                self._buffer += await self._reader.receive(4096)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    async def aclose(self) -> None:
        await self._reader.aclose()
