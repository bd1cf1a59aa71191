"""The HTTP seam itself, in process, over real sockets on 127.0.0.1 (issue #21).

`_http_client.request`: every way an answer can be unusable (a body past the cap,
a compressed body, a trickle past the deadline, a refused connection, a server that closes in
the middle of the body) arrives as the one `RequestFailed`, with its kind and a one-line reason,
in bounded time.
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

from supervisor._errors import SupervisorError
from supervisor._http_client import Failure, RequestFailed, request, request_head
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
