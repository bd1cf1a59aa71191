"""The one HTTP client seam: every request the supervisor sends goes through `request`.

Every caller (health probes, warmups, progress scrapes, the canary, snapshot calls, peer polls)
needs the same four things, and each used to write them itself, a little differently:

- **one deadline for the whole exchange** (connect, status line, headers and a body that may
  trickle), taken when the call starts: a hard `anyio.fail_after`, with httpx's own timeouts set
  to the same value so its 5 s default never cuts a longer call short;
- **a byte cap on the body**, counted on the wire: past it the answer is refused unread
  (`TOO_LARGE`), or kept cut at the cap (`truncate=True`) by a caller that only wants a snippet;
- **identity encoding**: `Accept-Encoding: identity` is always sent, and a compressed answer is
  refused (`COMPRESSED`) rather than inflated: a gzip bomb grows a thousandfold past any cap;
- **one translation** of httpx, anyio and OS errors into `RequestFailed`, whose `kind` says what
  happened and whose message is one short line an operator reads (`connection refused`,
  `no answer within 2 s`). As in httpx's `map_httpcore_exceptions`, anything not recognised
  (a bug: a bad URL, a stream used twice) is re-raised untouched.

A non-200 status is not an error here: it is an `Answer`, and the caller judges it.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ._errors import SupervisorError

__all__ = ["Answer", "Failure", "RequestFailed", "request", "request_head"]

_SNIPPET_CHARS = 200


class Failure(enum.Enum):
    """Why an exchange got no usable answer; callers branch on this, never on message text."""

    CONNECT = "connect"  # the connection was never opened: the request cannot have arrived
    TIMEOUT = "timeout"  # the deadline ran out before the answer was complete
    TOO_LARGE = "too large"  # the body went past the cap and was refused unread
    COMPRESSED = "compressed"  # a Content-Encoding other than identity, though identity was asked
    BROKEN = "broken"  # reset, closed mid-answer, or not HTTP: the connection failed after opening


class RequestFailed(SupervisorError):
    """One HTTP exchange got no usable answer; `str()` is one line that says why.

    `status` is the HTTP status when the status line had arrived (a body past the cap still has
    one), `received` the body bytes read off the wire before it failed.
    """

    def __init__(
        self, message: str, *, kind: Failure, status: int | None = None, received: int = 0
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.received = received


@dataclass(frozen=True)
class Answer:
    """A complete answer: its status, and its body up to the cap (`truncated` if cut there)."""

    status: int
    body: bytes = b""
    truncated: bool = False
    charset: str | None = None

    @property
    def size(self) -> int:
        return len(self.body)

    def text(self) -> str:
        """The body as text, in its declared charset (UTF-8 when none, or one Python lacks)."""
        try:
            return self.body.decode(self.charset or "utf-8", "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")

    def snippet(self, chars: int = _SNIPPET_CHARS) -> str:
        """The start of the body on one line, for an error message."""
        return " ".join(self.text().split())[:chars]


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OS error at the root of an httpx error (httpcore and anyio wrap it two or three deep)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def _connect_failure(exc: BaseException) -> str:
    root = _os_error_in(exc)
    if root is not None:
        if root.errno == errno.ECONNREFUSED:
            return "connection refused"
        return f"cannot connect: {root.strerror or root}"
    if "refused" in str(exc).lower():  # a transport that names it in words (httpx.MockTransport)
        return "connection refused"
    return f"cannot connect: {exc}".rstrip(": ")


def _translate(
    exc: BaseException, deadline: float, status: int | None, received: int
) -> RequestFailed | None:
    """The one translation of foreign errors; None for anything that is not the network's fault."""

    def failed(message: str, kind: Failure) -> RequestFailed:
        return RequestFailed(message, kind=kind, status=status, received=received)

    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return failed(f"no answer within {deadline:g} s", Failure.TIMEOUT)
    if isinstance(exc, httpx.ConnectError):
        return failed(_connect_failure(exc), Failure.CONNECT)
    if isinstance(exc, (httpx.TransportError, httpx.DecodingError)):
        return failed(f"{type(exc).__name__}: {exc}".rstrip(": "), Failure.BROKEN)
    if isinstance(exc, (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError)):
        return failed(f"connection lost ({type(exc).__name__})", Failure.BROKEN)
    if isinstance(exc, OSError):
        return failed(f"{type(exc).__name__}: {exc.strerror or exc}", Failure.BROKEN)
    return None


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it crosses the wire: raw, so the cap counts wire bytes and nothing inflates.

    An answer built in memory (`httpx.MockTransport` in tests) was read whole when it was made;
    its bytes are handed on as one chunk and the cap applies to them the same way.
    """
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    max_body_bytes: int | None,
    truncate: bool,
    json: Any,
    headers: Mapping[str, str] | None,
) -> Answer:
    status: int | None = None
    received = 0
    sent = {**(headers or {}), "Accept-Encoding": "identity"}  # never overridden: see above
    try:
        with anyio.fail_after(deadline):
            async with client.stream(
                method, url, json=json, headers=sent, timeout=deadline
            ) as response:
                status = response.status_code
                if max_body_bytes is None:
                    # Leaving the block closes the response unread: the connection is dropped.
                    return Answer(status, charset=response.charset_encoding)
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise RequestFailed(
                        f"compressed body ({encoding}) though identity was asked: refused unread",
                        kind=Failure.COMPRESSED,
                        status=status,
                    )
                body = bytearray()
                async for chunk in _raw(response):
                    received += len(chunk)
                    if received <= max_body_bytes:
                        body += chunk
                        continue
                    if not truncate:
                        raise RequestFailed(
                            f"answer longer than {max_body_bytes} bytes: refused unread",
                            kind=Failure.TOO_LARGE,
                            status=status,
                            received=received,
                        )
                    body += chunk[: max_body_bytes - len(body)]
                    return Answer(status, bytes(body), True, response.charset_encoding)
                return Answer(status, bytes(body), False, response.charset_encoding)
    except RequestFailed:
        raise
    except Exception as exc:
        translated = _translate(exc, deadline, status, received)
        if translated is None:
            raise
        raise translated from exc


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    max_body_bytes: int,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    truncate: bool = False,
) -> Answer:
    """Send one request and read its whole answer within `deadline` seconds, at most
    `max_body_bytes` of body; raise `RequestFailed` when no usable answer came.

    Past the cap the answer is refused (`Failure.TOO_LARGE`), or with `truncate=True` returned
    cut at the cap with `truncated` set, the rest never read. `json` is sent as the body.
    """
    if max_body_bytes < 0:
        raise ValueError(f"max_body_bytes must be >= 0, got {max_body_bytes}")
    return await _exchange(
        client,
        method,
        url,
        deadline=deadline,
        max_body_bytes=max_body_bytes,
        truncate=truncate,
        json=json,
        headers=headers,
    )


async def request_head(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Like `request`, but the answer is the status line and headers only.

    The connection is closed without reading the body, so an endless or trickling body can
    neither grow the supervisor nor hold the call: what a health probe needs.
    """
    return await _exchange(
        client,
        method,
        url,
        deadline=deadline,
        max_body_bytes=None,
        truncate=False,
        json=None,
        headers=headers,
    )
