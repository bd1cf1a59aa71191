"""One rank of a two-process NCCL job that behaves like a multi-node SGLang rank, for the GPU proof.

    python nccl_rank.py --rank R --world 2 --master 127.0.0.1:29517 --port P [--hold-gib G]

Each rank takes one GPU, holds `--hold-gib` of its memory (as a loaded model would), and runs an
all-reduce loop forever: the collective that leaves a surviving rank blocked, with no error and no
log line, when its peer dies (measured: more than 60 s, until killed by hand). Like SGLang 0.5.23:

- rank 0 serves `/health`, answering 200 only once the next all-reduce has completed (SGLang's
  health check runs a real generation, which a blocked collective never finishes), 503 after 20 s;
- rank >= 1 serves SGLang's dummy health server (`launch_dummy_health_check_server`): 200 always,
  whatever the engine does;
- every rank ignores nothing: SIGTERM on rank >= 1 is logged and ignored, as SGLang's workers do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
import torch.distributed as dist

GIB = 1 << 30


def log(rank: int, message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp} NODE{rank}] {message}", file=sys.stderr, flush=True)


class Progress:
    """The all-reduce counter that rank 0's health check waits on."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def bump(self) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait_next(self, timeout: float) -> bool:
        with self.cond:
            start = self.count
            return self.cond.wait_for(lambda: self.count > start, timeout=timeout)


def serve_health(rank: int, port: int, progress: Progress) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:
            if not self.path.startswith("/health"):
                self.send_response(404)
                self.end_headers()
                return
            ok = True if rank > 0 else progress.wait_next(20.0)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(
        rank,
        f"health server on http://127.0.0.1:{port}/health ({'engine' if rank == 0 else 'dummy'})",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--master", required=True, help="HOST:PORT of rank 0's rendezvous")
    parser.add_argument("--port", type=int, required=True, help="the health port")
    parser.add_argument("--hold-gib", type=float, default=4.0)
    args = parser.parse_args()
    host, port = args.master.rsplit(":", 1)
    os.environ.update(MASTER_ADDR=host, MASTER_PORT=port)
    if args.rank > 0:
        signal.signal(
            signal.SIGTERM,
            lambda *_: log(
                args.rank, "SIGTERM received; waiting for the rank-0 shutdown (ignored)"
            ),
        )
    torch.cuda.set_device(args.rank)
    log(args.rank, f"init_process_group nccl world={args.world} master={args.master}")
    dist.init_process_group("nccl", rank=args.rank, world_size=args.world)
    hold = torch.empty(int(args.hold_gib * GIB), dtype=torch.uint8, device="cuda")
    hold.fill_(1)
    buf = torch.ones(1 << 20, device="cuda")
    progress = Progress()
    dist.all_reduce(buf)
    torch.cuda.synchronize()
    serve_health(args.rank, args.port, progress)
    log(args.rank, f"holding {args.hold_gib:g} GiB; all-reduce loop running")
    while True:
        dist.all_reduce(buf)
        torch.cuda.synchronize()  # blocks for ever once a peer is gone
        progress.bump()
        time.sleep(0.05)


if __name__ == "__main__":
    main()
