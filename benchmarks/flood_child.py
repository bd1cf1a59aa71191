"""A child that writes N log lines to stderr as fast as it can and reports its own write times.

python benchmarks/flood_child.py N RESULT.json
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
    out = sys.stderr.buffer
    worst = 0.0
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        out.write(LINE)
        out.flush()
        worst = max(worst, time.perf_counter() - t)
    took = time.perf_counter() - start
    with open(result, "w") as f:
        json.dump({"seconds": took, "max_write_s": worst, "lines": n}, f)


if __name__ == "__main__":
    main()
