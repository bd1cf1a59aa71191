"""A server whose three children outlive it: the death-to-exit benchmark's child.

    python benchmarks/three_children.py PORT

It answers 200 on every GET, prints `bench child: listening`, and has started three sleeping
children that nothing tells to die: when the benchmark SIGKILLs this process, whoever supervises
it must find and kill them before it can call the tree dead.
"""

from __future__ import annotations

import http.server
import subprocess
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    for _ in range(3):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("bench child: listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
