"""The one HTTP server seam: a small, bounded server on anyio, with h11 for the framing.

The supervisor serves two side endpoints (its Prometheus metrics, a cluster rank's `/status`),
each from a task in the caller's task group. An exception there would cancel the supervisor and
stop a healthy server, and whatever connects (a port scanner, a stuck scraper, TLS garbage, a
client that sends one byte a second) is outside our control. So every limit is explicit:

- **a connection cap, and one overload rule**: at most `max_connections` are served at once; one
  more is answered `503 Service Unavailable` at once and closed, so an idle flood costs at most
  the cap in descriptors and a scraper is told to come back rather than left waiting;
- **a deadline per connection** (`deadline`, for reading the request, answering it and closing):
  a client that trickles its request is cut off (`408`), so it cannot hold a slot for ever;
- **size caps**: the request line and headers (`max_header_bytes`, `431` past it, h11's own
  check), the body (`max_body_bytes`, `413`);
- **one request per connection**: every answer says `Connection: close`; a pipelined second
  request is never read, only drained away (bounded) so that closing does not reset the
  connection before the client has read the first answer;
- **containment**: what a client does (resets, garbage, vanishing) is the client's problem and
  is dropped silently; a handler that raises (our bug) is answered `500`; that, a failing
  `accept()` (out of descriptors) and shedding are reported through `on_error` once per kind.

Only failing to listen at all is raised (`OSError`, before `task_status.started`), so the
caller can say what the port is for. h11 does the HTTP/1.x framing, strictly (a 1.1 request
without `Host` is a `400`), which is why the parsing here is a few lines, not a parser.
"""

from __future__ import annotations

import http
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import anyio
import anyio.abc
import h11

from ._errors import ConfigError

__all__ = ["Handler", "Request", "Response", "serve_http"]

_READ_CHUNK = 65536
_ACCEPT_BACKOFF_S = 0.1  # after a failed accept (EMFILE, ECONNABORTED), before the next one
_SHED_TIMEOUT_S = 0.2  # the 503 to a connection over the cap: a few bytes into an empty buffer
_LAST_WORDS_S = 0.5  # a 408/431/400 after the deadline or an error: bounded on its own
_LINGER_S = 1.0  # after the answer, draining what the client still sends, at most this long
_LINGER_BYTES = 65536
_CLOSE_TIMEOUT_S = 1.0
_CLIENT_ERRORS = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    h11.RemoteProtocolError,
)


@dataclass(frozen=True)
class Request:
    """One request as the handler sees it: complete, within every cap."""

    method: str
    path: str  # the target without its query
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """What a handler answers; `Content-Length` and `Connection: close` are added for it."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def _plain(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode())


def _head(response: Response) -> h11.Response:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        *response.headers,
        ("Connection", "close"),
    ]
    return h11.Response(
        status_code=response.status,
        headers=headers,
        reason=http.HTTPStatus(response.status).phrase.encode(),
    )


async def _send(
    stream: anyio.abc.SocketStream, conn: h11.Connection, response: Response, method: str
) -> None:
    """Send `response` in full through h11 (a HEAD answer gets its headers only)."""
    data = conn.send(_head(response)) or b""
    if response.body and method != "HEAD":
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send(data)


async def _read_request(
    stream: anyio.abc.SocketStream, conn: h11.Connection, max_body_bytes: int
) -> Request | Response | None:
    """The next complete request; a `Response` when it must be refused; None if the client left."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_READ_CHUNK)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body_bytes:
                return _plain(413, f"request body over {max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = head.target.decode("ascii", "replace")
            path, _, query = target.partition("?")
            headers = tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
            )
            return Request(
                head.method.decode("ascii", "replace"), path, query, headers, bytes(body)
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _linger(stream: anyio.abc.SocketStream) -> None:
    """Half-close, then read and drop what the client still sends (a pipelined request), briefly.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    answer before the client read it; waiting for the client's own close avoids that.
    """
    await stream.send_eof()
    drained = 0
    with anyio.move_on_after(_LINGER_S):
        try:
            while drained < _LINGER_BYTES:
                drained += len(await stream.receive(_READ_CHUNK))
        except anyio.EndOfStream:  # the client closed too: the usual, quick end
            pass


async def _close(stream: anyio.abc.SocketStream) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT_S):
        try:
            await stream.aclose()
        except OSError:  # the client reset the connection first: closed either way
            pass


def _check(
    name: str,
    port: int,
    max_connections: int,
    deadline: float,
    max_header_bytes: int,
    max_body_bytes: int,
) -> None:
    finite = math.isfinite(deadline) and deadline > 0
    if not 0 <= port <= 65535 or max_connections < 1 or not finite:
        raise ConfigError(
            f"{name}: port {port} must be 0-65535, max_connections {max_connections} at least 1, "
            f"deadline {deadline:g} s positive"
        )
    if max_header_bytes < 64 or max_body_bytes < 0:
        raise ConfigError(
            f"{name}: max_header_bytes {max_header_bytes} must be at least 64, "
            f"max_body_bytes {max_body_bytes} at least 0"
        )


async def serve_http(
    handler: Handler,
    port: int,
    host: str | None = "127.0.0.1",
    *,
    name: str = "HTTP server",
    max_connections: int = 32,
    deadline: float = 5.0,
    max_header_bytes: int = 16384,
    max_body_bytes: int = 4096,
    on_error: Callable[[str], None] | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler` on `host:port` until cancelled; reports the bound port to `task_status`.

    `host=None` listens on every interface, IPv6 and IPv4. `name` prefixes the one-line reports
    given to `on_error` (each kind once) and the `ConfigError` for settings that cannot work.
    A port that cannot be listened on raises the `OSError`, before `task_status.started`.
    """
    _check(name, port, max_connections, deadline, max_header_bytes, max_body_bytes)
    reported: set[str] = set()
    active = 0

    def report(kind: str, message: str) -> None:
        if kind not in reported:
            reported.add(kind)
            if on_error is not None:
                on_error(f"{name}: {message} (reported once; the server is unaffected)")

    async def answer(stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        method = "GET"
        refusal: Response | None = None
        with anyio.move_on_after(deadline) as scope:
            try:
                got = await _read_request(stream, conn, max_body_bytes)
            except h11.RemoteProtocolError as exc:  # not HTTP, or a head over the cap (431)
                got = _plain(exc.error_status_hint, http.HTTPStatus(exc.error_status_hint).phrase)
            if got is None:
                return
            if isinstance(got, Response):
                refusal = got
            else:
                method = got.method
                try:
                    response = handler(got)
                except Exception as exc:  # the handler's bug, not the client's: contained
                    report(f"handler-{type(exc).__name__}", f"handler failed: {exc!r}")
                    response = _plain(500, "internal error")
                await _send(stream, conn, response, method)
                await _linger(stream)
                return
        if scope.cancelled_caught:
            refusal = _plain(408, f"request not complete within {deadline:g} s")
        if refusal is not None and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with anyio.move_on_after(_LAST_WORDS_S):
                await _send(stream, conn, refusal, method)
                await _linger(stream)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        nonlocal active
        try:
            await answer(stream)
        except _CLIENT_ERRORS:
            pass  # the client left, reset or misbehaved: its problem, never the server's
        except Exception as exc:  # contained: no client may reach the caller's task group
            report(type(exc).__name__, f"{type(exc).__name__}: {exc}")
        finally:
            active -= 1
            await _close(stream)

    async def shed(stream: anyio.abc.SocketStream) -> None:
        report("overload", f"more than {max_connections} connections at once: answering 503")
        conn = h11.Connection(h11.SERVER)
        with anyio.move_on_after(_SHED_TIMEOUT_S):
            try:
                await _send(stream, conn, _plain(503, "busy; try again"), "GET")
            except _CLIENT_ERRORS:
                pass
        await _close(stream)

    async def accept_loop(listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        nonlocal active
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of descriptors, a client reset before accept: transient
                report(f"accept-{exc.errno}", f"accept failed: {exc.strerror or exc}")
                await anyio.sleep(_ACCEPT_BACKOFF_S)
                continue
            if active >= max_connections:
                await shed(stream)  # inline: the accept loop takes no more than one at a time
                continue
            active += 1
            tg.start_soon(handle, stream)

    multi = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    async with multi, anyio.create_task_group() as tg:
        for listener in multi.listeners:
            tg.start_soon(accept_loop, cast(anyio.abc.SocketListener, listener), tg)
        task_status.started(multi.extra(anyio.abc.SocketAttribute.local_port))
