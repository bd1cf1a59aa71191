"""Benchmark: one wedged DP rank while the others serve (sglang #32949), from the wedge to the exit.

    .venv/bin/python benchmarks/dp_rank_stall.py [--trials N] [--out benchmarks/RESULTS-dp-rank-stall.md]

The fake SGLang under DP attention (`--enable-dp-attention --tp-size 2 --dp-size 2`, every
scheduler's metrics) with `--fake-fault dp-rank-stall`: DP rank 1 hangs in the forward of the first
request sent to it; rank 0 goes on serving, and `/health` (sent to rank 0) stays 200. A client
keeps sending chats (half reach rank 1 and hang). The clock runs from the first request that
hangs to the supervisor's exit. Two designs, default settings, the same run:

- ours: progress judged per rank (`dp_rank`), the engine's totals notwithstanding;
- probe-only (`--no-progress`): `/health` every 30 s, four failures; it never fails here, so the
  trial ends at the timeout, still serving into the hole (the field's report).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import Row, machine_line, markdown_table  # noqa: E402

from supervisor.testing import fake_command, free_port  # noqa: E402

TIMEOUT_S = 150.0
FAKE = [
    "--enable-metrics", "--enable-metrics-for-all-schedulers", "--enable-dp-attention",
    "--tp-size", "2", "--dp-size", "2", "--fake-fault", "dp-rank-stall",
    "--fake-load-time", "0.5", "--fake-warmup-time", "0.3",
]  # fmt: skip


def one_trial(progress: bool) -> tuple[float, bool, str]:
    """Seconds from the first hung request to the exit (the timeout if none), recycled?, cause."""
    port = free_port()
    argv = [sys.executable, "-m", "supervisor", "run", "--port", str(port)]
    if not progress:
        argv.append("--no-progress")
    argv += ["--", *fake_command(port, *FAKE)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines: list[str] = []
    serving = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if "state=serving" in line:
                serving.set()

    threading.Thread(target=read, daemon=True).start()
    serving.wait(60)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    hung_at: list[float] = []

    def client() -> None:  # requests in turn: rank 0 answers, rank 1 keeps them for ever
        while proc.poll() is None:
            sent = time.monotonic()
            try:
                httpx.post(url, json=body, timeout=3)
            except httpx.HTTPError:
                if not hung_at and proc.poll() is None:
                    hung_at.append(sent)
            time.sleep(0.5)

    threading.Thread(target=client, daemon=True).start()
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ended = time.monotonic()
    start = hung_at[0] if hung_at else ended
    out = "".join(lines)
    recycled = "CRASH REPORT" in out
    cause = next((ln.strip() for ln in lines if "server died after serving" in ln), "not recycled")
    return ended - start, recycled, cause


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-dp-rank-stall.md"
    )
    args = parser.parse_args()
    ours = [one_trial(True) for _ in range(args.trials)]
    base = [one_trial(False) for _ in range(args.trials)]
    rows = [
        Row(
            "one wedged DP rank: first hung request -> exit 1",
            "s",
            [t for t, _, _ in ours],
            [t for t, _, _ in base],
            "under 60 s, recycled",
            all(r and t < 60 for t, r, _ in ours),
        )
    ]
    text = [
        "# One wedged DP rank while the others serve (issue #19, item 2)",
        "",
        machine_line(),
        "",
        f"Default settings; {args.trials} trials each; probe-only trials end at the {TIMEOUT_S:g} s "
        "timeout, still serving. `python benchmarks/dp_rank_stall.py` reproduces it.",
        "",
        *markdown_table(rows),
        "",
        "Ours, recycled: " + "; ".join(sorted({c.split(": ", 1)[-1][:160] for _, _, c in ours})),
        "",
        "Probe-only: "
        + ", ".join("recycled" if r else "not recycled" for _, r, _ in base)
        + " (its `/health` went to the serving rank)",
    ]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
