"""The seed's design, re-implemented as the baseline every benchmark compares against.

From the walkthrough's deploy.py: `subprocess.Popen` with stdout piped, a daemon thread copying
the log with `readline`, a health loop sleeping a fixed interval (5 s), sequential warmups with
`requests`-style blocking calls, and a monitor thread that polls `poll()` every 10 s and calls
`os._exit(1)` when the server has died. Run as a script it behaves like the seed's `serve()`:

    python benchmarks/seed_design.py PORT -- COMMAND...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HEALTH_INTERVAL_S = 5.0
MONITOR_INTERVAL_S = 10.0


def stream_logs(pipe, out) -> None:
    for line in iter(pipe.readline, b""):
        out.write(line)


def health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for_health(port: int, timeout: float = 900) -> float | None:
    """Return the epoch time at which health was first seen OK."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if health_ok(port):
            return time.time()
        time.sleep(HEALTH_INTERVAL_S)
    return None


def warmup_sequential(port: int, payloads: list[dict]) -> float:
    start = time.perf_counter()
    for body in payloads:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
    return time.perf_counter() - start


def monitor(process: subprocess.Popen) -> None:
    while True:
        time.sleep(MONITOR_INTERVAL_S)
        if process.poll() is not None:
            print(f"[monitor] FATAL: server died (code {process.returncode})", flush=True)
            os._exit(1)


def main() -> None:
    port = int(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1 :]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = open(os.devnull, "wb")
    threading.Thread(target=stream_logs, args=(process.stdout, out), daemon=True).start()
    healthy_at = wait_for_health(port)
    print(f"[seed] healthy_at={healthy_at}", flush=True)
    print("[seed] serving", flush=True)
    threading.Thread(target=monitor, args=(process,), daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
