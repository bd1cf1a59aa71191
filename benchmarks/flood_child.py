"""A child that writes N log lines to stderr as fast as it can and reports its own write time.

python benchmarks/flood_child.py N RESULT.json [line|block]

`line` (the default) flushes after every line, like Python's logging; `block` leaves stderr
block-buffered (8 KiB writes), like a C program or `print` to a pipe, which is the harder case
for the reader: about 55 lines arrive per read instead of one.
"""

import json
import sys
import time

LINE = (
    b"[2026-01-02 10:00:00 TP0] Decode batch, #running-req: 1, #token: 40, token usage: 0.00, "
    b"cuda graph: True, gen throughput (token/s): 95.23, #queue-req: 0\n"
)


def main() -> None:
    n, result = int(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "line"
    if mode not in ("line", "block"):
        raise SystemExit(f"mode must be line or block, got {mode!r}")
    # Our own writer on fd 2: PYTHONUNBUFFERED must not turn `block` into one syscall per line.
    out = open(2, "wb", buffering=0 if mode == "line" else 8192, closefd=False)
    worst = 0.0
    start = time.perf_counter()
    if mode == "line":
        for _ in range(n):
            t = time.perf_counter()
            out.write(LINE)
            worst = max(worst, time.perf_counter() - t)
    else:
        for _ in range(n):
            out.write(LINE)
        out.flush()
    took = time.perf_counter() - start
    with open(result, "w") as f:
        json.dump({"seconds": took, "max_write_s": worst, "lines": n, "mode": mode}, f)


if __name__ == "__main__":
    main()
