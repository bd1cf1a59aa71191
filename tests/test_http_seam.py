"""The HTTP seam itself, in process, over real sockets on 127.0.0.1 (issue #21).

Client side (`_http_client.request`): every way an answer can be unusable (a body past the cap,
a compressed body, a trickle past the deadline, a refused connection, a server that closes in
the middle of the body) arrives as the one `RequestFailed`, with its kind and a one-line reason,
in bounded time. Server side (`_http_server.serve_http`): too many connections, an oversized
head, a trickling client and a pipelined second request are each bounded, and the server keeps
serving afterwards.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest

from supervisor._errors import ConfigError, SupervisorError
from supervisor._http_client import Failure, RequestFailed, request, request_head
from supervisor._http_server import Request, Response, serve_http
from supervisor.testing import free_port

pytestmark = pytest.mark.anyio

Reply = Callable[[anyio.abc.SocketStream], Awaitable[None]]


# ============================================================================ the client
@asynccontextmanager
async def raw_server(reply: Reply, heads: list[bytes] | None = None) -> AsyncIterator[str]:
    """A hand-written peer: reads a request head, then `reply(stream)` answers however it likes."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                if heads is not None:
                    heads.append(head)
                await reply(stream)
            except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"http://127.0.0.1:{port}/x"
        tg.cancel_scope.cancel()


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False)


async def _ok(stream: anyio.abc.SocketStream) -> None:
    await stream.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n"
        b"Content-Length: 5\r\n\r\nh\xe9llo"
    )


async def _huge(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
    for _ in range(1000):
        await stream.send(b"x" * 10000)


async def _gzip(stream: anyio.abc.SocketStream) -> None:
    bomb = gzip.compress(b"0" * 10_000_000)  # ten megabytes in about ten kilobytes
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    await stream.send(head.encode() + bomb)


async def _trickle(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        await stream.send(b" ")
        await anyio.sleep(0.05)


async def _cut(stream: anyio.abc.SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await stream.aclose()


async def test_a_good_answer_is_read_whole_in_its_charset() -> None:
    heads: list[bytes] = []
    async with raw_server(_ok, heads) as url, _client() as client:
        answer = await request(client, "GET", url, deadline=2, max_body_bytes=100)
    assert (answer.status, answer.body, answer.truncated) == (200, b"h\xe9llo", False)
    assert answer.text() == "héllo"
    assert b"accept-encoding: identity" in heads[0].lower()  # never asks for compression


async def test_a_body_over_the_cap_is_refused_unread() -> None:
    async with raw_server(_huge) as url, _client() as client:
        started = time.monotonic()
        with pytest.raises(RequestFailed) as info:
            await request(client, "GET", url, deadline=5, max_body_bytes=50_000)
        assert time.monotonic() - started < 2  # the cap ended it, not the deadline
    err = info.value
    assert err.kind is Failure.TOO_LARGE and err.status == 200
    assert str(err) == "answer longer than 50000 bytes: refused unread"
    assert 50_000 < err.received <= 50_000 + 256 * 1024  # stopped within a read of the cap
    assert isinstance(err, SupervisorError)  # one tree: callers may catch at any level


async def test_a_body_over_the_cap_can_be_kept_cut_at_the_cap() -> None:
    async with raw_server(_huge) as url, _client() as client:
        answer = await request(client, "GET", url, deadline=5, max_body_bytes=1000, truncate=True)
    assert answer.truncated and answer.body == b"x" * 1000


async def test_a_gzip_answer_is_refused_not_inflated() -> None:
    async with raw_server(_gzip) as url, _client() as client:
        with pytest.raises(RequestFailed) as info:
            await request(client, "GET", url, deadline=2, max_body_bytes=10_000_000)
    assert info.value.kind is Failure.COMPRESSED and info.value.status == 200
    assert str(info.value) == "compressed body (gzip) though identity was asked: refused unread"


async def test_a_trickle_past_the_deadline_is_a_timeout() -> None:
    async with raw_server(_trickle) as url, _client() as client:
        started = time.monotonic()
        with pytest.raises(RequestFailed) as info:
            await request(client, "GET", url, deadline=0.3, max_body_bytes=10_000)
        assert time.monotonic() - started < 1.5
    err = info.value
    assert err.kind is Failure.TIMEOUT and str(err) == "no answer within 0.3 s"
    assert err.status == 200 and 0 < err.received < 1000


async def test_a_refused_connection_says_so() -> None:
    async with _client() as client:
        with pytest.raises(RequestFailed) as info:
            await request(
                client, "GET", f"http://127.0.0.1:{free_port()}/", deadline=2, max_body_bytes=10
            )
    assert info.value.kind is Failure.CONNECT and str(info.value) == "connection refused"
    assert info.value.status is None


async def test_a_server_that_closes_mid_body_is_a_broken_answer() -> None:
    async with raw_server(_cut) as url, _client() as client:
        with pytest.raises(RequestFailed) as info:
            await request(client, "GET", url, deadline=2, max_body_bytes=10_000)
    err = info.value
    assert err.kind is Failure.BROKEN and err.status == 200
    assert str(err).startswith("RemoteProtocolError: ") and "\n" not in str(err)


async def test_a_head_request_never_reads_the_body() -> None:
    async with raw_server(_huge) as url, _client() as client:
        started = time.monotonic()
        answer = await request_head(client, "GET", url, deadline=2)
        assert time.monotonic() - started < 1
    assert answer.status == 200 and answer.body == b""


async def test_a_hung_head_is_cut_by_the_deadline() -> None:
    async def hang(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(30)

    async with raw_server(hang) as url, _client() as client:
        with pytest.raises(RequestFailed, match=r"^no answer within 0.2 s$") as info:
            await request_head(client, "GET", url, deadline=0.2)
    assert info.value.kind is Failure.TIMEOUT and info.value.status is None


async def test_a_mock_transport_answer_goes_through_the_same_cap() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(503, text="x" * 100))
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await request(client, "GET", "http://x/", deadline=1, max_body_bytes=100)
        assert (answer.status, answer.snippet()) == (503, "x" * 100)
        with pytest.raises(RequestFailed, match="longer than 99 bytes"):
            await request(client, "GET", "http://x/", deadline=1, max_body_bytes=99)


# ============================================================================ the server
def _hello(request: Request) -> Response:
    return Response(200, f"hello {request.method} {request.path}".encode())


@asynccontextmanager
async def served(
    handler: Callable[[Request], Response] = _hello, **limits: object
) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_http(handler, 0, task_status=task_status, **limits)
        )
        yield port
        tg.cancel_scope.cancel()


async def _exchange(port: int, raw: bytes, within: float = 5.0) -> bytes:
    """Send `raw`, read until the server closes; what came back."""
    async with await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(raw)
        out = b""
        with anyio.fail_after(within):
            try:
                while True:
                    out += await s.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        return out


GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_one_request_one_answer_then_close() -> None:
    async with served() as port:
        out = await _exchange(port, GET)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in out.lower() and out.endswith(b"hello GET /metrics")


async def test_too_many_connections_are_answered_503_at_once() -> None:
    errors: list[str] = []
    async with served(max_connections=2, deadline=1.0, on_error=errors.append) as port:
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
        await anyio.sleep(0.1)  # both hold a slot
        started = time.monotonic()
        out = await _exchange(port, GET)
        assert time.monotonic() - started < 0.5  # told at once, not left waiting
        assert out.startswith(b"HTTP/1.1 503 Service Unavailable")
        for s in idle:
            await s.aclose()
        await anyio.sleep(0.1)
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 200")  # slots come back
        await _exchange(port, GET)
    assert len(errors) == 1 and "more than 2 connections" in errors[0]  # reported once


async def test_an_oversized_head_is_431() -> None:
    async with served(max_header_bytes=1024) as port:
        out = await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000)
        assert out.startswith(b"HTTP/1.1 431")
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 200")


async def test_a_trickling_client_is_cut_off_at_the_deadline() -> None:
    async with served(deadline=0.5) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            out = b""

            async def trickle() -> None:  # one byte every 50 ms: 1.7 s for the whole request
                try:
                    for byte in GET:
                        await s.send(bytes([byte]))
                        await anyio.sleep(0.05)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # the server hung up on us: what this test expects

            started = time.monotonic()
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle)
                    try:
                        while True:
                            out += await s.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
                    closed_after = time.monotonic() - started
                    tg.cancel_scope.cancel()
        assert out.startswith(b"HTTP/1.1 408"), out
        assert closed_after < 2.0  # the deadline, plus at most the bounded linger
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 200")


async def test_a_pipelined_second_request_is_never_answered() -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.path)
        return _hello(request)

    async with served(handler) as port:
        second = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        started = time.monotonic()
        out = await _exchange(port, GET + second * 50)
        assert time.monotonic() - started < 2
    assert out.count(b"HTTP/1.1 ") == 1 and out.endswith(b"hello GET /metrics")
    assert seen == ["/metrics"]


async def test_a_body_over_its_cap_is_413() -> None:
    async with served(max_body_bytes=100) as port:
        out = await _exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000
        )
    assert out.startswith(b"HTTP/1.1 413")


async def test_garbage_is_400_and_a_head_request_gets_no_body() -> None:
    async with served() as port:
        assert (await _exchange(port, b"\x16\x03\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        head = await _exchange(port, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")


async def test_a_handler_that_raises_is_a_500_and_the_server_stays_up() -> None:
    errors: list[str] = []
    calls = 0

    def flaky(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("bug")
        return _hello(request)

    async with served(flaky, on_error=errors.append) as port:
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 500")
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 500")
        assert (await _exchange(port, GET)).startswith(b"HTTP/1.1 200")
    assert len(errors) == 1 and "handler failed: RuntimeError('bug')" in errors[0]


async def test_the_seams_meet_a_real_client_reads_a_real_answer() -> None:
    async with served() as port, _client() as client:
        answer = await request(
            client, "GET", f"http://127.0.0.1:{port}/a?b=c", deadline=2, max_body_bytes=100
        )
    assert (answer.status, answer.body) == (200, b"hello GET /a")


async def test_a_taken_port_raises_the_os_error_and_bad_limits_a_config_error() -> None:
    async with served() as port:
        with pytest.raises(OSError):
            await serve_http(_hello, port)
    with pytest.raises(ConfigError, match=r"^metrics endpoint: "):
        await serve_http(_hello, 0, name="metrics endpoint", max_connections=0)
    with pytest.raises(ConfigError, match="max_header_bytes 10"):
        await serve_http(_hello, 0, max_header_bytes=10)
