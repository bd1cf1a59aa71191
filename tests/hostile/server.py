"""A server that misbehaves on purpose, stdlib only: `python tests/hostile/server.py --port P ...`.

- `--daemon PIDFILE`: before listening, double-fork a daemon that calls `setsid()`, clears its
  environment (exec with an empty one, so no token survives), ignores SIGTERM, keeps the pipes
  (unless `--daemon-closes-pipes`) and writes its pid to PIDFILE once it runs.
- `--crash-before`: exit 1 before listening (after the daemon is out).
- `--crash-after S`: exit 1 S seconds after listening.
- `--no-listen`: never listen; sleep until killed.
Otherwise it answers 200 on every GET until SIGTERM, which it obeys at once.
"""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import threading
import time

DAEMON = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    # its pid as /proc names it: getpid() differs inside the keeper's PID namespace (gVisor)
    "with open(sys.argv[1] + '.tmp', 'w') as f: f.write(os.readlink('/proc/self'))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(600)\n"
)


def double_fork(pidfile: str, close_pipes: bool) -> None:
    first = os.fork()
    if first:
        os.waitpid(first, 0)  # the middle process exits at once: the daemon is orphaned
        deadline = time.monotonic() + 20
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.01)  # go on once the daemon runs, so a test can always name it
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    if close_pipes:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    os.execve(sys.executable, [sys.executable, "-c", DAEMON, pidfile], {})


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--daemon", default=None)
    p.add_argument("--daemon-closes-pipes", action="store_true")
    p.add_argument("--crash-before", action="store_true")
    p.add_argument("--crash-after", type=float, default=None)
    p.add_argument("--no-listen", action="store_true")
    args = p.parse_args()
    if args.daemon:
        double_fork(args.daemon, args.daemon_closes_pipes)
        print(f"hostile: daemon forked, pidfile {args.daemon}", flush=True)
    if args.crash_before:
        print("hostile: crashing before listening", flush=True)
        sys.exit(1)
    if args.no_listen:
        time.sleep(600)
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"hostile: listening on {args.port}", flush=True)
    if args.crash_after is not None:
        time.sleep(args.crash_after)
        print("hostile: crashing after serving", flush=True)
        os._exit(1)
    time.sleep(600)


if __name__ == "__main__":
    main()
