"""Fake ranks of a multi-node server (`--nnodes N --node-rank R --dist-init-addr HOST:PORT`).

SGLang 0.5.23 on N nodes (docs/CLUSTER.md), with a plain TCP connection per worker standing for
torch's rendezvous store and the collectives:

- rank 0 listens on the dist-init port; its schedulers' `init_process_group` returns only when
  every rank has joined (`srt/distributed/parallel_state.py: init_distributed_environment`), so
  it loads, binds and warms up only after N-1 workers said hello; a rendezvous past
  `--fake-dist-timeout` is torch's `DistStoreError` in its scheduler (SIGQUIT, the tree dies).
  A worker's connection lost after that leaves rank 0's engine stuck in a collective: the
  engine stalls, without a word (`_engine.stall`); the process stays. Its drain ends with the
  ShutdownReq broadcast: `shutdown` to every worker;
- a worker (rank >= 1) runs schedulers only (`tp_size / nnodes` of them, global TP ranks),
  connects to rank 0 (retrying while nothing listens, within the same timeout, else torch's
  `DistNetworkError`), loads, then serves only the dummy health server on `--host:--port`
  (`srt/utils/common.py: launch_dummy_health_check_server`: `/health`, `/health_generate`,
  `/ping` always 200, `/metrics` with `--enable-metrics`, the rest 404), logs and ignores
  SIGTERM (`srt/entrypoints/engine.py: Engine._launch_subprocesses`) and joins its schedulers
  in order (`block_until_scheduler_exits`). On `shutdown` they exit and it exits 0. When rank 0
  is gone its scheduler's gloo broadcast fails ("Connection closed by peer"), the scheduler
  SIGQUITs it and the launch-phase handler kills the tree, itself included (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._engine import block_forever
from ._faults import connect_timeout_lines, peer_closed_lines, rendezvous_timeout_lines
from ._logs import (
    INIT_PARALLEL_BEGIN_LINE,
    PYTHON_M_WARNING,
    dummy_health_line,
    log,
    raw,
    scheduler_terminated_line,
    server_args_line,
    worker_sigterm_line,
)
from ._metrics import Metrics, SchedulerLoop
from ._schedulers import kill_process_tree

if TYPE_CHECKING:
    from ._server import FakeSGLang

RETRY_S = 0.1


def parse_dist_init_addr(text: str) -> tuple[str, int]:
    """`srt/utils/network.py: NetworkAddress.parse`: `host:port` or `[v6]:port`."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not text.startswith("[")):
        raise ValueError(f"--dist-init-addr must be HOST:PORT or [V6]:PORT, got {text!r}")
    return host, int(port)


def _readline(sock: socket.socket) -> str | None:
    """One line from a peer, or None when the connection is gone."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(1)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data.decode(errors="replace").strip()


class Rendezvous:
    """Rank 0's side: the store every worker joins, and the links that stand for collectives."""

    def __init__(self, host: str, port: int, workers: int, on_lost: Callable[[], None]) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(64)
        self._workers = workers
        self._on_lost = on_lost
        self._cond = threading.Condition()
        self._joined: dict[int, socket.socket] = {}
        self._formed = False
        threading.Thread(target=self._accept, daemon=True, name="dist-store").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                time.sleep(RETRY_S)
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        hello = _readline(conn)
        if hello is None or not hello.startswith("hello "):
            conn.close()
            return
        rank = int(hello.split()[1]) if hello.split()[1].isdigit() else -1
        with self._cond:
            if self._formed or rank in self._joined:  # too late: a formed group takes no one
                member = False
            else:
                member = True
                self._joined[rank] = conn
                if len(self._joined) == self._workers:
                    self._formed = True
                    for peer in self._joined.values():
                        self._send(peer, "ready")
                self._cond.notify_all()
        while _readline(conn) is not None:
            pass
        if member:
            self._on_lost()

    @staticmethod
    def _send(conn: socket.socket, line: str) -> None:
        try:
            conn.sendall(line.encode() + b"\n")
        except OSError:
            pass

    def wait(self, timeout: float) -> int | None:
        """None once every worker joined; else, at the timeout, how many had."""
        with self._cond:
            if self._cond.wait_for(lambda: self._formed, timeout):
                return None
            return len(self._joined)

    def shutdown_all(self) -> None:
        """The ShutdownReq broadcast, as rank 0's scheduler relays it to every TP rank."""
        with self._cond:
            for conn in self._joined.values():
                self._send(conn, "shutdown")


def _connect(host: str, port: int, rank: int, deadline: float) -> socket.socket | None:
    """Join rank 0's store: retry while nothing listens, then wait for the whole group."""
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((host, port), timeout=RETRY_S * 10)
        except OSError:
            time.sleep(RETRY_S)
            continue
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            sock.sendall(f"hello {rank}\n".encode())
        except OSError:
            sock.close()
            continue
        answer = _readline(sock)
        if answer == "ready":
            sock.settimeout(None)
            return sock
        sock.close()
        if answer is None and time.monotonic() < deadline:
            time.sleep(RETRY_S)
    return None


def dummy_handler(metrics: Metrics | None) -> type[BaseHTTPRequestHandler]:
    """`launch_dummy_health_check_server`'s FastAPI app: three GET routes (plus `/metrics`)."""

    class Dummy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "uvicorn"
        sys_version = ""
        routes = ("/health", "/health_generate", "/ping")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # uvicorn at log_level="warning": no access lines

        def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            if body:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in self.routes:
                self.answer(200, b"")
            elif path == "/metrics" and metrics is not None:
                self.answer(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self.answer(404, b'{"detail":"Not Found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            if path in self.routes:
                self.answer(405, b'{"detail":"Method Not Allowed"}')
            else:
                self.answer(404, b'{"detail":"Not Found"}')

    return Dummy


def join_workers(fake: FakeSGLang) -> Rendezvous:
    """Rank 0's schedulers in `init_process_group`: every worker must join first. A worker lost
    later stalls the engine (a collective that never completes)."""
    args = fake.args
    host, port = parse_dist_init_addr(args.dist_init_addr)
    began = time.perf_counter()
    for prefix in fake.log_prefixes():
        log(INIT_PARALLEL_BEGIN_LINE, prefix)
    rendezvous = Rendezvous(host, port, args.nnodes - 1, fake.engine.stall)
    joined = rendezvous.wait(fake.dist_timeout)
    if joined is not None:
        per_node = len(fake.local_ranks)
        world = args.nnodes * per_node
        fake.scheduler_crash(
            rendezvous_timeout_lines(fake.dist_timeout, (joined + 1) * per_node, world)
        )
        block_forever()  # the SIGQUIT handler kills the tree
    for prefix in fake.log_prefixes():
        log(f"Init parallel ends. elapsed={time.perf_counter() - began:.2f} s", prefix)
    return rendezvous


def run_worker(fake: FakeSGLang) -> None:
    """`python -m sglang.launch_server ... --node-rank R` for R >= 1: never returns."""
    args = fake.args
    host, port = parse_dist_init_addr(args.dist_init_addr)
    raw(PYTHON_M_WARNING)
    log(server_args_line(fake.server_args()))
    fake.install_signals()
    schedulers = fake.spawn_schedulers()
    ranks = fake.local_ranks
    began = time.perf_counter()
    for prefix in fake.log_prefixes():
        log(INIT_PARALLEL_BEGIN_LINE, prefix)
    timeout = fake.dist_timeout
    link = _connect(host, port, args.node_rank, time.monotonic() + timeout)
    if link is None:
        schedulers.crash(connect_timeout_lines(timeout, host, port))
        block_forever()  # the SIGQUIT handler kills the tree
    for prefix in fake.log_prefixes():
        log(f"Init parallel ends. elapsed={time.perf_counter() - began:.2f} s", prefix)
    shutting_down = threading.Event()

    def listen() -> None:
        while (line := _readline(link)) is not None:
            if line == "shutdown":
                shutting_down.set()
                schedulers.shutdown()
        if not shutting_down.is_set():  # rank 0 is gone: the next broadcast fails
            schedulers.crash(peer_closed_lines(host, port))

    threading.Thread(target=listen, daemon=True, name="tp-group").start()
    fake.load_weights()
    metrics = None
    if args.enable_metrics:
        metrics = Metrics(fake.model, ranks, stats_rank=False)
        SchedulerLoop(metrics, fake.timings.scheduler_time_accounting, lambda: False).start()

    def on_sigterm(signum: int, frame: Any) -> None:
        log(worker_sigterm_line(args.node_rank))

    signal.signal(signal.SIGTERM, on_sigterm)
    dummy = ThreadingHTTPServer((args.host, args.port), dummy_handler(metrics))
    dummy.daemon_threads = True
    threading.Thread(target=dummy.serve_forever, daemon=True, name="health-check-server").start()
    log(dummy_health_line(args.host, args.port))
    for proc in schedulers.procs:  # block_until_scheduler_exits: in order, one by one
        proc.wait()
        log(scheduler_terminated_line(proc.pid, proc.returncode))
    kill_process_tree(os.getpid(), include_parent=False)  # launch_server.py's `finally`
    fake.die(0)
